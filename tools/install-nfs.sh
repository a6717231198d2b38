#!/usr/bin/env bash
# Install what the NFS tests need; does nothing (fast) when it is all there.
#
#   tools/install-nfs.sh [VENV]        (default: .venv)
#
# * nfs-ganesha with its VFS back end (Debian packages), the NFS server the
#   functional tests start on 127.0.0.1 (tests/nfsserver.py). Needs root.
# * nfs-rs, the userspace NFS client, into VENV (created if missing): the
#   kernel here has no NFS client, so the tests (and backup_nfs_client =
#   userspace) speak NFS through it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
NFS_RS_SPEC='nfs-rs>=0.8.7,<0.9'
PACKAGES=(nfs-ganesha nfs-ganesha-vfs)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "ERROR: ${missing[*]} not installed and this is not root." >&2
        echo "       Run as root: apt-get install -y ${PACKAGES[*]}" >&2
        exit 1
    fi
    echo "Installing ${missing[*]}..."
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be stale or absent on a fresh machine: update once
    # and try again if the first attempt fails.
    if ! apt-get install -y -q "${missing[@]}" >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q "${missing[@]}" >/dev/null
    fi
fi
if ! command -v ganesha.nfsd >/dev/null 2>&1; then
    echo "ERROR: ganesha.nfsd not found after installing ${PACKAGES[*]}" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" - <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version

import nfs_rs  # noqa: F401

major, minor, patch = (int(x) for x in version("nfs-rs").split(".")[:3])
sys.exit(0 if (major, minor) == (0, 8) and patch >= 7 else 1)
EOF
then
    echo "Installing $NFS_RS_SPEC into $VENV..."
    "$VENV/bin/python" -m pip install -q "$NFS_RS_SPEC"
fi
echo "NFS test tools ready: $(ganesha.nfsd -v 2>&1 | head -n1), nfs-rs $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("nfs-rs"))')"
