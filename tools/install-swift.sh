#!/usr/bin/env bash
# Install a single-node OpenStack Swift for the Swift driver's functional tests.
#
#   tools/install-swift.sh [VENV]     (default: .venv)
#
# Test-only: swift (the server) and memcached (tempauth keeps its tokens there)
# are not dependencies of backupsvc. memcached comes from Debian (we run as
# root); swift, python-swiftclient and keystoneauth1 go into the test
# virtualenv, so tests/swiftserver.py finds the servers next to the python
# running pytest. Idempotent: when everything is already there it returns at
# once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv}
PY="$VENV/bin/python"
SWIFT_SPEC='swift==2.38.*'

if [ ! -x "$PY" ]; then
    echo "ERROR: $PY does not exist; create the venv first (tools/run-tests.sh does)" >&2
    exit 1
fi

have_memcached() { command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ]; }

have_python_packages() {
    "$PY" - <<'EOF' 2>/dev/null
import importlib.util as u
import sys
from importlib.metadata import version

mods = ("swift.common.ring", "swiftclient", "keystoneauth1")
ok = all(u.find_spec(m.split(".")[0]) and u.find_spec(m) for m in mods)
sys.exit(0 if ok and version("swift").startswith("2.38.") else 1)
EOF
}

if ! have_memcached; then
    echo "Installing memcached (apt-get)..."
    if [ "$(id -u)" -ne 0 ]; then
        echo "ERROR: memcached is missing and installing it needs root:" >&2
        echo "       sudo apt-get install -y memcached" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q memcached >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q memcached >/dev/null
    fi
    # Debian starts a system memcached on 11211; the tests start their own on
    # a free port and do not need it, but leave it alone if the admin wants it.
    have_memcached || { echo "ERROR: memcached is still not installed" >&2; exit 1; }
fi

if ! have_python_packages; then
    echo "Installing $SWIFT_SPEC, python-swiftclient and keystoneauth1 into $VENV..."
    if ! "$PY" -m pip install -q "$SWIFT_SPEC" python-swiftclient keystoneauth1; then
        echo "ERROR: pip could not install $SWIFT_SPEC into $VENV" >&2
        exit 1
    fi
    have_python_packages || { echo "ERROR: swift is still not importable from $PY" >&2; exit 1; }
fi
