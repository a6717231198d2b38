"""Writing and reading files with O_DIRECT through page-aligned staging buffers.

Restores write whole volumes and backups write whole objects that nobody
reads back soon. Written through the page cache, every byte is first copied
into page-cache pages the kernel must allocate, and those pages then push out
what other processes had cached. On virtual machines whose memory the host
backs lazily (and takes back when the guest frees it) allocating those pages
is the expensive part: the first touch of a fresh page costs several times
more than writing it to disk (measured here: 3 s per GiB for a fresh file
against 0.5 s with O_DIRECT).

So a :class:`DirectWriter` writes the page-aligned part of each write with
``O_DIRECT``, on a second descriptor of the same file, copied into one of a
few reused page-aligned buffers. The unaligned head and tail of a write (at
most a page each) go through the page cache on the caller's descriptor, whose
writeback is started early (:mod:`backupsvc.writeback`). Where the file system
refuses ``O_DIRECT`` everything goes through the page cache. Durability is
unchanged: the caller still ``fsync``\\ s its descriptor, which flushes the
file's metadata and the device's cache whichever descriptor wrote the data.

Callers must not write the same page twice through different paths; restores
write each volume byte at most once and objects are written once, in order.

Reading is the same story the other way round: a restore reads each object
once, usually long after it was written, and reading it through the page
cache makes the kernel allocate (first-touch) a page for every byte, which
costs more CPU than decoding it. A :class:`DirectReader` streams a file of at
least :data:`DIRECT_MIN` bytes with ``O_DIRECT`` into reused staging buffers,
the next buffer read by an I/O thread while the caller consumes the current
one, unless the page cache already holds most of the file (asked with
mincore(), which reads nothing): copying from there is cheaper than the disk.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from backupsvc import libc, native, writeback

ALIGN = 4096                # offsets, lengths and buffers of direct writes (any sector size)
STAGE = 4 * 1024 * 1024     # a staging buffer; a direct write is at most this long
DIRECT_MIN = 256 * 1024     # a streamed file smaller than this goes through the page cache
IN_FLIGHT = 4               # direct writes one writer keeps queued or running...
VOLUME_IN_FLIGHT = 8        # ...or, writing at given offsets (a restored volume), this many
IO_THREADS = 4              # threads issuing direct writes, for every writer of the process
READ_THREADS = 4            # threads issuing direct reads, for every reader of the process
READ_AHEAD = 1              # buffers one reader has read (or is reading) ahead of the caller
_POOL_KEEP = 12             # idle staging buffers kept for reuse
_pool: list[mmap.mmap] = []
_pool_lock = threading.Lock()


def _take_stage() -> mmap.mmap:
    # Reused, because touching fresh memory is the very cost this module avoids.
    with _pool_lock:
        if _pool:
            return _pool.pop()
    return mmap.mmap(-1, STAGE)


def _give_stage(stage: mmap.mmap) -> None:
    with _pool_lock:
        if len(_pool) < _POOL_KEEP:
            _pool.append(stage)
            return
    stage.close()


@functools.cache
def _io_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(IO_THREADS, thread_name_prefix="direct-io")


@functools.cache
def _read_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(READ_THREADS, thread_name_prefix="direct-read")


def _open_direct(fd: int, mode: int = os.O_WRONLY) -> int | None:
    """A second, O_DIRECT descriptor of the file behind ``fd``; None if refused."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open("/proc/self/fd/%d" % fd, mode | flag | os.O_CLOEXEC)
    except OSError:
        return None         # no /proc, or a file system without O_DIRECT


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "short write at offset %d" % offset)
        view, offset = view[n:], offset + n


class DirectWriter:
    """Writes to one open file: aligned parts with O_DIRECT, the rest buffered.

    :meth:`pwrite` writes at given offsets; :meth:`append` streams a file
    from offset 0 (use one or the other on a writer). Direct writes run in
    background threads, :data:`IN_FLIGHT` (appending) or :data:`VOLUME_IN_FLIGHT`
    (positional) at a time per writer, so the device
    works while the caller prepares the next data; a failed one is raised by
    a later call. Call :meth:`settle` before the caller's closing ``fsync``
    (it waits for every write and raises the first failure) and :meth:`close`
    when done (it does not close ``fd``).
    """

    def __init__(self, fd: int, direct: bool = True) -> None:
        self.fd = fd
        self._direct_fd = _open_direct(fd) if direct else None
        self._direct = self._direct_fd         # None once direct writes are given up
        self._writeback = writeback.Tracker(fd)
        self._lock = threading.Lock()           # the counters, from the I/O threads
        self._free: list[mmap.mmap] = []
        self._in_flight: deque[Future[mmap.mmap]] = deque()
        self._stage: mmap.mmap | None = None    # being filled...
        self._fill = 0                          # ...with this many bytes...
        self._base = 0                          # ...which belong at this file offset
        self._appending = False                 # whether append() fills the stage
        self.direct_bytes = 0
        self.buffered_bytes = 0

    @property
    def is_direct(self) -> bool:
        return self._direct is not None

    # -- positional --------------------------------------------------------------
    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``."""
        view = memoryview(data).cast("B")
        if self._direct is not None:
            start = -(-offset // ALIGN) * ALIGN
            end = (offset + len(view)) // ALIGN * ALIGN
            if end > start:
                self._buffered(view[:start - offset], offset)
                at = start
                while at < end:
                    at += self._stage_at(view[at - offset:end - offset], at)
                view, offset = view[end - offset:], end
        self._buffered(view, offset)

    def _stage_at(self, view: memoryview, offset: int) -> int:
        """Stage the start of ``view`` (aligned) for ``offset``; return how much was taken.

        Writes that continue the staged one join it, so a run of small
        contiguous writes leaves as one large direct write.
        """
        if self._stage is not None and self._base + self._fill != offset:
            self._submit_staged()
        if self._stage is None:
            self._stage, self._fill, self._base = self._next_stage(), 0, offset
        n = min(len(view), STAGE - self._fill)
        native.copy_into(self._stage, self._fill, view[:n])
        self._fill += n
        if self._fill == STAGE:
            self._submit_staged()
        return n

    def _submit_staged(self) -> None:
        assert self._stage is not None
        self._submit(self._stage, self._fill, self._base)
        self._stage, self._fill, self._base = None, 0, self._base + self._fill

    # -- streaming ---------------------------------------------------------------
    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` after what was appended before."""
        self._appending = True
        view = memoryview(data).cast("B")
        if self._direct is None and self._stage is None:    # (once staging, stay staging)
            self._buffered(view, self._base)
            self._base += len(view)
            return
        while view:
            if self._stage is None:
                self._stage = self._next_stage()
            n = min(len(view), STAGE - self._fill)
            native.copy_into(self._stage, self._fill, view[:n])
            self._fill += n
            view = view[n:]
            if self._fill == STAGE:
                self._submit(self._stage, STAGE, self._base)
                self._stage, self._fill, self._base = None, 0, self._base + STAGE

    def finish_append(self) -> None:
        """Write what :meth:`append` still holds: its aligned part direct, the tail buffered.

        A file smaller than :data:`DIRECT_MIN` is written through the page cache.
        """
        stage, fill = self._stage, self._fill
        if stage is None:
            return
        self._stage, self._fill = None, 0
        # A small file goes through the page cache whole: for a few pages,
        # waiting for a direct write before the fsync costs more.
        small = not self._base and fill < DIRECT_MIN
        aligned = 0 if small else fill // ALIGN * ALIGN
        if fill > aligned:
            with memoryview(stage) as whole:
                self._buffered(whole[aligned:fill], self._base + aligned)
        if aligned:
            self._submit(stage, aligned, self._base)
        else:
            self._free.append(stage)
        self._base += fill

    # -- the two paths -------------------------------------------------------------
    def _next_stage(self) -> mmap.mmap:
        # A restore's writes are what it waits for (the disk takes its reads and
        # writes at once): a deeper queue keeps the device busy (chain restore of
        # 1 GiB 1.05 -> 0.97 s). An object being streamed is one of several
        # written at once, each of which would hold the stages.
        limit = IN_FLIGHT if self._appending else VOLUME_IN_FLIGHT
        while len(self._in_flight) >= limit:
            self._reap()
        return self._free.pop() if self._free else _take_stage()

    def _submit(self, stage: mmap.mmap, length: int, offset: int) -> None:
        self._in_flight.append(_io_threads().submit(self._write_direct, stage, length, offset))

    def _write_direct(self, stage: mmap.mmap, length: int, offset: int) -> mmap.mmap:
        """I/O thread: write ``stage[:length]`` at ``offset``; gives the stage back."""
        direct = self._direct
        with memoryview(stage) as whole:
            view = whole[:length]
            if direct is not None:
                try:
                    _pwrite_all(direct, view, offset)
                    with self._lock:
                        self.direct_bytes += length
                    return stage
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # The device wants a larger alignment: use the page cache
                    # (the final fsync covers these writes too). The descriptor
                    # stays open until close(): other writes may be using it.
                    self._direct = None
            _pwrite_all(self.fd, view, offset)
            with self._lock:
                self.buffered_bytes += length
        return stage

    def _reap(self) -> None:
        """Wait for the oldest direct write; raise its failure."""
        self._free.append(self._in_flight.popleft().result())

    def _buffered(self, view: memoryview, offset: int) -> None:
        if view:
            _pwrite_all(self.fd, view, offset)
            with self._lock:
                self.buffered_bytes += len(view)
            self._writeback.wrote(len(view))

    # -- end -----------------------------------------------------------------------
    def settle(self) -> None:
        """Write what is staged, wait for every write (raising the first failure).

        Call it before ``fsync``. The staging buffers go back to the pool now,
        not at :meth:`close`: an fsync can take a while, and other writers
        may use them meanwhile.
        """
        if self._appending:
            self.finish_append()
        elif self._stage is not None:
            self._submit_staged()
        while self._in_flight:
            self._reap()
        self._writeback.settle()
        for stage in self._free:
            _give_stage(stage)
        self._free.clear()

    def close(self) -> None:
        """Wait for the writes in flight, release the second descriptor and the buffers.

        ``fd`` stays open. Failures are not raised here: :meth:`settle` raises them.
        """
        while self._in_flight:
            try:
                self._reap()
            except Exception:
                pass
        self._writeback.close()
        direct, self._direct_fd, self._direct = self._direct_fd, None, None
        if direct is not None:
            os.close(direct)
        if self._stage is not None:
            self._free.append(self._stage)
            self._stage = None
        for stage in self._free:
            _give_stage(stage)
        self._free.clear()


_RESIDENT = bytes(b & 1 for b in range(256))    # mincore(): the low bit of each byte


def cached_fraction(fd: int, size: int) -> float:
    """How much of the file's first ``size`` bytes the page cache holds, 0.0 to 1.0.

    Asked with mincore() on a mapping that is never touched, because it must
    not change the answer: a read with ``RWF_NOWAIT`` that misses still starts
    readahead, and the next look at the same file would find pages cached that
    nobody asked for (a restore that followed another then read every object
    through the page cache). 0.0 where it cannot be asked.
    """
    map_file = libc.function("mmap", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                      ctypes.c_int, ctypes.c_int, ctypes.c_long),
                             ctypes.c_void_p)
    mincore = libc.function("mincore", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p))
    unmap = libc.function("munmap", (ctypes.c_void_p, ctypes.c_size_t))
    if None in (map_file, mincore, unmap) or size <= 0:
        return 0.0
    addr = map_file(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return 0.0
    try:
        pages = -(-size // mmap.PAGESIZE)
        vec = ctypes.create_string_buffer(pages)
        if mincore(addr, size, vec) != 0:
            return 0.0
        return vec.raw[:pages].translate(_RESIDENT).count(1) / pages
    finally:
        unmap(addr, size)


class DirectReader:
    """Reads one file from its start to its end with O_DIRECT (:meth:`read`, like a file).

    Build it with :meth:`open`, which says None where direct reads do not
    apply (a small file, a file system that refuses them). The caller's
    descriptor stays open and is used if the device later refuses a direct
    read (EINVAL: an alignment larger than a page). Call :meth:`close` when
    done (it does not close the caller's descriptor).
    """

    def __init__(self, fd: int, direct_fd: int, size: int) -> None:
        self.fd = fd
        self._direct: int | None = direct_fd
        self._direct_fd = direct_fd
        self._size = size
        self._ahead: deque[Future[tuple[mmap.mmap, int]]] = deque()
        self._next = 0                  # file offset of the next buffer to request
        self._stage: mmap.mmap | None = None    # being consumed...
        self._at = 0                            # ...from here...
        self._end = 0                           # ...up to here
        self._eof = False
        self._lock = threading.Lock()   # the counters, from the read threads
        self.direct_bytes = 0           # read with O_DIRECT
        self.buffered_bytes = 0         # read through the page cache (O_DIRECT refused)
        for _ in range(READ_AHEAD + 1):
            self._request()

    @classmethod
    def open(cls, fd: int) -> DirectReader | None:
        """A reader for ``fd`` (at offset 0), or None: read it through the page cache."""
        size = os.fstat(fd).st_size
        if size < DIRECT_MIN or cached_fraction(fd, size) >= 0.5:
            return None     # a few pages, or a file read (or written) through the cache lately
        direct = _open_direct(fd, os.O_RDONLY)
        return None if direct is None else cls(fd, direct, size)

    def _request(self) -> None:
        if self._next < self._size:
            self._ahead.append(_read_threads().submit(self._fill, _take_stage(), self._next))
            self._next += STAGE

    def _fill(self, stage: mmap.mmap, offset: int) -> tuple[mmap.mmap, int]:
        """Read thread: fill ``stage`` from ``offset``; returns it and the bytes it holds."""
        try:
            with memoryview(stage) as view:
                got = 0
                while got < STAGE:
                    n = self._read_some(view[got:], offset + got)
                    if n <= 0:
                        break           # the end of the file
                    got += n
                    if n % ALIGN:
                        break           # a direct read ends short only at the end
        except BaseException:
            _give_stage(stage)
            raise
        return stage, got

    def _read_some(self, view: memoryview, offset: int) -> int:
        direct = self._direct
        if direct is not None:
            try:
                n = os.preadv(direct, [view], offset)
                with self._lock:
                    self.direct_bytes += n
                return n
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct = None     # the device wants a larger alignment
        n = os.preadv(self.fd, [view], offset)
        with self._lock:
            self.buffered_bytes += n
        return n

    def _advance(self) -> bool:
        """Move to the next buffer; False at the end of the file."""
        if self._stage is not None:
            _give_stage(self._stage)
            self._stage = None
        if not self._ahead or self._eof:
            return False
        stage, got = self._ahead.popleft().result()
        self._stage, self._at, self._end = stage, 0, got
        if got < STAGE:
            self._eof = True            # whatever else was requested lies past the end
        else:
            self._request()
        return got > 0

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); b"" at the end."""
        parts: list[bytes] = []
        want = size if size >= 0 else None
        while want is None or want > 0:
            if self._at >= self._end and not self._advance():
                break
            assert self._stage is not None
            n = self._end - self._at if want is None else min(want, self._end - self._at)
            parts.append(self._stage[self._at:self._at + n])
            self._at += n
            if want is not None:
                want -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Release the buffers and the second descriptor (the caller's stays open)."""
        while self._ahead:
            try:
                stage, _ = self._ahead.popleft().result()
                _give_stage(stage)
            except Exception:
                pass
        if self._stage is not None:
            _give_stage(self._stage)
            self._stage = None
        direct, self._direct_fd, self._direct = self._direct_fd, None, None
        if direct is not None:
            os.close(direct)

    def __enter__(self) -> DirectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
