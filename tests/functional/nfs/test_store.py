"""UserspaceNfsStore over the real NFS protocol (nfs-rs against nfs-ganesha).

The cases of tests/unit/drivers/test_posix.py, plus what only NFS has: what
the server's export directory holds afterwards (read there, never written),
big objects in several pieces, a lost connection.
"""

import os
import random
import stat
from datetime import datetime, timedelta, timezone

import pytest

from backupsvc.drivers import nfs_client
from backupsvc.drivers.base import (
    ContainerNotFound,
    InvalidName,
    ObjectNotFound,
    ObjectStore,
    StoreError,
)
from backupsvc.drivers.nfs import from_conf
from backupsvc.drivers.nfs_client import UserspaceNfsStore
from backupsvc.drivers.posix import PosixStore
from tests.functional.nfs.conftest import nfs_conf

pytestmark = pytest.mark.functional
MiB = 1024 * 1024


@pytest.fixture
def store(share):
    return share.store()


def read_local(share, container, name):
    with open(os.path.join(share.local, container, name), "rb") as f:
        return f.read()


def test_is_an_object_store(store, share):
    assert isinstance(store, ObjectStore)
    assert isinstance(from_conf(share.conf()), UserspaceNfsStore)


def test_put_get_list_delete(store, share):
    store.ensure_container("ab/cd/abcd-1")
    store.ensure_container("ab/cd/abcd-1")                 # again: fine
    store.put("ab/cd/abcd-1", "p-00002", b"two")
    store.put("ab/cd/abcd-1", "p-00001", b"one")
    store.put("ab/cd/abcd-1", "q-00001", b"other")
    assert store.get("ab/cd/abcd-1", "p-00001") == b"one"
    assert store.list("ab/cd/abcd-1", "p-") == ["p-00001", "p-00002"]
    assert store.list("ab/cd/abcd-1", "") == ["p-00001", "p-00002", "q-00001"]
    assert store.list("no/such/container", "p") == []
    # The files are really on the server, under the share's directory.
    assert read_local(share, "ab/cd/abcd-1", "q-00001") == b"other"
    store.delete("ab/cd/abcd-1", "p-00001")
    store.delete("ab/cd/abcd-1", "p-00001")          # missing: not an error
    store.delete("no/such/container", "p-00001")
    assert store.list("ab/cd/abcd-1", "p-") == ["p-00002"]
    assert not os.path.exists(os.path.join(share.local, "ab/cd/abcd-1/p-00001"))
    with pytest.raises(ObjectNotFound):
        store.get("ab/cd/abcd-1", "p-00001")
    with pytest.raises(ObjectNotFound):
        with store.open_reader("ab/cd/abcd-1", "nothing"):
            pass


def test_modes(store, share):
    store.ensure_container("c/d")
    store.put("c/d", "obj", b"x")
    assert stat.S_IMODE(os.stat(os.path.join(share.local, "c/d/obj")).st_mode) == 0o660
    for d in ("c", "c/d"):
        assert stat.S_IMODE(os.stat(os.path.join(share.local, d)).st_mode) == 0o770


def test_streaming_writer_and_reader(store, share):
    store.ensure_container("c")
    with store.open_writer("c", "big") as w:
        for i in range(10):
            w.write(bytes([i]) * 100000)
            assert store.list("c", "") == []        # not visible until complete
    with store.open_reader("c", "big") as r:
        assert r.read(5) == b"\0" * 5
        assert len(r.read()) == 10 * 100000 - 5
        assert r.read() == b""
    expected = b"".join(bytes([i]) * 100000 for i in range(10))
    assert read_local(share, "c", "big") == expected


def test_big_object_in_pieces(store, share):
    """Writes of every size around the piece size; reads with readinto and read(n)."""
    rng = random.Random(7)
    data = rng.randbytes(2 * nfs_client.WRITE_PIECE + 12345)
    store.ensure_container("c")
    with store.open_writer("c", "big") as w:
        pos = 0
        for size in (1, 1000, nfs_client.WRITE_PIECE - 1001, nfs_client.WRITE_PIECE + 3, 7):
            w.write(data[pos:pos + size])
            pos += size
        w.write(memoryview(data)[pos:])
    assert read_local(share, "c", "big") == data
    assert store.get("c", "big") == data
    with store.open_reader("c", "big") as r:
        buf = bytearray(MiB)
        got = bytearray()
        while n := r.readinto(buf):
            got += buf[:n]
    assert got == data


def test_writer_exception_leaves_nothing(store, share):
    store.ensure_container("c")
    with pytest.raises(RuntimeError):
        with store.open_writer("c", "obj") as w:
            w.write(b"partial" * 1000000)               # more than one piece sent
            raise RuntimeError("boom")
    assert share.names_over_nfs("c") == []
    assert os.listdir(os.path.join(share.local, "c")) == []
    store.put("c", "obj", b"old")
    with pytest.raises(RuntimeError):
        with store.open_writer("c", "obj") as w:
            w.write(b"new")
            raise RuntimeError("boom")
    assert store.get("c", "obj") == b"old"               # replaced only on success
    assert share.names_over_nfs("c") == ["obj"]


def test_temp_files_are_not_listed(store, share):
    store.ensure_container("c")
    client = share.server.client(share.version)
    try:                                                 # a crash leftover, made over NFS
        with client.open("%s/c/.p-00001.tmp-abc" % share.subdir, "wb") as f:
            f.write(b"crash leftover")
        client.mkdir("%s/c/p-dir" % share.subdir)        # directories are not objects
    finally:
        client.close()
    store.put("c", "p-00002", b"x")
    with store.open_writer("c", "p-00003") as w:
        w.write(b"y")
        assert store.list("c", "p") == ["p-00002"]
        hidden = [n for n in share.names_over_nfs("c") if n.startswith(".p-00003.tmp-")]
        assert len(hidden) == 1
    assert store.list("c", "p") == ["p-00002", "p-00003"]


@pytest.mark.parametrize("container", ["/etc", "../x", "a/../../x", "a//b", "", "a/./b", "."])
def test_container_escape_rejected(store, container):
    with pytest.raises(InvalidName):
        store.ensure_container(container)
    with pytest.raises(InvalidName):
        store.put(container, "obj", b"x")


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "x\0y"])
def test_bad_object_names_rejected(store, name):
    with pytest.raises(InvalidName):
        store.put("c", name, b"x")


def test_missing_container_without_create(share):
    store = share.store(backup_create_containers=False)
    with pytest.raises(ContainerNotFound, match="backup_create_containers"):
        store.ensure_container("a/b")
    share.server.mkdir("%s/a/b" % share.subdir)
    store.ensure_container("a/b")
    with pytest.raises(ContainerNotFound):
        store.put("zz", "obj", b"x")


def test_naming_matches_posix(store):
    posix = PosixStore("/nonexistent")
    when = datetime(2024, 5, 1, 12, 30, 45, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2024, 5, 1, 12, 30, 45)
    assert store.default_container("0123456789") == "01/23/0123456789"
    assert store.default_container("0123456789") == posix.default_container("0123456789")
    for ts in (when, naive):
        assert store.object_prefix("vol", "bak", ts) == posix.object_prefix("vol", "bak", ts)


def test_object_replaced_while_read_is_reported(store):
    store.ensure_container("c")
    store.put("c", "obj", b"a" * 1000)
    with store.open_reader("c", "obj") as r:
        assert r.read(10) == b"a" * 10
        store.put("c", "obj", b"b" * 1000)
        with pytest.raises(StoreError, match="replaced"):
            r.read(10)


def test_unreachable_server_fails_clearly(nfs_server):
    conf = nfs_conf(nfs_server, "", backup_mount_options="vers=4.1,port=1,noresvport",
                    backup_nfs_timeout=5)
    with pytest.raises(StoreError, match=r"cannot reach NFS share 127\.0\.0\.1:/backups"):
        UserspaceNfsStore.from_conf(conf)


def test_reconnects_after_the_server_restarts(nfs_server, share41):
    store = share41.store(backup_nfs_timeout=1)
    store.ensure_container("c")
    store.put("c", "before", b"1")
    port = nfs_server.port
    nfs_server.stop_process()
    with pytest.raises(StoreError):
        store.put("c", "during", b"2")
    nfs_server.restart()
    assert nfs_server.port == port
    assert store.list("c", "") == ["before"]          # a new connection, same share
    store.put("c", "after", b"3")
    assert store.get("c", "after") == b"3"
