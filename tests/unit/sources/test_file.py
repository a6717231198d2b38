"""FileVolumeSource against real files under tmp_path.

Real block devices (loop devices) need root and losetup, which CI can't be relied on
to have, so they are left to a functional test; here block-device handling is only
covered by making sure character devices (/dev/null, /dev/zero) and FIFOs are refused.
"""

import os
import types
import uuid

import pytest

from backupsvc.sources import (
    FileVolumeSource,
    SourceError,
    SourceNotAllowed,
    SourceNotFound,
    VolumeSource,
    VolumeWriter,
)

MiB = 1024 * 1024


def allocated(path) -> int:
    return os.stat(path).st_blocks * 512


def read_all(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def vol_dir(tmp_path):
    return tmp_path / "volumes"


@pytest.fixture
def manage_dir(tmp_path):
    d = tmp_path / "manage"
    d.mkdir()
    return d


@pytest.fixture
def src(vol_dir, manage_dir):
    return FileVolumeSource(str(vol_dir), manage_dirs=[str(manage_dir)])


@pytest.fixture
def random_volume(src):
    """A 4 MiB volume filled with random bytes, returned with its contents."""
    loc = src.create(str(uuid.uuid4()), 4 * MiB)
    data = os.urandom(4 * MiB)
    with open(loc, "r+b") as f:
        f.write(data)
        os.fsync(f.fileno())
    return loc, data


def test_implements_protocol(src):
    assert isinstance(src, VolumeSource)


def test_from_conf(tmp_path):
    conf = types.SimpleNamespace(
        file_volumes_dir=str(tmp_path / "v"),
        volume_name_template="vol_%s",
        snapshot_name_template="snap_%s",
        file_volume_manage_dirs=[str(tmp_path)],
    )
    s = FileVolumeSource.from_conf(conf)
    assert s.create("abc", 10) == str(tmp_path / "v" / "vol_abc")
    assert s.manage_dirs == [str(tmp_path)]


# -- create / size / delete ----------------------------------------------------


def test_create_is_sparse(src, vol_dir):
    vid = str(uuid.uuid4())
    loc = src.create(vid, 64 * MiB)
    assert loc == str(vol_dir / f"volume-{vid}")
    st = os.stat(loc)
    assert st.st_size == 64 * MiB
    assert allocated(loc) < 64 * 1024  # a hole, not 64 MiB of zeros
    assert src.size(loc) == 64 * MiB
    assert os.stat(vol_dir).st_mode & 0o777 == 0o750


def test_create_refuses_overwrite(src):
    vid = str(uuid.uuid4())
    loc = src.create(vid, MiB)
    with open(loc, "r+b") as f:
        f.write(b"keep me")
    with pytest.raises(SourceError, match="overwrite"):
        src.create(vid, 2 * MiB)
    assert read_all(loc)[:7] == b"keep me"
    assert os.path.getsize(loc) == MiB


@pytest.mark.parametrize("bad", ["", "..", "../x", "a/b", "/etc/passwd", "x/../../y"])
def test_unsafe_ids_refused(src, bad):
    with pytest.raises(SourceNotAllowed):
        src.create(bad, MiB)


def test_size_missing(src, vol_dir):
    with pytest.raises(SourceNotFound):
        src.size(str(vol_dir / "volume-nope"))


def test_size_outside_dirs_refused(src, tmp_path):
    other = tmp_path / "other"
    other.write_bytes(b"x")
    with pytest.raises(SourceNotAllowed):
        src.size(str(other))


def test_delete_own_volume(src):
    loc = src.create(str(uuid.uuid4()), MiB)
    src.delete(loc)
    assert not os.path.exists(loc)
    src.delete(loc)  # already gone: not an error


def test_delete_leaves_managed_path_alone(src, manage_dir):
    path = manage_dir / "disk.img"
    path.write_bytes(b"admin data")
    loc, _ = src.manage_existing(str(path))
    src.delete(loc)
    assert path.read_bytes() == b"admin data"


def test_delete_symlink_in_volumes_dir_keeps_target(src, vol_dir, tmp_path):
    target = tmp_path / "precious"
    target.write_bytes(b"x")
    src.create(str(uuid.uuid4()), 1)  # makes vol_dir
    link = vol_dir / "volume-link"
    link.symlink_to(target)
    src.delete(str(link))
    assert not link.exists() and target.read_bytes() == b"x"


def test_extend(src):
    loc = src.create(str(uuid.uuid4()), MiB)
    src.extend(loc, 8 * MiB)
    assert src.size(loc) == 8 * MiB
    assert allocated(loc) < 64 * 1024
    src.extend(loc, 8 * MiB)  # same size: no-op
    with pytest.raises(SourceError, match="shrink"):
        src.extend(loc, MiB)


# -- read / write --------------------------------------------------------------


def test_pwrite_and_read_back(src):
    loc = src.create(str(uuid.uuid4()), 4 * MiB)
    payload = os.urandom(3 * MiB + 17)
    with src.open_write(loc) as w:
        assert isinstance(w, VolumeWriter)
        assert isinstance(w.fileno(), int)
        w.pwrite(payload, 12345)
        w.pwrite(memoryview(b"tail"), 4 * MiB - 4)
        w.flush()
    with src.open_read(loc) as r:
        data = r.read(8 * MiB)
    assert len(data) == 4 * MiB
    assert data[12345 : 12345 + len(payload)] == payload
    assert data[:12345] == bytes(12345)
    assert data[-4:] == b"tail"


def test_writer_never_extends(src):
    loc = src.create(str(uuid.uuid4()), MiB)
    with src.open_write(loc) as w:
        with pytest.raises(SourceError, match="outside"):
            w.pwrite(b"xx", MiB - 1)
        with pytest.raises(SourceError, match="outside"):
            w.write_zeros(MiB - 10, 11)
    assert os.path.getsize(loc) == MiB


def test_open_write_missing_does_not_create(src, vol_dir):
    src.create(str(uuid.uuid4()), 1)
    missing = vol_dir / "volume-missing"
    with pytest.raises(SourceNotFound):
        with src.open_write(str(missing)):
            pass
    assert not missing.exists()


def _check_zeroed(loc, data, offset, length):
    after = read_all(loc)
    assert len(after) == len(data)
    assert after[offset : offset + length] == bytes(length)
    assert after[:offset] == data[:offset]
    assert after[offset + length :] == data[offset + length :]


def test_write_zeros_punches_hole(src, random_volume):
    loc, data = random_volume
    before = allocated(loc)
    offset, length = MiB + 123, 2 * MiB
    with src.open_write(loc) as w:
        w.write_zeros(offset, length)
        w.flush()
    _check_zeroed(loc, data, offset, length)
    # whole blocks inside the range were given back to the filesystem
    assert allocated(loc) <= before - MiB


def test_write_zeros_fallback_writes_zeros(vol_dir, random_volume):
    loc, data = random_volume
    before = allocated(loc)
    no_punch = FileVolumeSource(str(vol_dir), punch_holes=False)
    offset, length = MiB + 123, 2 * MiB + 5  # spans several 1 MiB pieces
    with no_punch.open_write(loc) as w:
        w.write_zeros(offset, length)
        w.flush()
    _check_zeroed(loc, data, offset, length)
    assert allocated(loc) == before  # zeros were written, nothing was deallocated


# -- snapshots -----------------------------------------------------------------


def test_snapshot_is_independent_and_sparse(src, vol_dir):
    loc = src.create(str(uuid.uuid4()), 16 * MiB)
    first, second = os.urandom(4096), os.urandom(8192)
    with src.open_write(loc) as w:
        w.pwrite(first, 0)
        w.pwrite(second, 10 * MiB)
        w.flush()
    original = read_all(loc)

    sid = str(uuid.uuid4())
    snap = src.snapshot(loc, sid)
    assert snap == str(vol_dir / f"snapshot-{sid}")
    assert src.size(snap) == 16 * MiB

    with src.open_write(loc) as w:
        w.pwrite(b"changed" * 1000, 0)
        w.pwrite(b"new data", 5 * MiB)
    assert read_all(snap) == original
    assert allocated(snap) < 2 * MiB  # the holes stayed holes
    assert not [n for n in os.listdir(vol_dir) if n.endswith(".tmp")]


def test_snapshot_skips_written_zeros(src):
    loc = src.create(str(uuid.uuid4()), 4 * MiB)
    with open(loc, "r+b") as f:  # allocated, but all zeros
        f.write(bytes(4 * MiB))
        os.fsync(f.fileno())
    assert allocated(loc) >= 4 * MiB
    snap = src.snapshot(loc, str(uuid.uuid4()))
    assert read_all(snap) == bytes(4 * MiB)
    assert allocated(snap) < 64 * 1024


def test_snapshot_refuses_overwrite_and_bad_id(src):
    loc = src.create(str(uuid.uuid4()), MiB)
    sid = str(uuid.uuid4())
    src.snapshot(loc, sid)
    with pytest.raises(SourceError, match="overwrite"):
        src.snapshot(loc, sid)
    with pytest.raises(SourceNotAllowed):
        src.snapshot(loc, "../escape")


def test_snapshot_of_managed_file(src, manage_dir):
    path = manage_dir / "disk.img"
    path.write_bytes(b"abc" * 1000)
    loc, _ = src.manage_existing(str(path))
    snap = src.snapshot(loc, str(uuid.uuid4()))
    assert read_all(snap) == b"abc" * 1000


def test_delete_snapshot(src, tmp_path):
    loc = src.create(str(uuid.uuid4()), MiB)
    snap = src.snapshot(loc, str(uuid.uuid4()))
    src.delete_snapshot(snap)
    assert not os.path.exists(snap)
    assert os.path.exists(loc)
    src.delete_snapshot(snap)  # already gone: not an error
    elsewhere = tmp_path / "snapshot-x"
    elsewhere.write_bytes(b"x")
    with pytest.raises(SourceNotAllowed):
        src.delete_snapshot(str(elsewhere))
    assert elsewhere.exists()


# -- manage_existing -----------------------------------------------------------


def test_manage_existing_allowed(src, manage_dir):
    path = manage_dir / "disk.img"
    with open(path, "wb") as f:
        f.truncate(3 * MiB)
    assert src.manage_existing(str(path)) == (os.path.realpath(path), 3 * MiB)


def test_manage_existing_symlink_inside_is_resolved(src, manage_dir):
    target = manage_dir / "disk.img"
    target.write_bytes(b"1234")
    link = manage_dir / "alias"
    link.symlink_to(target)
    assert src.manage_existing(str(link)) == (os.path.realpath(target), 4)


def test_manage_existing_outside_dir(src, tmp_path, manage_dir):
    path = tmp_path / "elsewhere.img"
    path.write_bytes(b"x")
    with pytest.raises(SourceNotAllowed, match=str(manage_dir)):
        src.manage_existing(str(path))
    with pytest.raises(SourceNotAllowed):  # '..' can't climb out either
        src.manage_existing(f"{manage_dir}/../elsewhere.img")


def test_manage_existing_symlink_escape(src, tmp_path, manage_dir):
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"x")
    (manage_dir / "escape").symlink_to(secret)
    with pytest.raises(SourceNotAllowed, match="outside the allowed"):
        src.manage_existing(str(manage_dir / "escape"))


def test_manage_existing_missing(src, manage_dir):
    with pytest.raises(SourceNotFound, match=str(manage_dir)):
        src.manage_existing(str(manage_dir / "nope.img"))


def test_manage_existing_directory_refused(src, manage_dir):
    (manage_dir / "sub").mkdir()
    with pytest.raises(SourceNotAllowed, match="regular file or block device"):
        src.manage_existing(str(manage_dir / "sub"))
    with pytest.raises(SourceNotAllowed):
        src.manage_existing(str(manage_dir))


def test_manage_existing_fifo_refused(src, manage_dir):
    fifo = manage_dir / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SourceNotAllowed, match="regular file or block device"):
        src.manage_existing(str(fifo))


@pytest.mark.parametrize("dev", ["/dev/null", "/dev/zero"])
def test_char_devices_refused(vol_dir, dev):
    s = FileVolumeSource(str(vol_dir), manage_dirs=["/dev"])
    with pytest.raises(SourceNotAllowed, match="regular file or block device"):
        s.manage_existing(dev)
    with pytest.raises(SourceNotAllowed):
        s.size(dev)


def test_manage_existing_relative_path_refused(src):
    with pytest.raises(SourceNotAllowed, match="absolute"):
        src.manage_existing("disk.img")


def test_manage_existing_disabled_without_dirs(vol_dir, tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"x")
    s = FileVolumeSource(str(vol_dir))
    with pytest.raises(SourceNotAllowed, match="file_volume_manage_dirs"):
        s.manage_existing(str(path))


def test_manage_existing_refuses_own_volumes(vol_dir, tmp_path):
    s = FileVolumeSource(str(vol_dir), manage_dirs=[str(tmp_path)])
    loc = s.create(str(uuid.uuid4()), MiB)
    with pytest.raises(SourceNotAllowed, match="already"):
        s.manage_existing(loc)
