"""SHA-256 helpers for sha blocks."""

from __future__ import annotations

import hashlib

_zero_sha_cache: dict[int, str] = {}


def zero_sha(length: int) -> str:
    """Hex sha256 of ``length`` zero bytes: a block with this sha is all zeros."""
    sha = _zero_sha_cache.get(length)
    if sha is None:
        sha = _zero_sha_cache[length] = hashlib.sha256(bytes(length)).hexdigest()
    return sha


def hash_blocks(view: memoryview, block_size: int) -> list[str]:
    """Hex sha256 of each ``block_size`` block of ``view`` (the last may be short)."""
    return [hashlib.sha256(view[o:o + block_size]).hexdigest()
            for o in range(0, len(view), block_size)]
