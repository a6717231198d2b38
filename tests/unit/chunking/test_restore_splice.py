"""Restores write spliced objects where they sit, so writes stay in volume order.

A changed block restored from an incremental lies inside the range of an
older object; the restore writes it when the older object's data reaches
it (RestoreRun._splice). These tests record every write of a real restore.
"""

import random
import threading
from itertools import pairwise

import pytest

from backupsvc.chunking import restore
from backupsvc.chunking.engine import EngineParams
from backupsvc.chunking.manifest import COMPACT_VERSION, FORMAT_VERSION
from backupsvc.drivers.posix import PosixStore
from tests.unit.chunking import Chain, KiB, MiB, SinglePassTarget


class RecordingTarget(SinglePassTarget):
    """Every write, in the order the restore made it."""

    writes: list[tuple[int, int]]

    def __init__(self, path: str, size: int) -> None:
        super().__init__(path, size)
        self.writes = []
        RecordingTarget.last = self

    def pwrite(self, data, offset: int) -> None:
        self.writes.append((offset, len(data)))
        super().pwrite(data, offset)


def params(version: str, workers: int, **kw) -> EngineParams:
    base = dict(chunk_size=256 * KiB, sha_block_size=4 * KiB, piece_size=16 * KiB,
                compression="zlib", workers=workers, format_version=version)
    base.update(kw)
    return EngineParams(**base)


def changed(image: bytes, rng: random.Random, blocks: int, block: int = 4 * KiB) -> bytes:
    out = bytearray(image)
    for index in rng.sample(range(len(image) // block), blocks):
        out[index * block:(index + 1) * block] = rng.randbytes(block)
    return bytes(out)


def breaks(writes: list[tuple[int, int]]) -> int:
    """How many writes do not start where the previous one ended."""
    return sum(1 for (a, n), (b, _) in pairwise(writes) if a + n != b)


def chain_of_scattered_changes(tmp_path, version: str, workers: int,
                               store: PosixStore | None = None) -> Chain:
    rng = random.Random(7)
    chain = Chain(tmp_path, params(version, workers), store=store)
    image = rng.randbytes(3 * MiB)          # no zeros: all of it is written
    chain.backup(image)
    for _ in range(3):
        image = changed(image, rng, 25)
        chain.backup(image)
    return chain


@pytest.mark.parametrize("version", [COMPACT_VERSION, FORMAT_VERSION])
def test_changed_blocks_are_written_in_volume_order(tmp_path, version):
    chain = chain_of_scattered_changes(tmp_path, version, workers=2)
    data, result = chain.restore(target_cls=RecordingTarget)
    assert data == chain.images[-1]
    writes = RecordingTarget.last.writes
    assert sorted(writes) == writes
    assert breaks(writes) == 0              # one contiguous stream, 3 MiB
    assert result.bytes_written == 3 * MiB


def test_one_reader_writes_object_after_object(tmp_path):
    """Without a second reader nothing is spliced (it could deadlock): the writes
    jump back for every changed block, which is what the test above rules out."""
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers=1)
    data, _ = chain.restore(target_cls=RecordingTarget)
    assert data == chain.images[-1]
    assert breaks(RecordingTarget.last.writes) > 25


@pytest.mark.parametrize("version", [COMPACT_VERSION, FORMAT_VERSION])
@pytest.mark.parametrize("workers", [2, 3])
def test_nested_large_changes_restore_without_deadlock(tmp_path, version, workers):
    """Large changed runs inside older objects, small ones inside those, and
    objects far longer than a reader's queue: every reader can be waiting for
    the writer at once. The restore must finish, byte-identical."""
    rng = random.Random(11)
    chain = Chain(tmp_path, params(version, workers, chunk_size=4 * MiB))
    image = bytearray(rng.randbytes(6 * MiB))
    image[5 * MiB:5 * MiB + 256 * KiB] = bytes(256 * KiB)      # a zero gap
    chain.backup(bytes(image))
    image[1 * MiB:2 * MiB + 512 * KiB] = rng.randbytes(1536 * KiB)  # a large run, nested
    chain.backup(bytes(image))
    image = bytearray(changed(bytes(image), rng, 60))           # small ones inside it
    chain.backup(bytes(image))
    image[2 * MiB + 8 * KiB:2 * MiB + 300 * KiB] = rng.randbytes(292 * KiB)
    chain.backup(bytes(image))

    done: list[bytes] = []
    failed: list[BaseException] = []

    def restore() -> None:
        try:
            done.append(chain.restore(target_cls=SinglePassTarget)[0])
        except BaseException as exc:
            failed.append(exc)

    worker = threading.Thread(target=restore, daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the restore deadlocked"
    assert not failed, failed
    assert done == [bytes(image)]


class HintRecordingStore(PosixStore):
    """A real PosixStore that records the restore's read-ahead hints and its opens."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def will_read(self, container: str, name: str) -> None:
        with self._lock:
            self.events.append(("hint", name))
        super().will_read(container, name)

    def open_reader(self, container: str, name: str):
        with self._lock:
            self.events.append(("open", name))
        return super().open_reader(container, name)


@pytest.mark.parametrize("workers", [1, 2])
def test_restore_hints_each_object_once_before_reading_it(tmp_path, workers):
    store = HintRecordingStore(str(tmp_path / "store"))
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers, store)
    store.events.clear()
    data, result = chain.restore()
    assert data == chain.images[-1]
    hinted = [name for kind, name in store.events if kind == "hint"]
    opened = [name for kind, name in store.events if kind == "open"
              and name.rsplit("-", 1)[-1].isdigit()]      # data objects, not manifests
    assert len(hinted) == len(set(hinted)) == len(opened) == result.objects_read
    assert set(hinted) == set(opened)
    first = {}
    for at, (kind, name) in enumerate(store.events):
        first.setdefault((kind, name), at)
    assert all(first[("hint", name)] < first[("open", name)] for name in opened)


@pytest.mark.parametrize("version", [FORMAT_VERSION, COMPACT_VERSION])
def test_small_objects_are_read_many_ahead_within_the_memory_budget(tmp_path, monkeypatch,
                                                                     version):
    # 75 single-block objects: the readers get many of them at once, but
    # never more than MAX_OBJECTS_AHEAD nor, past the few every restore
    # keeps going, more than SMALL_AHEAD_BYTES of queued data.
    monkeypatch.setattr(restore, "MAX_OBJECTS_AHEAD", 20)
    monkeypatch.setattr(restore, "SMALL_AHEAD_BYTES", 40 * KiB * 12)
    chain = chain_of_scattered_changes(tmp_path, version, 2)
    seen: list[tuple[int, int]] = []
    real_take = restore.RestoreRun._take

    def take(self, job):
        taken = real_take(self, job)
        seen.append((len(self._ahead) + 1, self._ahead_bytes + self._held(taken)))
        return taken

    monkeypatch.setattr(restore.RestoreRun, "_take", take)
    data, result = chain.restore()
    assert data == chain.images[-1]
    minimum = 2 + restore.EXTRA_OBJECTS_AHEAD + 1
    assert minimum + 5 < max(n for n, _ in seen) <= 20
    assert all(n <= minimum or held <= 40 * KiB * 12 for n, held in seen)
    assert max(held for n, held in seen if n > minimum) > 40 * KiB * 6
