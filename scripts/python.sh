# Sourced by scripts/test.sh and scripts/demo.sh: finding a Python that nbflow supports.

# The first interpreter that exists, runs, and is Python >= 3.11 (PYTHON=... comes first).
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}
