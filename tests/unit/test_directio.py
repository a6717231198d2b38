"""DirectWriter: aligned parts go out with O_DIRECT, heads and tails through the page cache.

The files live under the test's tmp_path, on the machine's real file system
(ext4 here, which takes O_DIRECT). Two failures cannot be made to happen for
real here: a device that wants a larger alignment than 4 KiB (EINVAL) and a
device error during a write (EIO); those tests replace os.pwrite for the
O_DIRECT descriptor only, and say so.
"""

import errno
import fcntl
import os
import random

import pytest

from backupsvc import directio
from backupsvc.directio import ALIGN, DIRECT_MIN, STAGE, DirectWriter


def _open(path, size):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    return fd


def _content(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def target(tmp_path):
    path = str(tmp_path / "target")
    fd = _open(path, 8 * STAGE)
    yield path, fd
    os.close(fd)


def test_pwrite_sends_the_aligned_middle_direct_and_the_edges_buffered(target):
    path, fd = target
    writer = DirectWriter(fd)
    if not writer.is_direct:
        pytest.skip("this file system refuses O_DIRECT")
    data = random.Random(1).randbytes(3 * STAGE + 5000)
    offset = 1000                       # head: 3096 bytes up to the first page
    writer.pwrite(data, offset)
    writer.settle()
    os.fsync(fd)
    end = offset + len(data)
    head, tail = ALIGN - offset, end - end // ALIGN * ALIGN
    assert writer.buffered_bytes == head + tail
    assert writer.direct_bytes == len(data) - head - tail
    writer.close()
    expected = bytearray(8 * STAGE)
    expected[offset:end] = data
    assert _content(path) == expected
    os.fstat(fd)                        # the caller's descriptor is still open


def test_random_writes_land_where_they_were_asked(target):
    path, fd = target
    rng = random.Random(2)
    expected = bytearray(8 * STAGE)
    writer = DirectWriter(fd)
    # Disjoint ranges, each written once, in a shuffled order.
    cuts = sorted(rng.sample(range(1, 8 * STAGE), 60))
    ranges = list(zip([0, *cuts], [*cuts, 8 * STAGE], strict=True))[::2]
    rng.shuffle(ranges)
    for a, b in ranges:
        data = rng.randbytes(b - a)
        writer.pwrite(data, a)
        expected[a:b] = data
    writer.settle()
    writer.close()
    assert _content(path) == expected
    assert writer.direct_bytes + writer.buffered_bytes == sum(b - a for a, b in ranges)


def test_append_streams_whole_stages_and_a_buffered_tail(tmp_path):
    path = str(tmp_path / "object")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = DirectWriter(fd)
        rng = random.Random(3)
        parts = [rng.randbytes(rng.randrange(1, 1_000_000)) for _ in range(20)]
        for part in parts:
            writer.append(part)
        writer.settle()                 # writes what is still staged
        os.fsync(fd)
        writer.close()
    finally:
        os.close(fd)
    total = sum(map(len, parts))
    assert _content(path) == b"".join(parts)
    assert total > STAGE
    if writer.is_direct or writer.direct_bytes:
        assert writer.direct_bytes == total // ALIGN * ALIGN
        assert writer.buffered_bytes == total % ALIGN


def test_settle_gives_the_staging_buffers_back_before_the_fsync(tmp_path, monkeypatch):
    # A writer whose file is being fsynced keeps none: another writer takes them.
    monkeypatch.setattr(directio, "_pool", [])
    path = str(tmp_path / "object")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = DirectWriter(fd)
        data = random.Random(4).randbytes(3 * STAGE + 5)
        writer.append(data)
        writer.settle()
        held = len(directio._pool)
        assert held >= 1 and writer._free == []      # in the pool, not the writer's
        other = DirectWriter(fd)
        stage = other._next_stage()
        assert len(directio._pool) == held - 1       # reused, not a fresh mapping
        other._free.append(stage)
        other.close()
        os.fsync(fd)
        writer.close()
    finally:
        os.close(fd)
    assert _content(path) == data


def test_a_small_file_goes_through_the_page_cache(tmp_path):
    path = str(tmp_path / "object")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    data = random.Random(6).randbytes(DIRECT_MIN - 1)
    try:
        writer = DirectWriter(fd)
        writer.append(data[:5000])
        writer.append(data[5000:])
        writer.finish_append()
        writer.settle()
        writer.close()
    finally:
        os.close(fd)
    assert _content(path) == data
    assert writer.direct_bytes == 0 and writer.buffered_bytes == len(data)


def test_a_file_of_less_than_a_stage_still_goes_direct(tmp_path):
    path = str(tmp_path / "object")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    data = random.Random(9).randbytes(DIRECT_MIN + 5)
    try:
        writer = DirectWriter(fd)
        writer.append(data)
        writer.settle()
        writer.close()
    finally:
        os.close(fd)
    assert _content(path) == data
    if writer.is_direct:
        assert writer.direct_bytes == DIRECT_MIN and writer.buffered_bytes == 5


def test_short_files_and_empty_appends(tmp_path):
    path = str(tmp_path / "small")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = DirectWriter(fd)
        writer.append(b"")
        writer.append(b"metadata")
        writer.finish_append()
        writer.finish_append()          # nothing more to write
        writer.settle()
        writer.close()
    finally:
        os.close(fd)
    assert _content(path) == b"metadata"
    assert writer.direct_bytes == 0


def test_contiguous_writes_leave_as_one_direct_write(target, monkeypatch):
    path, fd = target
    writer = DirectWriter(fd)
    if not writer.is_direct:
        pytest.skip("this file system refuses O_DIRECT")
    sizes = []
    real = os.pwrite

    def pwrite(fd_, data, offset):
        if fd_ == writer._direct:
            sizes.append(len(data))
        return real(fd_, data, offset)

    monkeypatch.setattr(directio.os, "pwrite", pwrite)     # counts, writes for real
    data = random.Random(7).randbytes(STAGE + 3 * ALIGN)
    for at in range(0, len(data), 8 * ALIGN):               # 32 KiB writes, in order
        writer.pwrite(data[at:at + 8 * ALIGN], at)
    writer.pwrite(data[:ALIGN], 5 * STAGE)                  # not contiguous: a write of its own
    writer.settle()
    writer.close()
    assert sizes == [STAGE, 3 * ALIGN, ALIGN]
    content = _content(path)
    assert content[:len(data)] == data and content[5 * STAGE:5 * STAGE + ALIGN] == data[:ALIGN]


def test_without_direct_everything_goes_through_the_page_cache(target):
    path, fd = target
    writer = DirectWriter(fd, direct=False)
    assert not writer.is_direct
    data = random.Random(4).randbytes(2 * STAGE)
    writer.pwrite(data, 0)
    writer.append(b"x" * 10)            # append starts at offset 0: overwrite the start
    writer.finish_append()
    writer.settle()
    writer.close()
    assert writer.direct_bytes == 0
    assert _content(path)[:2 * STAGE] == b"x" * 10 + data[10:]


def _failing_direct_pwrite(monkeypatch, writer, err):
    """Simulated: O_DIRECT writes fail with ``err`` (a device cannot be made to do it here)."""
    real = os.pwrite
    direct_fd = writer._direct

    def pwrite(fd, data, offset):
        if fd == direct_fd:
            raise OSError(err, os.strerror(err))
        return real(fd, data, offset)

    monkeypatch.setattr(directio.os, "pwrite", pwrite)


def test_a_device_refusing_the_alignment_falls_back_to_the_page_cache(target, monkeypatch):
    path, fd = target
    writer = DirectWriter(fd)
    if not writer.is_direct:
        pytest.skip("this file system refuses O_DIRECT")
    _failing_direct_pwrite(monkeypatch, writer, errno.EINVAL)
    data = random.Random(5).randbytes(2 * STAGE)
    writer.pwrite(data, 0)
    writer.settle()
    assert not writer.is_direct
    assert writer.direct_bytes == 0 and writer.buffered_bytes == len(data)
    direct_fd = writer._direct_fd
    writer.close()
    with pytest.raises(OSError):
        os.fstat(direct_fd)              # closed, though direct writes were given up
    assert _content(path)[:len(data)] == data


def test_a_stream_goes_on_in_order_after_direct_writes_are_given_up(tmp_path, monkeypatch):
    path = str(tmp_path / "object")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = DirectWriter(fd)
        if not writer.is_direct:
            pytest.skip("this file system refuses O_DIRECT")
        _failing_direct_pwrite(monkeypatch, writer, errno.EINVAL)
        rng = random.Random(8)
        parts = [rng.randbytes(rng.randrange(1, 2 * STAGE)) for _ in range(8)]
        for part in parts:
            writer.append(part)
        writer.settle()
        writer.close()
    finally:
        os.close(fd)
    assert not writer.is_direct and writer.direct_bytes == 0
    assert _content(path) == b"".join(parts)


def test_a_failed_direct_write_is_raised_by_settle_and_close_releases(target, monkeypatch):
    _path, fd = target
    writer = DirectWriter(fd)
    if not writer.is_direct:
        pytest.skip("this file system refuses O_DIRECT")
    direct_fd = writer._direct
    _failing_direct_pwrite(monkeypatch, writer, errno.EIO)
    writer.pwrite(bytes(STAGE), 0)       # queued: the failure comes later
    with pytest.raises(OSError) as err:
        writer.settle()
    assert err.value.errno == errno.EIO
    writer.pwrite(bytes(STAGE), STAGE)
    writer.close()                       # waits for the write in flight, raises nothing
    with pytest.raises(OSError):
        os.fstat(direct_fd)              # the second descriptor is closed
    os.fstat(fd)


# -- DirectReader ------------------------------------------------------------------

def _uncached_file(path, data):
    """``data`` on disk, its pages dropped from the page cache (clean pages go)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _read_in_pieces(reader, rng):
    parts = []
    while piece := reader.read(rng.choice([1, 7, 4096, 100_000, STAGE - 3, 2 * STAGE])):
        parts.append(piece)
    return b"".join(parts)


@pytest.mark.parametrize("size", [DIRECT_MIN, 2 * STAGE, 2 * STAGE + 12345])
def test_reader_streams_an_uncached_file_direct(tmp_path, size):
    data = random.Random(size).randbytes(size)
    path = str(tmp_path / "object")
    _uncached_file(path, data)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = directio.DirectReader.open(fd)
        if reader is None:
            pytest.skip("this file system refuses O_DIRECT or keeps the pages cached")
        with reader:
            assert _read_in_pieces(reader, random.Random(1)) == data
            assert reader.read(10) == b"" and reader.read() == b""
            assert reader.direct_bytes == size and reader.buffered_bytes == 0
        os.fstat(fd)                    # the caller's descriptor is still open
    finally:
        os.close(fd)


def test_reader_read_all_and_small_or_cached_files(tmp_path):
    data = random.Random(3).randbytes(STAGE + 5)
    path = str(tmp_path / "object")
    _uncached_file(path, data)
    with open(path, "rb") as f:
        reader = directio.DirectReader.open(f.fileno())
        if reader is None:
            pytest.skip("this file system refuses O_DIRECT or keeps the pages cached")
        with reader:
            assert reader.read() == data
    # Just read through the page cache: cached now, so it is read from there.
    with open(path, "rb") as f:
        assert f.read() == data
        assert directio.DirectReader.open(f.fileno()) is None
    small = str(tmp_path / "small")
    _uncached_file(small, data[:DIRECT_MIN - 1])
    with open(small, "rb") as f:
        assert directio.DirectReader.open(f.fileno()) is None


def test_cached_fraction_counts_resident_pages_and_reads_nothing(tmp_path):
    size = 64 * ALIGN
    path = str(tmp_path / "object")
    _uncached_file(path, random.Random(6).randbytes(size))
    fd = os.open(path, os.O_RDONLY)
    try:
        if directio.cached_fraction(fd, size) != 0.0:
            pytest.skip("this file system keeps the pages cached")
        # Asking again and again must not bring pages in (a probing read
        # would start readahead, and the next look would see pages cached).
        for _ in range(3):
            assert directio.cached_fraction(fd, size) == 0.0
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)   # no readahead past the read
        os.pread(fd, 16 * ALIGN, 0)
        assert directio.cached_fraction(fd, size) == pytest.approx(0.25)
        os.pread(fd, size, 0)
        assert directio.cached_fraction(fd, size) == 1.0
    finally:
        os.close(fd)


def test_opening_a_reader_does_not_pull_the_file_into_the_page_cache(tmp_path):
    data = random.Random(7).randbytes(2 * STAGE)
    path = str(tmp_path / "object")
    _uncached_file(path, data)
    with open(path, "rb") as f:
        for attempt in range(3):   # a restore after a restore reads its objects direct again
            reader = directio.DirectReader.open(f.fileno())
            if reader is None and attempt == 0:
                pytest.skip("this file system refuses O_DIRECT or keeps the pages cached")
            assert reader is not None, "the first look brought the file into the cache"
            with reader:
                assert reader.read() == data
                assert reader.direct_bytes == len(data)
        assert directio.cached_fraction(f.fileno(), len(data)) == 0.0


def _failing_direct_preadv(monkeypatch, err):
    """Stands in for a device that refuses (EINVAL) or fails (EIO) direct reads,
    which this machine's disk cannot be made to do; other reads are real."""
    real = os.preadv

    def preadv(fd, buffers, offset, *flags):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(err, os.strerror(err))
        return real(fd, buffers, offset, *flags)
    monkeypatch.setattr(directio.os, "preadv", preadv)


def test_reader_falls_back_to_the_page_cache_when_direct_reads_are_refused(
        tmp_path, monkeypatch):
    data = random.Random(4).randbytes(2 * STAGE + 100)
    path = str(tmp_path / "object")
    _uncached_file(path, data)
    _failing_direct_preadv(monkeypatch, errno.EINVAL)
    with open(path, "rb") as f:
        reader = directio.DirectReader.open(f.fileno())
        if reader is None:
            pytest.skip("this file system refuses O_DIRECT or keeps the pages cached")
        with reader:
            assert _read_in_pieces(reader, random.Random(2)) == data
            assert reader.buffered_bytes == len(data) and reader.direct_bytes == 0


def test_reader_raises_a_failed_read_and_close_releases(tmp_path, monkeypatch):
    path = str(tmp_path / "object")
    _uncached_file(path, random.Random(5).randbytes(STAGE))
    _failing_direct_preadv(monkeypatch, errno.EIO)
    before = len(os.listdir("/proc/self/fd"))
    with open(path, "rb") as f:
        reader = directio.DirectReader.open(f.fileno())
        if reader is None:
            pytest.skip("this file system refuses O_DIRECT or keeps the pages cached")
        with pytest.raises(OSError) as info:
            reader.read(100)
        assert info.value.errno == errno.EIO
        reader.close()
    assert len(os.listdir("/proc/self/fd")) == before
