"""Bulk byte work with the interpreter lock released: the optional C module.

``_backupsvc_blocks`` (native/blocks.c, built by the install when a compiler
and OpenSSL's headers are there) copies, zeroes and reads bytes with the lock
released once per call. Python holds the lock for the same work on buffers
other than ``bytes``, and while it does, the engine's threads that hash and
compress wait. Without the module, the Python forms below give the same
results, holding the lock.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

try:
    import _backupsvc_blocks as module  # the C module; None when not built
except ImportError:
    module = None       # (chunking.blocks hashes with the same module)

Buffer = Any    # bytes, bytearray, memoryview, mmap: anything with the buffer protocol


def concat(parts: Sequence[Buffer]) -> bytes:
    """``b"".join(parts)``."""
    return module.concat(parts) if module is not None else b"".join(parts)


def copy_into(destination: Buffer, offset: int, source: Buffer) -> None:
    """``destination[offset:offset + len(source)] = source`` (it must fit)."""
    if module is not None:
        module.copy_into(destination, offset, source)
        return
    view = memoryview(source).cast("B")
    if offset < 0 or offset + len(view) > len(destination):
        raise ValueError("%d bytes at %d do not fit a %d-byte buffer"
                         % (len(view), offset, len(destination)))
    destination[offset:offset + len(view)] = view


def zero_pages(data: Buffer, start: int, end: int, page: int) -> list[tuple[int, int]]:
    """The merged ``(start, end)`` runs of the pages of ``data[start:end]`` (``page`` bytes
    each from ``start``, the last may be short) that are all zeros."""
    if module is not None:
        return module.zero_pages(data, start, end, page)
    view = memoryview(data).cast("B")
    if page <= 0 or not 0 <= start <= end <= len(view):
        raise ValueError("pages of %d bytes from %d to %d do not fit a %d-byte buffer"
                         % (page, start, end, len(view)))
    runs: list[tuple[int, int]] = []
    zeros = bytes(page)
    for off in range(start, end, page):
        length = min(page, end - off)
        if view[off] or view[off:off + length] != zeros[:length]:
            continue
        if runs and runs[-1][1] == off:
            runs[-1] = (runs[-1][0], off + length)
        else:
            runs.append((off, off + length))
    return runs


def read_ranges(fd: int, offset: int, length: int,
                ranges: list[tuple[int, int]]) -> bytearray:
    """``length`` bytes of the file from ``offset``: the (start, end) ``ranges`` (ordered,
    relative to ``offset``) read with pread, zeros elsewhere. EOFError(file offset)
    if the file ends inside a range."""
    if module is not None:
        return module.read_ranges(fd, offset, length, ranges)
    previous = 0
    for start, end in ranges:
        if not previous <= start <= end <= length:
            raise ValueError("ranges must be ordered, disjoint and within %d bytes" % length)
        previous = end
    buf = bytearray(length)
    view = memoryview(buf)
    for start, end in ranges:
        at = start
        while at < end:
            n = os.preadv(fd, [view[at:end]], offset + at)
            if not n:
                raise EOFError(offset + at)
            at += n
    return buf
