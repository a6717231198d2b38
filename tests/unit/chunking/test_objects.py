"""Finished objects go to the store from helper threads, with bounded memory.

The buffered bytes of finished objects are bounded (MAX_PENDING_BYTES), and
they stop counting once a helper has handed them to the store's writer, not
when the object is durable: a slow commit (fsync, a Swift PUT's response)
must not stall the backup when its bytes are already out of memory.
"""

import contextlib
import threading

import pytest

from backupsvc.chunking import manifest, objects
from backupsvc.chunking.frames import FRAME_SIZE, HEADER, FramedCompressorFactory
from backupsvc.chunking.params import BackupResult, MiB
from backupsvc.drivers.posix import PosixStore

WAIT = 20       # seconds: only a broken implementation waits that long


class SlowCommitStore(PosixStore):
    """A POSIX store whose objects' commit waits until ``release`` is set."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.handed: list[str] = []     # objects whose bytes were all written
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def open_writer(self, container, name):
        with super().open_writer(container, name) as writer:
            yield writer
            with self.lock:
                self.handed.append(name)
            assert self.release.wait(WAIT), "the test never released the commits"


def finish_objects(output: objects.ObjectOutput, count: int, size: int) -> None:
    data = memoryview(bytes(range(256)) * (size // 256))
    for i in range(count):
        obj = output.new(i * size)
        obj.length = size
        output.emit(obj, size, obj.compressor.compress_segment(data, True))
        output.finish(obj)


def test_bytes_handed_to_the_store_stop_counting_before_the_commit(tmp_path):
    store = SlowCommitStore(str(tmp_path / "store"))
    store.ensure_container("c")
    output = objects.ObjectOutput(store, "c", "p", FramedCompressorFactory("none"),
                                  BackupResult())
    size = 6 * MiB              # three of them are more than MAX_PENDING_BYTES
    assert 2 * size < objects.MAX_PENDING_BYTES < 3 * size
    count = objects.HELPERS - 1     # a helper is free for each
    done = threading.Event()
    producer = threading.Thread(target=lambda: (finish_objects(output, count, size),
                                                done.set()))
    producer.start()
    try:
        # Every object was finished (its bytes passed on) while no commit ended.
        assert done.wait(WAIT)
        assert len(store.handed) <= count
        assert not any(store.list("c", "p"))        # nothing is committed yet
    finally:
        store.release.set()
        producer.join()
    output.wait_complete()
    output.shutdown()
    names = store.list("c", "p")
    assert len(names) == count
    assert sorted(store.handed) == sorted(names)
    assert all(len(store.get("c", n)) > size for n in names)


def test_buffered_bytes_stay_bounded_while_helpers_are_busy(tmp_path, monkeypatch):
    store = SlowCommitStore(str(tmp_path / "store"))
    store.ensure_container("c")
    monkeypatch.setattr(objects, "HELPERS", 1)      # one helper, stuck in a commit
    output = objects.ObjectOutput(store, "c", "p", FramedCompressorFactory("none"),
                                  BackupResult())
    size = 6 * MiB
    done = threading.Event()
    producer = threading.Thread(target=lambda: (finish_objects(output, 4, size),
                                                done.set()))
    producer.start()
    try:
        # The helper writes the first object and waits in its commit; the second
        # and third wait for it (12 MiB held), the fourth would exceed the bound.
        assert not done.wait(1.0)
        with output._handed:
            assert output._held <= objects.MAX_PENDING_BYTES
            assert output._held == 2 * (size + HEADER.size * size // FRAME_SIZE)
    finally:
        store.release.set()
        producer.join()
    assert done.is_set()
    output.wait_complete()
    output.shutdown()
    assert len(store.list("c", "p")) == 4
    assert output._held == 0


def test_a_helper_failure_fails_the_next_submission(tmp_path):
    class BrokenStore(PosixStore):
        def open_writer(self, container, name):
            raise OSError(5, "Input/output error")

    store = BrokenStore(str(tmp_path / "store"))
    output = objects.ObjectOutput(store, "c", "p", FramedCompressorFactory("none"),
                                  BackupResult())
    with pytest.raises(OSError, match="Input/output error"):
        finish_objects(output, objects.MAX_PENDING + 2, 4096)
        output.wait_complete()
    output.shutdown()
    assert output._held == 0
    assert manifest.data_object_name("p", 1) in output.written
