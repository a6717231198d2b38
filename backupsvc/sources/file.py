"""Volumes kept as sparse raw files in one directory, plus adopted files and block devices."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import functools
import os
import stat
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from oslo_log import log as logging

from backupsvc import directio
from backupsvc.sources.base import SourceError, SourceNotAllowed, SourceNotFound

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # zero-filling and copying work in pieces of at most this size
FICLONE = 0x40049409  # _IOW(0x94, 9, int): whole-file reflink
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

# errnos meaning "this filesystem/file can't do that", as opposed to real I/O failures
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS, errno.EXDEV, errno.EINVAL}
_ZEROS = bytes(CHUNK)

_FILE = "file"
_BLOCK = "block"


@functools.cache
def _fallocate() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    # fallocate64 takes a 64-bit off_t on every ABI, so large offsets never get truncated.
    func = getattr(libc, "fallocate64", None) or libc.fallocate
    func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    func.restype = ctypes.c_int
    return func


def _punch_hole(fd: int, offset: int, length: int) -> None:
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    if _fallocate()(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return _FILE
    if stat.S_ISBLK(mode):
        return _BLOCK
    return None


def _fd_size(fd: int, kind: str) -> int:
    if kind == _FILE:
        return os.fstat(fd).st_size
    # st_size of a block device is 0; seeking to the end gives its real size.
    return os.lseek(fd, 0, os.SEEK_END)


def _check_range(offset: int, length: int, size: int) -> None:
    if offset < 0 or length < 0 or offset + length > size:
        raise SourceError(
            f"write of {length} bytes at offset {offset} is outside the volume "
            f"(size {size}); volumes are never extended by writes"
        )


class FileVolumeWriter:
    """:class:`~backupsvc.sources.base.VolumeWriter` over an open file or block device."""

    def __init__(self, fd: int, kind: str, size: int, punch_holes: bool = True) -> None:
        self._fd = fd
        self._kind = kind
        self._size = size
        self._punch_holes = punch_holes and kind == _FILE
        # Aligned data bypasses the page cache; the rest has its writeback
        # started early, so that flush() is short.
        self._out = directio.DirectWriter(fd)

    def fileno(self) -> int:
        return self._fd

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data).cast("B")
        _check_range(offset, len(view), self._size)
        self._out.pwrite(view, offset)

    def write_zeros(self, offset: int, length: int) -> None:
        _check_range(offset, length, self._size)
        if length == 0:
            return
        if self._punch_holes:
            try:
                _punch_hole(self._fd, offset, length)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                LOG.debug("Filesystem cannot punch holes (%s); writing zeros instead", exc)
                self._punch_holes = False
        end = offset + length
        while offset < end:
            piece = min(CHUNK, end - offset)
            self.pwrite(memoryview(_ZEROS)[:piece], offset)
            offset += piece

    def flush(self) -> None:
        self._out.settle()
        os.fsync(self._fd)

    def close(self) -> None:
        """Release what the writer holds besides the caller's descriptor."""
        self._out.close()


class FileVolumeSource:
    """Sparse raw files in ``volumes_dir``; adopted files/block devices in ``manage_dirs``.

    Every operation resolves the location with realpath and refuses anything outside
    ``volumes_dir`` and ``manage_dirs``, so a stale or tampered location (or a symlink
    planted later) can't make the service read or write an arbitrary path.
    """

    def __init__(
        self,
        volumes_dir: str,
        name_template: str = "volume-%s",
        snapshot_template: str = "snapshot-%s",
        manage_dirs: Iterable[str] = (),
        *,
        punch_holes: bool = True,
    ) -> None:
        self.volumes_dir = os.path.abspath(volumes_dir)
        self.name_template = name_template
        self.snapshot_template = snapshot_template
        self.manage_dirs = [os.path.abspath(d) for d in manage_dirs if d]
        # False forces write_zeros to write real zeros (tests; filesystems that lie).
        self.punch_holes = punch_holes

    @classmethod
    def from_conf(cls, conf: Any) -> FileVolumeSource:
        return cls(
            conf.file_volumes_dir,
            conf.volume_name_template,
            conf.snapshot_name_template,
            list(conf.file_volume_manage_dirs or []),
        )

    # -- paths ---------------------------------------------------------------

    def _own_path(self, template: str, obj_id: str) -> str:
        if not obj_id or "/" in obj_id or "\0" in obj_id or ".." in obj_id:
            raise SourceNotAllowed(f"unsafe id {obj_id!r}: ids may not contain '/' or '..'")
        name = template % obj_id
        if "/" in name or name in (".", ".."):
            raise SourceNotAllowed(f"name template gives unsafe file name {name!r}")
        return os.path.join(self.volumes_dir, name)

    def _ensure_dir(self) -> None:
        os.makedirs(self.volumes_dir, mode=0o750, exist_ok=True)

    def _allowed_roots(self) -> list[str]:
        return [os.path.realpath(d) for d in [self.volumes_dir, *self.manage_dirs]]

    def _is_own(self, location: str) -> bool:
        """Whether ``location`` names an entry directly in volumes_dir (i.e. one we made)."""
        parent = os.path.realpath(os.path.dirname(os.path.abspath(location)))
        name = os.path.basename(location)
        return parent == os.path.realpath(self.volumes_dir) and name not in ("", ".", "..")

    def _resolve(self, location: str) -> tuple[str, str]:
        """Return ``(realpath, kind)`` of a location that may be used for I/O."""
        real = os.path.realpath(location)
        if not any(_is_within(real, root) for root in self._allowed_roots()):
            raise SourceNotAllowed(
                f"{location!r} is outside the volume directories "
                f"({', '.join([self.volumes_dir, *self.manage_dirs])})"
            )
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise SourceNotFound(f"{location!r} does not exist") from None
        kind = _kind(st.st_mode)
        if kind is None:
            raise SourceNotAllowed(f"{location!r} is not a regular file or block device")
        return real, kind

    @contextmanager
    def _open(self, location: str, flags: int) -> Iterator[tuple[int, str, str]]:
        real, kind = self._resolve(location)
        try:
            # O_NOFOLLOW: a symlink swapped in after the realpath check is refused.
            fd = os.open(real, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SourceNotFound(f"{location!r} does not exist") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SourceNotAllowed(f"{location!r} became a symlink") from None
            raise
        try:
            if _kind(os.fstat(fd).st_mode) != kind:
                raise SourceNotAllowed(f"{location!r} changed type while being opened")
            yield fd, kind, real
        finally:
            os.close(fd)

    # -- VolumeSource ----------------------------------------------------------

    def create(self, volume_id: str, size_bytes: int) -> str:
        path = self._own_path(self.name_template, volume_id)
        if size_bytes < 0:
            raise SourceError(f"volume size must not be negative, got {size_bytes}")
        self._ensure_dir()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise SourceError(f"refusing to overwrite existing volume file {path}") from None
        try:
            os.ftruncate(fd, size_bytes)  # sparse: no blocks are allocated
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        _fsync_dir(self.volumes_dir)
        LOG.info("Created volume file %s (%d bytes)", path, size_bytes)
        return path

    def delete(self, location: str) -> None:
        if not self._is_own(location):
            # Adopted volumes are only "unmanaged": the admin's data stays where it was.
            LOG.info("Not deleting %s: it is not under %s", location, self.volumes_dir)
            return
        self._unlink(location)

    def delete_snapshot(self, location: str) -> None:
        if not self._is_own(location):
            raise SourceNotAllowed(
                f"snapshot {location!r} is not in the volumes directory {self.volumes_dir}"
            )
        self._unlink(location)

    def _unlink(self, location: str) -> None:
        try:
            os.unlink(location)  # removes a symlink itself, never its target
        except FileNotFoundError:
            LOG.debug("%s was already gone", location)
            return
        LOG.info("Deleted %s", location)

    def size(self, location: str) -> int:
        with self._open(location, os.O_RDONLY) as (fd, kind, _real):
            return _fd_size(fd, kind)

    @contextmanager
    def open_read(self, location: str) -> Iterator[BinaryIO]:
        with self._open(location, os.O_RDONLY) as (fd, _kind, _real):
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            # Unbuffered: the engine reads in large chunks, an extra copy buys nothing.
            with open(fd, "rb", buffering=0, closefd=False) as f:
                yield cast(BinaryIO, f)

    @contextmanager
    def open_write(self, location: str) -> Iterator[FileVolumeWriter]:
        # No O_CREAT/O_TRUNC: the target must exist and keep its size.
        with self._open(location, os.O_WRONLY) as (fd, kind, _real):
            writer = FileVolumeWriter(fd, kind, _fd_size(fd, kind), punch_holes=self.punch_holes)
            try:
                yield writer
            finally:
                writer.close()

    def snapshot_location(self, snapshot_id: str) -> str:
        """Where the snapshot with this id is (or would be)."""
        return self._own_path(self.snapshot_template, snapshot_id)

    def snapshot(self, location: str, snapshot_id: str) -> str:
        dest = self._own_path(self.snapshot_template, snapshot_id)
        if os.path.lexists(dest):
            raise SourceError(f"refusing to overwrite existing snapshot file {dest}")
        tmp = os.path.join(self.volumes_dir, f".{os.path.basename(dest)}.{uuid.uuid4().hex}.tmp")
        self._ensure_dir()  # a managed volume may be snapshotted before any volume exists
        with self._open(location, os.O_RDONLY) as (src_fd, kind, _real):
            dst_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                how = self._copy(src_fd, dst_fd, kind)
                os.fsync(dst_fd)
                os.rename(tmp, dest)
            except BaseException:
                os.unlink(tmp)
                raise
            finally:
                os.close(dst_fd)
        _fsync_dir(self.volumes_dir)
        LOG.info("Snapshot of %s taken at %s (%s)", location, dest, how)
        return dest

    def _copy(self, src_fd: int, dst_fd: int, kind: str) -> str:
        if kind == _FILE:
            try:
                # A reflink is instant and truly point-in-time (btrfs, XFS with reflink=1).
                fcntl.ioctl(dst_fd, FICLONE, src_fd)
                return "reflink"
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                LOG.debug("Reflink not possible (%s); copying", exc)
        size = _fd_size(src_fd, kind)
        os.ftruncate(dst_fd, size)  # pieces left unwritten stay holes
        for start, end in self._data_extents(src_fd, kind, size):
            offset = start
            while offset < end:
                data = os.pread(src_fd, min(CHUNK, end - offset), offset)
                if not data:
                    raise SourceError(f"source shrank during copy (EOF at {offset})")
                if data.count(0) != len(data):  # skip all-zero pieces: keep them holes
                    view = memoryview(data)
                    pos = offset
                    while view:
                        n = os.pwrite(dst_fd, view, pos)
                        view, pos = view[n:], pos + n
                offset += len(data)
        return "sparse copy"

    @staticmethod
    def _data_extents(fd: int, kind: str, size: int) -> Iterator[tuple[int, int]]:
        """Yield ``(start, end)`` ranges that may hold data; holes of files are skipped."""
        if kind != _FILE:
            yield 0, size
            return
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole remains
                    return
                if exc.errno in _UNSUPPORTED:
                    yield offset, size
                    return
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            yield start, end
            offset = end

    def manage_existing(self, source_name: str) -> tuple[str, int]:
        allowed = ", ".join(self.manage_dirs) or "none configured"
        if not self.manage_dirs:
            raise SourceNotAllowed(
                "managing existing volumes is disabled: file_volume_manage_dirs is empty"
            )
        if not os.path.isabs(source_name):
            raise SourceNotAllowed(
                f"{source_name!r} must be an absolute path inside one of: {allowed}"
            )
        real = os.path.realpath(source_name)
        roots = [os.path.realpath(d) for d in self.manage_dirs]
        if not any(_is_within(real, root) and real != root for root in roots):
            raise SourceNotAllowed(
                f"{source_name!r} resolves to {real}, which is outside the allowed "
                f"directories: {allowed}"
            )
        if _is_within(real, os.path.realpath(self.volumes_dir)):
            raise SourceNotAllowed(f"{source_name!r} is already a volume of this service")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise SourceNotFound(f"{source_name!r} does not exist (allowed: {allowed})") from None
        if _kind(st.st_mode) is None:
            raise SourceNotAllowed(
                f"{source_name!r} is not a regular file or block device (allowed: {allowed})"
            )
        size = self.size(real)
        LOG.info("Validated %s for management (%d bytes)", real, size)
        return real, size

    def extend(self, location: str, size_bytes: int) -> None:
        with self._open(location, os.O_WRONLY) as (fd, kind, real):
            current = _fd_size(fd, kind)
            if size_bytes < current:
                raise SourceError(
                    f"cannot shrink {location!r} from {current} to {size_bytes} bytes"
                )
            if size_bytes == current:
                return
            if kind != _FILE:
                raise SourceError(f"cannot extend block device {real}; grow it, then retry")
            os.ftruncate(fd, size_bytes)  # new space is a hole
            os.fsync(fd)
        LOG.info("Extended %s from %d to %d bytes", location, current, size_bytes)
