"""Cancelling a running backup and a running restore, on every repository driver.

Cinder's rules (reference §4.5): a backup being written is cancelled by
``os-force_delete``: the job stops, removes what it had written, the backup
goes away and the volume is usable again. A restore is cancelled by moving the
backup out of ``restoring`` (``os-reset_status`` to ``error``): the job stops,
the backup is ``available`` again and the target volume is ``error`` (its
content is unknown).

Each driver (posix, Swift, NFS through the userspace client) gets a deployment
of its own and a 1 GiB volume holding DATA_MIB MiB of random data, which zlib
cannot shrink: a backup takes seconds, so the test can act while it runs.
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

DATA_MIB = 400
DRIVERS = ("posix", "swift", "nfs")
# How long a job may take to notice a cancellation: it re-reads its row every
# 0.5 s between objects; one 1 MiB object more, a loaded machine, and the
# clean-up of what it wrote.
CANCEL_DEADLINE = 15.0


class Stack:
    def __init__(self, driver: str, dep: fx.Deployment, repo):
        self.driver, self.dep, self.repo = driver, dep, repo
        self.api = fx.Api(dep.base_url, extra=lambda: "%s; %s" % (
            repo.describe(), dep.worker_proc.where()))
        self.volume: dict = {}
        self.image = None

    def worker_log(self) -> str:
        return self.dep.worker_proc.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, what: str, timeout: float = CANCEL_DEADLINE) -> str:
        regex = re.compile(pattern)

        def found():
            match = regex.search(self.worker_log())
            return match is not None, match.group(0) if match else "<not in the log yet>"

        return fx.wait_until(found, what, timeout, interval=0.1, extra=self.dep.worker_proc.where)


@pytest.fixture(scope="module", params=DRIVERS)
def stack(request, tmp_path_factory):
    """A deployment for one driver, with a big volume of random data and its image."""
    driver = request.param
    base = tmp_path_factory.mktemp("cancel-%s" % driver)
    swift = request.getfixturevalue("swift_service") if driver == "swift" else None
    nfs = request.getfixturevalue("nfs_service") if driver == "nfs" else None
    options, repo = fx.repository_config(driver, base, swift_server=swift, nfs_server=nfs)
    options["backup_compression_algorithm"] = "zlib"
    failed_before = request.session.testsfailed
    dep = fx.start_deployment(base, {"DEFAULT": options})
    try:
        st = Stack(driver, dep, repo)
        st.volume = st.api.create_volume(size=1, name="big-%s" % driver)
        path = fx.volume_file(dep.volumes_dir, st.volume["id"])
        rng = random.Random()
        for i in range(DATA_MIB // 16):
            fx.write_at(path, 16 * MiB + i * 16 * MiB, rng.randbytes(16 * MiB))
        fx.write_at(path, os.path.getsize(path) - MiB, rng.randbytes(MiB))
        st.image = fx.sparse_copy(path, base / "image.img")
        yield st
    finally:
        fx.stop_deployment(dep, remove=request.session.testsfailed == failed_before)


def data_objects(stack: Stack, backup_id: str) -> list[str]:
    """Data objects of a backup in the repository, finished or (files) being written."""
    return [n for n in stack.repo.names(backup_id) if re.search(r"-\d+(\.tmp-\w+)?\Z", n)]


def test_force_delete_cancels_a_running_backup(stack):
    api, volume = stack.api, stack.volume
    backup = api.start_backup(volume["id"], name="to-cancel")
    backup_id = backup["id"]
    started = time.monotonic()

    def writing():
        status = api.backup(backup_id)["status"]
        if status != "creating":
            pytest.fail("backup %s became %s after %.1f s, before the test could cancel it"
                        % (backup_id, status, time.monotonic() - started), pytrace=False)
        found = data_objects(stack, backup_id)
        return len(found) >= 3, "%d objects: %s" % (len(found), found[:3])

    fx.wait_until(writing, "objects of backup %s in the %s" % (backup_id,
                                                              stack.repo.describe()),
                  timeout=60, interval=0.05, extra=stack.dep.worker_proc.where)
    written = len(data_objects(stack, backup_id))

    api.expect(api.post("backups/%s/action" % backup_id, {"os-force_delete": {}}), 202)
    cancelled_at = time.monotonic()
    api.wait_backup_gone(backup_id, timeout=CANCEL_DEADLINE)
    api.wait_volume(volume["id"], "available", timeout=CANCEL_DEADLINE)
    # The job itself stopped through its cancellation path (never by finishing:
    # 400 MiB in 1 MiB objects, and only a few were written).
    stack.wait_log(r"Backup %s was cancelled" % backup_id,
                   "the worker to log that backup %s was cancelled" % backup_id)
    took = time.monotonic() - cancelled_at
    log = stack.worker_log()
    assert "Backup %s is available" % backup_id not in log
    assert took < CANCEL_DEADLINE, took

    # Nothing with this backup's name stays in the repository, temporary files included.
    left = stack.repo.names(backup_id)
    assert not left, "cancelled backup %s (%d objects when cancelled) left %s in the %s" % (
        backup_id, written, left[:10], stack.repo.describe())
    assert stack.dep.worker_proc.alive()
    # The volume is usable again: a new backup of it can start (checked in the next test).


def test_reset_status_cancels_a_running_restore(stack):
    api, dep = stack.api, stack.dep
    backup = api.create_backup(stack.volume["id"], name="big-full")
    backup_id = backup["id"]
    image_bytes = sum(end - start for start, end in fx.data_extents(stack.image))

    result = api.restore(backup_id, {})
    target_id = result["volume_id"]
    target = fx.volume_file(dep.volumes_dir, target_id)
    started = time.monotonic()

    def writing():
        vol = api.volume(target_id)
        if vol["status"] != "restoring-backup":
            pytest.fail("volume %s became %s after %.1f s, before the test could cancel the "
                        "restore" % (target_id, vol["status"], time.monotonic() - started),
                        pytrace=False)
        written = sum(end - start for start, end in fx.data_extents(target))
        return written > 0, "%d bytes written" % written

    fx.wait_until(writing, "the restore to write into volume %s" % target_id,
                  timeout=60, interval=0.01, extra=dep.worker_proc.where)
    api.expect(api.post("backups/%s/action" % backup_id,
                        {"os-reset_status": {"status": "error"}}), 202)

    # The backup is usable again and the target is marked broken.
    def backup_available():
        status = api.backup(backup_id)["status"]
        return status == "available", status

    fx.wait_until(backup_available, "backup %s to be available again after the cancel"
                  % backup_id, timeout=CANCEL_DEADLINE, extra=dep.worker_proc.where)
    api.wait_volume(target_id, "error", timeout=CANCEL_DEADLINE)
    stack.wait_log(r"Restore of backup %s to volume %s was cancelled" % (backup_id, target_id),
                   "the worker to log that the restore was cancelled")
    assert "Restored backup %s to volume %s" % (backup_id, target_id) not in stack.worker_log()

    # It stopped early: nothing is written any more, and much of the image is missing.
    before = os.stat(target)
    time.sleep(1.0)
    after = os.stat(target)
    assert (before.st_mtime_ns, before.st_blocks) == (after.st_mtime_ns, after.st_blocks), (
        "volume %s is still being written after the restore was cancelled" % target_id)
    written = sum(end - start for start, end in fx.data_extents(target))
    assert written < image_bytes, (
        "the cancelled restore wrote %d bytes, as much as the whole image (%d)"
        % (written, image_bytes))
    missing = missing_mib(target, stack.image)
    assert missing > 0, "the target holds every MiB of the image: the restore was complete"

    assert api.backup(backup_id)["status"] == "available"
    api.delete_backup(backup_id)
    assert not stack.repo.names(backup_id)


def missing_mib(target, image) -> int:
    """MiB windows of the image's data that the target does not hold."""
    missing = 0
    with open(target, "rb") as ft, open(image, "rb") as fi:
        for start, end in fx.data_extents(image):
            pos = start
            while pos < end:
                n = min(MiB, end - pos)
                fi.seek(pos)
                ft.seek(pos)
                if fi.read(n) != ft.read(n):
                    missing += 1
                pos += n
    return missing
