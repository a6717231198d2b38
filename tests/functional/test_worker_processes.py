"""A worker running in several processes (``backup_workers = 2``).

Real processes on a real RabbitMQ and MariaDB: the parent forks two
processes that consume the same queue, so concurrent jobs run in both; one
that dies is replaced while the other goes on, and the process started in
its place recovers the jobs it held (and only those); start-up recovery runs
once for the host, not once per process; SIGTERM ends them all.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import MiB

pytestmark = pytest.mark.functional

PROCESSES = 2


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A deployment of its own: API, and a worker with backup_workers = 2."""
    fx.require_commands("backupsvc-api", "backupsvc-worker", "backupsvc-manage")
    fx.require_rabbitmq()
    dep = fx.Deployment(tmp_path_factory.mktemp("worker-processes"),
                        {"DEFAULT": {"backup_workers": PROCESSES}})
    dep.create_database()
    try:
        dep.manage("db", "sync")
        dep.start_api()
        dep.start_worker()
        yield dep
    finally:
        dep.shutdown()
        dep.drop_database()


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc: no extra package)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def wait_for_children(proc, count: int, exclude: set[int] = frozenset()) -> set[int]:
    def check():
        kids = children(proc.pid)
        return len(kids) == count and not kids & exclude, sorted(kids)
    return set(fx.wait_until(check, "%d worker processes under pid %d" % (count, proc.pid),
                             timeout=60, interval=0.2, extra=proc.where))


def log_pids(proc, pattern: str) -> list[int]:
    """The pids (oslo.log's second field) of the worker's log lines matching ``pattern``."""
    text = proc.log_path.read_text(errors="replace")
    return [int(m.group(1)) for m in re.finditer(r"^\S+ \S+ (\d+) .*%s" % pattern, text,
                                                  re.MULTILINE)]


def volume_with_data(deployment, api, seed: int, data_mib: int = 16) -> tuple[dict, bytes]:
    volume = api.create_volume(size=1)
    api.wait_volume(volume["id"], "available")
    rng = random.Random(seed)
    data = b"".join(rng.randbytes(16 * MiB) for _ in range(data_mib // 16))
    fx.write_at(fx.volume_file(deployment.volumes_dir, volume["id"]), 8 * MiB, data)
    return volume, data


def test_two_processes_share_the_jobs(deployment):
    proc = deployment.ensure_worker()
    kids = wait_for_children(proc, PROCESSES)
    api = fx.Api(deployment.base_url)
    volumes = [volume_with_data(deployment, api, seed) for seed in range(4)]
    started = [api.start_backup(v["id"]) for v, _ in volumes]         # all at once
    for backup in started:
        api.wait_backup(backup["id"], "available")
    done_in = set()
    for backup in started:
        done_in.update(log_pids(proc, "Backup %s is available" % backup["id"]))
    assert done_in <= kids, (done_in, kids)
    assert len(done_in) == PROCESSES, "every backup ran in the same process: %s" % done_in
    # Whichever process made a backup, it restores byte for byte.
    for (volume, data), backup in zip(volumes[:2], started[:2], strict=True):
        restored = api.restore_and_wait(backup["id"], {"name": "r-%s" % volume["id"][:8]})
        path = fx.volume_file(deployment.volumes_dir, restored["volume_id"])
        assert fx.read_at(path, 8 * MiB, len(data)) == data
        assert fx.read_at(path, 0, 8 * MiB) == bytes(8 * MiB)


def test_a_process_that_dies_is_replaced_and_the_host_stays_up(deployment):
    proc = deployment.ensure_worker()
    kids = wait_for_children(proc, PROCESSES)
    victim = min(kids)
    os.kill(victim, signal.SIGKILL)
    new_kids = wait_for_children(proc, PROCESSES, exclude={victim})
    assert kids - {victim} <= new_kids            # the other one went on
    assert deployment.heartbeat() is not None     # nobody marked the host down
    api = fx.Api(deployment.base_url)
    volume, data = volume_with_data(deployment, api, seed=10)
    backup = api.create_backup(volume["id"])
    restored = api.restore_and_wait(backup["id"], {"name": "after-crash"})
    path = fx.volume_file(deployment.volumes_dir, restored["volume_id"])
    assert fx.read_at(path, 8 * MiB, len(data)) == data


def lock_holder(path: Path) -> int | None:
    """The pid holding a flock on ``path`` (from /proc/locks), or None."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        # 1: FLOCK  ADVISORY  WRITE 1234 fd:01:567 0 EOF
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and \
                int(fields[5].rsplit(":", 1)[1]) == inode:
            return int(fields[4])
    return None


def test_the_jobs_of_a_process_that_dies_are_recovered_by_its_replacement(deployment):
    """One process dies mid-backup: the process started in its place moves that
    backup to error (its volume back to available) at once, not at the next
    restart of the worker, and the worker goes on serving. (That the jobs
    other processes hold are left alone: tests/unit/worker/test_job_pool.py.)"""
    proc = deployment.ensure_worker()
    kids = wait_for_children(proc, PROCESSES)
    api = fx.Api(deployment.base_url)
    volume, data = volume_with_data(deployment, api, seed=30, data_mib=16)
    kept = api.create_backup(volume["id"])
    big, _ = volume_with_data(deployment, api, seed=31, data_mib=512)
    doomed = api.start_backup(big["id"])
    jobs = Path(deployment.state_path) / ("worker-%s" % deployment.host) / "jobs"
    claim = jobs / ("create-%s.lock" % doomed["id"])
    holder = fx.wait_until(lambda: (lock_holder(claim) is not None, lock_holder(claim)),
                           "a process holding the claim of backup %s" % doomed["id"],
                           timeout=30, interval=0.05, extra=proc.where)
    assert holder in kids
    os.kill(holder, signal.SIGKILL)
    wait_for_children(proc, PROCESSES, exclude={holder})
    failed = api.wait_backup(doomed["id"], "error", timeout=60)
    assert failed["fail_reason"] == "incomplete backup reset on manager restart"
    assert api.wait_volume(big["id"], "available")
    assert log_pids(proc, "The process that ran the create job of backup %s died"
                    % doomed["id"])
    assert not claim.exists()
    # The other process, and the one in the dead one's place, go on serving.
    restored = api.restore_and_wait(kept["id"], {"name": "after-orphan"})
    path = fx.volume_file(deployment.volumes_dir, restored["volume_id"])
    assert fx.read_at(path, 8 * MiB, len(data)) == data
    assert deployment.heartbeat() is not None
    assert api.backup(kept["id"])["status"] == "available"


def test_recovery_runs_once_for_the_host(deployment):
    """Every process of the worker dies mid-backup (the host crashed); the next
    start moves the backup to error once, in one process, before any serves."""
    proc = deployment.ensure_worker()
    wait_for_children(proc, PROCESSES)
    api = fx.Api(deployment.base_url)
    volume, _ = volume_with_data(deployment, api, seed=20, data_mib=512)
    backup = api.start_backup(volume["id"])
    api.wait_backup(backup["id"], "creating")
    time.sleep(0.3)
    proc._kill_group()                            # SIGKILL to the parent and its processes
    assert not children(proc.pid)
    assert api.backup(backup["id"])["status"] == "creating"
    proc = deployment.start_worker()
    wait_for_children(proc, PROCESSES)
    failed = api.wait_backup(backup["id"], "error")
    assert failed["fail_reason"] == "incomplete backup reset on manager restart"
    assert len(log_pids(proc, "Backup %s was creating" % backup["id"])) == 1
    assert api.volume(volume["id"])["status"] == "available"


def test_sigterm_stops_every_process(deployment):
    proc = deployment.ensure_worker()
    kids = wait_for_children(proc, PROCESSES)
    assert proc.stop(timeout=60) == 0
    assert not any(Path("/proc/%d" % pid).exists() for pid in kids), kids
    assert deployment.heartbeat() is None         # the host is marked down
