"""The C helpers (native/blocks.c) and their Python stand-ins give the same results."""

import mmap
import os
import random

import pytest

from backupsvc import native

KiB = 1024


@pytest.fixture(params=["c", "python"])
def impl(request, monkeypatch):
    if request.param == "c":
        assert native.module is not None, "the C helper _backupsvc_blocks is not built"
    else:
        monkeypatch.setattr(native, "module", None)
    return request.param


def test_concat_joins_every_kind_of_buffer(impl):
    rng = random.Random(1)
    data = rng.randbytes(3 * KiB)
    m = mmap.mmap(-1, 4096)
    m[:5] = b"hello"
    parts = [data, bytearray(b"ab"), memoryview(data)[100:2000], b"", m]
    assert native.concat(parts) == b"".join(parts)
    assert native.concat([]) == b""
    assert type(native.concat([b"x"])) is bytes
    with pytest.raises(TypeError):
        native.concat([b"x", 3])


def test_copy_into_writes_only_its_range(impl):
    for dest in (bytearray(16), mmap.mmap(-1, 16)):
        native.copy_into(dest, 3, memoryview(b"..hello..")[2:7])
        native.copy_into(dest, 16, b"")
        assert bytes(dest[:]) == bytes(3) + b"hello" + bytes(8)
    for offset, source in ((12, b"hello"), (-1, b"x"), (17, b"")):
        with pytest.raises(ValueError, match="do not fit"):
            native.copy_into(bytearray(16), offset, source)
    with pytest.raises(TypeError):
        native.copy_into(b"read-only", 0, b"x")


def test_read_ranges_reads_the_ranges_and_zeroes_the_rest(impl, tmp_path):
    path = tmp_path / "f"
    content = random.Random(2).randbytes(64 * KiB)
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        # Stale bytes in recycled memory must never show where nothing was read.
        for _ in range(3):
            got = native.read_ranges(fd, 1000, 40 * KiB, [(0, 10), (5000, 9000), (30000, 40960)])
            want = bytearray(40 * KiB)
            for a, b in ((0, 10), (5000, 9000), (30000, 40960)):
                want[a:b] = content[1000 + a:1000 + b]
            assert got == want
        assert native.read_ranges(fd, 0, 0, []) == bytearray()
        assert native.read_ranges(fd, 0, 5, []) == bytearray(5)
        with pytest.raises(EOFError) as err:
            native.read_ranges(fd, 60 * KiB, 8 * KiB, [(0, 8 * KiB)])
        assert err.value.args == (64 * KiB,)        # the file offset where it ended
        for bad in ([(10, 5)], [(0, 10), (5, 20)], [(0, 41)]):
            with pytest.raises(ValueError, match="ordered, disjoint"):
                native.read_ranges(fd, 0, 40, bad)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        native.read_ranges(-1, 0, 10, [(0, 10)])        # not a descriptor


def test_zero_pages_finds_the_runs_of_zero_pages(impl):
    page = 4 * KiB
    tricky = bytes(page - 1) + b"x"             # starts with zeros, is not zeros
    data = b"junk" + bytes(page) + tricky + b"y" * page + bytes(2 * page) + bytes(100)
    # Pages count from start (after the junk); the last one is 100 bytes.
    assert native.zero_pages(data, 4, len(data), page) == [(4, 4 + page),
                                                           (4 + 3 * page, len(data))]
    assert native.zero_pages(data, 4, 4 + page - 1, page) == [(4, 4 + page - 1)]
    assert native.zero_pages(data, 4 + page, 4 + 3 * page, page) == []
    assert native.zero_pages(data, 10, 10, page) == []
    assert native.zero_pages(bytes(10 * page), 0, 10 * page, page) == [(0, 10 * page)]
    for bad in [(-1, 4, page), (0, len(data) + 1, page), (8, 4, page), (0, 4, 0)]:
        with pytest.raises(ValueError):
            native.zero_pages(data, *bad)
