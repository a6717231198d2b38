"""Packed objects at restore (format 2.0.0): each run restored on its own, the object
read once.

A packed object holds several runs of blocks of one chunk (an incremental's
scattered changes). The restore plans and writes each run as if it were an
object of its own (:class:`PackPart`), so the writes stay in volume order;
the object itself is read once, checked whole, and kept (:class:`PackCache`)
until its other runs have been written. Where the writer is, each backup of
the chain has at most one packed object in use, so room for the largest of
each is enough (:func:`budget`); one dropped early is read again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from backupsvc.chunking import frames
from backupsvc.chunking.errors import Cancelled, IntegrityError
from backupsvc.chunking.manifest import ObjectEntry
from backupsvc.drivers.base import ObjectStore

Frame = tuple[int, int, bytes, bytes]       # codec, raw length, header, payload


@dataclass(frozen=True)
class PackPart(ObjectEntry):
    """Run number ``index`` of the packed object ``whole``."""

    whole: ObjectEntry | None = None
    index: int = 0


def unpack(entries: list[ObjectEntry]) -> list[ObjectEntry]:
    """The entries, each packed object replaced by its runs."""
    out: list[ObjectEntry] = []
    for entry in entries:
        if entry.extents is None:
            out.append(entry)
            continue
        out += [PackPart(entry.name, offset, length, entry.md5, entry.compression,
                         entry.stored_length, entry.frames_sha256, whole=entry, index=k)
                for k, (offset, length) in enumerate(entry.extents)]
    return out


def budget(layers: list[list[ObjectEntry]]) -> int:
    """Stored bytes of packed objects to keep: the largest of each backup's, and room
    for the next being read."""
    largest = [max((o.stored_length or 0 for o in entries if o.extents), default=0)
               for entries in layers]
    return sum(largest) + max(largest, default=0)


@dataclass
class Pack:
    """A packed object's frames and where each of its runs begins."""

    frames: list[Frame]
    firsts: list[int]           # index of each run's first frame, then len(frames)
    nbytes: int                 # stored bytes

    def run(self, index: int) -> list[Frame]:
        return self.frames[self.firsts[index]:self.firsts[index + 1]]


def read_pack(store: ObjectStore, container: str, whole: ObjectEntry, label: str,
              stopped: Callable[[], bool]) -> Pack:
    """Read a packed object whole: every frame's CRC-32, the object's stored size and
    checksum of frame headers checked, and each run found to be whole frames."""
    frames_sha = hashlib.sha256()
    found: list[Frame] = []
    firsts: list[int] = []
    nbytes = left = 0
    runs = iter(whole.spans())
    with store.open_reader(container, whole.name) as raw:
        for codec, length, header, payload in frames.read_frames(raw, label):
            if stopped():
                raise Cancelled("restore stopped")
            frames_sha.update(frames.check_frame(header, payload, label))
            if not left:
                left = next(runs, (0, 0))[1]
                firsts.append(len(found))
            if length > left:
                raise IntegrityError("%s: a frame crosses the end of a run of blocks" % label)
            left -= length
            found.append((codec, length, header, payload))
            nbytes += len(header) + len(payload)
    if left or len(firsts) != len(whole.spans()):
        raise IntegrityError("%s holds less than its recorded %d bytes"
                             % (label, whole.length))
    if nbytes != whole.stored_length:
        raise IntegrityError("%s is %d bytes in the store, %s recorded"
                             % (label, nbytes, whole.stored_length))
    if frames_sha.hexdigest() != whole.frames_sha256:
        raise IntegrityError("%s fails its frames_sha256 check" % label)
    return Pack(found, [*firsts, len(found)], nbytes)


class PackCache:
    """Packs read lately, the least recently used dropped beyond ``limit`` stored bytes.

    Thread-safe: the first caller for a key reads the pack, callers for the
    same key meanwhile wait for it. ``reads`` counts the packs read.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reads = 0
        self._packs: OrderedDict[object, Future[Pack]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: object, read: Callable[[], Pack]) -> Pack:
        with self._lock:
            future = self._packs.get(key)
            mine = future is None
            if future is None:
                future = self._packs[key] = Future()
            else:
                self._packs.move_to_end(key)
        if not mine:
            return future.result()
        try:
            pack = read()
        except BaseException as exc:
            with self._lock:
                del self._packs[key]
            future.set_exception(exc)
            raise
        future.set_result(pack)
        with self._lock:
            self.reads += 1
            self._bytes += pack.nbytes
            for old in list(self._packs):
                if self._bytes <= self.limit:
                    break
                if old != key and self._packs[old].done():
                    dropped = self._packs.pop(old)
                    if dropped.exception() is None:
                        self._bytes -= dropped.result().nbytes
        return pack
