"""Backups of sparse files: holes are neither read nor hashed, and nothing else changes.

A backup made from a sparse regular file (holes found with SEEK_DATA /
SEEK_HOLE) must be identical, object for object and byte for byte, to one
made from a plain stream returning the same bytes.
"""

import hashlib
import os
import pathlib
import random
import tempfile
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupsvc import native
from backupsvc.chunking import blocks
from backupsvc.chunking.engine import Cancelled, EngineParams, read_sha256s, run_backup
from backupsvc.chunking.source import PieceSource
from backupsvc.drivers.posix import PosixStore
from tests.unit.chunking import KiB, MiB, data_ranges, description

CONTAINER = "c"


def _holes_supported(directory) -> bool:
    # A file of its own: a fixed name could be anyone's file or directory.
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        f.truncate(4 * MiB)
        f.seek(MiB)
        f.write(b"x")
        f.flush()
        try:
            return os.lseek(f.fileno(), 0, os.SEEK_DATA) > 0
        except OSError:
            return False


pytestmark = pytest.mark.skipif(
    not hasattr(os, "SEEK_DATA") or not _holes_supported(tempfile.gettempdir()),
    reason="the temporary directory's file system does not report holes")


class Stream:
    """A non-seekable reader (no fileno) returning the bytes of a file."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "rb")

    def readinto(self, buf) -> int:
        return self._f.readinto(buf)

    def close(self) -> None:
        self._f.close()


def make_sparse(path, size: int, extents: list[tuple[int, int]], seed: int = 0) -> bytes:
    """A sparse file of ``size`` bytes holding random data at ``extents``; returns its bytes."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for off, n in extents:
            f.seek(off)
            f.write(rng.randbytes(max(0, min(n, size - off))))
    if size > 64 * MiB:
        return b""
    with open(path, "rb") as f:
        return f.read()


def hole_block_bytes(path, size: int, bs: int) -> int:
    """Bytes of the sha blocks that no data extent touches."""
    ranges = data_ranges(path)
    total = 0
    for o in range(0, size, bs):
        end = min(o + bs, size)
        if not any(a < end and o < b for a, b in ranges):
            total += end - o
    return total


def stored(store: PosixStore, prefix: str) -> dict[str, bytes]:
    return {n: store.get(CONTAINER, n) for n in store.list(CONTAINER, prefix)}


def backup(store, reader, size, prefix, params, parent=None, **kw):
    return run_backup(reader, size, store, CONTAINER, prefix, description("b"), params,
                      parent_sha256s=parent, **kw)


def both_ways(tmp, path, size, params, parent=None):
    """Back up ``path`` as a sparse file and as a stream; return (results, stores)."""
    out = []
    for kind in ("file", "stream"):
        store = PosixStore(os.path.join(tmp, "store-" + kind))
        reader = open(path, "rb", buffering=0) if kind == "file" else Stream(path)
        try:
            result = backup(store, reader, size, "p", params, parent)
        finally:
            reader.close()
        out.append((result, stored(store, "p")))
    return out


def assert_identical(file_way, stream_way):
    (r_file, objs_file), (r_stream, objs_stream) = file_way, stream_way
    assert sorted(objs_file) == sorted(objs_stream)
    for name in objs_file:
        assert objs_file[name] == objs_stream[name], name
    assert r_file.bytes_read + r_file.hole_bytes == r_stream.bytes_read
    assert (r_file.object_count, r_file.bytes_stored, r_file.changed_blocks,
            r_file.zero_blocks) == (r_stream.object_count, r_stream.bytes_stored,
                                    r_stream.changed_blocks, r_stream.zero_blocks)


# -- property ------------------------------------------------------------------------

extent = st.tuples(st.floats(0, 1), st.integers(1, 40 * KiB))


@st.composite
def scenarios(draw):
    block = draw(st.sampled_from([1 * KiB, 4 * KiB, 16 * KiB]))
    return dict(
        block=block,
        chunk=block * draw(st.integers(1, 8)),
        piece=block * draw(st.integers(1, 6)),
        size=draw(st.integers(0, 400 * KiB)),
        compression=draw(st.sampled_from(["zlib", "bz2", "zstd", "none"])),
        skip_zero=draw(st.booleans()),
        workers=draw(st.integers(1, 3)),
        extents=draw(st.lists(extent, max_size=6)),
        parent_extents=draw(st.none() | st.lists(extent, max_size=4)),
        seed=draw(st.integers(0, 2**32)),
    )


def _place(extents, size):
    return [(int(where * size), n) for where, n in extents if size]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_sparse_file_backup_equals_stream_backup(sc):
    params = EngineParams(chunk_size=sc["chunk"], sha_block_size=sc["block"],
                          piece_size=sc["piece"], compression=sc["compression"],
                          skip_zero_blocks=sc["skip_zero"], workers=sc["workers"])
    size = sc["size"]
    with tempfile.TemporaryDirectory() as tmp:
        parent = None
        if sc["parent_extents"] is not None:
            # An incremental: the parent had data where the file may now have holes.
            old = os.path.join(tmp, "old")
            make_sparse(old, size, _place(sc["parent_extents"] + sc["extents"], size),
                        sc["seed"] + 1)
            store = PosixStore(os.path.join(tmp, "parent"))
            with open(old, "rb") as f:
                backup(store, f, size, "parent", params)
            parent = read_sha256s(store, CONTAINER, "parent")[1]
        path = os.path.join(tmp, "image")
        make_sparse(path, size, _place(sc["extents"], size), sc["seed"])
        file_way, stream_way = both_ways(tmp, path, size, params, parent)
        assert_identical(file_way, stream_way)
        assert file_way[0].hole_bytes == hole_block_bytes(path, size, sc["block"])


# -- specific cases ------------------------------------------------------------------

def params(**kw) -> EngineParams:
    base = dict(chunk_size=256 * KiB, sha_block_size=16 * KiB, piece_size=64 * KiB,
                compression="zlib")
    base.update(kw)
    return EngineParams(**base)


@pytest.mark.parametrize("skip_zero", [True, False])
def test_holes_starting_and_ending_mid_block(tmp_path, skip_zero):
    # 16 KiB sha blocks, data extents starting and ending inside blocks, and a
    # size that is not a multiple of the block size (the last block is short).
    size = 1 * MiB + 5000
    path = str(tmp_path / "image")
    image = make_sparse(path, size, [(20 * KiB + 100, 3000), (100 * KiB - 4 * KiB, 40 * KiB),
                                     (600 * KiB + 8 * KiB, 100), (size - 1000, 1000)])
    p = params(skip_zero_blocks=skip_zero)
    file_way, stream_way = both_ways(str(tmp_path), path, size, p)
    assert_identical(file_way, stream_way)
    result = file_way[0]
    assert result.hole_bytes == hole_block_bytes(path, size, 16 * KiB) > 900 * KiB
    assert result.bytes_read == size - result.hole_bytes
    sha = read_sha256s(PosixStore(str(tmp_path / "store-file")), CONTAINER, "p")[1]
    assert sha == [hashlib.sha256(image[o:o + 16 * KiB]).hexdigest()
                   for o in range(0, size, 16 * KiB)]


@pytest.mark.parametrize("tail", [0, 1, 5000, 16 * KiB - 1])
def test_short_last_block_in_a_hole(tmp_path, tail):
    size = 512 * KiB + tail
    path = str(tmp_path / "image")
    make_sparse(path, size, [(0, 10 * KiB)])
    file_way, stream_way = both_ways(str(tmp_path), path, size, params())
    assert_identical(file_way, stream_way)
    assert file_way[0].hole_bytes == size - 16 * KiB


def test_holes_are_neither_read_nor_hashed(tmp_path, hashed_blocks):
    size = 64 * MiB
    path = str(tmp_path / "image")
    make_sparse(path, size, [(10 * MiB + 5, MiB), (40 * MiB, 100)])
    blocks.zero_sha(32 * KiB)        # known before the backup starts
    hashed_blocks.clear()
    store = PosixStore(str(tmp_path / "store"))
    with open(path, "rb") as f:
        result = backup(store, f, size, "p", EngineParams(compression="zlib"))
    holes = hole_block_bytes(path, size, 32 * KiB)
    assert result.hole_bytes == holes and result.bytes_read == size - holes
    assert result.bytes_read <= MiB + 3 * 32 * KiB
    assert len(hashed_blocks) == result.bytes_read // (32 * KiB)   # only blocks with data
    assert f.closed


def test_huge_hole_is_fast_and_can_be_cancelled(tmp_path):
    size = 64 * 1024 * MiB                       # 64 GiB, nothing but a hole
    path = str(tmp_path / "image")
    make_sparse(path, size, [(size - 100, 100)])
    p = EngineParams(sha_block_size=256 * KiB, chunk_size=256 * KiB * 4000)

    class Counter:
        def __init__(self, at=0):
            self.at, self.calls = at, 0

        def __call__(self):
            self.calls += 1
            return self.calls == self.at

    store = PosixStore(str(tmp_path / "store"))
    counter = Counter()
    started = time.monotonic()
    with open(path, "rb") as f:
        result = backup(store, f, size, "p", p, cancelled=counter)
    assert time.monotonic() - started < 20
    assert result.object_count == 1 and result.bytes_read == 256 * KiB
    # Checked again and again while skipping the hole, not only around it.
    assert counter.calls >= size // (1024 * MiB)
    for at in (2, 10, counter.calls // 2):
        store = PosixStore(str(tmp_path / ("cancelled-%d" % at)))
        with open(path, "rb") as f, pytest.raises(Cancelled):
            backup(store, f, size, "p", p, cancelled=Counter(at))
        assert store.list(CONTAINER, "") == []


def test_volume_at_an_offset_in_the_file(tmp_path):
    size, base = 300 * KiB, 40 * KiB + 512
    path = str(tmp_path / "image")
    image = make_sparse(path, base + size, [(0, 50 * KiB), (base + 200 * KiB, 10 * KiB)])
    volume = str(tmp_path / "volume")
    with open(volume, "wb") as f:
        f.write(image[base:])
    store = PosixStore(str(tmp_path / "a"))
    with open(path, "rb") as f:
        f.seek(base)
        result = backup(store, f, size, "p", params())
        assert f.tell() == base + size           # as if read sequentially
    assert result.hole_bytes > 0
    plain = PosixStore(str(tmp_path / "b"))
    reader = Stream(volume)
    backup(plain, reader, size, "p", params())
    reader.close()
    assert stored(store, "p") == stored(plain, "p")


def test_short_file_is_an_error(tmp_path):
    path = str(tmp_path / "image")
    make_sparse(path, 100 * KiB, [(0, KiB)])
    store = PosixStore(str(tmp_path / "store"))
    with open(path, "rb") as f, pytest.raises(EOFError):
        backup(store, f, 200 * KiB, "p", params())
    assert store.list(CONTAINER, "") == []


def test_pipe_is_read_in_order(tmp_path):
    size = 300 * KiB
    image = random.Random(3).randbytes(size // 2) + bytes(size // 2)
    rfd, wfd = os.pipe()

    def feed():
        with open(wfd, "wb") as w:
            w.write(image)

    writer = threading.Thread(target=feed)
    writer.start()
    store = PosixStore(str(tmp_path / "store"))
    with open(rfd, "rb", buffering=0) as r:
        result = backup(store, r, size, "p", params())
    writer.join()
    assert result.hole_bytes == 0 and result.bytes_read == size
    assert result.zero_blocks == (size // 2) // (16 * KiB)


def test_sparse_file_restores_identical(tmp_path):
    from tests.unit.chunking import Chain

    size = 2 * MiB + 333
    path = str(tmp_path / "image")
    image = make_sparse(path, size, [(5000, 70 * KiB), (MiB, 1)])
    chain = Chain(pathlib.Path(tmp_path), params())
    chain.backup(image)          # through a stream: what the sparse backup must equal
    store = chain.store
    with open(path, "rb") as f:
        backup(store, f, size, "sparse", params())
    names = [n for n in stored(store, "sparse") if n[len("sparse"):].startswith("-")]
    assert names
    assert chain.restore()[0] == image


def test_a_large_sparse_volume_keeps_a_small_sha_list(tmp_path):
    """64 GiB holding 3 extents: two million blocks, their sha list a few KiB.

    As hex strings the list took 8 bytes per block even with every zero block
    sharing one string (16 MiB here, 1 GiB for 4 TiB) and reading it back
    inflated all the digests at once (64 MiB here).
    """
    import tracemalloc

    from backupsvc.chunking.engine import Layer, run_restore
    from backupsvc.sources.file import FileVolumeWriter

    size = 64 * 1024 * MiB
    extents = [(0, 100 * KiB), (size // 2 + 4096, MiB), (size - 5000, 5000)]
    path = str(tmp_path / "image")
    make_sparse(path, size, extents, seed=7)
    p = params(sha_block_size=32 * KiB, piece_size=4 * MiB)
    store = PosixStore(str(tmp_path / "store"))
    with open(path, "rb") as f:
        backup(store, f, size, "full", p)
    with open(path, "r+b") as f:                # one more extent for an incremental
        f.seek(size // 4)
        f.write(b"\x07" * 40000)
    extents.append((size // 4, 40000))
    tracemalloc.start()
    try:
        parent = read_sha256s(store, CONTAINER, "full")[1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(parent) == size // (32 * KiB)
    assert parent.nbytes < 64 * KiB and peak < 4 * MiB
    with open(path, "rb") as f:
        result = backup(store, f, size, "inc", p, parent=parent)
    assert result.changed_blocks == 2                       # 40000 bytes over two blocks
    target = str(tmp_path / "target")
    with open(target, "wb") as f:
        f.truncate(size)
    fd = os.open(target, os.O_WRONLY)
    try:
        run_restore([Layer(CONTAINER, "full"), Layer(CONTAINER, "inc")],
                    FileVolumeWriter(fd, "file", size), size, p, target_is_zeroed=True,
                    store=store)
    finally:
        os.close(fd)
    assert os.stat(target).st_blocks * 512 < 4 * MiB         # still sparse
    with open(path, "rb") as a, open(target, "rb") as b:
        for off, n in extents:
            a.seek(off)
            b.seek(off)
            assert a.read(n + 4096) == b.read(n + 4096)
    # Data lies only where the extents are (widened to whole pages).
    pages = [(o // 4096 * 4096, -(-(o + n) // 4096) * 4096) for o, n in extents]
    assert all(any(lo <= a and b <= hi for lo, hi in pages) for a, b in data_ranges(target))


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_the_python_stand_ins_make_the_same_backup(tmp_path, monkeypatch, compression):
    """Without the C helpers (read_ranges, concat, copy_into) the objects are the same."""
    size = 6 * MiB + 3 * KiB
    path = str(tmp_path / "vol")
    make_sparse(path, size, [(5000, 70 * KiB), (MiB + 4 * KiB, 2 * MiB), (size - 9000, 9000)])
    params = EngineParams(chunk_size=2 * MiB, sha_block_size=16 * KiB, piece_size=MiB,
                          compression=compression)
    made = []
    for helpers in ("c", "python"):
        if helpers == "python":
            monkeypatch.setattr(native, "module", None)
        store = PosixStore(str(tmp_path / ("store-" + helpers)))
        with open(path, "rb", buffering=0) as reader:
            backup(store, reader, size, "p", params)
        made.append(stored(store, "p"))
    assert made[0] == made[1] and len(made[0]) > 2


@pytest.mark.parametrize("need_hole_bytes", [False, True])
def test_a_piece_holds_only_its_data_span_unless_hole_bytes_are_needed(tmp_path,
                                                                      need_hole_bytes):
    size, bs = 4 * MiB, 32 * KiB
    path = str(tmp_path / "image")
    # Data from 1 MiB + 100 to 3 MiB - 5 in the piece; holes before and after.
    image = make_sparse(path, size, [(MiB + 100, 2 * MiB - 105)])
    with open(path, "rb") as f:
        source = PieceSource(f, size, bs, 4 * MiB, need_hole_bytes=need_hole_bytes)
        piece = source.next(0)
        shas = source.load(piece)
    assert shas.digests(0, len(shas)) == b"".join(
        hashlib.sha256(image[o:o + bs]).digest() for o in range(0, size, bs))
    if need_hole_bytes:
        assert (piece.buf_start, len(piece.buf)) == (0, size)
        assert bytes(piece.data(0, size)) == image
    else:
        # The span of whole blocks around the data: the holes are not held.
        assert (piece.buf_start, len(piece.buf)) == (MiB, 2 * MiB)
        assert bytes(piece.data(MiB, 3 * MiB)) == image[MiB:3 * MiB]
        for outside in [(MiB - bs, MiB), (3 * MiB - bs, 3 * MiB + bs)]:
            with pytest.raises(ValueError, match="not in its buffer"):
                piece.data(*outside)
