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


def expected(data: bytes, start: int, end: int, size: int) -> bytes:
    return b"".join(hashlib.sha256(data[o:min(o + size, end)]).digest()
                    for o in range(start, end, size))


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
    assert blocks.digest_range(buf, start, end, size) == want
    monkeypatch.setattr(blocks, "_native", None)
    assert blocks.digest_range(buf, start, end, size) == want


def test_zero_blocks_of_every_length_get_their_own_digest():
    # Zeros are recognised, not hashed: the digest put in their place must
    # still be the one of that many zero bytes (a short tail differs).
    data = bytes(4 * KiB) + b"\x01" + bytes(4 * KiB - 1) + bytes(4 * KiB) + bytes(100)
    assert native.sha256_digests(data, 0, len(data), 4 * KiB) == \
        expected(data, 0, len(data), 4 * KiB)
    assert blocks.zero_digest(100) == hashlib.sha256(bytes(100)).digest()


@pytest.mark.parametrize("seed", range(20))
def test_both_ways_of_finding_differing_digests_agree(seed, monkeypatch):
    rng = random.Random(seed)
    a = [rng.randbytes(32) for _ in range(rng.randrange(0, 50))]
    b = [d if rng.random() < 0.7 else rng.randbytes(32) for d in a]
    b = b[:rng.randrange(0, len(b) + 1)] + [rng.randbytes(32) for _ in range(rng.randrange(3))]
    want = [i for i in range(max(len(a), len(b)))
            if i >= min(len(a), len(b)) or a[i] != b[i]]
    got = blocks.differing_blocks(b"".join(a), b"".join(b))
    monkeypatch.setattr(blocks, "_native", None)
    assert got == want == blocks.differing_blocks(b"".join(a), b"".join(b))


@pytest.mark.parametrize("start,end,size", [(-1, 10, 4), (0, 11, 4), (6, 5, 4), (0, 10, 0),
                                            (0, 10, -4)])
def test_the_c_helper_refuses_ranges_outside_the_buffer(start, end, size):
    with pytest.raises(ValueError, match="do not fit a 10-byte buffer"):
        native.sha256_digests(bytes(10), start, end, size)


def test_the_c_helper_refuses_what_is_not_a_buffer():
    with pytest.raises(TypeError):
        native.sha256_digests("text", 0, 4, 4)
    with pytest.raises(TypeError):
        native.differing_blocks(b"x" * 32, 32)


def test_large_buffers_hash_right():
    data = os.urandom(3 * (1 << 20) + 5) + bytes(1 << 20)
    assert blocks.digest_range(data, 0, len(data), 32 * KiB) == \
        expected(data, 0, len(data), 32 * KiB)
