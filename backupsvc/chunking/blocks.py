"""SHA-256 helpers for sha blocks.

A block whose bytes are all zeros needs no hashing: its sha is the sha of that
many zero bytes, so checking for zeros (a ``memcmp``, many times faster than
SHA-256, and stopping at the first non-zero byte) gives exactly the same answer.

:func:`digest_range` hashes with the C helper ``_backupsvc_blocks``
(native/blocks.c, built by the install when a compiler is there) when it can:
it releases the interpreter lock once per range instead of once per block,
and on x86-64 CPUs with the SHA extensions it hashes two blocks at once
(native/sha256x2.c: 1.4-1.8 times the blocks per second of one at a time).
Digests are kept as 32-byte binary strings (see :mod:`backupsvc.chunking.shalist`).
"""

from __future__ import annotations

import hashlib
import mmap

from backupsvc import native

_native = native.module     # None when not built: hashlib, block by block

_zero_sha_cache: dict[int, str] = {}
_zero_bytes_cache: dict[int, bytes] = {}
_zero_digest_cache: dict[int, bytes] = {}

DIGEST_SIZE = 32

Buffer = bytes | bytearray | memoryview | mmap.mmap


def zero_sha(length: int) -> str:
    """Hex sha256 of ``length`` zero bytes: a block with this sha is all zeros."""
    sha = _zero_sha_cache.get(length)
    if sha is None:
        sha = _zero_sha_cache[length] = hashlib.sha256(bytes(length)).hexdigest()
    return sha


def zero_bytes(length: int) -> bytes:
    """``length`` zero bytes, shared (used for block-sized comparisons)."""
    zeros = _zero_bytes_cache.get(length)
    if zeros is None:
        zeros = _zero_bytes_cache[length] = bytes(length)
    return zeros


def is_zero(buf: Buffer, start: int, length: int) -> bool:
    """Whether ``buf[start:start + length]`` is all zeros (no copy but of a memoryview)."""
    if isinstance(buf, mmap.mmap):
        # The needle is as long as the window: one candidate, compared at memcmp speed.
        return buf.find(zero_bytes(length), start, start + length) == start
    if isinstance(buf, memoryview):     # (a generic comparison: much slower)
        return buf[start:start + length] == zero_bytes(length)
    return buf.startswith(zero_bytes(length), start)


def native_hashing() -> bool:
    """Whether :func:`digest_range` uses the C helper (for logs and the benchmark)."""
    return _native is not None


def native_two_streams() -> bool:
    """Whether the C helper hashes two blocks at once (the CPU's SHA extensions)."""
    return _native is not None and _native.two_stream_hashing()


def zero_digest(length: int) -> bytes:
    """The 32-byte sha256 of ``length`` zero bytes."""
    digest = _zero_digest_cache.get(length)
    if digest is None:
        digest = _zero_digest_cache[length] = bytes.fromhex(zero_sha(length))
    return digest


def digest_range(buf: Buffer, start: int, end: int, block_size: int) -> bytes:
    """The 32-byte sha256 of each ``block_size`` block of ``buf[start:end]`` (the last
    may be short), concatenated."""
    if _native is not None:
        return _native.sha256_digests(buf, start, end, block_size)
    return _digest_range_hashlib(buf, start, end, block_size)


def differing_blocks(a: bytes, b: bytes) -> list[int]:
    """Indices of the digests (32-byte records) where ``a`` and ``b`` differ, those
    beyond the shorter one included."""
    if _native is not None:
        return _native.differing_blocks(a, b)
    if a == b:
        return []
    common = min(len(a), len(b)) // DIGEST_SIZE
    out = [i for i in range(common)
           if a[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] != b[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE]]
    return out + list(range(common, max(len(a), len(b)) // DIGEST_SIZE))


def _digest_range_hashlib(buf: Buffer, start: int, end: int, block_size: int) -> bytes:
    view = memoryview(buf)
    out = bytearray()
    for o in range(start, end, block_size):
        n = min(block_size, end - o)
        if is_zero(buf, o, n):
            out += zero_digest(n)
        else:
            out += hashlib.sha256(view[o:o + n]).digest()
    return bytes(out)
