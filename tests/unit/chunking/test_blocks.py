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


@pytest.fixture(params=[True, False], ids=["two-streams", "one-stream"])
def streams(request):
    """The C helper hashing two blocks at once (where the CPU can) or one at a time."""
    if request.param and not native.two_stream_hashing():
        pytest.skip("this CPU has no SHA extensions: the C helper hashes one block at a time")
    before = native.two_stream_hashing()
    native.two_stream_hashing(request.param)
    yield request.param
    native.two_stream_hashing(before)


@pytest.mark.parametrize("seed", range(12))
def test_two_stream_hashing_agrees_with_hashlib(streams, seed):
    # Every message length around the 64-byte block and padding edges, odd and
    # even counts of non-zero blocks, zero blocks between them, a short last
    # block: the pairing of blocks must never shift a digest.
    rng = random.Random(seed)
    size = rng.choice([1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4 * KiB, 32 * KiB])
    count = rng.randrange(0, 12)
    parts = [bytes(size) if rng.random() < 0.3 else rng.randbytes(size) for _ in range(count)]
    data = b"".join(parts) + rng.randbytes(rng.randrange(0, size + 1))
    start = rng.randrange(0, 3) * size if count > 3 else 0
    assert native.sha256_digests(data, start, len(data), size) == \
        expected(data, start, len(data), size)


def test_two_stream_hashing_on_a_large_buffer_agrees_with_hashlib(streams):
    data = bytearray(random.Random(5).randbytes(4 << 20))
    data[64 * KiB:96 * KiB] = bytes(32 * KiB)     # one zero block: the pairs shift by one
    assert native.sha256_digests(data, 0, len(data), 32 * KiB) == \
        expected(bytes(data), 0, len(data), 32 * KiB)


def test_two_stream_hashing_is_on_where_the_cpu_has_sha_extensions():
    # The engine's hashing rate depends on it (see native/sha256x2.c); a build
    # or detection slip would silently halve it on such CPUs.
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f
                      if line.startswith("flags")), [])
    if "sha_ni" not in flags:
        pytest.skip("this CPU has no SHA extensions")
    assert native.two_stream_hashing() is True


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
