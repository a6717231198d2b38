"""SHA-256 helpers for sha blocks.

A block whose bytes are all zeros needs no hashing: its sha is the sha of that
many zero bytes, so checking for zeros (a ``memcmp``, many times faster than
SHA-256, and stopping at the first non-zero byte) gives exactly the same answer.

:func:`hash_range` hashes with the C helper ``_backupsvc_blocks``
(native/blocks.c, built by the install when a compiler is there) when it can:
it releases the interpreter lock once per range instead of once per block.
"""

from __future__ import annotations

import hashlib
import mmap

try:
    import _backupsvc_blocks as _native
except ImportError:         # not built: hashlib, block by block
    _native = None

_zero_sha_cache: dict[int, str] = {}
_zero_bytes_cache: dict[int, bytes] = {}

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
    """Whether :func:`hash_range` uses the C helper (for logs and the benchmark)."""
    return _native is not None


def hash_range(buf: Buffer, start: int, end: int, block_size: int) -> list[str]:
    """Hex sha256 of each ``block_size`` block of ``buf[start:end]`` (the last may be short)."""
    if _native is not None:
        shas = _native.sha256_blocks(buf, start, end, block_size)
        if None in shas:                    # blocks of zeros
            for i, sha in enumerate(shas):
                if sha is None:
                    shas[i] = zero_sha(min(block_size, end - start - i * block_size))
        return shas
    return _hash_range_hashlib(buf, start, end, block_size)


def _hash_range_hashlib(buf: Buffer, start: int, end: int, block_size: int) -> list[str]:
    view = memoryview(buf)
    shas = []
    for o in range(start, end, block_size):
        n = min(block_size, end - o)
        if is_zero(buf, o, n):
            shas.append(zero_sha(n))
        else:
            shas.append(hashlib.sha256(view[o:o + n]).hexdigest())
    return shas

