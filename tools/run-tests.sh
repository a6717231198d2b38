#!/usr/bin/env bash
# Install what the tests need and run them all (README command 2; .ci/run calls it).
#
#   tools/run-tests.sh [pytest args]
#
# Real services: RabbitMQ and MariaDB must be installed. If one is installed
# but stopped it is started; if one is missing this fails with a clear message
# (apt-get install -y rabbitmq-server mariadb-server). Nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

tools/ensure-services.sh

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# A real (non-editable) install: the console scripts and the shipped migrations
# the functional tests use are the installed ones.
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps .
"$VENV/bin/python" -m pip install -q ".[test]"
# Real servers the functional tests start themselves (installed if missing).
tools/install-swift.sh "$VENV"
tools/install-nfs.sh "$VENV"
tools/install-keystone.sh "$VENV"
# The stock clients live in their own venv, as on a user's machine.
tools/install-clients.sh .venv-clients

VENV_BIN=$(cd "$VENV/bin" && pwd)
export PATH="$VENV_BIN:$PATH"
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
