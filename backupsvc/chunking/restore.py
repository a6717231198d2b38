"""Single-pass restore of a backup chain.

The extent plan says which object provides each byte; every needed object is
then read once, in order of the first volume offset it provides, and each
volume byte is written at most once. An object whose data sits inside
another's (an incremental's changed block inside an older object) is written
when the writer reaches it, so the writes stay in volume order and large
(:meth:`RestoreRun._splice`). Producer threads, ahead of the main thread
(a few objects, more when they are small: :meth:`RestoreRun._take`), read
objects (1.0.0: they also decompress them and check
their md5; 2.0.0: each frame is decoded and hashed by a checker thread, so
one big object uses every core and checks the frame's CRC-32, and the main
thread checks the object's SHA-256 of frame headers); every needed
block is checked against the newest backup's sha256 list (by checker
threads, for large pieces, while the producer goes on; a block recorded as
zeros is compared with zeros instead of hashed); the main thread writes the
checked data in order. Stores that can read ahead are told by the producers
which objects come next (``will_read``: the POSIX store starts reading small
cold objects, which are otherwise one synchronous disk read each).
A packed object's runs are planned and written each on its own, the object
read once (backupsvc.chunking.packs).
Ranges that no object provides are zeros known from the sha list: they are
neither read nor hashed, and are not written at all on a zeroed target.
The writer is flushed once, at the end: file writers send page-aligned data
to the disk as they go (O_DIRECT, backupsvc.directio) and start the writeback
of the rest early, so dirty data stays bounded, the final flush is short and
no flush in the middle stalls the pipeline.
"""

from __future__ import annotations

import bisect
import hashlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from backupsvc import native
from backupsvc.chunking import frames, manifest, packs, shafile
from backupsvc.chunking.blocks import differing_blocks, digest_range, zero_digest
from backupsvc.chunking.compression import DecompressingReader
from backupsvc.chunking.errors import Cancelled, IntegrityError
from backupsvc.chunking.extents import Extent, Source, plan_extents
from backupsvc.chunking.params import (
    EngineParams,
    Layer,
    MiB,
    RestoreResult,
    RestoreWriter,
)
from backupsvc.chunking.shalist import ShaList
from backupsvc.drivers.base import ObjectNotFound, ObjectStore

CHECK_ASIDE = 1 * MiB      # data read from an object is checked in another thread from this size
_DONE = object()
# Decoded data waiting for the writer: at most this many frames (or pieces)
# per object, for the objects being read plus EXTRA_OBJECTS_AHEAD; more
# objects are handed to the readers while what they may hold stays within
# SMALL_AHEAD_BYTES and their number within MAX_OBJECTS_AHEAD (an
# incremental's objects are single blocks: read one by one a few ahead, the
# threads would mostly wait for each other).
QUEUED_PER_OBJECT = 12
EXTRA_OBJECTS_AHEAD = 2
SMALL_AHEAD_BYTES = 16 * MiB
MAX_OBJECTS_AHEAD = 64
# Objects the store is told about (will_read) before the readers get to them.
HINTED_AHEAD = 64
PAGE = 4096                 # zero pages of data blocks are not written on a zeroed target


def _add_run(runs: list[tuple[int, int, bool]], start: int, end: int, skip: bool) -> None:
    if runs and runs[-1][1] == start and runs[-1][2] == skip:
        runs[-1] = (runs[-1][0], end, skip)
    else:
        runs.append((start, end, skip))


Runs = list[tuple[int, int, bool]]          # (start, end, skip) in volume offsets
CheckedRuns = Runs | Future[Runs]


@dataclass
class _LoadedLayer:
    layer: Layer
    meta: manifest.Metadata
    block_size: int

    @property
    def label(self) -> str:
        return "backup %s (%s)" % (self.meta.backup_id, self.layer.prefix)


@dataclass
class _ObjectJob:
    """One object to read and the volume ranges it provides."""

    source: Source
    ranges: list[tuple[int, int]]
    # Pieces (1.0.0) or frames being decoded (2.0.0) waiting for the writer.
    queue: queue.Queue[object] = field(
        default_factory=lambda: queue.Queue(maxsize=QUEUED_PER_OBJECT))
    # Objects written in the middle of this one, each where its data starts:
    # (offset, job), in offset order (see RestoreRun._splice).
    spliced: deque[tuple[int, _ObjectJob]] = field(default_factory=deque)
    host: _ObjectJob | None = None      # the job this one is spliced into
    seq: int = 0                        # its place in reading order

    def needs(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self.ranges)


def load_chain(store: ObjectStore,
               chain: list[Layer]) -> tuple[list[_LoadedLayer], ShaList]:
    """Read every backup's metadata and check its objects exist.

    Returns the layers and the newest backup's sha256 list; of the older
    lists only the block size is read (they can be large).
    """
    loaded = []
    newest = ShaList(1)
    for n, layer in enumerate(chain):
        meta = manifest.load_metadata(store, layer.container, layer.prefix)
        if n == len(chain) - 1:
            sha = shafile.load(store, layer.container, layer.prefix)
            item = _LoadedLayer(layer, meta, sha.chunk_size)
            newest = sha.sha256s
            del sha
        else:
            item = _LoadedLayer(layer, meta, shafile.load_block_size(
                store, layer.container, layer.prefix))
        present = set(store.list(layer.container, layer.prefix))
        missing = [o.name for o in meta.objects if o.name not in present]
        if missing:
            raise IntegrityError("%s: %d object(s) missing from container %s: %s"
                                 % (item.label, len(missing), layer.container,
                                    ", ".join(missing)))
        loaded.append(item)
    if len({item.block_size for item in loaded}) > 1:
        raise IntegrityError("the backups of the chain use different sha block sizes: %s"
                             % ", ".join("%s: %d" % (i.label, i.block_size) for i in loaded))
    return loaded, newest


class RestoreRun:
    def __init__(self, store: ObjectStore, chain: list[Layer], writer: RestoreWriter,
                 size: int, params: EngineParams, cancelled: Callable[[], bool],
                 progress: Callable[[int, int], None] | None, target_is_zeroed: bool) -> None:
        if not chain:
            raise ValueError("a restore needs at least one backup")
        self.store, self.chain, self.writer, self.size = store, chain, writer, size
        self.params, self.cancelled, self.progress = params, cancelled, progress
        self.target_is_zeroed = target_is_zeroed
        self.result = RestoreResult()
        self.stop = threading.Event()
        self.checkers: ThreadPoolExecutor     # hash blocks for the producers (_execute)
        self.done = 0               # volume bytes dealt with, for progress
        self.packs = packs.PackCache(0)     # packed objects being restored run by run

    def _check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("restore of %s was cancelled" % self.chain[-1].prefix)

    def run(self) -> RestoreResult:
        layers, self.shas = load_chain(self.store, self.chain)
        newest = layers[-1]
        self.layers, self.newest = layers, newest
        bs = self.bs = newest.block_size
        if len(self.shas) != -(-self.size // bs):
            raise IntegrityError("%s records %d blocks of %d bytes; a %d-byte volume has %d"
                                 % (newest.label, len(self.shas), bs, self.size,
                                    -(-self.size // bs)))
        self.piece = max(1, self.params.piece_size // bs) * bs
        self.zero_runs = self.shas.zero_runs(self.size)
        if newest.meta.zero_extents is not None:
            # 2.0.0 states them; they must agree with the digests.
            stated = [(off, off + n) for off, n in newest.meta.zero_extents]
            if stated != self.zero_runs:
                raise IntegrityError("%s: the zero extents of its metadata disagree with its "
                                     "sha256 file" % newest.label)
        self.zero_starts = [r[0] for r in self.zero_runs]
        objects = [item.meta.objects for item in layers]
        extents = plan_extents([packs.unpack(o) for o in objects], self.zero_runs, self.size)
        self.packs.limit = packs.budget(objects)
        jobs: dict[int, _ObjectJob] = {}
        work: list[tuple[int, int] | _ObjectJob] = []      # zeros or a job, in offset order
        for ext in extents:
            if ext.start % bs or (ext.end % bs and ext.end != self.size):
                raise IntegrityError("objects of the chain are not aligned to %d-byte sha "
                                     "blocks (at offset %d)" % (bs, ext.start))
            if ext.source is None:
                self._check_zero(ext.start, ext.end)
                work.append((ext.start, ext.end))
                continue
            job = jobs.get(id(ext.source.entry))
            if job is None:
                # (Packed objects are planned run by run: one span each.)
                if ext.source.entry.offset % bs:
                    raise IntegrityError("%s starts at offset %d, not on a %d-byte sha block"
                                         % (self._label(ext.source), ext.source.entry.offset,
                                            bs))
                job = jobs[id(ext.source.entry)] = _ObjectJob(ext.source, [])
                work.append(job)
            job.ranges.append((ext.start, ext.end))
        if self.params.workers >= 2:
            self._splice(extents, jobs)
        self._execute(work)
        self.writer.flush()
        self.result.objects_read += self.packs.reads
        return self.result

    def _check_zero(self, start: int, end: int) -> None:
        """Bytes no object provides must be zeros according to the newest sha list."""
        i = bisect.bisect_right(self.zero_starts, start) - 1
        if i >= 0 and self.zero_runs[i][1] >= end:
            return
        for idx in range(start // self.bs, -(-end // self.bs)):
            length = min(self.bs, self.size - idx * self.bs)
            if self.shas.digest(idx) != zero_digest(length):
                raise IntegrityError(
                    "block %d (offset %d) is in no object of the chain, but %s records "
                    "non-zero data for it" % (idx, idx * self.bs, self.newest.label))

    def _splice(self, extents: list[Extent], jobs: dict[int, _ObjectJob]) -> None:
        """Let objects be written where they sit inside the data of another.

        An incremental's objects are mostly single changed blocks inside the
        range of an older, larger object. Written object after object, the
        large one's data would reach the disk in pieces cut at every such
        block, and each small object as a write of its own. Instead, an object
        whose data starts where another's pauses (it goes on later) is spliced
        into that one, or into the object that one is spliced into: there is
        one level of hosts. The host's writer stops there, writes the spliced
        object, and goes on, so the writes stay in volume order and large.

        The readers take objects in the order they are written: a host, then
        its spliced objects. The host's reader may wait for the writer (its
        queue full) while the writer waits for a spliced object; with two or
        more readers, the others read the spliced objects one after the other,
        each consumed in turn, so this never deadlocks. One reader would.
        """
        prev: _ObjectJob | None = None
        for ext in extents:
            job = None if ext.source is None else jobs[id(ext.source.entry)]
            if (job is not None and prev is not None and job is not prev
                    and job.host is None and not job.spliced
                    and job.ranges[0][0] == ext.start):
                host = prev.host or prev
                if host.ranges[-1][0] > ext.start:      # the host goes on after it
                    job.host = host
                    host.spliced.append((ext.start, job))
            prev = job

    # -- execution ---------------------------------------------------------------
    def _execute(self, work: list[tuple[int, int] | _ObjectJob]) -> None:
        pool = ThreadPoolExecutor(self.params.workers, thread_name_prefix="restore")
        self.checkers = ThreadPoolExecutor(self.params.workers,
                                           thread_name_prefix="restore-check")
        self._pool = pool
        self._ahead: deque[_ObjectJob] = deque()
        self._ahead_bytes = 0       # what their queues may hold (_held)
        self._next: _ObjectJob | None = None    # the next to hand out, once it fits
        # Objects are read in the order they are written: a host, then the
        # objects spliced into it.
        order = [j for w in work if isinstance(w, _ObjectJob) and w.host is None
                 for j in (w, *(spliced for _, spliced in w.spliced))]
        for seq, job in enumerate(order):
            job.seq = seq
        self._upcoming: Iterator[_ObjectJob] = iter(order)
        # Stores that can start reading ahead (POSIX: small, cold objects).
        # The producers tell them, off the writer's thread.
        self._will_read = getattr(self.store, "will_read", None)
        self._to_hint: Iterator[_ObjectJob] = iter(order)
        self._hinted = 0
        self._hint_lock = threading.Lock()
        try:
            for item in work:
                self._check_cancelled()
                if isinstance(item, tuple):
                    self._zeros(*item)
                elif item.host is None:
                    self._consume(self._take(item))
        finally:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self.checkers.shutdown(wait=True, cancel_futures=True)

    def _take(self, job: _ObjectJob) -> _ObjectJob:
        """``job``, the next to write, with the readers kept busy on those after it."""
        # Keep every producer busy, with objects queued for the first ones
        # to finish, so that decoding goes on while the writer waits for the
        # disk: always workers + EXTRA_OBJECTS_AHEAD objects, more while
        # what their queues may hold stays within SMALL_AHEAD_BYTES.
        ahead = self._ahead
        while True:
            if self._next is None:
                self._next = next(self._upcoming, None)
                if self._next is None:
                    break
            held = self._held(self._next)
            if len(ahead) > self.params.workers + EXTRA_OBJECTS_AHEAD and (
                    len(ahead) >= MAX_OBJECTS_AHEAD
                    or self._ahead_bytes + held > SMALL_AHEAD_BYTES):
                break
            nxt, self._next = self._next, None
            self._pool.submit(self._produce, nxt)
            if not isinstance(nxt.source.entry, packs.PackPart):    # (counted when read)
                self.result.objects_read += 1
            self._ahead_bytes += held
            ahead.append(nxt)
        assert ahead[0] is job
        self._ahead_bytes -= self._held(job)
        return ahead.popleft()

    def _held(self, job: _ObjectJob) -> int:
        """The most data ``job``'s queue may hold."""
        entry = job.source.entry
        unit = frames.FRAME_SIZE if entry.framed else self.piece
        return min(entry.length, QUEUED_PER_OBJECT * unit)

    def _hint(self, upto: int, wait: bool = True) -> None:
        """Tell the store about the objects before number ``upto`` in reading order.

        Called by the producers: with ``wait``, it returns once they all have
        been hinted; without, it leaves the work to a producer already at it.
        """
        if self._will_read is None or not self._hint_lock.acquire(blocking=wait):
            return
        try:
            while self._hinted < upto and self._will_read is not None:
                nxt = next(self._to_hint, None)
                if nxt is None:
                    self._will_read = None
                    return
                self._hinted += 1
                entry = nxt.source.entry
                if isinstance(entry, packs.PackPart) and entry.index:
                    continue            # its object was hinted with its first run
                layer = self.layers[nxt.source.layer].layer
                self._will_read(layer.container, entry.name)
        finally:
            self._hint_lock.release()

    def _write_spliced(self, job: _ObjectJob, before: int) -> None:
        """Write the objects spliced into ``job`` that start before offset ``before``."""
        while job.spliced and job.spliced[0][0] < before:
            self._consume(self._take(job.spliced.popleft()[1]))

    def _label(self, source: Source) -> str:
        return "object %s of %s" % (source.entry.name, self.layers[source.layer].label)

    def _put(self, job: _ObjectJob, msg: object) -> bool:
        while not self.stop.is_set():
            try:
                job.queue.put(msg, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, job: _ObjectJob) -> None:
        """Worker: read one object, check its checksum and length, queue the needed data."""
        entry = job.source.entry
        label = "object %s" % entry.name
        try:
            label = self._label(job.source)
            layer = self.layers[job.source.layer].layer
            self._hint(job.seq + 1)                 # hinted before it is opened
            if isinstance(entry, packs.PackPart):
                self._produce_part(job, layer, label)
            elif entry.framed:
                self._produce_frames(job, layer, label)
            else:
                self._produce_pieces(job, layer, label)
        except ObjectNotFound as exc:
            err = IntegrityError("%s is missing" % label)
            err.__cause__ = exc
            self._put(job, err)
        except BaseException as exc:  # handed to the main thread, which raises it
            self._put(job, exc)
        else:
            # The objects ahead, unless another producer is at it.
            self._hint(job.seq + 1 + HINTED_AHEAD, wait=False)

    def _produce_pieces(self, job: _ObjectJob, layer: Layer, label: str) -> None:
        """Read a 1.0.0 object: decompress it whole, check its md5, queue the needed pieces."""
        entry = job.source.entry
        with self.store.open_reader(layer.container, entry.name) as raw:
            src = DecompressingReader(raw, entry.compression, label)
            md5 = hashlib.md5(usedforsecurity=False)
            pos = 0
            while True:
                if self.stop.is_set():
                    return
                data = src.read(self.piece)
                if not data:
                    break
                md5.update(data)
                start = entry.offset + pos
                pos += len(data)
                if pos > entry.length:
                    raise IntegrityError("%s holds more than its recorded %d bytes"
                                         % (label, entry.length))
                if job.needs(start, start + len(data)):
                    if len(data) >= CHECK_ASIDE:
                        # Hash in another thread: this one goes on with the md5.
                        check: CheckedRuns = self.checkers.submit(
                            self._check, job, start, data, label)
                    else:
                        check = self._check(job, start, data, label)
                    if not self._put(job, (start, data, check)):
                        return
        if pos != entry.length:
            raise IntegrityError("%s holds %d bytes, %d recorded" % (label, pos, entry.length))
        if md5.hexdigest() != entry.md5:
            raise IntegrityError("%s fails its md5 check" % label)
        self._put(job, _DONE)

    def _produce_frames(self, job: _ObjectJob, layer: Layer, label: str) -> None:
        """Read a 2.0.0 object's frames; checker threads decode and check the needed ones.

        Each frame's header goes to the main thread in order (a future for
        the frames being decoded, which check the payload's CRC-32), and the
        main thread checks the object's checksum of headers at the end: it
        also covers frames this restore does not need.
        """
        entry = job.source.entry
        pos = stored = 0
        with self.store.open_reader(layer.container, entry.name) as raw:
            for codec, length, header, payload in frames.read_frames(raw, label):
                if self.stop.is_set():
                    return
                start = entry.offset + pos
                pos += length
                stored += len(header) + len(payload)
                if pos > entry.length:
                    raise IntegrityError("%s holds more than its recorded %d bytes"
                                         % (label, entry.length))
                if job.needs(start, entry.offset + pos):
                    msg: object = (start, None, self.checkers.submit(
                        self._decode_and_check, job, start, codec, length, header, payload,
                        label))
                else:
                    msg = (None, None, frames.check_frame(header, payload, label))
                if not self._put(job, msg):
                    return
        if pos != entry.length:
            raise IntegrityError("%s holds %d bytes, %d recorded" % (label, pos, entry.length))
        if stored != entry.stored_length:
            raise IntegrityError("%s is %d bytes in the store, %s recorded"
                                 % (label, stored, entry.stored_length))
        self._put(job, _DONE)

    def _produce_part(self, job: _ObjectJob, layer: Layer, label: str) -> None:
        """Queue the frames of one run of a packed object (read once: backupsvc.chunking.packs)."""
        entry = job.source.entry
        whole = entry.whole if isinstance(entry, packs.PackPart) else None
        assert whole is not None
        pack = self.packs.get((job.source.layer, whole.name), lambda: packs.read_pack(
            self.store, layer.container, whole, label, self.stop.is_set))
        start = entry.offset
        for codec, length, header, payload in pack.run(entry.index):
            if self.stop.is_set():
                return
            if job.needs(start, start + length):
                msg: object = (start, None, self.checkers.submit(
                    self._decode_and_check, job, start, codec, length, header, payload,
                    label))
            else:
                msg = (None, None, header)
            if not self._put(job, msg):
                return
            start += length
        self._put(job, _DONE)

    def _decode_and_check(self, job: _ObjectJob, start: int, codec: int, length: int,
                          header: bytes, payload: bytes,
                          label: str) -> tuple[bytes, Runs, bytes]:
        digest = frames.check_frame(header, payload, label)
        data = frames.decode(codec, payload, length, label)
        return data, self._check(job, start, data, label), digest

    def _check(self, job: _ObjectJob, start: int, data: bytes, label: str) -> Runs:
        """Checker: check the needed blocks of ``data`` (at ``start``) against the sha list.

        A block recorded as zeros is checked by comparing it with zeros, which
        is equivalent to hashing it and much faster. Returns the needed
        ranges as runs ``(start, end, skip)``; ``skip``: zeros that a zeroed
        target already holds, its 4 KiB pages of zeros, whole zero blocks among
        them (so a restored sparse volume allocates only its data).
        """
        bs, shas = self.bs, self.shas
        end = start + len(data)
        runs: Runs = []
        for s, e in job.ranges:
            a, b = max(s, start), min(e, end)
            if a >= b:
                continue
            # A block of zeros hashes to the zero sha (digest_range does not
            # hash it), and no other block does.
            got = digest_range(data, a - start, b - start, bs)
            expected = shas.digests(a // bs, -(-b // bs))
            if got != expected:
                wrong = a // bs + differing_blocks(got, expected)[0]
                raise IntegrityError(
                    "block %d (offset %d) from %s does not match the sha256 recorded "
                    "by %s" % (wrong, wrong * bs, label, self.newest.label))
            if not self.target_is_zeroed:
                _add_run(runs, a, b, False)
                continue
            # Zero pages (whole zero blocks among them) need not be written.
            pos = a
            for za, zb in native.zero_pages(data, a - start, b - start, PAGE):
                if za + start > pos:
                    _add_run(runs, pos, za + start, False)
                _add_run(runs, za + start, zb + start, True)
                pos = zb + start
            if pos < b:
                _add_run(runs, pos, b, False)
        return runs

    def _consume(self, job: _ObjectJob) -> None:
        entry = job.source.entry
        frames_sha = hashlib.sha256() if entry.framed else None
        while True:
            self._check_cancelled()
            msg = job.queue.get()
            if msg is _DONE:
                # (A packed object's run: the object was checked when it was read.)
                if frames_sha is not None and not isinstance(entry, packs.PackPart) \
                        and frames_sha.hexdigest() != entry.frames_sha256:
                    raise IntegrityError("%s fails its frames_sha256 check"
                                         % self._label(job.source))
                self._write_spliced(job, self.size + 1)
                return
            if isinstance(msg, BaseException):
                raise msg
            start, data, check = msg  # type: ignore[misc]
            if frames_sha is not None:          # a 2.0.0 frame
                if start is None:               # not needed: only its header
                    frames_sha.update(check)
                    continue
                data, runs, digest = check.result()
                frames_sha.update(digest)
            else:
                runs = check.result() if isinstance(check, Future) else check
            view = memoryview(data)
            for a, b, skip in runs:
                if job.spliced:
                    self._write_spliced(job, a)
                if skip:
                    self.result.zero_bytes += b - a
                else:
                    self._pwrite(view[a - start:b - start], a)
            self._advance(sum(b - a for a, b, _ in runs))

    def _pwrite(self, view: memoryview, offset: int) -> None:
        if view:
            self.writer.pwrite(view, offset)
            self.result.bytes_written += len(view)

    def _zeros(self, start: int, end: int) -> None:
        self.result.zero_bytes += end - start
        if not self.target_is_zeroed:
            self.writer.write_zeros(start, end - start)
        self._advance(end - start)

    def _advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self.progress is not None:
            self.progress(self.done, self.size)


def run_restore(chain: list[Layer], writer: RestoreWriter, size: int, params: EngineParams,
                cancelled: Callable[[], bool] = lambda: False,
                progress: Callable[[int, int], None] | None = None,
                target_is_zeroed: bool = False, *, store: ObjectStore) -> RestoreResult:
    """Restore the last backup of ``chain`` (full backup first) onto ``writer``."""
    return RestoreRun(store, chain, writer, size, params, cancelled, progress,
                      target_is_zeroed).run()
