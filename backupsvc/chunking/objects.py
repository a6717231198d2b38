"""The data objects of one backup: naming, streaming to the store, records.

Format 2.0.0 objects (framed) carry the SHA-256 of their frame headers
(gathered here; each header holds its payload's CRC-32); 1.0.0 objects the
md5 of their data, taken by the backup pipeline.

Compressed output is handed over in volume order. An object of at most
:data:`SMALL_OBJECT_LIMIT` bytes is buffered (compressed) so that, as Cinder
does, it can be stored raw when compression does not make it smaller; larger
objects are streamed to the store as they are produced.

Creating and closing an object (the posix store fsyncs the file and its
directory) costs far more than writing a small one. So buffered objects are
written, and streamed objects closed, by helper threads, several at a time
and overlapping the rest of the backup; :meth:`ObjectOutput.wait_complete` is
called before the sha256 and metadata files are written. The buffered bytes
waiting for a helper are bounded (:data:`MAX_PENDING_BYTES`); they count until
the helper has handed them to the store, not until the object is durable, so
the backup does not stall behind fsync latency while its memory stays bounded.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from backupsvc.chunking import manifest
from backupsvc.chunking.compression import (
    ChunksReader,
    CompressorFactory,
    DecompressingReader,
    ObjectCompressor,
)
from backupsvc.chunking.frames import EncodedFrames, FramedCompressorFactory
from backupsvc.chunking.params import BackupResult, MiB
from backupsvc.drivers.base import ObjectStore, ObjectWriter

SMALL_OBJECT_LIMIT = 16 * MiB
RAW_WRITE_SIZE = 1 * MiB        # recovered raw data is written in pieces of this size
HELPERS = 4                     # threads writing small objects and closing writers
MAX_PENDING = 32                # finished objects not yet complete in the store...
MAX_PENDING_BYTES = 16 * MiB    # ...and the buffered bytes not yet handed to the store

class DataObject:
    """One data object being produced."""

    def __init__(self, name: str, offset: int, compressor: ObjectCompressor,
                 framed: bool) -> None:
        self.name = name
        self.offset = offset
        self.length = 0                 # raw bytes assigned (main thread, in order)
        # [offset, length] of each run of blocks it holds (a packed object: several)
        self.extents = [[offset, 0]]
        # 1.0.0: md5 of the data; 2.0.0: sha256 of its frame headers.
        self.md5 = None if framed else hashlib.md5(usedforsecurity=False)
        self.frames_sha = hashlib.sha256() if framed else None
        self.compressor = compressor
        self.last_final = False         # last segment was compressed as the stream end
        self.buffered = True            # still holding its (compressed) output in memory
        self.chunks: list[bytes | memoryview] = []
        self.drained = 0                # raw bytes whose compressed output was taken
        self.stored = 0
        self.cm: Any = None             # the store's writer context manager, once open
        self.writer: ObjectWriter | None = None


class ObjectOutput:
    def __init__(self, store: ObjectStore, container: str, prefix: str,
                 factory: CompressorFactory | FramedCompressorFactory,
                 result: BackupResult) -> None:
        self.store, self.container, self.prefix = store, container, prefix
        self.factory, self.result = factory, result
        self.written: list[str] = []    # every object name this run may have created
        self.entries: list[manifest.ObjectEntry] = []
        self.open_objects: list[DataObject] = []    # with a writer open on this thread
        self._pending: deque[Future[Any]] = deque()     # helper jobs, oldest first
        # Buffered bytes of submitted objects that no helper has handed to the
        # store yet (a helper lowers it: guarded by the condition).
        self._held = 0
        self._handed = threading.Condition()
        self._helpers: ThreadPoolExecutor | None = None

    def new(self, offset: int) -> DataObject:
        name = manifest.data_object_name(self.prefix, len(self.written) + 1)
        self.written.append(name)
        obj = DataObject(name, offset, self.factory.new(), self.factory.framed)
        self.open_objects.append(obj)
        return obj

    def _open(self, obj: DataObject) -> ObjectWriter:
        obj.cm = self.store.open_writer(self.container, obj.name)
        obj.writer = obj.cm.__enter__()
        return obj.writer

    def _write(self, obj: DataObject, data: bytes | memoryview) -> None:
        if data:
            writer = obj.writer or self._open(obj)
            writer.write(data)
            obj.stored += len(data)

    def emit(self, obj: DataObject, raw_length: int,
             out: bytes | memoryview | EncodedFrames) -> None:
        """Take the compressed form ``out`` of the object's next ``raw_length`` bytes."""
        obj.drained += raw_length
        if isinstance(out, EncodedFrames):
            assert obj.frames_sha is not None
            obj.frames_sha.update(b"".join(out.headers))
            out = out.data
        if not obj.buffered:
            self._write(obj, out)
            return
        obj.chunks.append(out)
        if obj.drained > SMALL_OBJECT_LIMIT:
            # Too big to keep: stream it compressed from now on.
            obj.buffered = False
            for part in [obj.compressor.header(), *obj.chunks]:
                self._write(obj, part)
            obj.chunks.clear()

    def finish(self, obj: DataObject) -> None:
        comp = obj.compressor
        compression = comp.name
        if obj.buffered:
            parts = [comp.header(), *obj.chunks, comp.trailer(obj.last_final)]
            obj.chunks.clear()
            size = sum(len(p) for p in parts)
            # (Framed objects chose raw or compressed frame by frame already.)
            raw = compression != "none" and size >= obj.length and not self.factory.framed
            if raw:
                # As Cinder does: compression did not help, store the data itself.
                compression, size = "none", obj.length
            obj.stored = size
            self.open_objects.remove(obj)      # no writer is open: the helper opens one
            self._submit(size, self._store_small, obj.name, parts, size,
                         comp.name if raw else None)
        else:
            if obj.writer is None:
                self._write(obj, comp.header())
            self._write(obj, comp.trailer(obj.last_final))
            if obj.cm is None:
                self._open(obj)
            self._submit(0, obj.cm.__exit__, None, None, None)   # the helper closes it
            obj.cm = obj.writer = None
            self.open_objects.remove(obj)
        if obj.frames_sha is not None:
            entry = manifest.ObjectEntry(
                name=obj.name, offset=obj.offset, length=obj.length, md5=None,
                compression=compression, stored_length=obj.stored,
                frames_sha256=obj.frames_sha.hexdigest(),
                extents=tuple((a, n) for a, n in obj.extents) if len(obj.extents) > 1
                else None)
        else:
            assert obj.md5 is not None
            entry = manifest.ObjectEntry(
                name=obj.name, offset=obj.offset, length=obj.length,
                md5=obj.md5.hexdigest(), compression=compression)
        self.entries.append(entry)
        self.result.object_count += 1
        self.result.bytes_stored += obj.stored

    def _store_small(self, name: str, parts: list[bytes | memoryview], size: int,
                     decompress: str | None) -> None:
        """Helper thread: write a whole buffered object, raw when ``decompress`` says so.

        The raw data is recovered from the buffered compressed form (the
        pieces it came from are long gone). Once every byte is with the store
        writer, the ``size`` buffered bytes are freed and no longer count.
        """
        try:
            with self.store.open_writer(self.container, name) as writer:
                if decompress is None:
                    for part in parts:
                        if part:
                            writer.write(part)
                else:
                    src = DecompressingReader(ChunksReader(parts), decompress, name)
                    while data := src.read(RAW_WRITE_SIZE):
                        writer.write(data)
                self._release(parts, size)
        finally:
            self._release(parts, size)        # (a failure: nothing more to hand over)

    def _release(self, parts: list[bytes | memoryview], size: int) -> None:
        """Free a buffered object's bytes and stop counting them (once: ``parts`` empties)."""
        with self._handed:
            if parts:
                parts.clear()
                self._held -= size
                self._handed.notify_all()

    def _submit(self, nbytes: int, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn`` (which completes an object) in a helper thread, bounding what waits:
        :data:`MAX_PENDING` objects, and ``nbytes`` buffered bytes that ``fn`` releases
        (:meth:`_release`) once it has handed them to the store."""
        while True:
            while self._pending and (self._pending[0].done()
                                     or len(self._pending) >= MAX_PENDING):
                self._reap_oldest()
            with self._handed:
                if not self._held or self._held + nbytes <= MAX_PENDING_BYTES:
                    self._held += nbytes
                    break
                self._handed.wait(1.0)
        if self._helpers is None:
            self._helpers = ThreadPoolExecutor(HELPERS, thread_name_prefix="backup-store")
        self._pending.append(self._helpers.submit(fn, *args))

    def _reap_oldest(self) -> None:
        self._pending.popleft().result()    # a failed write or close fails the backup

    def wait_complete(self) -> None:
        """Wait until every finished object is complete in the store."""
        while self._pending:
            self._reap_oldest()

    def shutdown(self) -> None:
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)

    def abort(self, exc_info: Any) -> None:
        """Remove everything written (best effort: the original exception matters)."""
        wait_futures(self._pending)     # they could create objects later
        for obj in self.open_objects:
            if obj.cm is not None:
                try:
                    obj.cm.__exit__(*exc_info)
                except Exception:
                    pass
        # The metadata goes first, so a half-deleted backup never looks complete.
        for name in reversed(self.written):
            try:
                self.store.delete(self.container, name)
            except Exception:
                pass
