"""Requests the service must refuse, and refuse cleanly.

Each refusal is a Cinder-shaped fault, and leaves no new backup row (the API
list and the database are compared before and after) and no status change.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import KiB, MiB

pytestmark = pytest.mark.functional


class Unchanged:
    """Backups (API list and DB rows) and the given volumes' statuses, before and after."""

    def __init__(self, deployment, api, *volume_ids: str):
        self.deployment, self.api, self.volume_ids = deployment, api, volume_ids
        self.before = self.snapshot()

    def snapshot(self) -> dict:
        return {
            "api backups": sorted((b["id"], b["status"]) for b in self.api.backups()),
            "db backup rows": self.deployment.backup_rows(self.api.project),
            "volumes": {v: self.api.volume(v)["status"] for v in self.volume_ids},
            "api volumes": sorted(v["id"] for v in self.api.volumes()),
        }

    def check(self, settle: float = 0.0) -> None:
        # A wrongly accepted job would show up asynchronously: give it a moment.
        time.sleep(settle)
        after = self.snapshot()
        for key, value in self.before.items():
            assert after[key] == value, "%s changed:\nbefore %s\nafter  %s" % (
                key, value, after[key])


def write_some(deployment, volume_id: str, rng) -> None:
    path = fx.volume_file(deployment.volumes_dir, volume_id)
    fx.scattered_writes(path, rng, count=6, min_len=4 * KiB, max_len=256 * KiB)


def test_incremental_needs_a_full_backup_first(deployment, api):
    volume = api.create_volume(size=1)
    write_some(deployment, volume["id"], random.Random())
    unchanged = Unchanged(deployment, api, volume["id"])
    resp = api.post("backups", {"backup": {"volume_id": volume["id"], "incremental": True,
                                           "name": "inc-without-full"}})
    message = fx.assert_fault(resp, 400, "badRequest")
    assert "full backup" in message.lower(), message
    unchanged.check(settle=1)


def test_in_use_volume_needs_force(deployment, api, tmp_path):
    volume = api.create_volume(size=1)
    write_some(deployment, volume["id"], random.Random())
    image = fx.sparse_copy(fx.volume_file(deployment.volumes_dir, volume["id"]),
                           tmp_path / "image.img")
    api.attach(volume["id"])

    unchanged = Unchanged(deployment, api, volume["id"])
    for force in (False, None):
        body = {"backup": {"volume_id": volume["id"], "name": "no-force"}}
        if force is not None:
            body["backup"]["force"] = force
        fx.assert_fault(api.post("backups", body), 400, "badRequest")
    unchanged.check(settle=1)

    backup = api.create_backup(volume["id"], force=True, name="forced")
    assert api.volume(volume["id"])["status"] == "in-use", "the volume did not go back in use"
    result = api.restore_and_wait(backup["id"], {})
    fx.assert_same_image(fx.volume_file(deployment.volumes_dir, result["volume_id"]), image,
                         "restore of a forced backup of an in-use volume")
    api.detach(volume["id"])


def test_restore_refused_into_small_or_in_use_volume(deployment, api, tmp_path):
    rng = random.Random()
    source = api.create_volume(size=2, name="two-gib")
    write_some(deployment, source["id"], rng)
    source_image = fx.sparse_copy(fx.volume_file(deployment.volumes_dir, source["id"]),
                                  tmp_path / "source.img")
    backup = api.create_backup(source["id"])
    assert backup["size"] == 2

    small = api.create_volume(size=1, name="too-small")
    small_path = fx.volume_file(deployment.volumes_dir, small["id"])
    fx.write_at(small_path, 0, rng.randbytes(MiB))
    small_image = fx.sparse_copy(small_path, tmp_path / "small.img")
    big = api.create_volume(size=2, name="big-but-attached")
    big_path = fx.volume_file(deployment.volumes_dir, big["id"])
    fx.write_at(big_path, 0, rng.randbytes(MiB))
    big_image = fx.sparse_copy(big_path, tmp_path / "big.img")
    api.attach(big["id"])

    unchanged = Unchanged(deployment, api, small["id"], big["id"], source["id"])
    fx.assert_fault(api.post("backups/%s/restore" % backup["id"],
                             {"restore": {"volume_id": small["id"]}}), 400, "badRequest")
    fx.assert_fault(api.post("backups/%s/restore" % backup["id"],
                             {"restore": {"volume_id": big["id"]}}), 400, "badRequest")
    unchanged.check(settle=1)
    assert api.backup(backup["id"])["status"] == "available"
    assert api.volume(small["id"])["status"] == "available"
    assert api.volume(big["id"])["status"] == "in-use"
    fx.assert_same_image(small_path, small_image, "refused restore target (too small)")
    fx.assert_same_image(big_path, big_image, "refused restore target (in-use)")

    # The same backup restores into the big volume once it is detached.
    api.detach(big["id"])
    api.restore_and_wait(backup["id"], {"volume_id": big["id"]})
    fx.assert_same_image(big_path, source_image, "restore into the detached volume")


def test_unknown_ids_give_404(deployment, api):
    volume = api.create_volume(size=1)
    unchanged = Unchanged(deployment, api, volume["id"])
    missing = str(uuid.uuid4())
    fx.assert_fault(api.get("backups/%s" % missing), 404, "itemNotFound")
    fx.assert_fault(api.delete("backups/%s" % missing), 404, "itemNotFound")
    fx.assert_fault(api.post("backups/%s/restore" % missing,
                             {"restore": {"volume_id": volume["id"]}}), 404, "itemNotFound")
    fx.assert_fault(api.post("backups", {"backup": {"volume_id": missing}}), 404,
                    "itemNotFound")
    unchanged.check()


def test_malformed_requests_give_cinder_faults(deployment, api):
    volume = api.create_volume(size=1)
    unchanged = Unchanged(deployment, api, volume["id"])
    bodies = [
        '{"backup": {"volume_id": "%s", ' % volume["id"],            # not JSON
        "not json at all",
        '{"backup": {"name": "no-volume-id"}}',                       # required key missing
        '{"backup": {"volume_id": "%s", "bogus": 1}}' % volume["id"],  # unknown key
        '{"backup": {"volume_id": "not-a-uuid"}}',
        '{"backup": {"volume_id": "%s", "incremental": "maybe"}}' % volume["id"],
    ]
    for body in bodies:
        resp = api.post("backups", data=body)
        fx.assert_fault(resp, 400, "badRequest")
    unchanged.check(settle=1)
