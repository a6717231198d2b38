"""The backup pipeline: read, hash, find changed blocks, compress, write objects.

The volume is read in pieces. A piece is hashed in a worker thread; the main
thread then decides which of its sha blocks go into which object and hands
the object segments to the workers for compression, while it reads ahead and
computes each object's md5. Finished segments are written strictly in volume
order, so every object is streamed to the store. At most ``workers + 1``
pieces are in flight, whatever the chunk and volume sizes.
"""

from __future__ import annotations

import hashlib
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from backupsvc.chunking import manifest
from backupsvc.chunking.blocks import hash_blocks, zero_sha
from backupsvc.chunking.compression import (
    ChunksReader,
    CompressorFactory,
    DecompressingReader,
    ObjectCompressor,
)
from backupsvc.chunking.errors import Cancelled
from backupsvc.chunking.params import (
    BackupDescription,
    BackupResult,
    EngineParams,
    MiB,
)
from backupsvc.drivers.base import ObjectStore, ObjectWriter

# Objects up to this size are buffered (compressed) so that, as Cinder does,
# they can be stored raw when compression does not make them smaller.
SMALL_OBJECT_LIMIT = 16 * MiB

class _Object:
    """One data object being produced."""

    def __init__(self, name: str, offset: int, compressor: ObjectCompressor,
                 buffered: bool) -> None:
        self.name = name
        self.offset = offset
        self.length = 0                 # raw bytes assigned (main thread, in order)
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.compressor = compressor
        self.last_final = False         # last segment was compressed as the stream end
        self.buffered = buffered        # still holding compressed output in memory
        self.chunks: list[bytes | memoryview] = []
        self.drained = 0                # raw bytes whose compressed output was taken
        self.stored = 0
        self.cm: Any = None             # the store's writer context manager, once open
        self.writer: ObjectWriter | None = None


@dataclass
class _Segment:
    obj: _Object
    data: memoryview
    final: bool
    future: Future[bytes | memoryview] | None   # None: compress in order while draining


@dataclass
class _Piece:
    offset: int
    view: memoryview
    hashes: Future[list[str]]
    actions: list[_Segment | _Object] = field(default_factory=list)  # _Object = close it


class BackupRun:
    def __init__(self, reader: Any, size: int, store: ObjectStore, container: str,
                 prefix: str, desc: BackupDescription, params: EngineParams,
                 parent_sha256s: list[str] | None, cancelled: Callable[[], bool],
                 progress: Callable[[int, int], None] | None) -> None:
        self.reader, self.size, self.store = reader, size, store
        self.container, self.prefix, self.desc, self.params = container, prefix, desc, params
        self.parent = parent_sha256s
        self.cancelled, self.progress = cancelled, progress
        self.bs = params.sha_block_size
        self.factory = CompressorFactory(params.compression, params.workers,
                                         max(1 << 20, params.piece_size // 2))
        self.result = BackupResult()
        self.sha256s: list[str] = []
        self.entries: list[manifest.ObjectEntry] = []
        self.written: list[str] = []    # every object name this run may have created
        self.current: _Object | None = None
        self.open_objects: list[_Object] = []
        self.pool: ThreadPoolExecutor | None = None

    # -- driver ---------------------------------------------------------------
    def run(self) -> BackupResult:
        blocks = -(-self.size // self.bs)
        if self.parent is not None and len(self.parent) > blocks:
            raise ValueError("Volume size decreased since the last backup. Do a full backup.")
        self.store.ensure_container(self.container)
        self.pool = ThreadPoolExecutor(self.params.workers, thread_name_prefix="backup")
        try:
            self._pipeline()
            self._write_manifests()
        except BaseException:
            self._abort(sys.exc_info())
            raise
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return self.result

    def _check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("backup %s was cancelled" % self.desc.backup_id)

    def _pipeline(self) -> None:
        assert self.pool is not None
        pending: deque[_Piece] = deque()      # read, being hashed
        ready: deque[_Piece] = deque()        # segments being compressed
        limit = self.params.workers + 1
        offset = 0
        while True:
            self._check_cancelled()
            while offset < self.size and len(pending) + len(ready) < limit:
                view = self._read_piece(offset)
                fut = self.pool.submit(hash_blocks, view, self.bs)
                pending.append(_Piece(offset, view, fut))
                offset += len(view)
            if not pending and not ready:
                return
            if pending and (not ready or pending[0].hashes.done()):
                piece = pending.popleft()
                self._plan(piece)
                ready.append(piece)
                continue
            waiting = [a.future for a in ready[0].actions
                       if isinstance(a, _Segment) and a.future is not None and not a.future.done()]
            if waiting:
                wait(waiting + ([pending[0].hashes] if pending else []),
                     return_when=FIRST_COMPLETED)
                continue
            piece = ready.popleft()
            self._drain(piece)
            if self.progress is not None:
                self.progress(piece.offset + len(piece.view), self.size)

    def _read_piece(self, offset: int) -> memoryview:
        length = min(self.params.piece_size, self.size - offset)
        view = memoryview(bytearray(length))
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
        self.result.bytes_read += length
        return view

    # -- planning (main thread, in volume order) --------------------------------
    def _plan(self, piece: _Piece) -> None:
        shas = piece.hashes.result()
        bs, chunk = self.bs, self.params.chunk_size
        first = piece.offset // bs
        full_zero = zero_sha(bs)
        parent = self.parent
        self.sha256s.extend(shas)
        seg_start = 0 if self.current is not None else None
        for i, sha in enumerate(shas):
            idx = first + i
            off = piece.offset + i * bs
            changed = parent is None or idx >= len(parent) or parent[idx] != sha
            keep = changed
            if changed:
                self.result.changed_blocks += 1
                if self.params.skip_zero_blocks:
                    length = min(bs, self.size - off)
                    if sha == (full_zero if length == bs else zero_sha(length)):
                        keep = False
                        self.result.zero_blocks += 1
            if self.current is not None and (not keep or off % chunk == 0):
                if seg_start is not None and seg_start < i:
                    self._segment(piece, seg_start, i, final=True)
                piece.actions.append(self.current)
                self.current, seg_start = None, None
            if keep and self.current is None:
                self.current, seg_start = self._new_object(off), i
        if self.current is not None and seg_start is not None:
            end = piece.offset + len(piece.view)
            final = end == self.size or end % chunk == 0
            self._segment(piece, seg_start, len(shas), final)
            if final:
                piece.actions.append(self.current)
                self.current = None

    def _new_object(self, offset: int) -> _Object:
        name = manifest.data_object_name(self.prefix, len(self.written) + 1)
        self.written.append(name)
        comp = self.factory.new()
        obj = _Object(name, offset, comp, buffered=comp.name != "none")
        self.open_objects.append(obj)
        return obj

    def _segment(self, piece: _Piece, start: int, end: int, final: bool) -> None:
        obj = self.current
        assert obj is not None and self.pool is not None
        data = piece.view[start * self.bs:end * self.bs]
        comp = obj.compressor
        fut = self.pool.submit(comp.compress_segment, data, final) if comp.parallel else None
        piece.actions.append(_Segment(obj, data, final, fut))
        obj.last_final = final
        obj.length += len(data)
        obj.md5.update(data)
        comp.update(data)

    # -- writing (main thread, in volume order) ---------------------------------
    def _drain(self, piece: _Piece) -> None:
        for action in piece.actions:
            if isinstance(action, _Object):
                self._finish(action)
                continue
            obj = action.obj
            if action.future is not None:
                out = action.future.result()
            else:
                out = obj.compressor.compress_segment(action.data, action.final)
            obj.drained += len(action.data)
            self._emit(obj, out)
        piece.actions.clear()

    def _open(self, obj: _Object) -> ObjectWriter:
        obj.cm = self.store.open_writer(self.container, obj.name)
        obj.writer = obj.cm.__enter__()
        return obj.writer

    def _write(self, obj: _Object, data: bytes | memoryview) -> None:
        if data:
            writer = obj.writer or self._open(obj)
            writer.write(data)
            obj.stored += len(data)

    def _emit(self, obj: _Object, out: bytes | memoryview) -> None:
        if not obj.buffered:
            if obj.writer is None:
                self._write(obj, obj.compressor.header())
            self._write(obj, out)
            return
        obj.chunks.append(out)
        if obj.drained > SMALL_OBJECT_LIMIT:
            # Too big to keep: stream it compressed from now on.
            obj.buffered = False
            for part in [obj.compressor.header(), *obj.chunks]:
                self._write(obj, part)
            obj.chunks.clear()

    def _finish(self, obj: _Object) -> None:
        comp = obj.compressor
        compression = comp.name
        if obj.buffered:
            parts = [comp.header(), *obj.chunks, comp.trailer(obj.last_final)]
            obj.chunks.clear()
            if sum(len(p) for p in parts) >= obj.length:
                # Compression did not help: store the data itself, recovered from the
                # buffered compressed form (the raw pieces are long gone).
                compression = "none"
                src = DecompressingReader(ChunksReader(parts), comp.name, obj.name)
                while data := src.read(self.params.piece_size):
                    self._write(obj, data)
            else:
                for part in parts:
                    self._write(obj, part)
        else:
            if obj.writer is None:
                self._write(obj, comp.header())
            self._write(obj, comp.trailer(obj.last_final))
        if obj.cm is None:
            self._open(obj)
        obj.cm.__exit__(None, None, None)
        obj.cm = obj.writer = None
        self.open_objects.remove(obj)
        self.entries.append(manifest.ObjectEntry(
            name=obj.name, offset=obj.offset, length=obj.length,
            md5=obj.md5.hexdigest(), compression=compression))
        self.result.object_count += 1
        self.result.bytes_stored += obj.stored

    def _write_manifests(self) -> None:
        desc = self.desc
        sha = manifest.Sha256File(
            backup_id=desc.backup_id, volume_id=desc.volume_id, backup_name=desc.name,
            backup_description=desc.description, created_at=desc.created_at,
            chunk_size=self.bs, sha256s=self.sha256s)
        meta = manifest.Metadata(
            backup_id=desc.backup_id, volume_id=desc.volume_id, backup_name=desc.name,
            backup_description=desc.description, created_at=desc.created_at,
            parent_id=desc.parent_id, objects=self.entries, volume_meta=desc.volume_meta,
            extra_metadata=desc.extra_metadata)
        self._check_cancelled()
        self.written.append(manifest.sha256file_name(self.prefix))
        manifest.write_sha256file(self.store, self.container, self.prefix, sha)
        self._check_cancelled()
        self.written.append(manifest.metadata_name(self.prefix))
        manifest.write_metadata(self.store, self.container, self.prefix, meta)

    def _abort(self, exc_info: Any) -> None:
        # Best effort: a failing store must not hide the original exception.
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


def run_backup(reader: Any, size: int, store: ObjectStore, container: str, prefix: str,
               desc: BackupDescription, params: EngineParams,
               parent_sha256s: list[str] | None = None,
               cancelled: Callable[[], bool] = lambda: False,
               progress: Callable[[int, int], None] | None = None) -> BackupResult:
    """Back up ``size`` bytes of ``reader`` as one full or incremental backup."""
    return BackupRun(reader, size, store, container, prefix, desc, params,
                     parent_sha256s, cancelled, progress).run()
