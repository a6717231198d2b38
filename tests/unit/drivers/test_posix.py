"""PosixStore on real directories."""

import os
import stat
import time
from datetime import datetime, timedelta, timezone

import pytest

from backupsvc import directio
from backupsvc.drivers.base import (
    ContainerNotFound,
    InvalidName,
    ObjectNotFound,
    ObjectStore,
    StoreError,
)
from backupsvc.drivers.posix import PosixStore


@pytest.fixture
def store(tmp_path):
    return PosixStore(str(tmp_path / "backups"))


def test_is_an_object_store(store):
    assert isinstance(store, ObjectStore)


def test_put_get_list_delete(store):
    store.ensure_container("ab/cd/abcd-1")
    store.put("ab/cd/abcd-1", "p-00002", b"two")
    store.put("ab/cd/abcd-1", "p-00001", b"one")
    store.put("ab/cd/abcd-1", "q-00001", b"other")
    assert store.get("ab/cd/abcd-1", "p-00001") == b"one"
    assert store.list("ab/cd/abcd-1", "p-") == ["p-00001", "p-00002"]
    assert store.list("ab/cd/abcd-1", "") == ["p-00001", "p-00002", "q-00001"]
    assert store.list("no/such/container", "p") == []
    store.delete("ab/cd/abcd-1", "p-00001")
    store.delete("ab/cd/abcd-1", "p-00001")          # missing: not an error
    assert store.list("ab/cd/abcd-1", "p-") == ["p-00002"]
    with pytest.raises(ObjectNotFound):
        store.get("ab/cd/abcd-1", "p-00001")
    with pytest.raises(ObjectNotFound):
        with store.open_reader("ab/cd/abcd-1", "nothing"):
            pass


def test_modes(store, tmp_path):
    old = os.umask(0o022)
    try:
        store.ensure_container("c")
        store.put("c", "obj", b"x")
    finally:
        os.umask(old)
    path = tmp_path / "backups" / "c" / "obj"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_streaming_writer_and_reader(store):
    store.ensure_container("c")
    with store.open_writer("c", "big") as w:
        for i in range(10):
            w.write(bytes([i]) * 100000)
            assert store.list("c", "") == []        # not visible until complete
    with store.open_reader("c", "big") as r:
        assert r.read(5) == b"\0" * 5
        assert len(r.read()) == 10 * 100000 - 5


def test_writer_exception_leaves_nothing(store, tmp_path):
    store.ensure_container("c")
    with pytest.raises(RuntimeError):
        with store.open_writer("c", "obj") as w:
            w.write(b"partial")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path / "backups" / "c") == []
    store.put("c", "obj", b"old")
    with pytest.raises(RuntimeError):
        with store.open_writer("c", "obj") as w:
            w.write(b"new")
            raise RuntimeError("boom")
    assert store.get("c", "obj") == b"old"               # replaced only on success


def test_temp_files_are_not_listed(store, tmp_path):
    store.ensure_container("c")
    (tmp_path / "backups" / "c" / ".p-00001.tmp-abc").write_bytes(b"crash leftover")
    store.put("c", "p-00002", b"x")
    with store.open_writer("c", "p-00003") as w:
        w.write(b"y")
        assert store.list("c", "p") == ["p-00002"]
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


def test_missing_container_without_create(tmp_path):
    store = PosixStore(str(tmp_path), create_containers=False)
    with pytest.raises(ContainerNotFound, match="backup_create_containers"):
        store.ensure_container("a/b")
    os.makedirs(tmp_path / "a" / "b")
    store.ensure_container("a/b")
    with pytest.raises(ContainerNotFound):
        store.put("zz", "obj", b"x")


def test_naming():
    store = PosixStore("/nonexistent")
    assert store.default_container("0123456789") == "01/23/0123456789"
    when = datetime(2024, 5, 1, 12, 30, 45, tzinfo=timezone(timedelta(hours=2)))
    assert (store.object_prefix("vol", "bak", when)
            == "volume_vol_20240501103045_backup_bak")
    assert (store.object_prefix("vol", "bak", datetime(2024, 5, 1, 12, 30, 45))
            == "volume_vol_20240501123045_backup_bak")


def test_from_conf(tmp_path):
    class Conf:
        backup_posix_path = str(tmp_path)
        backup_create_containers = False

    store = PosixStore.from_conf(Conf())
    assert store.base_path == str(tmp_path) and store.create_containers is False


def test_large_uncached_objects_are_read_direct(store):
    """Objects of DIRECT_MIN bytes or more that the page cache does not hold are
    streamed with O_DIRECT; small ones and cached ones through the page cache."""
    data = os.urandom(3 * directio.STAGE + 1000)
    store.ensure_container("c")
    store.put("c", "big", data)
    path = os.path.join(store.base_path, "c", "big")
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    with store.open_reader("c", "big") as r:
        direct = isinstance(r, directio.DirectReader)
        assert r.read(5) == data[:5]
        assert r.read() == data[5:]
    if not direct:
        pytest.skip("this file system refuses O_DIRECT or keeps the pages cached")
    store.put("c", "small", data[:1000])
    with store.open_reader("c", "small") as r:
        assert not isinstance(r, directio.DirectReader)
        assert r.read() == data[:1000]


def _drop_cache(store, container, name):
    fd = os.open(os.path.join(store.base_path, container, name), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return fd
    except BaseException:
        os.close(fd)
        raise


def test_will_read_starts_reading_small_cold_objects_only(store):
    store.ensure_container("c")
    store.put("c", "small", os.urandom(32 * 1024))
    store.put("c", "big", os.urandom(2 * directio.STAGE))
    small, big = _drop_cache(store, "c", "small"), _drop_cache(store, "c", "big")
    try:
        if directio.cached_fraction(small, 32 * 1024) or directio.cached_fraction(
                big, 2 * directio.STAGE):
            pytest.skip("this file system keeps the pages cached")
        store.will_read("c", "small")
        store.will_read("c", "big")
        # The hint only starts the read: wait for the disk (a second at most).
        deadline = time.monotonic() + 1.0
        while directio.cached_fraction(small, 32 * 1024) < 1.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert directio.cached_fraction(small, 32 * 1024) == 1.0
        assert directio.cached_fraction(big, 2 * directio.STAGE) == 0.0   # read direct later
    finally:
        os.close(small)
        os.close(big)
    # Only a hint: a missing object or a bad name is not an error.
    store.will_read("c", "missing")
    store.will_read("no-such-container", "x")
    store.will_read("c", "../escape")


def test_check_makes_a_missing_repository(tmp_path):
    store = PosixStore(tmp_path / "new" / "repo")
    store.check()
    assert (tmp_path / "new" / "repo").is_dir()
    assert list((tmp_path / "new" / "repo").iterdir()) == []     # the probe is gone


def test_check_fails_where_no_file_can_be_made(tmp_path):
    (tmp_path / "plain-file").write_bytes(b"x")
    store = PosixStore(tmp_path / "plain-file" / "repo")
    with pytest.raises(StoreError, match="plain-file/repo cannot take new files"):
        store.check()
