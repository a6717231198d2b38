"""Memory stays bounded by the piece size, not by the chunk or volume size.

tracemalloc measures Python allocations (the pieces, compressed output and
buffers the engine makes), which is where an unbounded design would show.
"""

import os
import random
import tracemalloc

import pytest

from backupsvc.chunking import shalist
from backupsvc.chunking.engine import (
    EngineParams,
    Layer,
    read_metadata,
    read_sha256s,
    run_backup,
    run_restore,
)
from backupsvc.chunking.objects import MAX_PENDING_BYTES, SMALL_OBJECT_LIMIT
from backupsvc.chunking.params import DEFAULT_PIECE_SIZE
from backupsvc.drivers.posix import PosixStore
from tests.unit.chunking import Chain, FileTarget, KiB, MiB, description

SIZE = 256 * MiB
WORKERS = 2
# What a backup may hold at once, by design: the pieces being read and
# hashed or waiting for their frames (2 x workers + 3), the frames' output
# (up to a piece each, 2 x workers + 2 of them), the object being filled and
# the finished objects waiting for the store. Holding a chunk (1.86 GB) or the
# volume (256 MiB) would be far above it. (Measured: 48-64 MiB.)
BACKUP_LIMIT = ((2 * WORKERS + 3) + (2 * WORKERS + 2)) * DEFAULT_PIECE_SIZE \
    + SMALL_OBJECT_LIMIT + MAX_PENDING_BYTES
RESTORE_LIMIT = 64 * MiB            # (measured: about 30 MiB)


def make_sparse_image(path: str) -> None:
    rng = random.Random(1)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        f.seek(0)
        for _ in range(40):                          # 40 MiB of incompressible data
            f.write(rng.randbytes(MiB))
        f.seek(100 * MiB)
        f.write((b"compressible text, repeated " * 40000)[:MiB] * 24)
        for _ in range(50):                          # scattered small extents
            f.seek(rng.randrange(130 * MiB, SIZE - 4096))
            f.write(rng.randbytes(4096))


def peak_during(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_backup_and_restore_memory_with_default_chunk_size(tmp_path):
    image = str(tmp_path / "image")
    make_sparse_image(image)
    store = PosixStore(str(tmp_path / "store"))
    params = EngineParams(chunk_size=1999994880, compression="zlib", workers=WORKERS)

    def backup():
        with open(image, "rb") as f:
            result = run_backup(f, SIZE, store, "c", "p", description("b0"), params)
        assert result.bytes_stored < 50 * MiB
        # The 50 scattered extents are runs packed into a few objects.
        runs = sum(len(o.spans()) for o in read_metadata(store, "c", "p").objects)
        assert runs > 30 and result.object_count < 10

    peak = peak_during(backup)
    print("backup peak %.1f MiB" % (peak / MiB))
    assert peak < BACKUP_LIMIT

    out = str(tmp_path / "restored")
    with open(out, "wb") as f:
        f.truncate(SIZE)
    target = FileTarget(out)

    def restore():
        run_restore([Layer("c", "p")], target, SIZE, params, target_is_zeroed=True, store=store)

    try:
        peak = peak_during(restore)
        print("restore peak %.1f MiB" % (peak / MiB))
        assert peak < RESTORE_LIMIT
    finally:
        target.close()
    with open(image, "rb") as a, open(out, "rb") as b:
        while True:
            x, y = a.read(8 * MiB), b.read(8 * MiB)
            assert x == y
            if not x:
                break
    # The restore left the zero ranges as holes.
    assert os.stat(out).st_blocks * 512 < 100 * MiB


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_sha_lists_larger_than_memory_spill_to_disk(tmp_path, monkeypatch, version):
    """A volume with more data than the sha list keeps in memory (32 GiB in 32 KiB
    blocks by default): its lists, and its parent's, spill to a temporary file and the
    backups and restores are the same. The limits are lowered to a few KiB of digests
    so that a 4 MiB volume of 1 KiB blocks (4096 digests, 128 KiB) goes over them."""
    monkeypatch.setattr(shalist, "SEGMENT_BYTES", 4 * KiB)
    monkeypatch.setattr(shalist, "MEMORY_LIMIT", 16 * KiB)
    spills = []
    real_spill = shalist.ShaList._spill_segments

    def counting_spill(self):
        real_spill(self)
        spills.append(self.spilled_bytes)

    monkeypatch.setattr(shalist.ShaList, "_spill_segments", counting_spill)
    rng = random.Random(5)
    image = bytearray(rng.randbytes(4 * MiB))
    image[MiB:2 * MiB] = bytes(MiB)                     # zero runs between data
    chain = Chain(tmp_path, EngineParams(chunk_size=256 * KiB, sha_block_size=KiB,
                                         piece_size=64 * KiB, compression="zlib",
                                         format_version=version))
    chain.backup(image)
    for i in rng.sample(range(4096), 40):               # 1 % of the blocks change
        image[i * KiB:(i + 1) * KiB] = rng.randbytes(KiB)
    result = chain.backup(image)
    assert result.changed_blocks <= 40
    parent = read_sha256s(chain.store, chain.container, chain.layers[0].prefix)[1]
    assert parent.spilled_bytes > 64 * KiB and parent.nbytes <= 20 * KiB
    assert spills and max(spills) > 64 * KiB
    assert chain.restore()[0] == image
    assert chain.restore(0)[0] == chain.images[0]
    assert chain.restore(zeroed=False, junk_seed=1)[0] == image
