"""One end-to-end backup story, run on every repository driver: posix, Swift, NFS.

Each driver gets a deployment of its own (API + worker on MariaDB and RabbitMQ)
whose worker writes to a real repository: a local directory (posix), a real
single-node Swift through tempauth v1 (``single_user``), a real nfs-ganesha
reached by the userspace NFS client. Objects are 1 MiB and SHA blocks 4 KiB,
so that a volume with a few dozen MiB of data makes many objects (and a Swift
listing takes several pages).

The story: a 1 GiB volume gets random and compressible data at scattered
offsets, a full backup, changed blocks and an incremental, more changes and a
second incremental made by a worker restarted with ``backup_compression_algorithm
= None`` (the spelling the seed config uses): a chain whose objects carry
different compressions. What each backup stored is read back from the
repository itself and checked against the image it was made from. The newest
backup is restored to a new volume and the first incremental onto an existing
volume full of junk; both are compared byte for byte. The full backup's exported
record names Cinder's driver class. Deleting newest to oldest leaves nothing of
any of them in the repository.

Compression per driver: zlib (posix), bz2 (Swift), zstd (NFS), then none.
"""

from __future__ import annotations

import base64
import json
import os
import random

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import GiB, KiB, MiB

pytestmark = pytest.mark.functional

COMPRESSION = {"posix": "zlib", "swift": "bz2", "nfs": "zstd"}
DRIVER_CLASS = {"posix": "cinder.backup.drivers.posix.PosixBackupDriver",
                "swift": "cinder.backup.drivers.swift.SwiftBackupDriver",
                "nfs": "cinder.backup.drivers.nfs.NFSBackupDriver"}


class Stack:
    def __init__(self, driver: str, dep: fx.Deployment, repo):
        self.driver, self.dep, self.repo = driver, dep, repo
        self.api = fx.Api(dep.base_url, extra=self.where)

    def where(self) -> str:
        return "%s; worker %s" % (self.repo.describe(), self.dep.worker_proc.where()
                                  if self.dep.worker_proc else "not started")

    def prefix(self, backup_id: str) -> str:
        rows = self.dep.query("SELECT service_metadata FROM backups WHERE id=%s",
                              (backup_id,))
        assert rows and rows[0]["service_metadata"], (backup_id, rows)
        return rows[0]["service_metadata"]

    def restart_worker(self, options: dict) -> None:
        self.dep.stop_worker()
        self.dep.configure({"DEFAULT": options})
        self.dep.start_worker()


@pytest.fixture(scope="module", params=sorted(COMPRESSION))
def stack(request, tmp_path_factory):
    driver = request.param
    base = tmp_path_factory.mktemp("e2e-%s" % driver)
    swift = request.getfixturevalue("swift_service") if driver == "swift" else None
    nfs = request.getfixturevalue("nfs_service") if driver == "nfs" else None
    options, repo = fx.repository_config(driver, base, swift_server=swift, nfs_server=nfs)
    options["backup_compression_algorithm"] = COMPRESSION[driver]
    failed_before = request.session.testsfailed
    dep = fx.start_deployment(base, {"DEFAULT": options})
    try:
        yield Stack(driver, dep, repo)
    finally:
        fx.stop_deployment(dep, remove=request.session.testsfailed == failed_before)


# ------------------------------------------------------------------------------ images

def compressible(rng: random.Random, length: int) -> bytes:
    """Text-like data every algorithm shrinks well, different on every call."""
    words = [b"backup", b"volume", b"chunk", b"object", b"swift", b"nfs", b"posix",
             b"%08x" % rng.getrandbits(32)]
    out = bytearray()
    while len(out) < length:
        out += b" ".join(rng.choice(words) for _ in range(64)) + b"\n"
    return bytes(out[:length])


def first_image(path, rng) -> None:
    size = os.path.getsize(path)
    fx.write_at(path, 0, rng.randbytes(64 * KiB))                        # first bytes
    fx.write_at(path, size - 8 * KiB - 123, rng.randbytes(8 * KiB + 123))  # last bytes
    fx.write_at(path, 3 * MiB - 10_000, rng.randbytes(20_000))     # across a chunk boundary
    fx.write_at(path, 5 * MiB + 17, b"\x01")                        # one byte in a block
    fx.write_at(path, 100 * MiB, compressible(rng, 6 * MiB))        # several whole objects
    fx.write_at(path, 700 * MiB - 1, rng.randbytes(2 * MiB + 2))    # more than one chunk
    fx.scattered_writes(path, rng, count=24, min_len=4 * KiB, max_len=768 * KiB)


def change_blocks(path, rng, count: int) -> None:
    """Scattered 4 KiB changes: aligned blocks, and unaligned ones spanning two blocks."""
    size = os.path.getsize(path)
    for i in range(count):
        offset = rng.randrange(0, size // (4 * KiB)) * 4 * KiB
        if i % 4 == 3:
            offset = min(offset + 1000, size - 4 * KiB)
        fx.write_at(path, offset, rng.randbytes(4 * KiB))


# ------------------------------------------------------------------- what was stored

def check_stored(stack: Stack, backup: dict, image, parent_id: str | None) -> dict:
    """Read one backup back from the repository and check it against ``image``.

    The on-store format (2.0.0 by default): ``_metadata`` lists every data object
    (offset, length, checksum, compression); each object decodes to its bytes of the image;
    ``_sha256file`` has the sha256 of every 4 KiB block. The objects under the
    backup's prefix are exactly the listed ones plus the two manifests.
    Returns the metadata document.
    """
    backup_id, container = backup["id"], backup["container"]
    prefix = stack.prefix(backup_id)
    try:
        meta, sha = fx.parse_manifests(stack.repo.read(container, prefix + "_metadata"),
                                       stack.repo.read(container, prefix + "_sha256file"),
                                       prefix)
    except (OSError, ValueError) as exc:
        pytest.fail("cannot read the manifests of backup %s (%s/%s*) from the %s: %s"
                    % (backup_id, container, prefix, stack.repo.describe(), exc),
                    pytrace=False)
    except Exception as exc:   # swiftclient's ClientException
        pytest.fail("cannot read the manifests of backup %s from the %s: %s"
                    % (backup_id, stack.repo.describe(), exc), pytrace=False)
    assert meta.get("version") == sha.get("version") == fx.FORMAT, (meta.get("version"),
                                                                     sha.get("version"))
    assert meta["backup_id"] == sha["backup_id"] == backup_id
    assert meta["volume_id"] == sha["volume_id"] == backup["volume_id"]
    assert meta.get("parent_id") == parent_id, (meta.get("parent_id"), parent_id)
    assert sha.get("chunk_size") == fx.SHA_BLOCK, sha.get("chunk_size")
    want = fx.expected_sha256s(image)
    got = sha.get("sha256s")
    assert isinstance(got, list) and len(got) == len(want), (len(got or []), len(want))
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, "%d sha256s differ from the image, first at block %d" % (len(bad), bad[0])

    listed = []
    with open(image, "rb") as img:
        for entry in meta["objects"]:
            ((name, rec),) = entry.items()
            listed.append(name)
            assert name.startswith(prefix + "-"), (name, prefix)
            fx.check_object_data(img, name, rec, fx.object_data(
                stack.repo.read(container, name), rec, meta["version"], name))
    # What the repository holds for this backup: the listed objects and two manifests.
    stored = {n.rsplit("/", 1)[-1] for n in stack.repo.names(backup_id)}
    expected = {n.rsplit("/", 1)[-1] for n in listed}
    expected |= {(prefix + "_metadata").rsplit("/", 1)[-1],
                 (prefix + "_sha256file").rsplit("/", 1)[-1]}
    assert stored == expected, "repository holds %s more and %s less than the manifest" % (
        sorted(stored - expected), sorted(expected - stored))
    assert backup["object_count"] == len(listed), (backup["object_count"], len(listed))
    return meta


def compressions(stack, backup: dict, meta: dict) -> set[str]:
    """How the backup's data is stored (2.0.0: frame by frame)."""
    found: set[str] = set()
    for entry in meta["objects"]:
        ((name, rec),) = entry.items()
        stored = stack.repo.read(backup["container"], name) if meta["version"] == "2.0.0" \
            else b""
        found |= fx.stored_encodings(stored, rec, meta["version"])
    return found


def stored_bytes(meta: dict) -> int:
    return sum(rec["length"] for entry in meta["objects"] for rec in entry.values())


def assert_gone_from_repository(stack: Stack, backup_id: str) -> None:
    left = stack.repo.names(backup_id)
    assert not left, "backup %s was deleted but the %s still holds %s" % (
        backup_id, stack.repo.describe(), left[:10])


# ------------------------------------------------------------------------------- test

def test_backup_chain_restore_export_delete(stack, tmp_path):
    api, dep, repo, driver = stack.api, stack.dep, stack.repo, stack.driver
    rng = random.Random()
    volume = api.create_volume(size=1, name="e2e-%s" % driver)
    path = fx.volume_file(dep.volumes_dir, volume["id"])
    assert os.path.getsize(path) == GiB

    # -- full backup ----------------------------------------------------------------
    first_image(path, rng)
    image0 = fx.sparse_copy(path, tmp_path / "image0.img")
    full = api.create_backup(volume["id"], name="full")
    assert full["is_incremental"] is False and full["size"] == 1, full
    full_meta = check_stored(stack, full, image0, parent_id=None)
    assert full["object_count"] >= 20, (
        "only %d objects for ~%d MiB of data in 1 MiB objects" % (
            full["object_count"], stored_bytes(full_meta) // MiB))
    # Random objects are stored as they are (compression would only grow them, so
    # Cinder stores them raw), the text ones compressed with the configured algorithm.
    assert compressions(stack, full, full_meta) == {COMPRESSION[driver], "none"}

    # -- first incremental -----------------------------------------------------------
    change_blocks(path, rng, count=32)
    fx.write_at(path, 100 * MiB + 2 * MiB + 5, compressible(rng, 300 * KiB))
    image1 = fx.sparse_copy(path, tmp_path / "image1.img")
    assert fx.changed_blocks(image0, image1)
    inc1 = api.create_backup(volume["id"], incremental=True, name="inc1")
    assert inc1["is_incremental"] is True
    assert api.backup(full["id"])["has_dependent_backups"] is True
    inc1_meta = check_stored(stack, inc1, image1, parent_id=full["id"])
    assert stored_bytes(inc1_meta) * 4 < stored_bytes(full_meta), (
        "the incremental stored %d bytes, the full backup %d: it did not store only the "
        "changes" % (stored_bytes(inc1_meta), stored_bytes(full_meta)))

    # -- second incremental, by a worker that no longer compresses -------------------
    stack.restart_worker({"backup_compression_algorithm": "None"})
    change_blocks(path, rng, count=32)
    fx.write_at(path, 0, bytes(64 * KiB))                   # data that became zeros
    fx.write_at(path, 5 * MiB + 17, b"\x02")
    fx.write_at(path, 100 * MiB + 4 * MiB, compressible(rng, 256 * KiB))
    image2 = fx.sparse_copy(path, tmp_path / "image2.img")
    inc2 = api.create_backup(volume["id"], incremental=True, name="inc2")
    inc2_meta = check_stored(stack, inc2, image2, parent_id=inc1["id"])
    assert compressions(stack, inc2, inc2_meta) == {"none"}

    # The volume keeps changing after the last backup; the restores must not care.
    change_blocks(path, rng, count=8)

    # -- restore the newest backup to a new volume ---------------------------------
    result = api.restore_and_wait(inc2["id"], {})
    assert result["volume_id"] != volume["id"]
    fx.assert_same_image(fx.volume_file(dep.volumes_dir, result["volume_id"]), image2,
                         "%s: restore of the second incremental to a new volume" % driver)

    # -- restore the first incremental onto an existing volume full of junk --------
    target = api.create_volume(size=1, name="junk-target")
    target_path = fx.volume_file(dep.volumes_dir, target["id"])
    fx.scattered_writes(target_path, rng, count=24, min_len=64 * KiB, max_len=256 * KiB)
    fx.write_at(target_path, 0, rng.randbytes(MiB))
    fx.write_at(target_path, GiB - MiB, rng.randbytes(MiB))
    fx.write_at(target_path, 400 * MiB, rng.randbytes(2 * MiB))     # a hole in every image
    fx.write_at(target_path, 100 * MiB, rng.randbytes(6 * MiB))     # over the text region
    result = api.restore_and_wait(inc1["id"], {"volume_id": target["id"]})
    assert result["volume_id"] == target["id"]
    fx.assert_same_image(target_path, image1,
                         "%s: restore of the first incremental over junk" % driver)
    for backup in (full, inc1, inc2):
        assert api.backup(backup["id"])["status"] == "available"

    # -- export the full backup's record -------------------------------------------
    record = api.expect(api.get("backups/%s/export_record" % full["id"]), 200).json()
    assert list(record) == ["backup-record"], record
    record = record["backup-record"]
    assert set(record) == {"backup_service", "backup_url"}, record
    assert record["backup_service"].startswith("cinder.backup.drivers.%s" % driver), record
    assert record["backup_service"] == DRIVER_CLASS[driver], record
    decoded = json.loads(base64.b64decode(record["backup_url"]))
    assert decoded["id"] == full["id"] and decoded["size"] == 1, decoded
    assert decoded["service"] == DRIVER_CLASS[driver], decoded["service"]
    assert decoded["container"] == full["container"], decoded["container"]
    assert decoded["service_metadata"] == stack.prefix(full["id"]), decoded

    # -- delete newest to oldest: nothing of them stays in the repository ----------
    for backup in (inc2, inc1, full):
        api.delete_backup(backup["id"])
        assert_gone_from_repository(stack, backup["id"])
    left = repo.names(volume["id"])
    assert not left, "all backups of volume %s are deleted but the %s still holds %s" % (
        volume["id"], repo.describe(), left[:10])
    assert api.backups() == []
