"""Memory stays bounded by the piece size, not by the chunk or volume size.

tracemalloc measures Python allocations (the pieces, compressed output and
buffers the engine makes), which is where an unbounded design would show.
"""

import os
import random
import tracemalloc

from backupsvc.chunking.engine import EngineParams, Layer, run_backup, run_restore
from backupsvc.drivers.posix import PosixStore
from tests.unit.chunking import FileTarget, MiB, description

SIZE = 256 * MiB
LIMIT = 64 * MiB


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
    params = EngineParams(chunk_size=1999994880, compression="zlib", workers=2)

    def backup():
        with open(image, "rb") as f:
            result = run_backup(f, SIZE, store, "c", "p", description("b0"), params)
        assert result.object_count > 30
        assert result.bytes_stored < 50 * MiB

    peak = peak_during(backup)
    print("backup peak %.1f MiB" % (peak / MiB))
    assert peak < LIMIT

    out = str(tmp_path / "restored")
    with open(out, "wb") as f:
        f.truncate(SIZE)
    target = FileTarget(out)

    def restore():
        run_restore([Layer("c", "p")], target, SIZE, params, target_is_zeroed=True, store=store)

    try:
        peak = peak_during(restore)
        print("restore peak %.1f MiB" % (peak / MiB))
        assert peak < LIMIT
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
