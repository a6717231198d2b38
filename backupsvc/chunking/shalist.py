"""The sha256 of every block of a volume, kept compactly.

A backup keeps its volume's list for the whole job (an incremental also its
parent's), a restore the newest backup's. As a Python list of hex strings a
list takes about 120 bytes per block: 4 GB for a 1 TiB volume. Here a block
takes its 32-byte digest, and a run of :data:`RUN_MIN` or more all-zero
blocks (the holes of a sparse volume) a few bytes for the whole run, so a
1 TiB volume holding 20 GiB of data needs about 20 MiB.

The list is a sequence of *segments*, each either the digests of consecutive
blocks (a ``bytearray`` of at most :data:`SEGMENT_BYTES`), the count of
consecutive full-size zero blocks (an ``int``), or digests moved to disk (a
:class:`_Spilled`). Digests are 32-byte ``bytes``; indexing gives hex
strings, as the on-store format 1.0.0 and Cinder spell them.

Memory stays bounded whatever the volume's size: once a list holds more
than :data:`MEMORY_LIMIT` bytes of digests (a volume with over 32 GiB of
data in 32 KiB blocks), its older segments go to an unlinked temporary file
(in ``TMPDIR``, closed with the list) and are read back with ``pread`` when asked for. The engine
asks in volume order, a piece or an object at a time, so a read brings
thousands of digests.
"""

from __future__ import annotations

import bisect
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from backupsvc.chunking.blocks import DIGEST_SIZE, differing_blocks, zero_digest

RUN_MIN = 64            # zero blocks in a row kept as a run rather than as digests
BATCH = 8192            # digests per piece when the list is written out
SEGMENT_BYTES = 1 << 20             # digests per in-memory segment: 32768 blocks
MEMORY_LIMIT = 32 * SEGMENT_BYTES   # digests a list keeps in memory before spilling


class _Spilled:
    """A segment's digests, at ``offset`` in the list's temporary file."""

    __slots__ = ("offset", "nbytes")

    def __init__(self, offset: int, nbytes: int) -> None:
        self.offset, self.nbytes = offset, nbytes

    def __len__(self) -> int:
        return self.nbytes


Segment = bytearray | int | _Spilled


class ShaList:
    """The digests of blocks ``0 .. len - 1`` of ``block_size`` bytes (the last may be short)."""

    def __init__(self, block_size: int, memory_limit: int | None = None) -> None:
        self.block_size = block_size
        self._zero = zero_digest(block_size)
        self._run_pattern = self._zero * RUN_MIN
        self._starts: list[int] = []            # first block of each segment
        self._segments: list[Segment] = []
        self._count = 0
        self._memory_limit = MEMORY_LIMIT if memory_limit is None else memory_limit
        self._in_memory = 0                     # bytes of digests in bytearrays
        self._spill: IO[bytes] | None = None    # the temporary file, once needed
        self._spill_end = 0
        self._spill_scan = 0                    # segments before this one are not in memory

    @classmethod
    def from_hex(cls, hexes: Iterable[str], block_size: int) -> ShaList:
        """A list from hex digests; ValueError names the first one that is not one."""
        out = cls(block_size)
        batch: list[str] = []
        for h in hexes:
            batch.append(h)
            if len(batch) == BATCH:
                out.append_hex(batch)
                batch = []
        out.append_hex(batch)
        return out

    def append_hex(self, batch: list[str]) -> None:
        """Add blocks by their hex digests; ValueError names the first that is not one."""
        try:
            if batch and set(map(len, batch)) != {2 * DIGEST_SIZE}:
                raise ValueError
            digests = bytes.fromhex("".join(batch))
            if len(digests) != DIGEST_SIZE * len(batch):
                raise ValueError        # fromhex skips white space
        except (TypeError, ValueError):
            bad = next(h for h in batch if not _is_hex_digest(h))
            raise ValueError("%r is not a hex sha256 digest" % (bad,)) from None
        self.append(digests)

    # -- building ---------------------------------------------------------------
    def append(self, digests: bytes | bytearray | memoryview) -> None:
        """Add blocks by their concatenated digests; long runs of zero blocks become runs."""
        digests = bytes(digests)
        if len(digests) % DIGEST_SIZE:
            raise ValueError("%d bytes are not whole %d-byte digests"
                             % (len(digests), DIGEST_SIZE))
        pos, end = 0, len(digests)
        while pos < end:
            at = digests.find(self._run_pattern, pos)
            while at != -1 and at % DIGEST_SIZE:        # digests are aligned
                at = digests.find(self._run_pattern, at + 1)
            if at == -1:
                self._append_digests(digests[pos:])
                return
            if at > pos:
                self._append_digests(digests[pos:at])
            stop = at + len(self._run_pattern)
            while digests.startswith(self._run_pattern, stop):
                stop += len(self._run_pattern)
            while digests.startswith(self._zero, stop):
                stop += DIGEST_SIZE
            self.append_zeros((stop - at) // DIGEST_SIZE)
            pos = stop

    def append_zeros(self, count: int) -> None:
        """Add ``count`` full-size blocks of zeros."""
        if count <= 0:
            return
        if self._segments and isinstance(self._segments[-1], int):
            self._segments[-1] += count
        else:
            self._starts.append(self._count)
            self._segments.append(count)
        self._count += count

    def _append_digests(self, digests: bytes | memoryview) -> None:
        pos = 0
        while pos < len(digests):
            last = self._segments[-1] if self._segments else None
            if not isinstance(last, bytearray) or len(last) == SEGMENT_BYTES:
                last = bytearray()
                self._starts.append(self._count)
                self._segments.append(last)
            take = min(len(digests) - pos, SEGMENT_BYTES - len(last))
            last += digests[pos:pos + take]
            pos += take
            self._count += take // DIGEST_SIZE
            self._in_memory += take
        if self._in_memory > self._memory_limit:
            self._spill_segments()

    def _spill_segments(self) -> None:
        """Move in-memory segments (all but the last, which may grow) to the temporary
        file, oldest first, until the list is back under its limit."""
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="backupsvc-sha-")
        fd = self._spill.fileno()
        for k in range(self._spill_scan, len(self._segments) - 1):
            if self._in_memory <= self._memory_limit:
                return
            self._spill_scan = k + 1
            seg = self._segments[k]
            if not isinstance(seg, bytearray):
                continue
            if os.pwrite(fd, seg, self._spill_end) != len(seg):
                raise OSError(errno.ENOSPC, "no room for the sha list's temporary file")
            self._segments[k] = _Spilled(self._spill_end, len(seg))
            self._spill_end += len(seg)
            self._in_memory -= len(seg)

    def _load(self, seg: _Spilled, start: int = 0, stop: int | None = None) -> bytes:
        """Bytes ``start .. stop`` of a spilled segment."""
        assert self._spill is not None
        stop = seg.nbytes if stop is None else stop
        data = os.pread(self._spill.fileno(), stop - start, seg.offset + start)
        if len(data) != stop - start:
            raise OSError("the sha list's temporary file lost %d bytes at %d"
                          % (stop - start - len(data), seg.offset + start))
        return data

    def _dense(self, seg: bytearray | _Spilled) -> bytes | bytearray:
        return self._load(seg) if isinstance(seg, _Spilled) else seg

    def extend(self, other: ShaList) -> None:
        if other.block_size != self.block_size:
            raise ValueError("sha lists of %d- and %d-byte blocks do not mix"
                             % (self.block_size, other.block_size))
        for seg in other._segments:
            if isinstance(seg, int):
                self.append_zeros(seg)
            else:
                self._append_digests(bytes(other._dense(seg)))

    # -- reading ----------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Roughly the memory the digests take (the list's own overhead aside)."""
        return sum(len(s) if isinstance(s, bytearray) else 8 for s in self._segments)

    @property
    def spilled_bytes(self) -> int:
        """Bytes of digests kept in the temporary file."""
        return sum(len(s) for s in self._segments if isinstance(s, _Spilled))

    def digests(self, start: int = 0, stop: int | None = None) -> bytes:
        """The digests of blocks ``start .. stop - 1``, concatenated (clipped to the list)."""
        stop = self._count if stop is None else min(stop, self._count)
        if start >= stop:
            return b""
        out = bytearray()
        k = bisect.bisect_right(self._starts, start) - 1
        i = start
        while i < stop:
            first, seg = self._starts[k], self._segments[k]
            length = seg if isinstance(seg, int) else len(seg) // DIGEST_SIZE
            take = min(stop, first + length) - i
            if isinstance(seg, int):
                out += self._zero * take
            else:
                at = (i - first) * DIGEST_SIZE
                end = at + take * DIGEST_SIZE
                out += self._load(seg, at, end) if isinstance(seg, _Spilled) else seg[at:end]
            i += take
            k += 1
        return bytes(out)

    def digest(self, index: int) -> bytes:
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("block %d of a %d-block sha list" % (index, self._count))
        k = bisect.bisect_right(self._starts, index) - 1
        seg = self._segments[k]
        if isinstance(seg, int):
            return self._zero
        at = (index - self._starts[k]) * DIGEST_SIZE
        if isinstance(seg, _Spilled):
            return self._load(seg, at, at + DIGEST_SIZE)
        return bytes(seg[at:at + DIGEST_SIZE])

    def __getitem__(self, index: Any) -> Any:
        """The hex digest of a block (a list of them for a slice)."""
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step != 1:
                return list(self)[index]
            return _split_hex(self.digests(start, stop))
        return self.digest(index).hex()

    def __iter__(self) -> Iterator[str]:
        for batch in self.hex_batches():
            yield from batch

    def hex_batches(self, batch: int = BATCH) -> Iterator[list[str]]:
        for part in self.binary_parts(batch):
            yield _split_hex(part)

    def binary_parts(self, batch: int = BATCH) -> Iterator[bytes]:
        """The concatenated digests, ``batch`` blocks at a time."""
        for start in range(0, self._count, batch):
            yield self.digests(start, start + batch)

    def hash_into(self, hasher: Any) -> None:
        """``hasher.update()`` with the concatenated digests, without building them
        (runs of zeros feed one reused batch of zero digests)."""
        zeros = b""
        for seg in self._segments:
            if not isinstance(seg, int):
                hasher.update(self._dense(seg))
                continue
            if len(zeros) < min(seg, BATCH) * DIGEST_SIZE:
                zeros = self._zero * min(seg, BATCH)
            left = seg * DIGEST_SIZE
            with memoryview(zeros) as view:
                while left:
                    n = min(left, len(view))
                    hasher.update(view[:n])
                    left -= n

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ShaList):
            return len(self) == len(other) and all(
                a == b for a, b in zip(self.binary_parts(), other.binary_parts(), strict=True))
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None     # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "ShaList(%d blocks of %d bytes, %d segments, %d bytes on disk)" % (
            self._count, self.block_size, len(self._segments), self.spilled_bytes)

    # -- questions the engine asks ----------------------------------------------
    def changed_since(self, parent: ShaList | None, first: int) -> list[int]:
        """Indices of this list's blocks whose digest differs from ``parent``'s block
        ``first + i`` (or that ``parent`` does not have); all of them without a parent."""
        if parent is None:
            return list(range(self._count))
        if self._only_zeros() and parent._zeros_between(first, first + self._count):
            return []
        return differing_blocks(self.digests(), parent.digests(first, first + self._count))

    def nonzero(self, indices: list[int], last_length: int | None = None) -> list[int]:
        """Those of ``indices`` whose block is not all zeros; the last block of the list
        is ``last_length`` bytes long when that is given (a volume's short last block)."""
        if not indices:
            return []
        mine = self.digests()
        zero, last = self._zero, self._count - 1
        out = [i for i in indices if mine[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] != zero]
        if last_length is not None and out and out[-1] == last \
                and mine[last * DIGEST_SIZE:] == zero_digest(last_length):
            out.pop()
        return out

    def zero_runs(self, size: int) -> list[tuple[int, int]]:
        """Byte ranges of the maximal runs of all-zero blocks of a ``size``-byte volume."""
        bs, count = self.block_size, self._count
        blocks: list[tuple[int, int]] = []      # block index ranges

        def add(a: int, b: int) -> None:
            if blocks and blocks[-1][1] == a:
                blocks[-1] = (blocks[-1][0], b)
            else:
                blocks.append((a, b))

        for first, seg in zip(self._starts, self._segments, strict=True):
            if isinstance(seg, int):
                add(first, first + seg)
                continue
            for a, b in _zero_records(self._dense(seg), self._zero):
                add(first + a, first + b)
        tail = size - (count - 1) * bs
        if count and tail != bs:
            # A short last block is zeros if it has the digest of that many zeros
            # (the full-size zero digest, counted above, says nothing about it).
            if blocks and blocks[-1][1] == count:
                a, b = blocks.pop()
                if a < b - 1:
                    blocks.append((a, b - 1))
            if self.digest(count - 1) == zero_digest(tail):
                add(count - 1, count)
        return [(a * bs, min(b * bs, size)) for a, b in blocks]

    def _only_zeros(self) -> bool:
        return len(self._segments) == 1 and isinstance(self._segments[0], int)

    def _zeros_between(self, start: int, stop: int) -> bool:
        """Whether blocks ``start .. stop - 1`` all lie in one run of zeros."""
        if stop > self._count or start >= stop:
            return False
        k = bisect.bisect_right(self._starts, start) - 1
        seg = self._segments[k]
        return isinstance(seg, int) and self._starts[k] + seg >= stop


def _split_hex(digests: bytes) -> list[str]:
    text = digests.hex()
    step = 2 * DIGEST_SIZE
    return [text[i:i + step] for i in range(0, len(text), step)]


def _is_hex_digest(text: Any) -> bool:
    if not isinstance(text, str) or len(text) != 2 * DIGEST_SIZE:
        return False
    try:
        return len(bytes.fromhex(text)) == DIGEST_SIZE     # (fromhex skips white space)
    except ValueError:
        return False


def _zero_records(digests: bytes | bytearray, zero: bytes) -> Iterator[tuple[int, int]]:
    """Index ranges of the runs of ``zero`` records in ``digests`` (aligned, 32 bytes)."""
    pos, end = 0, len(digests)
    while pos < end:
        at = digests.find(zero, pos)
        while at != -1 and at % DIGEST_SIZE:
            at = digests.find(zero, at + 1)
        if at == -1:
            return
        stop = at + DIGEST_SIZE
        while digests.startswith(zero, stop):
            stop += DIGEST_SIZE
        yield at // DIGEST_SIZE, stop // DIGEST_SIZE
        pos = stop
