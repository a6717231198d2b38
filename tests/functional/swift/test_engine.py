"""The chunking engine end to end through a SwiftStore on a real Swift."""

import io
import random
from contextlib import contextmanager
from datetime import datetime

import pytest

from backupsvc.chunking.engine import (
    Cancelled,
    EngineParams,
    Layer,
    read_metadata,
    read_sha256s,
    run_backup,
    run_delete,
)
from backupsvc.drivers.swift import SwiftStore, connection_factory
from tests.functional.swift.conftest import ProxyOutage, make_conf
from tests.unit.chunking import (
    Chain,
    KiB,
    MiB,
    SinglePassTarget,
    description,
    random_image,
)

pytestmark = pytest.mark.functional


def params(compression="zlib", **kw) -> EngineParams:
    base = dict(chunk_size=192 * KiB, sha_block_size=4 * KiB, piece_size=64 * KiB,
                compression=compression)
    base.update(kw)
    return EngineParams(**base)


class SwiftChain(Chain):
    """Chain (tests/unit/chunking) with Cinder's Swift object names, from the store."""

    def __init__(self, tmp_path, store: SwiftStore, container: str, p: EngineParams,
                 name: str = "b") -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp_path, p, store=store, name=name)
        self.container = container

    def backup(self, image, **kwargs):
        n = len(self.layers)
        backup_id = "%s%d" % (self.name, n)
        prefix = self.store.object_prefix("vol-1", backup_id, datetime(2024, 5, 1, 10, 0, n))
        parent = None
        if self.layers:
            parent = read_sha256s(self.store, self.container, self.layers[-1].prefix)[1]
        result = run_backup(io.BytesIO(bytes(image)), len(image), self.store, self.container,
                            prefix, description(backup_id), self.params,
                            parent_sha256s=parent, **kwargs)
        self.layers.append(Layer(self.container, prefix))
        self.images.append(bytes(image))
        self.results.append(result)
        return result


def change(rng: random.Random, image: bytearray, count: int) -> bytearray:
    image = bytearray(image)
    for _ in range(count):
        off = rng.randrange(len(image))
        n = rng.randrange(1, 40 * KiB)
        image[off:off + n] = rng.randbytes(len(image[off:off + n]))
    return image


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_full_incrementals_and_chain_restore(tmp_path, store, container, compression):
    """Full + 2 incrementals; every layer restores byte-identical (single pass)."""
    store.put_buffer_size = 64 * KiB            # most objects are streamed
    store.ensure_container(container)
    chain = SwiftChain(tmp_path, store, container, params(compression))
    rng = random.Random(7)
    image = random_image(rng, 1 * MiB + 5 * KiB, data_fraction=0.7)
    chain.backup(image)
    for step in range(2):
        image = change(rng, image, 3)
        if step == 1:
            image += rng.randbytes(100 * KiB + 3)      # the volume grew
        chain.backup(image)
    names = store.list(container, "")
    assert chain.layers[0].prefix == "volume_vol-1/20240501100000/az_az1_backup_b0"
    for layer in chain.layers:
        meta = read_metadata(store, container, layer.prefix)
        assert {o.name for o in meta.objects} <= set(names)
    for idx in range(3):
        data, _ = chain.restore(idx, target_cls=SinglePassTarget)
        assert data == chain.images[idx], idx
    data, _ = chain.restore(zeroed=False, junk_seed=3)
    assert data == chain.images[-1]


def test_objects_larger_than_the_stream_queue(tmp_path, store, container):
    store.ensure_container(container)
    chain = SwiftChain(tmp_path, store, container,
                        params("none", chunk_size=12 * MiB, piece_size=1 * MiB))
    image = bytearray(random.Random(8).randbytes(13 * MiB))
    chain.backup(image)
    meta = read_metadata(store, container, chain.layers[0].prefix)
    assert [o.length for o in meta.objects] == [12 * MiB, 1 * MiB]
    assert chain.restore()[0] == image


class Counter:
    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls == self.at


class RecordingStore(SwiftStore):
    """Remembers every object a writer was opened for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[str] = []

    def open_writer(self, container, name):
        self.opened.append(name)
        return super().open_writer(container, name)


class OutageStore(SwiftStore):
    """Stops the real proxy once the ``at``-th object is being streamed: its request,
    and those of objects the engine's helpers are still closing, die with it."""

    def __init__(self, *args, swift_server, at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.swift_server, self.at = swift_server, at
        self.opened = 0
        self.outage: ProxyOutage | None = None

    @contextmanager
    def open_writer(self, container, name):
        with super().open_writer(container, name) as writer:
            self.opened += 1
            if self.opened == self.at:
                write = writer.write

                def write_then_stop(data):
                    n = write(data)
                    if writer.bytes_written > self.put_buffer_size and self.outage is None:
                        self.outage = ProxyOutage(self.swift_server, after=1.0)
                    return n

                writer.write = write_then_stop
            yield writer


def test_backup_survives_a_proxy_restart(tmp_path, swift_server, container, caplog):
    conf = make_conf(swift_server, backup_swift_retry_attempts=6, backup_swift_retry_backoff=1)
    store = OutageStore(connection_factory(conf), swift_server=swift_server, at=4,
                        retries=6)
    store.put_buffer_size = 16 * KiB            # every data object is streamed
    store.ensure_container(container)
    chain = SwiftChain(tmp_path, store, container, params("none"))
    image = bytearray(random.Random(9).randbytes(2 * MiB))
    try:
        chain.backup(image)
    finally:
        if store.outage is not None:
            store.outage.end()
    assert store.outage is not None and store.opened > store.at
    assert "again from its spool file" in caplog.text
    assert chain.restore()[0] == image


def test_cancellation_leaves_no_objects(tmp_path, conf, container):
    store = RecordingStore.from_conf(conf)
    store.put_buffer_size = 16 * KiB
    store.ensure_container(container)
    image = bytearray(random.Random(9).randbytes(1 * MiB))
    whens = {
        "at once": Counter(1),
        "during the data": lambda: len(store.opened) >= 3,
        "after the sha256 file": lambda: any(n.endswith("_sha256file") for n in store.opened),
    }
    for label, cancelled in whens.items():
        store.opened.clear()
        name = label.replace(" ", "-")
        chain = SwiftChain(tmp_path / name, store, container, params(), name=name)
        with pytest.raises(Cancelled):
            chain.backup(image, cancelled=cancelled)
        assert store.list(container, "") == [], label


class FailingStore(SwiftStore):
    """The third data object's stream breaks half-way."""

    def open_writer(self, container, name):
        cm = super().open_writer(container, name)
        return Breaking(cm) if name.endswith("-00003") else cm


class Breaking:
    def __init__(self, cm) -> None:
        self.cm = cm

    def __enter__(self):
        self.inner = self.cm.__enter__()
        return self

    def write(self, data):
        self.inner.write(data[:len(data) // 2])
        raise OSError("disk on fire")

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def test_failing_write_leaves_no_objects(tmp_path, conf, container):
    store = FailingStore.from_conf(conf)
    store.put_buffer_size = 16 * KiB
    store.ensure_container(container)
    chain = SwiftChain(tmp_path, store, container, params("none"))
    with pytest.raises(OSError, match="disk on fire"):
        chain.backup(bytearray(random.Random(10).randbytes(1 * MiB)))
    assert store.list(container, "") == []


def test_delete_removes_all_objects_of_one_backup(tmp_path, store, container):
    store.ensure_container(container)
    rng = random.Random(11)
    image = random_image(rng, 512 * KiB)
    first = SwiftChain(tmp_path / "a", store, container, params(), name="a")
    first.backup(image)
    first.backup(change(rng, image, 3))
    other = SwiftChain(tmp_path / "b", store, container, params(), name="x")
    other.backup(image)
    before = store.list(container, "")
    victim = first.layers[1].prefix
    count = run_delete(store, container, victim)
    assert count == len([n for n in before if n.startswith(victim)]) >= 3
    after = store.list(container, "")
    assert not [n for n in after if n.startswith(victim)]
    assert after == [n for n in before if not n.startswith(victim)]
    assert other.restore()[0] == image
