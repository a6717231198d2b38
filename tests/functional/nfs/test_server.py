"""The test NFS server itself: a crashed run's ganesha does not live on."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import nfsserver

pytestmark = pytest.mark.functional

CRASHING_RUN = """
import time
from tests.nfsserver import GaneshaServer
server = GaneshaServer()
server.start()
print(server.run_dir, server.proc.pid, flush=True)
time.sleep(60)
"""


def test_leftover_of_a_crashed_run_is_stopped(nfs_server):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    run = subprocess.Popen([sys.executable, "-c", CRASHING_RUN], cwd=root,
                           stdout=subprocess.PIPE, text=True)
    try:
        run_dir, pid = run.stdout.readline().split()
    finally:
        run.send_signal(signal.SIGKILL)              # the test run "crashes"
        run.wait()
    pid = int(pid)
    assert nfsserver.alive(pid)                      # its server lives on ...
    nfsserver.sweep_leftovers()                      # ... until the next start sweeps
    deadline = time.monotonic() + 10
    while nfsserver.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not nfsserver.alive(pid)
    assert not os.path.exists(run_dir)
    assert os.path.isdir(nfs_server.run_dir)         # a live run is left alone
    assert nfsserver.alive(nfs_server.proc.pid)
