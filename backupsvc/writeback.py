"""Start the kernel's writeback of a file early, so that a final fsync is short.

Without it, a backup's objects or a restored volume sit dirty in the page
cache until the closing ``fsync``, which then waits for all of them while no
other work overlaps. ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues the
pages for writing and returns; the closing ``fsync`` still provides the
durability guarantee.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

SYNC_FILE_RANGE_WRITE = 2
EVERY = 8 * 1024 * 1024      # bytes written between two kicks


@functools.cache
def _sync_file_range() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return func


def start(fd: int, offset: int = 0, length: int = 0) -> None:
    """Queue ``length`` bytes at ``offset`` (0: to the end) for writing; best effort."""
    func = _sync_file_range()
    if func is not None:
        func(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class Tracker:
    """Counts bytes written to one file and kicks writeback every :data:`EVERY` bytes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = 0

    def wrote(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= EVERY:
            self.pending = 0
            start(self.fd)
