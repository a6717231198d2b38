"""Cinder's delete rules on a real chain of backups sharing one container.

Only the newest backup of a chain can be deleted (a parent with dependents
gives 400, with os-force_delete too); each delete removes exactly that
backup's objects; a backup still ``creating`` cannot be deleted without force.
"""

from __future__ import annotations

import random
import signal
import uuid

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import KiB, MiB

pytestmark = pytest.mark.functional


def files_of(deployment, backup_id: str) -> list:
    return fx.backup_files(deployment.backup_path, backup_id)


def test_only_the_newest_backup_of_a_chain_can_be_deleted(deployment, api):
    rng = random.Random()
    container = "functest-chain-%s" % uuid.uuid4().hex[:8]
    volume = api.create_volume(size=1)
    path = fx.volume_file(deployment.volumes_dir, volume["id"])

    fx.scattered_writes(path, rng, count=8, min_len=64 * KiB, max_len=MiB)
    full = api.create_backup(volume["id"], container=container, name="full")
    fx.scattered_writes(path, rng, count=4, min_len=4 * KiB, max_len=4 * KiB, align=4 * KiB)
    inc1 = api.create_backup(volume["id"], incremental=True, container=container, name="inc1")
    fx.scattered_writes(path, rng, count=4, min_len=4 * KiB, max_len=4 * KiB, align=4 * KiB)
    inc2 = api.create_backup(volume["id"], incremental=True, container=container, name="inc2")

    chain = (full, inc1, inc2)
    for backup, parent in ((full, None), (inc1, full), (inc2, inc1)):
        got = deployment.parent_of(backup["id"])
        assert got == (parent and parent["id"]), (
            "%s has parent_id %s, expected %s: an incremental's parent must be the newest "
            "available backup of the volume" % (backup["name"], got, parent and parent["name"]))
    files = {b["id"]: files_of(deployment, b["id"]) for b in chain}
    for backup in chain:
        names = [p.name for p in files[backup["id"]]]
        assert any(n.endswith("_metadata") for n in names), (backup["id"], names)
        assert {p.parent for p in files[backup["id"]]} == {deployment.backup_path / container}

    # Parents with dependents: refused, with force too, and nothing moves.
    for backup_id, how in ((full["id"], "delete"), (full["id"], "force"),
                           (inc1["id"], "delete"), (inc1["id"], "force")):
        if how == "delete":
            resp = api.delete("backups/%s" % backup_id)
        else:
            resp = api.post("backups/%s/action" % backup_id, {"os-force_delete": {}})
        fx.assert_fault(resp, 400, "badRequest")
    for backup in chain:
        assert api.backup(backup["id"])["status"] == "available"
        assert files_of(deployment, backup["id"]) == files[backup["id"]]

    # Newest first: each delete removes that backup's files and nothing else.
    api.delete_backup(inc2["id"])
    assert files_of(deployment, inc2["id"]) == []
    assert files_of(deployment, inc1["id"]) == files[inc1["id"]]
    assert files_of(deployment, full["id"]) == files[full["id"]]
    assert api.backup(inc1["id"])["has_dependent_backups"] is False
    assert api.backup(full["id"])["has_dependent_backups"] is True

    api.delete_backup(inc1["id"])
    assert files_of(deployment, inc1["id"]) == []
    assert files_of(deployment, full["id"]) == files[full["id"]]
    assert api.backup(full["id"])["has_dependent_backups"] is False

    api.delete_backup(full["id"])
    assert files_of(deployment, full["id"]) == []
    assert api.backups() == []
    assert api.volume(volume["id"])["status"] == "available"


def test_a_creating_backup_cannot_be_deleted_without_force(deployment, api, worker):
    volume = api.create_volume(size=1)
    path = fx.volume_file(deployment.volumes_dir, volume["id"])
    fx.write_at(path, 0, random.randbytes(MiB))

    # A stopped (not dead) worker keeps the backup in 'creating' for as long as
    # the test needs, well within service_down_time.
    worker.signal(signal.SIGSTOP)
    try:
        backup = api.start_backup(volume["id"])
        assert api.backup(backup["id"])["status"] == "creating"
        fx.assert_fault(api.delete("backups/%s" % backup["id"]), 400, "badRequest")
        assert api.backup(backup["id"])["status"] == "creating"
    finally:
        worker.signal(signal.SIGCONT)
    assert worker.alive()
    done = api.wait_backup(backup["id"], "available")
    assert done["object_count"] > 0
    assert api.volume(volume["id"])["status"] == "available"
    api.delete_backup(backup["id"])
    assert files_of(deployment, backup["id"]) == []


def test_force_delete_cancels_a_backup_that_has_not_started(deployment, api, worker):
    volume = api.create_volume(size=1)
    fx.write_at(fx.volume_file(deployment.volumes_dir, volume["id"]), 0, random.randbytes(MiB))

    worker.signal(signal.SIGSTOP)
    try:
        backup = api.start_backup(volume["id"])
        assert api.volume(volume["id"])["status"] == "backing-up"
        api.expect(api.post("backups/%s/action" % backup["id"], {"os-force_delete": {}}), 202)
    finally:
        worker.signal(signal.SIGCONT)
    api.wait_backup_gone(backup["id"])
    api.wait_volume(volume["id"], "available", timeout=30)
    assert files_of(deployment, backup["id"]) == []
    assert api.backups() == []


def test_reset_status(deployment, api):
    volume = api.create_volume(size=1)
    fx.write_at(fx.volume_file(deployment.volumes_dir, volume["id"]), 0, random.randbytes(MiB))
    backup = api.create_backup(volume["id"])
    files = files_of(deployment, backup["id"])
    assert files

    for status in ("creating", "restoring", "deleting", "bogus"):
        resp = api.post("backups/%s/action" % backup["id"],
                        {"os-reset_status": {"status": status}})
        fx.assert_fault(resp, 400, "badRequest")
        assert api.backup(backup["id"])["status"] == "available"

    api.expect(api.post("backups/%s/action" % backup["id"],
                        {"os-reset_status": {"status": "error"}}), 202)
    api.wait_backup(backup["id"], "error", timeout=30)
    # A backup in error cannot be restored, but can be deleted, objects and all.
    fx.assert_fault(api.post("backups/%s/restore" % backup["id"], {"restore": {}}), 400,
                    "badRequest")
    assert [v["id"] for v in api.volumes()] == [volume["id"]]
    assert api.volume(volume["id"])["status"] == "available"
    assert files_of(deployment, backup["id"]) == files
    api.delete_backup(backup["id"])
    assert files_of(deployment, backup["id"]) == []
