#!/usr/bin/env bash
# Install everything nbflow needs and run every test. CI runs exactly this (.ci/run).
#
#   bash scripts/test.sh           lint, types, unit tests, notebooks, real-browser tests, docs,
#                                  then the core tests on Python 3.12 and 3.13
#   bash scripts/test.sh --quick   unit tests only, on .venv's Python (for developers)
#   bash scripts/test.sh --lint    ruff + mypy only
#   bash scripts/test.sh --setup   only create/update .venv
#   add --keep-going to run every stage even after a failure (the exit code still fails)
#
# Needs only Python >= 3.11 with venv. As root with apt-get (Debian, as in CI) it also installs
# Debian's chromium and graphviz when they are missing; `playwright install` is never used
# (its downloads are not reachable here). Virtualenvs are reused: .venv (the dev env, extras
# "dev"), .venv-3.12 and .venv-3.13 (extras "test"); they are reinstalled when pyproject.toml
# changes. JUnit XML and browser screenshots go to test-artifacts/.
#
# Environment:
#   PYTHON=...            interpreter for .venv (default: the first python3* that is >= 3.11)
#   NBFLOW_PYTHONS="..."  other Python versions for the core tests (default "3.12 3.13"; "" = none)
#   NBFLOW_SKIP_APT=1     never call apt-get
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ARTIFACTS=$ROOT/test-artifacts
JUNIT_DIR=$ARTIFACTS/junit
MODE=full
KEEP_GOING=0

for arg in "$@"; do
    case $arg in
        --quick) MODE=quick ;;
        --lint) MODE=lint ;;
        --setup) MODE=setup ;;
        --keep-going) KEEP_GOING=1 ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            echo "scripts/test.sh: unknown option '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

# ---------------------------------------------------------------------------- helpers

STAGE="start"
STAGE_START=$SECONDS
TIMINGS=()

section() {
    stage_done
    STAGE=$1
    STAGE_START=$SECONDS
    printf '\n==================== %s ====================\n' "$STAGE"
}

stage_done() {
    TIMINGS+=("$(printf '%5ss  %s' $((SECONDS - STAGE_START)) "$STAGE")")
}
FAILED_STAGES=()

warn() { printf 'WARNING: %s\n' "$*" >&2; }
skip() { printf 'SKIP: %s\n' "$*"; }

# shellcheck source=scripts/python.sh
source scripts/python.sh  # the scripts cd to the repo root first

# An interpreter of exactly version $1 (like 3.12): pyenv's first, then pythonX.Y on PATH.
# pyenv shims exist on PATH even for versions that are not selected, so each one is run.
find_python_version() {
    local version=$1 candidate
    local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    local candidates=()
    # Newest patch release first.
    mapfile -t candidates < <(
        shopt -s nullglob
        printf '%s\n' "$pyenv_root"/versions/"$version"{,.*}/bin/python | sort -V -r
    )
    candidates+=("python$version")
    for candidate in "${candidates[@]}"; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$version')" \
                >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# ensure_venv DIR PYTHON SPEC: create DIR with PYTHON (or reuse it) and `pip install -e SPEC`,
# unless this SPEC was already installed there from the current pyproject.toml.
ensure_venv() {
    local dir=$1 python=$2 spec=$3
    if ! "$dir/bin/python" -c '' >/dev/null 2>&1; then
        rm -rf "$dir"
        echo "creating $dir with $python ($("$python" --version 2>&1))"
        if ! "$python" -m venv "$dir"; then
            # Debian's own python3 ships venv separately.
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${NBFLOW_SKIP_APT:-}" != 1 ]; then
                apt_install python3-venv
                rm -rf "$dir"
                "$python" -m venv "$dir"
            else
                echo "cannot create a virtualenv with $python (on Debian: apt-get install python3-venv)" >&2
                return 1
            fi
        fi
        echo '*' >"$dir/.gitignore" # keeps .venv-3.12 & co out of git status
    fi
    local stamp="$dir/.nbflow-installed" want
    want="$(sha256sum pyproject.toml | cut -c1-16) $spec"
    if grep -qxF "$want" "$stamp" 2>/dev/null; then
        echo "$dir: reusing (already has -e $spec for this pyproject.toml)"
    else
        echo "$dir: pip install -e \"$spec\""
        # This machine's pip config names local indexes that hold only some projects; pip
        # warns once per missing project. Drop that noise, keep everything else.
        "$dir/bin/python" -m pip install -q -e "$spec" 2>&1 |
            { grep -v "is ignored: it is neither a file nor a directory" || true; }
        echo "$want" >>"$stamp"
    fi
}

APT_UPDATED=0
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local log=$ARTIFACTS/apt.log
    mkdir -p "$ARTIFACTS"
    if [ $APT_UPDATED = 0 ]; then
        echo "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -q >"$log" 2>&1 || {
            tail -20 "$log"
            return 1
        }
        APT_UPDATED=1
    fi
    echo "apt-get install -y $*"
    apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@" >>"$log" 2>&1 || {
        tail -20 "$log"
        return 1
    }
}

system_packages() {
    local missing=()
    [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v dot >/dev/null 2>&1 || missing+=(graphviz)
    if [ ${#missing[@]} = 0 ]; then
        echo "chromium: $(command -v chromium)   dot: $(command -v dot)"
    elif [ "${NBFLOW_SKIP_APT:-}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        warn "missing ${missing[*]}; not root with apt-get (or NBFLOW_SKIP_APT=1), so not installing." \
            "Browser tests will be skipped (and fail when CI is set)."
    else
        apt_install "${missing[@]}"
    fi
}

# run_pytest NAME PYTHON ARGS...: exit 5 ("no tests collected") is a warning, not a failure.
run_pytest() {
    local name=$1 python=$2 rc=0
    shift 2
    "$python" -m pytest --junitxml="$JUNIT_DIR/$name.xml" "$@" || rc=$?
    if [ $rc = 5 ]; then
        warn "$name: pytest collected no tests (exit 5); treated as success"
        rm -f "$JUNIT_DIR/$name.xml"
        return 0
    fi
    return $rc
}

# Sum every JUnit file into one line that counts as a closing line for any runner.
summary() {
    local python
    python=$(find_python 2>/dev/null) || return 0
    compgen -G "$JUNIT_DIR/*.xml" >/dev/null || return 0
    "$python" - "$JUNIT_DIR" <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

total = failed = skipped = 0
for path in sorted(Path(sys.argv[1]).glob("*.xml")):
    root = ET.parse(path).getroot()
    for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
print(f"total: {total - failed - skipped} passed, {failed} failed, {skipped} skipped")
PY
}

on_exit() {
    local rc=$?
    stage_done
    printf '\n==================== timings ====================\n'
    printf '%s\n' "${TIMINGS[@]}"
    printf '%5ss  total\n' "$SECONDS"
    if [ $rc = 0 ]; then
        printf '\nscripts/test.sh: all stages passed\n'
    elif [ ${#FAILED_STAGES[@]} != 0 ]; then
        printf '\nscripts/test.sh: FAILED stages:\n'
        printf '  - %s\n' "${FAILED_STAGES[@]}"
    else
        printf '\nscripts/test.sh: FAILED in stage "%s" (exit %s)\n' "$STAGE" "$rc"
    fi
    summary || true
    exit $rc
}
trap on_exit EXIT

# ---------------------------------------------------------------------------- stages

stage_ruff() {
    local paths=() dir
    for dir in nbflow tests benchmarks; do
        if [ -d "$dir" ]; then paths+=("$dir"); fi
    done
    "$VPY" -m ruff check "${paths[@]}"
}

stage_mypy() {
    if compgen -G "nbflow/*.py" >/dev/null; then
        "$VPY" -m mypy
    else
        skip "mypy: nbflow/ has no Python files yet"
    fi
}

stage_unit() {
    run_pytest unit "$VPY" tests -m "not browser"
}

stage_notebooks() {
    if compgen -G "notebooks/*.ipynb" >/dev/null; then
        run_pytest notebooks "$VPY" --nbval --nbval-current-env \
            --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks/
    else
        skip "notebooks: no notebooks/*.ipynb"
    fi
}

stage_browser() {
    run_pytest browser "$VPY" tests/browser -m browser
}

stage_docs() {
    if [ -f mkdocs.yml ]; then
        "$ROOT/.venv/bin/mkdocs" build --strict
    else
        skip "docs: no mkdocs.yml"
    fi
}

stage_other_python() {
    local version=$1 other
    if other=$(find_python_version "$version"); then
        ensure_venv "$ROOT/.venv-$version" "$other" ".[test]"
        run_pytest "core-py$version" "$ROOT/.venv-$version/bin/python" \
            tests -m "not browser and not notebook and not dask"
    else
        skip "Python $version not found (looked in ${PYENV_ROOT:-$HOME/.pyenv}/versions" \
            "and for python$version on PATH)"
    fi
}

# stage TITLE FUNCTION [ARGS]: run one stage. By default the first failure ends the script.
# With --keep-going the stage runs as a background job, where `set -e` still applies inside
# it (bash ignores -e in a function called from `cmd || ...`), and failures are collected.
stage() {
    section "$1"
    shift
    if [ $KEEP_GOING = 0 ]; then
        "$@"
    else
        "$@" &
        if ! wait $!; then
            FAILED_STAGES+=("$STAGE")
            printf 'FAILED: %s (going on: --keep-going)\n' "$STAGE"
        fi
    fi
}

PY=$(find_python) || {
    echo "scripts/test.sh: needs Python >= 3.11 as python3 (or set PYTHON=...)" >&2
    exit 1
}
VPY=$ROOT/.venv/bin/python
rm -rf "$JUNIT_DIR"
mkdir -p "$JUNIT_DIR"

if [ $MODE = full ]; then
    section "system packages (chromium, graphviz)"
    system_packages
fi

section "virtualenv .venv (pip install -e .[dev])"
ensure_venv "$ROOT/.venv" "$PY" ".[dev]"
"$VPY" --version

case $MODE in
    setup) ;;
    quick)
        stage "unit tests (quick): pytest tests -m 'not browser'" stage_unit
        ;;
    lint)
        stage "ruff check" stage_ruff
        stage "mypy" stage_mypy
        ;;
    full)
        stage "ruff check" stage_ruff
        stage "mypy" stage_mypy
        stage "unit tests: pytest tests -m 'not browser'" stage_unit
        stage "notebooks: pytest --nbval notebooks/" stage_notebooks
        stage "browser tests: pytest tests/browser -m browser" stage_browser
        stage "docs: mkdocs build --strict" stage_docs
        for version in ${NBFLOW_PYTHONS-3.12 3.13}; do
            stage "core tests on Python $version" stage_other_python "$version"
        done
        ;;
esac

if [ ${#FAILED_STAGES[@]} != 0 ]; then
    exit 1
fi
