#!/usr/bin/env bash
# Create a separate virtualenv holding OpenStack Cinder from PyPI, used by
# tools/bench_cinder.py to benchmark Cinder's POSIX chunked backup driver next
# to our engine.  Kept apart from the dev venv because Cinder pins a large,
# conflicting dependency set (oslo.*, SQLAlchemy, eventlet).
#
# Usage: tools/cinder-venv.sh [DIR]     (DIR defaults to .venv-cinder)
#
# Idempotent: does nothing if DIR/bin/python can already import the driver.
set -euo pipefail

DIR="${1:-.venv-cinder}"
PYTHON="${PYTHON:-python3}"

# Pinned so benchmark figures are comparable between runs.  29.0.0 is the
# newest release; it installs from wheels/sdists on Python 3.11 without a
# compiler, imports cleanly and its db_sync works with the SQLAlchemy pip
# resolves.  It also carries the incremental-restore fix (zero regions of
# incrementals are written when restoring to a new volume).
CINDER_VERSION="${CINDER_VERSION:-29.0.0}"

check() {
    [ -x "$DIR/bin/python" ] &&
        "$DIR/bin/python" -W ignore -c 'import cinder.backup.drivers.posix' >/dev/null 2>&1
}

if check; then
    echo "cinder venv already usable: $DIR"
    exit 0
fi

"$PYTHON" -m venv "$DIR"
"$DIR/bin/pip" install --quiet --disable-pip-version-check "cinder==$CINDER_VERSION"

if ! check; then
    echo "error: $DIR/bin/python cannot import cinder.backup.drivers.posix" >&2
    exit 1
fi
"$DIR/bin/python" -W ignore -c \
    'from importlib.metadata import version; print("cinder", version("cinder"), "ready")'
