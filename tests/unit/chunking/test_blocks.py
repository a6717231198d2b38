"""Block hashing: the C helper and hashlib give the same digests for every buffer kind."""

import hashlib
import mmap
import os
import random

import pytest

from backupsvc.chunking import blocks
from tests.unit.chunking import KiB

native = blocks._native


def image(rng: random.Random) -> bytes:
    """Random, zero and almost-zero blocks, and a short tail."""
    parts = [rng.randbytes(4 * KiB), bytes(4 * KiB), bytes(4 * KiB - 1) + b"\x01",
             b"\x01" + bytes(4 * KiB - 1), bytes(2 * KiB) + b"\x80" + bytes(2 * KiB - 1),
             rng.randbytes(4 * KiB), bytes(1000), rng.randbytes(123)]
    return b"".join(parts)


def expected(data: bytes, start: int, end: int, size: int) -> list[str]:
    return [hashlib.sha256(data[o:min(o + size, end)]).hexdigest()
            for o in range(start, end, size)]


def test_the_c_helper_is_built():
    # The tests install the project; a missing compiler or OpenSSL header
    # would silently leave the engine on hashlib.
    assert blocks.native_hashing()


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "mmap"])
@pytest.mark.parametrize("start,end,size", [(0, None, 4 * KiB), (4 * KiB, None, 4 * KiB),
                                            (100, 20 * KiB + 7, 4 * KiB), (0, None, 1),
                                            (0, 10, 4 * KiB), (5, 5, 4 * KiB),
                                            (0, None, 1 << 20)])
def test_both_hashers_agree_with_hashlib(kind, start, end, size, monkeypatch):
    data = image(random.Random(3))
    end = len(data) if end is None else end
    if kind == "mmap":
        buf = mmap.mmap(-1, len(data))
        buf.write(data)
    else:
        buf = {"bytes": data, "bytearray": bytearray(data),
               "memoryview": memoryview(data)}[kind]
    want = expected(data, start, end, size)
    assert blocks.hash_range(buf, start, end, size) == want
    monkeypatch.setattr(blocks, "_native", None)
    assert blocks.hash_range(buf, start, end, size) == want


def test_the_c_helper_marks_exactly_the_zero_blocks():
    data = image(random.Random(4))
    got = native.sha256_blocks(data, 0, len(data), 4 * KiB)
    zero = [not any(data[o:o + 4 * KiB]) for o in range(0, len(data), 4 * KiB)]
    assert [sha is None for sha in got] == zero
    assert zero.count(True) == 1         # the one block of 4096 zeros


@pytest.mark.parametrize("start,end,size", [(-1, 10, 4), (0, 11, 4), (6, 5, 4), (0, 10, 0),
                                            (0, 10, -4)])
def test_the_c_helper_refuses_ranges_outside_the_buffer(start, end, size):
    with pytest.raises(ValueError, match="do not fit a 10-byte buffer"):
        native.sha256_blocks(bytes(10), start, end, size)


def test_the_c_helper_refuses_what_is_not_a_buffer():
    with pytest.raises(TypeError):
        native.sha256_blocks("text", 0, 4, 4)


def test_large_buffers_hash_right():
    data = os.urandom(3 * (1 << 20) + 5) + bytes(1 << 20)
    assert blocks.hash_range(data, 0, len(data), 32 * KiB) == \
        expected(data, 0, len(data), 32 * KiB)
