"""The backup pipeline: read, hash, find changed blocks, compress, write objects.

The volume is cut into pieces (:mod:`backupsvc.chunking.source`; pieces lying
in holes of sparse files are neither read nor hashed). Three kinds of work
overlap:

* loading: a piece is read (when the reader is a regular file; otherwise the
  main thread reads it) and its sha blocks hashed, in the *load* pool;
* compressing: object segments (format 2.0.0: each 1 MiB frame of them) are
  compressed in the *compress* pool, which is separate so that loading never
  queues behind long compressions;
* the main thread plans pieces in volume order (which sha blocks go into
  which object), updates each 1.0.0 object's md5 and writes finished
  segments strictly in volume order, so every object is streamed to the store.

A bounded number of pieces is in flight, whatever the chunk and volume
sizes: ``depth + 1`` (``depth`` being compressed, so that the compressors
always have work queued when they finish some, and one loaded ahead), with
``depth = workers + 1`` for 1.0.0 and ``2 * workers + 2`` for 2.0.0, whose
frames are small tasks of very different costs.
"""

from __future__ import annotations

import hashlib
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from backupsvc.chunking import manifest
from backupsvc.chunking.compression import CompressorFactory
from backupsvc.chunking.errors import Cancelled
from backupsvc.chunking.frames import FRAME_SIZE, FramedCompressorFactory
from backupsvc.chunking.objects import DataObject, ObjectOutput
from backupsvc.chunking.params import BackupDescription, BackupResult, EngineParams, MiB
from backupsvc.chunking.shalist import ShaList
from backupsvc.chunking.source import Piece, PieceSource
from backupsvc.drivers.base import ObjectStore

PACK_LIMIT = 1 * MiB        # 2.0.0: an object takes further runs of blocks while smaller


@dataclass
class _Segment:
    obj: DataObject
    data: memoryview
    final: bool
    future: Future[bytes | memoryview] | None   # None: compress in order while draining


@dataclass
class _Work:
    piece: Piece
    shas: Future[ShaList]
    actions: list[_Segment | DataObject] = field(default_factory=list)  # object: close it

    def compressing(self) -> Iterator[Future[bytes | memoryview]]:
        for action in self.actions:
            if isinstance(action, _Segment) and action.future is not None \
                    and not action.future.done():
                yield action.future


class BackupRun:
    def __init__(self, reader: Any, size: int, store: ObjectStore, container: str,
                 prefix: str, desc: BackupDescription, params: EngineParams,
                 parent_sha256s: ShaList | None, cancelled: Callable[[], bool],
                 progress: Callable[[int, int], None] | None) -> None:
        self.reader, self.size, self.store = reader, size, store
        self.container, self.prefix, self.desc, self.params = container, prefix, desc, params
        self.parent = parent_sha256s
        self.cancelled, self.progress = cancelled, progress
        self.bs = params.sha_block_size
        self.result = BackupResult()
        self.compact = params.format_version == manifest.COMPACT_VERSION
        factory: CompressorFactory | FramedCompressorFactory
        if self.compact:
            factory = FramedCompressorFactory(params.compression, self.bs)
        else:
            factory = CompressorFactory(params.compression, params.workers,
                                        max(1 << 20, params.piece_size // 2))
        self.output = ObjectOutput(store, container, prefix, factory, self.result)
        self.sha256s = ShaList(self.bs)
        # 2.0.0: the sha256 file's checksum of the digests, hashed as pieces are
        # planned (while the main thread waits for them) rather than at the end.
        self.digests_sha = hashlib.sha256() if self.compact else None
        self.current: DataObject | None = None     # the object being filled
        self.run_end = -1           # where its run of blocks ends so far

    # -- driver ---------------------------------------------------------------
    def run(self) -> BackupResult:
        blocks = -(-self.size // self.bs)
        if self.parent is not None and len(self.parent) > blocks:
            raise ValueError("Volume size decreased since the last backup. Do a full backup.")
        self.store.ensure_container(self.container)
        workers = self.params.workers
        self.loaders = ThreadPoolExecutor(workers, thread_name_prefix="backup-load")
        self.compressors = ThreadPoolExecutor(workers, thread_name_prefix="backup-compress")
        try:
            source = PieceSource(self.reader, self.size, self.bs, self.params.piece_size,
                                 need_hole_bytes=not self.params.skip_zero_blocks)
            self._pipeline(source)
            if self.current is not None:        # a packed object no later run went into
                self.output.finish(self.current)
                self.current = None
            source.finish()
            self.output.wait_complete()
            self._write_manifests()
        except BaseException:
            self.output.abort(sys.exc_info())
            raise
        finally:
            self.loaders.shutdown(wait=True, cancel_futures=True)
            self.compressors.shutdown(wait=True, cancel_futures=True)
            self.output.shutdown()
        return self.result

    def _check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("backup %s was cancelled" % self.desc.backup_id)

    def _pipeline(self, source: PieceSource) -> None:
        loading: deque[_Work] = deque()     # being read and hashed
        planned: deque[_Work] = deque()     # segments being compressed, to be written
        depth = self.params.workers + 1
        if self.compact:
            # Frames are small independent tasks of very different costs (zeros,
            # random data, text): a deeper queue keeps every compressor busy.
            depth = 2 * self.params.workers + 2
        offset = 0
        while True:
            self._check_cancelled()
            while offset < self.size and len(loading) + len(planned) <= depth:
                piece = source.next(offset)
                loading.append(_Work(piece, self.loaders.submit(source.load, piece)))
                offset = piece.end
            if loading and loading[0].shas.done() and len(planned) < depth:
                work = loading.popleft()
                self._plan(work)
                planned.append(work)
                continue
            waiting = list(planned[0].compressing()) if planned else []
            if planned and not waiting:
                work = planned.popleft()
                self._drain(work)
                if self.progress is not None:
                    self.progress(work.piece.end, self.size)
                continue
            if not loading and not planned:
                return
            if loading and len(planned) < depth:
                waiting.append(loading[0].shas)
            wait(waiting, return_when=FIRST_COMPLETED)

    # -- planning (main thread, in volume order) --------------------------------
    def _plan(self, work: _Work) -> None:
        piece = work.piece
        shas = work.shas.result()
        self.result.hole_bytes += piece.hole_bytes
        self.result.bytes_read += piece.length - piece.hole_bytes
        if piece.buf is None:
            self._plan_hole(work, shas)
            return
        self._add_shas(shas)
        bs, chunk = self.bs, self.params.chunk_size
        # Objects hold runs of kept blocks, cut at chunk boundaries; only the
        # kept blocks are visited (an incremental keeps a few in a thousand).
        # seg_start: the piece's first block of the run being planned, if any.
        seg_start = 0 if self.current is not None and self.run_end == piece.offset else None
        prev = -1           # the last kept block seen
        for i in self._kept_blocks(piece.offset // bs, shas):
            off = piece.offset + i * bs
            if seg_start is not None and (off != self.run_end or off % chunk == 0):
                self._end_run(work, seg_start, prev + 1)
                seg_start = None
            if seg_start is None:
                self._start_run(work, off)
                seg_start = i
            prev = i
            self.run_end = min(off + bs, self.size)
        if seg_start is None:
            return
        if prev + 1 < len(shas):        # the run ended inside this piece
            self._end_run(work, seg_start, prev + 1)
            return
        end = piece.end
        final = end == self.size or end % chunk == 0
        self._segment(work, seg_start, len(shas), final)
        if final:
            work.actions.append(self.current)
            self.current = None

    def _add_shas(self, shas: ShaList) -> None:
        self.sha256s.extend(shas)
        if self.digests_sha is not None:
            shas.hash_into(self.digests_sha)

    def _start_run(self, work: _Work, offset: int) -> None:
        """A run of kept blocks starts at ``offset``: in the open object (packed after its
        other runs) if it is still open and the run lies in its chunk, else in a new one."""
        obj, chunk = self.current, self.params.chunk_size
        if obj is not None and offset // chunk == obj.offset // chunk:
            obj.extents.append([offset, 0])
            return
        if obj is not None:
            work.actions.append(obj)
        self.current = self.output.new(offset)

    def _end_run(self, work: _Work, seg_start: int, end: int) -> None:
        """The open object's run ends before block ``end`` of this piece."""
        if seg_start < end:
            self._segment(work, seg_start, end, final=True)
        self._run_ended(work)

    def _run_ended(self, work: _Work) -> None:
        """Close the open object, unless it may take more runs (2.0.0 packs small runs
        into objects of up to PACK_LIMIT: an incremental's changed blocks are scattered,
        and every object costs a file, or a request, of its own)."""
        obj = self.current
        if obj is not None and not (self.compact and obj.length < PACK_LIMIT):
            work.actions.append(obj)
            self.current = None

    def _kept_blocks(self, first: int, shas: ShaList) -> list[int]:
        """Indices (in the piece) of the blocks to store: changed since the parent and,
        when zero blocks are skipped, not all zeros. Counts changed and zero blocks."""
        changed = shas.changed_since(self.parent, first)
        self.result.changed_blocks += len(changed)
        if not self.params.skip_zero_blocks:
            return changed
        last_start = (first + len(shas) - 1) * self.bs
        short = last_start + self.bs > self.size        # the volume's short last block
        kept = shas.nonzero(changed, self.size - last_start if short else None)
        self.result.zero_blocks += len(changed) - len(kept)
        return kept

    def _plan_hole(self, work: _Work, shas: ShaList) -> None:
        """A piece wholly in a hole whose zero blocks are not stored: it ends the object."""
        first = work.piece.offset // self.bs
        self._add_shas(shas)
        self._run_ended(work)
        changed = len(shas) if self.parent is None else len(shas.changed_since(self.parent, first))
        self.result.changed_blocks += changed
        self.result.zero_blocks += changed

    def _segment(self, work: _Work, start: int, end: int, final: bool) -> None:
        """Blocks ``start`` to ``end`` of the piece go into the open object."""
        obj = self.current
        assert obj is not None
        piece = work.piece
        data = piece.data(start * self.bs, min(end * self.bs, piece.length))
        obj.extents[-1][1] += len(data)
        comp = obj.compressor
        if self.compact:
            # One task per frame: the same frames as one task for the segment.
            for at in range(0, len(data), FRAME_SIZE):
                part = data[at:at + FRAME_SIZE]
                last = at + FRAME_SIZE >= len(data)
                work.actions.append(_Segment(obj, part, final and last, self.compressors.submit(
                    comp.compress_segment, part, final and last)))
        else:
            fut = self.compressors.submit(comp.compress_segment, data, final) \
                if comp.parallel else None
            work.actions.append(_Segment(obj, data, final, fut))
        obj.last_final = final
        obj.length += len(data)
        if obj.md5 is not None:
            obj.md5.update(data)
        comp.update(data)

    # -- writing (main thread, in volume order) ---------------------------------
    def _drain(self, work: _Work) -> None:
        for action in work.actions:
            if isinstance(action, DataObject):
                self.output.finish(action)
                continue
            obj = action.obj
            if action.future is not None:
                out = action.future.result()
            else:
                out = obj.compressor.compress_segment(action.data, action.final)
            self.output.emit(obj, len(action.data), out)
        work.actions.clear()

    def _write_manifests(self) -> None:
        desc = self.desc
        version = self.params.format_version
        zero_extents = None
        if self.compact:
            zero_extents = [(a, b - a) for a, b in self.sha256s.zero_runs(self.size)]
        sha = manifest.Sha256File(
            backup_id=desc.backup_id, volume_id=desc.volume_id, backup_name=desc.name,
            backup_description=desc.description, created_at=desc.created_at,
            chunk_size=self.bs, sha256s=self.sha256s, version=version,
            volume_size=self.size,
            digests_sha256=self.digests_sha.hexdigest() if self.digests_sha else None)
        meta = manifest.Metadata(
            backup_id=desc.backup_id, volume_id=desc.volume_id, backup_name=desc.name,
            backup_description=desc.description, created_at=desc.created_at,
            parent_id=desc.parent_id, objects=self.output.entries,
            volume_meta=desc.volume_meta, extra_metadata=desc.extra_metadata,
            version=version, zero_extents=zero_extents)
        written = self.output.written
        self._check_cancelled()
        written.append(manifest.sha256file_name(self.prefix))
        manifest.write_sha256file(self.store, self.container, self.prefix, sha)
        self._check_cancelled()
        written.append(manifest.metadata_name(self.prefix))
        manifest.write_metadata(self.store, self.container, self.prefix, meta)


def run_backup(reader: Any, size: int, store: ObjectStore, container: str, prefix: str,
               desc: BackupDescription, params: EngineParams,
               parent_sha256s: ShaList | None = None,
               cancelled: Callable[[], bool] = lambda: False,
               progress: Callable[[int, int], None] | None = None) -> BackupResult:
    """Back up ``size`` bytes of ``reader`` as one full or incremental backup."""
    return BackupRun(reader, size, store, container, prefix, desc, params,
                     parent_sha256s, cancelled, progress).run()
