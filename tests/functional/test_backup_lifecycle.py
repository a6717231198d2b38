"""Full and incremental backups of a real volume, restored and compared byte for byte.

A 1 GiB sparse volume gets random data at scattered offsets (first and last
bytes included), a full backup, then two rounds of scattered 4 KiB changes,
each followed by an incremental. Each backup is restored (to a new volume,
to a named volume, into an existing volume full of junk) and compared with
a copy of the volume taken when that backup was made. The stored objects are
checked against Cinder's on-store format 1.0.0 and the same images.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import GiB, KiB, MiB

pytestmark = pytest.mark.functional

SUMMARY_KEYS = {"id", "links", "name"}
# tempest's backup show schema: required keys.
DETAIL_REQUIRED = {"status", "object_count", "fail_reason", "links", "created_at",
                   "updated_at", "name", "volume_id", "size", "id", "data_timestamp"}
RESTORE_KEYS = {"backup_id", "volume_id", "volume_name"}


def first_image(path, rng) -> None:
    """Random data at scattered, unaligned offsets, including both ends of the volume."""
    size = os.path.getsize(path)
    fx.write_at(path, 0, rng.randbytes(64 * KiB))                        # first bytes
    fx.write_at(path, size - 8 * KiB - 123, rng.randbytes(8 * KiB + 123))  # last bytes
    fx.write_at(path, 3 * MiB - 10_000, rng.randbytes(20_000))     # across a chunk boundary
    fx.write_at(path, 5 * MiB + 17, b"\x01")                       # one byte in a block
    fx.write_at(path, 700 * MiB - 1, rng.randbytes(2 * MiB + 2))   # more than one chunk
    fx.scattered_writes(path, rng, count=16, min_len=4 * KiB, max_len=512 * KiB)


def change_blocks(path, rng, count: int) -> None:
    """Scattered 4 KiB changes: aligned blocks, and unaligned ones spanning two blocks."""
    size = os.path.getsize(path)
    for i in range(count):
        offset = rng.randrange(0, size // (4 * KiB)) * 4 * KiB
        if i % 4 == 3:
            offset = min(offset + 1000, size - 4 * KiB)
        fx.write_at(path, offset, rng.randbytes(4 * KiB))


def test_full_and_incremental_backups_restore_exactly(deployment, api, tmp_path):
    rng = random.Random()
    root = deployment.backup_path

    volume = api.create_volume(size=1, name="lifecycle-source")
    assert volume["size"] == 1
    path = fx.volume_file(deployment.volumes_dir, volume["id"])
    assert path.is_file(), "volume file %s was not created" % path
    assert os.path.getsize(path) == 1 * GiB

    # -- full backup --------------------------------------------------------------------
    first_image(path, rng)
    image0 = fx.sparse_copy(path, tmp_path / "image0.img")
    summary = api.start_backup(volume["id"], name="full")
    assert set(summary) == SUMMARY_KEYS, summary
    assert summary["name"] == "full"
    full = api.wait_backup(summary["id"], "available")
    assert DETAIL_REQUIRED <= set(full), sorted(DETAIL_REQUIRED - set(full))
    assert full["is_incremental"] is False
    assert full["has_dependent_backups"] is False
    assert full["volume_id"] == volume["id"] and full["size"] == 1
    assert full["object_count"] > 0, full
    assert api.volume(volume["id"])["status"] == "available"
    full_meta = fx.check_stored_backup(root, full, image0, parent_id=None)

    # -- first incremental --------------------------------------------------------------
    change_blocks(path, rng, count=32)
    fx.write_at(path, os.path.getsize(path) - 4 * KiB, rng.randbytes(4 * KiB))  # last block
    image1 = fx.sparse_copy(path, tmp_path / "image1.img")
    assert fx.changed_blocks(image0, image1), "the test did not change the volume"
    inc1 = api.create_backup(volume["id"], incremental=True, name="inc1")
    assert inc1["is_incremental"] is True
    assert api.backup(full["id"])["has_dependent_backups"] is True
    inc1_meta = fx.check_stored_backup(root, inc1, image1, parent_id=full["id"])
    assert fx.stored_bytes(inc1_meta) * 4 < fx.stored_bytes(full_meta), (
        "the incremental stored %d bytes, the full backup %d: it did not store only the "
        "changes" % (fx.stored_bytes(inc1_meta), fx.stored_bytes(full_meta)))

    # -- second incremental: more changes, and data that became zeros -------------------
    change_blocks(path, rng, count=32)
    fx.write_at(path, 0, bytes(64 * KiB))          # the first 64 KiB had data: now zeros
    fx.write_at(path, 5 * MiB + 17, b"\x02")        # one byte changed
    image2 = fx.sparse_copy(path, tmp_path / "image2.img")
    inc2 = api.create_backup(volume["id"], incremental=True, name="inc2")
    assert inc2["is_incremental"] is True
    # The parent of an incremental is the latest available backup: inc1.
    fx.check_stored_backup(root, inc2, image2, parent_id=inc1["id"])
    assert api.backup(inc1["id"])["has_dependent_backups"] is True

    # The source volume keeps changing after the last backup; restores must not care.
    change_blocks(path, rng, count=8)

    # -- restore the second incremental to a new volume ({"restore": {}}) ---------------
    result = api.restore_and_wait(inc2["id"], {})
    assert set(result) == RESTORE_KEYS, result
    assert result["backup_id"] == inc2["id"]
    assert result["volume_name"] == "restore_backup_%s" % inc2["id"]
    assert result["volume_id"] != volume["id"]
    restored = api.volume(result["volume_id"])
    assert restored["name"] == result["volume_name"] and restored["size"] == 1
    fx.assert_same_image(fx.volume_file(deployment.volumes_dir, result["volume_id"]), image2,
                         "restore of the second incremental")

    # -- restore the first incremental into an existing volume full of junk -------------
    target = api.create_volume(size=1, name="restore-target")
    target_path = fx.volume_file(deployment.volumes_dir, target["id"])
    fx.scattered_writes(target_path, rng, count=32, min_len=64 * KiB, max_len=256 * KiB)
    fx.write_at(target_path, 0, rng.randbytes(MiB))
    fx.write_at(target_path, os.path.getsize(target_path) - MiB, rng.randbytes(MiB))
    fx.write_at(target_path, 400 * MiB, rng.randbytes(2 * MiB))   # a hole in every image
    result = api.restore_and_wait(inc1["id"], {"volume_id": target["id"]})
    assert result["volume_id"] == target["id"] and result["backup_id"] == inc1["id"]
    assert api.volume(target["id"])["name"] == "restore-target"
    fx.assert_same_image(target_path, image1, "restore of the first incremental over junk")

    # -- restore the full backup to a new volume with a name ----------------------------
    result = api.restore_and_wait(full["id"], {"name": "restored-full"})
    assert result["volume_name"] == "restored-full"
    assert api.volume(result["volume_id"])["name"] == "restored-full"
    fx.assert_same_image(fx.volume_file(deployment.volumes_dir, result["volume_id"]), image0,
                         "restore of the full backup")

    # Restores leave the backups as they were.
    for backup in (full, inc1, inc2):
        assert api.backup(backup["id"])["status"] == "available"


def test_incremental_parent_is_the_newest_backup_even_within_one_second(deployment, api):
    """Backups made in quick succession still chain each to the previous one.

    Each round starts two backups right after a whole second begins, so both
    usually get the same whole-second timestamp; the third must still pick
    the second as its parent. (A choice by whole-second timestamps alone is
    a coin toss there.)
    """
    volume = api.create_volume(size=1)
    path = fx.volume_file(deployment.volumes_dir, volume["id"])
    fx.write_at(path, 0, random.randbytes(64 * KiB))
    chain: list[dict] = []
    for i in range(9):                       # the default quota is 10 backups
        if i % 3 == 0:
            time.sleep(1.02 - time.time() % 1)
        fx.write_at(path, i * 4 * KiB, random.randbytes(4 * KiB))
        chain.append(api.create_backup(volume["id"], incremental=bool(chain),
                                       name="b%d" % i))
    names = {b["id"]: b["name"] for b in chain}
    got = [(b["name"], names.get(deployment.parent_of(b["id"]), "?")) for b in chain[1:]]
    want = [(b["name"], prev["name"]) for prev, b in zip(chain, chain[1:], strict=False)]
    assert got == want, "(backup, parent) pairs: %s, expected %s" % (got, want)
