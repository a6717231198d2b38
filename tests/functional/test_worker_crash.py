"""Backups interrupted in the middle: by a worker crash, and by a force delete.

A crash (SIGKILL) mid-backup: the next worker with the same host must move
the backup to ``error`` (never leave it ``creating``), give the volume back,
and leave no ``_metadata`` that would make the partial backup look complete;
a new full backup of the same volume must then work and restore exactly.

A force delete mid-backup cancels it: the backup goes away with every object
it had written, and the volume is usable again.
"""

from __future__ import annotations

import os
import random
import re
import time

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import MiB

pytestmark = pytest.mark.functional

DATA_MIB = 256   # random data, which zlib cannot shrink: a backup takes seconds


def object_files(deployment, backup_id: str) -> list:
    """Data objects written so far, finished or still being written."""
    # Files only: the container directory is named after the backup id, whose
    # last group can be all digits and look like an object number.
    return [p for p in deployment.backup_path.rglob("*")
            if p.is_file() and backup_id in p.name
            and re.search(r"-\d+(\.tmp-\w+)?\Z", p.name)]


@pytest.fixture(scope="module")
def big_volume(deployment, tmp_path_factory):
    """A 1 GiB volume holding DATA_MIB MiB of random data, and a copy of its image."""
    api = fx.Api(deployment.base_url)
    deployment.ensure_worker()
    volume = api.create_volume(size=1, name="big-source")
    path = fx.volume_file(deployment.volumes_dir, volume["id"])
    rng = random.Random()
    for i in range(DATA_MIB // 16):
        fx.write_at(path, 64 * MiB + i * 16 * MiB, rng.randbytes(16 * MiB))
    fx.write_at(path, os.path.getsize(path) - MiB, rng.randbytes(MiB))
    image = fx.sparse_copy(path, tmp_path_factory.mktemp("big") / "image.img")
    yield api, volume, image
    # Free the disk space of this large volume.
    for backup in api.backups():
        api.delete("backups/%s" % backup["id"])
    api.delete("volumes/%s" % volume["id"])
    image.unlink()


def wait_until_writing(deployment, api, backup_id: str, proc) -> None:
    """Wait until the worker has written a few objects of a backup still 'creating'."""
    started = time.monotonic()

    def writing():
        status = api.backup(backup_id)["status"]
        if status != "creating":
            pytest.fail("backup %s became %s after %.1f s, before the test could interrupt "
                        "it; the test needs a slower backup"
                        % (backup_id, status, time.monotonic() - started), pytrace=False)
        found = object_files(deployment, backup_id)
        return len(found) >= 3, "%d object files" % len(found)

    fx.wait_until(writing, "the worker to start writing objects of backup %s" % backup_id,
                  timeout=60, interval=0.05, extra=proc.where)


def test_backup_interrupted_by_a_worker_crash(deployment, big_volume, worker):
    api, volume, image = big_volume
    backup = api.start_backup(volume["id"], name="interrupted")
    wait_until_writing(deployment, api, backup["id"], worker)
    deployment.kill_worker()
    assert worker.popen.returncode == -9, worker.describe()
    assert api.backup(backup["id"])["status"] == "creating"
    assert api.volume(volume["id"])["status"] == "backing-up"

    deployment.start_worker()          # same host: it recovers what the dead one left
    failed = api.wait_backup(backup["id"], "error", timeout=60)
    assert fx.RESTART_FAIL_REASON in (failed["fail_reason"] or ""), failed
    api.wait_volume(volume["id"], "available", timeout=30)
    leftovers = [p.name for p in fx.backup_files(deployment.backup_path, backup["id"])]
    assert not [n for n in leftovers if n.endswith("_metadata")], leftovers

    # The failed backup can be deleted, and takes its objects with it.
    api.delete_backup(backup["id"])
    assert fx.backup_files(deployment.backup_path, backup["id"]) == []

    # A new full backup works and restores exactly.
    fresh = api.create_backup(volume["id"], name="after-crash")
    assert fresh["is_incremental"] is False
    fx.check_stored_backup(deployment.backup_path, fresh, image, parent_id=None)
    result = api.restore_and_wait(fresh["id"], {})
    restored = fx.volume_file(deployment.volumes_dir, result["volume_id"])
    fx.assert_same_image(restored, image, "restore of the backup made after the crash")
    api.delete_backup(fresh["id"])
    api.expect(api.delete("volumes/%s" % result["volume_id"]), 202)


def test_force_delete_cancels_a_running_backup(deployment, big_volume, worker):
    api, volume, image = big_volume
    backup = api.start_backup(volume["id"], name="cancelled")
    wait_until_writing(deployment, api, backup["id"], worker)
    api.expect(api.post("backups/%s/action" % backup["id"], {"os-force_delete": {}}), 202)
    api.wait_backup_gone(backup["id"], timeout=60)
    api.wait_volume(volume["id"], "available", timeout=30)
    # Whatever the job had written is removed once it has stopped.
    fx.wait_until(lambda: (not object_files(deployment, backup["id"]),
                           [p.name for p in object_files(deployment, backup["id"])]),
                  "the objects of cancelled backup %s to be removed" % backup["id"],
                  timeout=30)
    assert fx.backup_files(deployment.backup_path, backup["id"]) == []
    assert worker.alive()
