# Shared by ./generate and ./run-tests: find a Python and keep the template's virtualenv.
# Sourced, not executed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Print the first Python >= $1 that really runs (pyenv shims refuse unselected versions).
find_python() {
    local minimum="$1" candidate
    local pyenv_root
    pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    # The projects' default Python (3.12) first, so a local run matches CI's.
    local candidates=("${PYTHON:-}" python3.12 "$pyenv_root"/versions/3.12*/bin/python3
        python3.13 "$pyenv_root"/versions/3.13*/bin/python3 python3)
    for candidate in "${candidates[@]}"; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c "import sys, venv; sys.exit(sys.version_info < tuple(map(int, '$minimum'.split('.'))))" 2>/dev/null; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return 0
        fi
    done
    return 1
}

# Create (once) the virtualenv with the template's own test requirements.
ensure_venv() {
    local python
    if ! python="$(find_python 3.12)"; then
        if ! python="$(find_python 3.11)" && command -v apt-get >/dev/null 2>&1; then
            as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
        fi
        python="$(find_python "${1:-3.12}")" || {
            echo "ERROR: Python ${1:-3.12} or newer with venv is required (set PYTHON=/path/to/python3.12)." >&2
            exit 1
        }
    fi
    if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$ROOT/requirements-dev.txt" "$VENV/.requirements"; then
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements-dev.txt"
        cp "$ROOT/requirements-dev.txt" "$VENV/.requirements"
    fi
}
