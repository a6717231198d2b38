"""A worker whose backup repository cannot take backups takes no job.

Real processes on a real RabbitMQ and MariaDB, with a POSIX repository made
unusable for real (a regular file where its parent directory should be): the
worker waits for it before serving (backup_driver_init_check_interval), and
stops heartbeating while its periodic check fails
(backup_driver_stats_polling_interval), so the API refuses new jobs (503)
instead of sending them to a worker that would fail them.
"""

from __future__ import annotations

import random
import shutil
import time

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import MiB

pytestmark = pytest.mark.functional

INIT_INTERVAL = 5           # backup_driver_init_check_interval (its minimum)
POLL_INTERVAL = 10          # backup_driver_stats_polling_interval (its minimum)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    fx.require_commands("backupsvc-api", "backupsvc-worker", "backupsvc-manage")
    fx.require_rabbitmq()
    base = tmp_path_factory.mktemp("repository-check")
    dep = fx.Deployment(base, {"DEFAULT": {
        "backup_posix_path": base / "mount" / "backups",
        "backup_driver_init_check_interval": INIT_INTERVAL,
        "backup_driver_stats_polling_interval": POLL_INTERVAL}})
    dep.create_database()
    try:
        dep.manage("db", "sync")
        dep.start_api()
        yield dep
    finally:
        dep.shutdown()
        dep.drop_database()


def block(mount) -> None:
    """A regular file where the repository's parent directory should be (as an
    unmounted share leaves nothing, or a file system gone read-only)."""
    mount.write_bytes(b"not a directory")


def wait_heartbeat(deployment, proc, present: bool, timeout: float) -> None:
    def check():
        if not proc.alive():
            pytest.fail("the worker exited: " + proc.where(), pytrace=False)
        beat = deployment.heartbeat()
        fresh = beat is not None and (fx.utcnow() - beat).total_seconds() <= 3
        return fresh == present, "heartbeat_at=%s" % beat
    fx.wait_until(check, "heartbeat %s" % ("fresh" if present else "gone"), timeout=timeout,
                  interval=0.3, extra=proc.where)


def test_the_worker_serves_only_while_its_repository_takes_backups(deployment):
    mount = deployment.base / "mount"
    block(mount)
    proc = deployment._process("backupsvc-worker", "worker-blocked").start()
    deployment.worker_proc = proc
    api = fx.Api(deployment.base_url)
    volume = api.create_volume(size=1)
    data = random.Random(3).randbytes(4 * MiB)
    fx.write_at(fx.volume_file(deployment.volumes_dir, volume["id"]), 0, data)

    # Starting: it waits for the repository, alive, without a heartbeat.
    time.sleep(INIT_INTERVAL + 1)
    assert proc.alive(), proc.where()
    assert deployment.heartbeat() is None
    assert "cannot take backups" in proc.log_path.read_text()
    refused = api.post("backups", {"backup": {"volume_id": volume["id"]}})
    fx.assert_fault(refused, 503, "serviceUnavailable")
    assert api.volume(volume["id"])["status"] == "available"      # nothing half-done

    # The repository comes: the worker serves within one check interval.
    mount.unlink()
    wait_heartbeat(deployment, proc, True, timeout=INIT_INTERVAL + 10)
    backup = api.create_backup(volume["id"])

    # It goes away while the worker runs: the worker stops heartbeating.
    shutil.rmtree(mount)
    block(mount)
    wait_heartbeat(deployment, proc, False, timeout=POLL_INTERVAL + 10)
    assert "takes no new job until it can" in proc.log_path.read_text()
    refused = api.post("backups", {"backup": {"volume_id": volume["id"]}})
    fx.assert_fault(refused, 503, "serviceUnavailable")

    # Back again (the backups are gone with it: a new full backup restores).
    mount.unlink()
    wait_heartbeat(deployment, proc, True, timeout=POLL_INTERVAL + 10)
    assert "takes backups again" in proc.log_path.read_text()
    assert backup["id"]
    fresh = api.create_backup(volume["id"])
    restored = api.restore_and_wait(fresh["id"], {"name": "after-outage"})
    path = fx.volume_file(deployment.volumes_dir, restored["volume_id"])
    assert fx.read_at(path, 0, len(data)) == data
