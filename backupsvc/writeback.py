"""Start the kernel's writeback of a file early, so that a final fsync is short.

Without it, a backup's objects or a restored volume sit dirty in the page
cache until the closing ``fsync``, which then waits for all of them while no
other work overlaps. ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues the
pages for writing; the closing ``fsync`` still provides the durability
guarantee.

The kicks run in one background thread: queuing pages for writing is where
the file system allocates their blocks and builds the I/O, which costs CPU
time and can wait for the device; done by the writing thread, that cost
would stall the pipeline feeding it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from backupsvc import libc

SYNC_FILE_RANGE_WRITE = 2
EVERY = 8 * 1024 * 1024      # bytes written between two kicks


def _sync_file_range() -> Any:
    return libc.function("sync_file_range",
                         (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint))


@functools.cache
def _kicker() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="writeback")


def start(fd: int, offset: int = 0, length: int = 0) -> None:
    """Queue ``length`` bytes at ``offset`` (0: to the end) for writing; best effort."""
    func = _sync_file_range()
    if func is not None:
        func(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class Tracker:
    """Counts bytes written to one file and kicks its writeback every :data:`EVERY` bytes.

    The kicks run in the background thread on a duplicate of ``fd``, so they
    never touch a descriptor the caller has closed (or reused). Call
    :meth:`settle` before the closing ``fsync`` (so it does not race a kick)
    and :meth:`close` when the file is done with.
    """

    def __init__(self, fd: int) -> None:
        self.pending = 0
        self._fd = fd
        self._dup: int | None = None
        self._lock = threading.Lock()
        self._kick: Future[None] | None = None     # queued or running

    def wrote(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending < EVERY or _sync_file_range() is None:
            return
        self.pending = 0
        with self._lock:
            if self._kick is not None and not self._kick.done():
                return          # the kick in flight will also see these pages
            if self._dup is None:
                self._dup = os.dup(self._fd)
            self._kick = _kicker().submit(start, self._dup)

    def settle(self) -> None:
        """Wait for the kick in flight, if any."""
        with self._lock:
            kick = self._kick
        if kick is not None:
            kick.result()

    def close(self) -> None:
        self.settle()
        with self._lock:
            if self._dup is not None:
                os.close(self._dup)
                self._dup = None
