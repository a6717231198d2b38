"""SwiftStore against a real Swift: the semantics of the POSIX store's tests."""

import hashlib
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest
from swiftclient import client as swift

from backupsvc.drivers.base import (
    ContainerNotFound,
    InvalidName,
    ObjectNotFound,
    ObjectStore,
    StoreError,
)
from backupsvc.drivers.swift import SwiftStore
from tests.functional.swift.conftest import make_conf
from tests.swiftserver import LISTING_LIMIT

pytestmark = pytest.mark.functional

P = "volume_v1/20240501103045/az_az1_backup_b1"     # a prefix as the store makes them


def raw_connection(server) -> swift.Connection:
    return swift.Connection(authurl=server.auth_url, user=server.user, key=server.key)


def test_is_an_object_store(store):
    assert isinstance(store, ObjectStore)


def test_put_get_list_delete(store, container):
    store.ensure_container(container)
    store.ensure_container(container)                  # exists: nothing to do
    store.put(container, P + "-00002", b"two")
    store.put(container, P + "-00001", b"one")
    store.put(container, "q-00001", b"other")
    assert store.get(container, P + "-00001") == b"one"
    assert store.list(container, P + "-") == [P + "-00001", P + "-00002"]
    assert store.list(container, "") == ["q-00001", P + "-00001", P + "-00002"]
    assert store.list("no-such-container", "p") == []
    store.delete(container, P + "-00001")
    store.delete(container, P + "-00001")                # missing: not an error
    store.delete("no-such-container", "x")              # nor is a missing container
    assert store.list(container, P + "-") == [P + "-00002"]
    with pytest.raises(ObjectNotFound, match="%s.*%s" % (P + "-00001", container)):
        store.get(container, P + "-00001")
    with pytest.raises(ObjectNotFound):
        with store.open_reader(container, "nothing"):
            pass


def test_empty_object(store, container):
    store.ensure_container(container)
    store.put(container, "empty", b"")
    with store.open_writer(container, "empty2"):
        pass
    assert store.get(container, "empty") == b"" == store.get(container, "empty2")


def test_full_listing_takes_several_pages(store, container, swift_server):
    store.ensure_container(container)
    conn = raw_connection(swift_server)
    names = ["%s-%05d" % (P, i) for i in range(1, LISTING_LIMIT * 2 + 7)]
    for name in names:
        conn.put_object(container, name, b"")
    conn.put_object(container, "other", b"")
    assert store.list(container, P) == names


@pytest.mark.parametrize("buffer", [0, 64 * 1024, 10 ** 9],
                         ids=["streamed-at-once", "streamed-later", "one-put"])
def test_streaming_writer_and_reader(conf, container, buffer):
    store = SwiftStore.from_conf(conf)
    store.put_buffer_size = buffer
    store.read_chunk_size = 7777
    store.ensure_container(container)
    with store.open_writer(container, "big") as w:
        for i in range(10):
            w.write(bytes([i]) * 100000)
            assert store.list(container, "") == []      # not visible until complete
    assert store.list(container, "") == ["big"]
    with store.open_reader(container, "big") as r:
        assert r.read(5) == b"\0" * 5
        assert r.read(0) == b""
        rest = r.read()
    assert len(rest) == 10 * 100000 - 5
    assert rest[99995:100000] == b"\1" * 5
    with store.open_reader(container, "big") as r:      # left unread: fine
        assert r.read(3) == b"\0" * 3


def test_large_object_round_trip(store, container):
    """An object larger than the PUT buffer and the stream queue, in odd-sized writes."""
    store.ensure_container(container)
    data = hashlib.shake_256(b"seed").digest(13 * 1024 * 1024 + 17)
    with store.open_writer(container, "large") as w:
        view = memoryview(data)
        while view:
            w.write(view[:999_983])
            view = view[999_983:]
    with store.open_reader(container, "large") as r:
        parts = []
        while chunk := r.read(3 * 1024 * 1024 + 1):
            parts.append(chunk)
    assert b"".join(parts) == data


def test_streaming_memory_is_bounded(store, container):
    """64 MiB through one writer: Python allocations stay bounded.

    About put_buffer_size (4 MiB) + the stream queue (4 MiB) + a few MiB in
    flight (~11 MiB measured); a buffering writer would need 64 MiB.
    """
    store.ensure_container(container)
    block = bytes(range(256)) * 4096                     # 1 MiB
    md5 = hashlib.md5()
    tracemalloc.start()
    try:
        with store.open_writer(container, "big") as w:
            for _ in range(64):
                w.write(block)
                md5.update(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 14 * 1024 * 1024, peak
    with store.open_reader(container, "big") as r:
        check = hashlib.md5()
        while chunk := r.read(4 * 1024 * 1024):
            check.update(chunk)
    assert check.hexdigest() == md5.hexdigest()


@pytest.mark.parametrize("buffer", [0, 10 ** 9], ids=["streamed", "one-put"])
def test_writer_exception_leaves_nothing(conf, container, buffer):
    store = SwiftStore.from_conf(conf)
    store.put_buffer_size = buffer
    store.ensure_container(container)
    with pytest.raises(RuntimeError):
        with store.open_writer(container, "obj") as w:
            w.write(b"partial" * 100000)
            raise RuntimeError("boom")
    assert store.list(container, "") == []
    store.put(container, "obj", b"old")
    with pytest.raises(RuntimeError):
        with store.open_writer(container, "obj") as w:
            w.write(b"new" * 100000)
            raise RuntimeError("boom")
    assert store.get(container, "obj") == b"old"               # replaced only on success
    assert store._idle, "the connections went back to the pool"


@pytest.mark.parametrize("container", ["", "a/b", "/etc", "..", ".", "x" * 257])
def test_bad_container_names_rejected(store, container):
    with pytest.raises(InvalidName):
        store.ensure_container(container)
    with pytest.raises(InvalidName):
        store.put(container, "obj", b"x")


@pytest.mark.parametrize("name", ["", "x\0y", "a/../b", "x" * 1025])
def test_bad_object_names_rejected(store, name):
    with pytest.raises(InvalidName):
        store.put("c", name, b"x")


@pytest.mark.parametrize("buffer", [0, 10 ** 9], ids=["streamed", "one-put"])
def test_missing_container_without_create(conf, container, swift_server, buffer):
    conf.set_override("backup_create_containers", False)
    store = SwiftStore.from_conf(conf)
    store.put_buffer_size = buffer
    with pytest.raises(ContainerNotFound, match="backup_create_containers"):
        store.ensure_container(container)
    with pytest.raises(ContainerNotFound, match=container):
        store.put(container, "obj", b"x" * 1000)
    raw_connection(swift_server).put_container(container)     # the operator made it
    store.ensure_container(container)
    store.put(container, "obj", b"x" * 1000)
    assert store.list(container, "") == ["obj"]


def test_storage_policy(swift_server, container):
    store = SwiftStore.from_conf(make_conf(swift_server,
                                           backup_swift_create_storage_policy="silver"))
    store.ensure_container(container)
    store.put(container, "obj", b"x")
    headers = raw_connection(swift_server).head_container(container)
    assert headers["x-storage-policy"] == "silver"
    bad = SwiftStore.from_conf(make_conf(swift_server,
                                         backup_swift_create_storage_policy="no-such"))
    with pytest.raises(StoreError, match="PUT container %s.*no-such" % (container + "x")):
        bad.ensure_container(container + "x")


def test_reading_a_large_object_manifest(store, container, swift_server):
    """A DLO's ETag is not the md5 of its content: it must not be checked."""
    store.ensure_container(container)
    store.put(container, "seg/1", b"a" * 1000)
    store.put(container, "seg/2", b"b" * 10)
    raw_connection(swift_server).put_object(
        container, "manifest", b"", headers={"X-Object-Manifest": "%s/seg/" % container})
    assert store.get(container, "manifest") == b"a" * 1000 + b"b" * 10


def test_naming(store):
    assert store.default_container("0123456789") == "volumebackups"
    when = datetime(2024, 5, 1, 12, 30, 45, tzinfo=timezone(timedelta(hours=2)))
    assert store.object_prefix("vol", "bak", when) == "volume_vol/20240501103045/az_az1_backup_bak"
    assert (store.object_prefix("vol", "bak", datetime(2024, 5, 1, 12, 30, 45))
            == "volume_vol/20240501123045/az_az1_backup_bak")
