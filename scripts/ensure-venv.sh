#!/usr/bin/env bash
# ensure-venv.sh: create .venv with Python >= 3.11 and install gridpatrol with its dev extras.
# Re-runs are cheap: the install is redone only when pyproject.toml is newer than the stamp.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
STAMP=$VENV/.installed

pick_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "ensure-venv: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)." >&2
    return 1
}

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ ! pyproject.toml -nt "$STAMP" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    py=$(pick_python)
    echo "==> creating $VENV with $("$py" --version)" >&2
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
        # Debian splits venv/ensurepip into python3-venv; install it when we can.
        rm -rf "$VENV"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            echo "==> installing python${ver}-venv" >&2
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -qq "python${ver}-venv" >/dev/null 2>&1 ||
                { apt-get update -qq >/dev/null && apt-get install -y -qq "python${ver}-venv" >/dev/null; }
            "$py" -m venv "$VENV"
        else
            echo "ensure-venv: '$py -m venv' failed; install your distribution's venv package" \
                 "(Debian/Ubuntu: sudo apt-get install python3-venv)." >&2
            exit 1
        fi
    fi
fi

echo "==> installing gridpatrol and its dependencies into $VENV" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v WARNING >&2 || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v WARNING >&2 || true
"$VENV/bin/python" -c 'import backend, flask_smorest, geoalchemy2, pyogrio' # fail loudly if the install did
touch "$STAMP"
