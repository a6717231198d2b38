#!/usr/bin/env bash
# Install a real Keystone (and uWSGI to serve it) for the Keystone auth tests.
#
#   tools/install-keystone.sh [VENV]     (default: .venv)
#
# Test-only: keystone and uwsgi are not dependencies of backupsvc. They go into
# the test virtualenv, so tests/functional/test_keystone.py finds
# keystone-manage and uwsgi next to the python running pytest. Idempotent:
# when both are already importable and on the venv's PATH it returns at once.
# uWSGI compiles from source (about a minute; needs gcc and python3-dev).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv}
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "ERROR: $PY does not exist; create the venv first (tools/run-tests.sh does)" >&2
    exit 1
fi

installed() {
    [ -x "$VENV/bin/keystone-manage" ] && [ -x "$VENV/bin/uwsgi" ] &&
        "$PY" -c 'import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ("keystone", "keystonemiddleware")))' 2>/dev/null
}

if installed; then
    exit 0
fi

echo "Installing keystone and uwsgi into $VENV (uWSGI compiles: about a minute)..."
if ! "$PY" -m pip install -q keystone uwsgi keystonemiddleware; then
    echo "ERROR: pip could not install keystone/uwsgi into $VENV." >&2
    echo "       uWSGI needs a C compiler and the Python headers:" >&2
    echo "       apt-get install -y gcc python3-dev" >&2
    exit 1
fi
if ! installed; then
    echo "ERROR: keystone-manage or uwsgi is still missing from $VENV/bin" >&2
    exit 1
fi
