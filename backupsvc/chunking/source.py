"""Reading the volume in pieces, without reading the holes of sparse files.

When the backup reader is a regular file, its data extents are found with
``lseek(SEEK_DATA / SEEK_HOLE)``. A sha block lying entirely in a hole is
zeros: its sha is the sha of that many zero bytes and it is neither read nor
hashed. Blocks holding any data are read (with ``pread``, in the worker that
hashes them) exactly as a plain sequential read would see them, so the
backup is identical to one made from a reader returning the same bytes.

Block devices, pipes and other readers are read in order with ``readinto``
(or ``read``) on the calling thread.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from backupsvc import native
from backupsvc.chunking.blocks import digest_range, zero_digest
from backupsvc.chunking.params import MiB
from backupsvc.chunking.shalist import ShaList

# A piece that lies wholly in a hole (and needs no bytes) may cover up to this
# much of the volume; cancellation and progress are checked between pieces.
HOLE_SPAN = 1024 * MiB

Range = tuple[int, int]


@dataclass
class Piece:
    """``length`` bytes of the volume at ``offset`` (a multiple of the sha block size).

    ``holes`` are the block-aligned ranges (relative to ``offset``) that lie in
    holes: they are zeros in ``buf`` and are not read. ``reads`` are the ranges
    that :meth:`PieceSource.load` reads into ``buf``, which it allocates in the
    loading thread (allocating and zeroing 4 MiB on the main thread would hold
    the GIL the whole pipeline needs); a piece that is all data gets plain
    bytes, which need no zeroing. ``buf`` stays None for a piece wholly in a
    hole whose bytes nobody needs.

    When hole bytes are not needed (zero blocks are not stored), ``buf`` holds
    only the piece's bytes from ``buf_start`` (its first read) to the end of its
    last read: the holes before and after are neither zeroed nor kept.
    """

    offset: int
    length: int
    buf: bytes | bytearray | None
    holes: list[Range] = field(default_factory=list)
    reads: list[Range] = field(default_factory=list)
    buf_start: int = 0

    def data(self, start: int, end: int) -> memoryview:
        """The piece's bytes ``[start, end)`` (relative to ``offset``), which ``buf`` holds."""
        assert self.buf is not None
        first, last = start - self.buf_start, end - self.buf_start
        if not 0 <= first <= last <= len(self.buf):
            raise ValueError("bytes %d-%d of the piece at %d are not in its buffer (%d-%d)"
                             % (start, end, self.offset, self.buf_start,
                                self.buf_start + len(self.buf)))
        return memoryview(self.buf)[first:last]

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def hole_bytes(self) -> int:
        return sum(b - a for a, b in self.holes)


class DataMap:
    """Where a regular file holds data, asked lazily with SEEK_DATA / SEEK_HOLE.

    Offsets are relative to ``base`` (where the volume starts in the file);
    queries must come in increasing order, as the backup reads the volume.
    """

    def __init__(self, fd: int, base: int, size: int) -> None:
        self.fd, self.base, self.size = fd, base, size
        # The first data extent ending after the last query: no data lies
        # between that query and its start.
        self._extent: Range | None = None

    def _find(self, pos: int) -> Range:
        try:
            start = os.lseek(self.fd, self.base + pos, os.SEEK_DATA) - self.base
        except OSError as exc:
            if exc.errno != errno.ENXIO:        # ENXIO: only a hole after pos
                raise
            return self.size, self.size
        if start >= self.size:
            return self.size, self.size
        end = os.lseek(self.fd, self.base + start, os.SEEK_HOLE) - self.base
        return start, min(end, self.size)

    def _extent_after(self, pos: int) -> Range:
        if self._extent is None or self._extent[1] <= pos:
            self._extent = self._find(pos)
        return self._extent

    def data(self, start: int, end: int) -> list[Range]:
        """The data ranges within ``[start, end)``, in order."""
        out = []
        pos = start
        while pos < end:
            ds, de = self._extent_after(pos)
            if ds >= end:
                break
            out.append((max(ds, pos), min(de, end)))
            pos = de
        return out

    def next_data(self, pos: int) -> int:
        """The first data offset at or after ``pos`` (``size`` if none)."""
        return max(pos, self._extent_after(pos)[0])


def _regular_file(reader: Any, size: int) -> tuple[int, int] | None:
    """(fd, offset of the volume in it) when ``reader`` is a regular file holding it all."""
    try:
        fd = reader.fileno()
        base = reader.tell()
        st = os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size < base + size:
        return None             # short files fail as a sequential read would
    return fd, base


def _holes_supported(fd: int, base: int) -> bool:
    if not hasattr(os, "SEEK_DATA"):
        return False
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        os.lseek(fd, base, os.SEEK_DATA)
    except OSError as exc:
        return exc.errno == errno.ENXIO
    finally:
        os.lseek(fd, pos, os.SEEK_SET)
    return True


def _align(ranges: list[Range], bs: int, length: int) -> list[Range]:
    """Grow ranges to whole sha blocks (the last block may be short) and merge them."""
    out: list[Range] = []
    for a, b in ranges:
        a, b = a // bs * bs, min(-(-b // bs) * bs, length)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _gaps(ranges: list[Range], length: int) -> list[Range]:
    """The parts of ``[0, length)`` that ``ranges`` (sorted, disjoint) leave out."""
    out, pos = [], 0
    for a, b in ranges:
        if a > pos:
            out.append((pos, a))
        pos = b
    if pos < length:
        out.append((pos, length))
    return out


class PieceSource:
    """Cuts the volume into pieces; :meth:`load` (thread-safe) reads and hashes one."""

    def __init__(self, reader: Any, size: int, block_size: int, piece_size: int,
                 need_hole_bytes: bool) -> None:
        self.reader, self.size = reader, size
        self.bs, self.piece_size = block_size, piece_size
        # Whether blocks in holes may be stored (zero blocks are not skipped): then
        # a piece in a hole gets real zero bytes and is no larger than piece_size.
        self.need_hole_bytes = need_hole_bytes
        self.fd: int | None = None
        self.base = 0
        self.map: DataMap | None = None
        self._zeros: bytes | None = None
        found = _regular_file(reader, size)
        if found is not None:
            self.fd, self.base = found
            if _holes_supported(*found):
                self.map = DataMap(self.fd, self.base, size)

    def next(self, offset: int) -> Piece:
        """The piece starting at ``offset``; called in volume order."""
        end = min(offset + self.piece_size, self.size)
        length = end - offset
        if self.fd is None:
            return Piece(offset, length, self._read_stream(offset, length))
        if self.map is None:
            return Piece(offset, length, None, reads=[(0, length)])
        data = _align([(a - offset, b - offset) for a, b in self.map.data(offset, end)],
                      self.bs, length)
        if not data:
            if self.need_hole_bytes:
                return Piece(offset, length, self._zero_buffer(length), holes=[(0, length)])
            # Nothing to read or store: run on to the piece holding the next data.
            # Pieces stay on the grid of piece_size multiples, as when reading a
            # stream, so the backup's objects (and their frames) are the same.
            grid = self.piece_size
            stop = min(self.map.next_data(end), offset + HOLE_SPAN) // grid * grid
            length = max(length, min(self.size, stop) - offset)
            return Piece(offset, length, None, holes=[(0, length)])
        return Piece(offset, length, None, holes=_gaps(data, length), reads=data)

    def _zero_buffer(self, length: int) -> bytes:
        if length != self.piece_size:
            return bytes(length)
        if self._zeros is None:
            self._zeros = bytes(length)
        return self._zeros

    def _read_stream(self, offset: int, length: int) -> bytearray:
        buf = bytearray(length)
        view = memoryview(buf)
        got = 0
        readinto = getattr(self.reader, "readinto", None)
        while got < length:
            if readinto is not None:
                n = readinto(view[got:])
            else:
                data = self.reader.read(length - got)
                n = len(data)
                view[got:got + n] = data
            if not n:
                raise EOFError("volume ended at offset %d; expected %d bytes"
                               % (offset + got, self.size))
            got += n
        return buf

    def load(self, piece: Piece) -> ShaList:
        """Read what ``piece`` still needs and return the sha of each of its blocks."""
        if piece.reads:
            assert self.fd is not None
            if piece.reads == [(0, piece.length)]:
                # All data: read into fresh bytes, which (unlike a bytearray) are
                # not zeroed first. A short read takes the careful path below.
                data = os.pread(self.fd, piece.length, self.base + piece.offset)
                if len(data) == piece.length:
                    piece.buf = data
            if piece.buf is None:
                piece.buf = self._read_holed(piece)
        shas = ShaList(self.bs)
        pos = 0
        for a, b in [*piece.holes, (piece.length, piece.length)]:
            if a > pos:
                assert piece.buf is not None
                shas.append(digest_range(piece.buf, pos - piece.buf_start,
                                         a - piece.buf_start, self.bs))
            if b > a:
                # Blocks in a hole are zeros (only the volume's last may be short).
                full, tail = divmod(b - a, self.bs)
                shas.append_zeros(full)
                if tail:
                    shas.append(zero_digest(tail))
            pos = b
        return shas

    def _read_holed(self, piece: Piece) -> bytearray:
        """The piece's bytes: its reads read, zeros where its holes are (zeroed and read
        with the interpreter lock released: bytearray(n) zeroes 4 MiB holding it).

        Unless hole bytes are needed, only the span from the first read to the
        end of the last is held (``piece.buf_start``): a data extent that
        starts or ends inside a piece leaves the rest of it unread and unzeroed.
        """
        assert self.fd is not None
        start, end = 0, piece.length
        if not self.need_hole_bytes:
            start, end = piece.reads[0][0], piece.reads[-1][1]
        reads = [(a - start, b - start) for a, b in piece.reads]
        try:
            buf = native.read_ranges(self.fd, self.base + piece.offset + start, end - start,
                                     reads)
            piece.buf_start = start
            return buf
        except EOFError as exc:
            raise EOFError("volume ended at offset %d; expected %d bytes"
                           % (exc.args[0] - self.base, self.size)) from None

    def finish(self) -> None:
        """Leave a regular file's position where a sequential read would have."""
        if self.fd is not None:
            self.reader.seek(self.base + self.size)
