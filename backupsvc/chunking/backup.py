"""The backup pipeline: read, hash, find changed blocks, compress, write objects.

The volume is cut into pieces (:mod:`backupsvc.chunking.source`; pieces lying
in holes of sparse files are neither read nor hashed). Three kinds of work
overlap:

* loading: in the *load* pool, a piece is read (when the reader is a regular
  file; otherwise the main thread reads it), its sha blocks are hashed and
  the runs of blocks to store found (changed since the parent, not zeros,
  cut at chunk boundaries). Format 2.0.0 runs are encoded into frames there
  too: frames depend on nothing but the run's bytes, so a piece is one task
  from the disk to its stored form, with no hand-over between threads;
* compressing (format 1.0.0 only): each object is one compressed stream,
  whose segments are compressed in the *compress* pool;
* the main thread plans pieces in volume order (which runs go into which
  object), updates each 1.0.0 object's md5 and writes finished segments
  strictly in volume order, so every object is streamed to the store.

A bounded number of pieces is in flight, whatever the chunk and volume
sizes: ``depth + 1``, with ``depth = workers + 1`` for 1.0.0 (pieces being
compressed, so that the compressors always have work queued, and one loaded
ahead) and ``2 * workers + 2`` for 2.0.0 (pieces of very different costs,
from zeros to text, being loaded and encoded).
"""

from __future__ import annotations

import hashlib
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from backupsvc.chunking import frames, manifest
from backupsvc.chunking.compression import CompressorFactory
from backupsvc.chunking.errors import Cancelled
from backupsvc.chunking.frames import EncodedFrames, FramedCompressorFactory
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
    # The stored form: 2.0.0 frames encoded while loading, or (1.0.0) a compression
    # running in the compress pool; neither: compress in order while draining.
    encoded: EncodedFrames | None = None
    future: Future[bytes | memoryview] | None = None


@dataclass
class _Loaded:
    """A loaded piece: its digests and the runs of its blocks to store."""

    shas: ShaList
    runs: list[tuple[int, int]]     # [start, end) block indices in the piece
    encoded: list[EncodedFrames] | None     # 2.0.0: each run's frames
    changed: int                    # blocks changed since the parent (all: no parent)
    zeros: int                      # of those, all-zero blocks that are not stored


@dataclass
class _Work:
    piece: Piece
    loaded: Future[_Loaded]
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
        # (2.0.0 pieces are encoded by the loaders.)
        self.compressors = None if self.compact else ThreadPoolExecutor(
            workers, thread_name_prefix="backup-compress")
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
            if self.compressors is not None:
                self.compressors.shutdown(wait=True, cancel_futures=True)
            self.output.shutdown()
        return self.result

    def _check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("backup %s was cancelled" % self.desc.backup_id)

    def _pipeline(self, source: PieceSource) -> None:
        loading: deque[_Work] = deque()     # being read and hashed (2.0.0: and encoded)
        planned: deque[_Work] = deque()     # (1.0.0) segments being compressed, to be written
        depth = self.params.workers + 1
        if self.compact:
            # Pieces are whole tasks of very different costs (zeros, random
            # data, text): a deeper queue keeps every loader busy.
            depth = 2 * self.params.workers + 2
        offset = 0
        while True:
            self._check_cancelled()
            while offset < self.size and len(loading) + len(planned) <= depth:
                piece = source.next(offset)
                loading.append(_Work(piece, self.loaders.submit(self._load, source, piece)))
                offset = piece.end
            if loading and loading[0].loaded.done() and len(planned) < depth:
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
                waiting.append(loading[0].loaded)
            wait(waiting, return_when=FIRST_COMPLETED)

    # -- loading (load pool, any order) -------------------------------------------
    def _load(self, source: PieceSource, piece: Piece) -> _Loaded:
        """Read and hash a piece, find the runs of blocks it stores and (2.0.0) encode them."""
        shas = source.load(piece)
        first = piece.offset // self.bs
        if piece.buf is None:
            # Wholly in a hole whose zero blocks are not stored.
            changed = len(shas) if self.parent is None \
                else len(shas.changed_since(self.parent, first))
            return _Loaded(shas, [], None, changed, changed)
        changed = shas.changed_since(self.parent, first)
        kept = self._nonzero(first, shas, changed)
        runs = self._runs(piece.offset, kept)
        encoded = None
        if self.compact:
            codec = self.params.compression
            encoded = [frames.encode(codec, self._run_data(piece, a, b), self.bs)
                       for a, b in runs]
        return _Loaded(shas, runs, encoded, len(changed), len(changed) - len(kept))

    def _nonzero(self, first: int, shas: ShaList, changed: list[int]) -> list[int]:
        """Those of the ``changed`` blocks to store: all of them, or, when zero blocks
        are skipped, those that are not all zeros."""
        if not self.params.skip_zero_blocks:
            return changed
        last_start = (first + len(shas) - 1) * self.bs
        short = last_start + self.bs > self.size        # the volume's short last block
        return shas.nonzero(changed, self.size - last_start if short else None)

    def _runs(self, offset: int, kept: list[int]) -> list[tuple[int, int]]:
        """The runs of consecutive ``kept`` blocks of the piece at ``offset``, cut where a
        chunk starts (an object never spans two chunks)."""
        runs: list[tuple[int, int]] = []
        bs, chunk = self.bs, self.params.chunk_size
        for i in kept:
            if runs and runs[-1][1] == i and (offset + i * bs) % chunk:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        return runs

    def _run_data(self, piece: Piece, start: int, end: int) -> memoryview:
        """The bytes of blocks ``start`` to ``end`` of the piece."""
        return piece.data(start * self.bs, min(end * self.bs, piece.length))

    # -- planning (main thread, in volume order) --------------------------------
    def _plan(self, work: _Work) -> None:
        """Put the piece's runs into objects: a run continues the open object's run
        when it starts where that one ended (not at a chunk start), else it starts a
        run of its own (packed into the open object or in a new one)."""
        piece = work.piece
        loaded = work.loaded.result()
        self.result.hole_bytes += piece.hole_bytes
        self.result.bytes_read += piece.length - piece.hole_bytes
        self.result.changed_blocks += loaded.changed
        self.result.zero_blocks += loaded.zeros
        self._add_shas(loaded.shas)
        bs, chunk, count = self.bs, self.params.chunk_size, len(loaded.shas)
        # Whether the open object's run reached this piece's start.
        continuing = self.current is not None and self.run_end == piece.offset
        for k, (a, b) in enumerate(loaded.runs):
            start = piece.offset + a * bs
            joins = continuing and a == 0 and start % chunk != 0
            if continuing and not joins:
                self._run_ended(work)
            if not joins:
                self._start_run(work, start)
            continuing = False
            end = min(piece.offset + b * bs, self.size)
            inside = b < count          # the run ends inside this piece
            final = inside or end == self.size or end % chunk == 0
            self._segment(work, a, b, final, loaded.encoded[k] if loaded.encoded else None)
            self.run_end = end
            if inside:
                self._run_ended(work)
            elif final:                 # a chunk's or the volume's end: the object is done
                work.actions.append(self.current)
                self.current = None
        if continuing:                  # no run here: the open run ended at the piece start
            self._run_ended(work)

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

    def _run_ended(self, work: _Work) -> None:
        """Close the open object, unless it may take more runs (2.0.0 packs small runs
        into objects of up to PACK_LIMIT: an incremental's changed blocks are scattered,
        and every object costs a file, or a request, of its own)."""
        obj = self.current
        if obj is not None and not (self.compact and obj.length < PACK_LIMIT):
            work.actions.append(obj)
            self.current = None

    def _segment(self, work: _Work, start: int, end: int, final: bool,
                 encoded: EncodedFrames | None) -> None:
        """Blocks ``start`` to ``end`` of the piece go into the open object."""
        obj = self.current
        assert obj is not None
        data = self._run_data(work.piece, start, end)
        obj.extents[-1][1] += len(data)
        comp = obj.compressor
        segment = _Segment(obj, data, final, encoded)
        if encoded is None and comp.parallel:
            assert self.compressors is not None
            segment.future = self.compressors.submit(comp.compress_segment, data, final)
        work.actions.append(segment)
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
            out: bytes | memoryview | EncodedFrames
            if action.encoded is not None:
                out = action.encoded
            elif action.future is not None:
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
