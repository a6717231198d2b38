#!/usr/bin/env bash
# Install the stock OpenStack clients into a virtualenv of their own, for
# tests/functional/test_clients.py.
#
#   tools/install-clients.sh [DIR]     (default: .venv-clients)
#
# The clients live apart from the service's venv so their dependencies never
# decide which versions the service is tested with. Idempotent: a venv that
# already has both CLIs is left alone (set BACKUPSVC_CLIENTS_UPGRADE=1 to
# move it to the latest releases).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DIR=${1:-.venv-clients}

if [ -x "$DIR/bin/cinder" ] && [ -x "$DIR/bin/openstack" ] && [ -f "$DIR/.gitignore" ] &&
        [ -z "${BACKUPSVC_CLIENTS_UPGRADE:-}" ]; then
    exit 0
fi

if [ ! -x "$DIR/bin/python" ]; then
    "$PYTHON" -m venv "$DIR"
fi
# Keep git and ruff out of it (what Python 3.13's venv does by itself).
echo '*' > "$DIR/.gitignore"
echo "Installing python-cinderclient and python-openstackclient into $DIR..."
"$DIR/bin/python" -m pip install -q --upgrade python-cinderclient python-openstackclient
"$DIR/bin/cinder" --version >/dev/null
"$DIR/bin/openstack" --version >/dev/null
