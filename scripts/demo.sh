#!/usr/bin/env bash
# Run the nbflow demo: bash scripts/demo.sh [demo options...]
#
# Creates (or reuses) .venv with Python >= 3.11, installs nbflow into it (core dependencies
# only), then runs `python -m nbflow demo "$@"`. Set PYTHON=... to choose the interpreter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/python.sh
source scripts/python.sh  # the scripts cd to the repo root first

if ! .venv/bin/python -c '' >/dev/null 2>&1; then
    python=$(find_python) || {
        echo "scripts/demo.sh: needs Python >= 3.11 as python3 (or set PYTHON=...)" >&2
        exit 1
    }
    rm -rf .venv
    echo "creating .venv with $("$python" --version 2>&1)" >&2
    "$python" -m venv .venv
    echo '*' >.venv/.gitignore
fi

# Same stamp as scripts/test.sh: any install from the current pyproject.toml includes the core.
stamp=.venv/.nbflow-installed
hash=$(sha256sum pyproject.toml | cut -c1-16)
if ! grep -q "^$hash " "$stamp" 2>/dev/null; then
    echo "installing nbflow into .venv (pip install -e .)" >&2
    .venv/bin/python -m pip install -q -e . 2>&1 |
        { grep -v "is ignored: it is neither a file nor a directory" || true; }
    echo "$hash ." >>"$stamp"
fi

exec .venv/bin/python -m nbflow demo "$@"
