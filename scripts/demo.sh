#!/usr/bin/env bash
# Run the nbflow demo, or open the teaching notebooks in JupyterLab.
#
#   bash scripts/demo.sh [demo options...]   the quickstart flow, live in the terminal
#                                            (python -m nbflow demo --help lists the options)
#   bash scripts/demo.sh --lab [lab options...]
#                                            JupyterLab on notebooks/ (installs jupyterlab and
#                                            the dask extra into .venv the first time)
#   bash scripts/demo.sh --help              this text
#
# Creates (or reuses) .venv with Python >= 3.11 and installs nbflow into it (core
# dependencies; the first install takes about a minute and prints each package as pip
# collects it; pip's full output goes to .venv/pip.log). Set PYTHON=... to choose the
# interpreter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case ${1:-} in
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
        exit 0
        ;;
esac

# shellcheck source=scripts/python.sh
source scripts/python.sh  # the scripts cd to the repo root first

say() { printf 'scripts/demo.sh: %s\n' "$*" >&2; }

if ! .venv/bin/python -c '' >/dev/null 2>&1; then
    python=$(find_python) || {
        say "needs Python >= 3.11 as python3 (or set PYTHON=...)"
        exit 1
    }
    rm -rf .venv
    say "creating .venv with $("$python" --version 2>&1)"
    "$python" -m venv .venv
    echo '*' >.venv/.gitignore
fi

# pip_install WHAT ARGS...: pip install ARGS into .venv, one line per package pip collects
# (a first install is silent for a minute otherwise), the whole output in .venv/pip.log.
pip_install() {
    local what=$1 started=$SECONDS rc
    shift
    say "installing $what into .venv (pip install $*); the first time takes about a minute"
    set +e
    PYTHONUNBUFFERED=1 .venv/bin/python -m pip install --progress-bar off "$@" 2>&1 |
        tee .venv/pip.log |
        awk '/^Collecting / { name = $2; sub(/[<>=!~;,[].*/, "", name); print "  collecting " name; fflush() }
             /^Processing .*\.whl/ { name = $2; sub(/.*\//, "", name); sub(/-[0-9].*/, "", name)
                                     print "  collecting " name; fflush() }
             /^Installing collected packages/ { print "  installing the collected packages..."; fflush() }' >&2
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" != 0 ]; then
        say "pip failed (exit $rc); the end of .venv/pip.log:"
        grep -v "is ignored: it is neither a file nor a directory" .venv/pip.log | tail -25 >&2
        exit "$rc"
    fi
    say "installed $what in $((SECONDS - started)) s"
}

# Same stamp as scripts/test.sh: any install from the current pyproject.toml includes the core.
stamp=.venv/.nbflow-installed
hash=$(sha256sum pyproject.toml | cut -c1-16)
if ! grep -q "^$hash " "$stamp" 2>/dev/null; then
    pip_install nbflow -e .
    echo "$hash ." >>"$stamp"
fi

if [ "${1:-}" = --lab ]; then
    shift
    if ! grep -qxF "$hash lab" "$stamp" 2>/dev/null; then
        # The dask extra too, so that every notebook runs (10 is about Dask).
        pip_install "JupyterLab and the dask extra" -e ".[dask]" "jupyterlab>=4.2" "ipykernel>=6.29"
        echo "$hash lab" >>"$stamp"
    fi
    root=()
    if [ "$(id -u)" = 0 ]; then root=(--allow-root); fi  # Jupyter refuses root otherwise
    say "starting JupyterLab on notebooks/ (Ctrl+C twice stops it)"
    exec .venv/bin/python -m jupyterlab --ServerApp.root_dir=notebooks "${root[@]}" "$@" \
        notebooks/01-quickstart.ipynb
fi

exec .venv/bin/python -m nbflow demo "$@"
