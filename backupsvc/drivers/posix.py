"""Object store on a POSIX file system (local disk or an NFS mount).

Containers are directories under ``base_path``; objects are files in them.
Objects are written to a hidden temporary file and renamed into place, so a
reader never sees a partial object and a crash leaves only ``.*.tmp-*`` files,
which listing ignores.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from backupsvc import directio
from backupsvc.drivers.base import (
    ContainerNotFound,
    InvalidName,
    ObjectNotFound,
    ObjectReader,
    StoreError,
)

DIR_MODE = 0o770
FILE_MODE = 0o660
_TMP_MARK = ".tmp-"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter:
    """Write side of one object, streamed from offset 0.

    Whole pages go out with O_DIRECT (:mod:`backupsvc.directio`): objects are
    not read back soon, and the page cache would cost more than the disk.
    """

    def __init__(self, fd: int) -> None:
        self._out = directio.DirectWriter(fd)
        self.bytes_written = 0

    def write(self, data: bytes | memoryview) -> int:
        total = memoryview(data).nbytes
        self._out.append(data)
        self.bytes_written += total
        return total

    def settle(self) -> None:
        """Write what is still staged and wait for it (before the closing fsync)."""
        self._out.settle()

    def close(self) -> None:
        self._out.close()


class PosixStore:
    def __init__(self, base_path: str | os.PathLike[str], create_containers: bool = True) -> None:
        self.base_path = os.path.abspath(os.fspath(base_path))
        self.create_containers = create_containers

    @classmethod
    def from_conf(cls, conf: Any) -> PosixStore:
        return cls(conf.backup_posix_path, create_containers=conf.backup_create_containers)

    def check(self) -> None:
        """The repository's directory exists (it is made if missing) and takes new files."""
        try:
            os.makedirs(self.base_path, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".backupsvc-check-", dir=self.base_path)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StoreError("backup repository %s cannot take new files: %s"
                             % (self.base_path, exc)) from exc

    # -- naming ---------------------------------------------------------------
    def default_container(self, backup_id: str) -> str:
        return "%s/%s/%s" % (backup_id[0:2], backup_id[2:4], backup_id)

    def object_prefix(self, volume_id: str, backup_id: str, timestamp: datetime) -> str:
        # Naive timestamps are taken as UTC (that is how the database stores them).
        if timestamp.tzinfo is not None:
            timestamp = timestamp.astimezone(UTC)
        return "volume_%s_%s_backup_%s" % (
            volume_id, timestamp.strftime("%Y%m%d%H%M%S"), backup_id)

    # -- paths ----------------------------------------------------------------
    def _container_path(self, container: str) -> str:
        if not container or "\0" in container or os.path.isabs(container):
            raise InvalidName("invalid container name %r" % container)
        parts = container.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise InvalidName("container name %r may not contain empty, '.' or '..' "
                              "components" % container)
        path = os.path.normpath(os.path.join(self.base_path, *parts))
        if os.path.commonpath([path, self.base_path]) != self.base_path:
            raise InvalidName("container %r escapes %s" % (container, self.base_path))
        return path

    def _object_path(self, container: str, name: str) -> str:
        # A leading dot is reserved for temporary files.
        if (not name or "/" in name or "\0" in name or name.startswith(".")):
            raise InvalidName("invalid object name %r" % name)
        return os.path.join(self._container_path(container), name)

    # -- operations -----------------------------------------------------------
    def ensure_container(self, container: str) -> None:
        path = self._container_path(container)
        if os.path.isdir(path):
            return
        if not self.create_containers:
            raise ContainerNotFound(
                "backup container %s does not exist and backup_create_containers is "
                "False; create it or enable the option" % path)
        os.makedirs(path, mode=DIR_MODE, exist_ok=True)

    @contextmanager
    def open_writer(self, container: str, name: str) -> Iterator[_FileWriter]:
        final = self._object_path(container, name)
        directory = os.path.dirname(final)
        tmp = os.path.join(directory, ".%s%s%s" % (name, _TMP_MARK, secrets.token_hex(6)))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileNotFoundError:
            raise ContainerNotFound("container %s does not exist" % directory) from None
        try:
            writer = _FileWriter(fd)
            try:
                yield writer
                writer.settle()
                os.fsync(fd)
                # Set the mode before the rename so the object never appears with
                # a umask-reduced mode.
                os.fchmod(fd, FILE_MODE)
            finally:
                writer.close()
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(directory)

    @contextmanager
    def open_reader(self, container: str, name: str) -> Iterator[ObjectReader]:
        path = self._object_path(container, name)
        try:
            f = open(path, "rb")  # closed by the with below
        except FileNotFoundError:
            raise ObjectNotFound("object %s not found in container %s"
                                 % (name, container)) from None
        with f:
            # Objects of some size are read with O_DIRECT, as they were written.
            direct = directio.DirectReader.open(f.fileno())
            if direct is None:
                yield f
                return
            with direct:
                yield direct

    def will_read(self, container: str, name: str) -> None:
        """Hint that the object will be read soon: best effort, never raises.

        Small objects are read through the page cache, each a synchronous disk
        read when cold; asked ahead, the kernel reads many of them at once
        (a chain restore reads about a thousand 32 KiB objects). Large ones
        are read with O_DIRECT and get no hint.
        """
        try:
            fd = os.open(self._object_path(container, name), os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, InvalidName):
            return
        try:
            if os.fstat(fd).st_size < directio.DIRECT_MIN and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)

    def put(self, container: str, name: str, data: bytes) -> None:
        with self.open_writer(container, name) as w:
            w.write(data)

    def get(self, container: str, name: str) -> bytes:
        with self.open_reader(container, name) as f:
            return f.read()

    def delete(self, container: str, name: str) -> None:
        try:
            os.unlink(self._object_path(container, name))
        except FileNotFoundError:
            pass

    def list(self, container: str, prefix: str) -> list[str]:
        path = self._container_path(container)
        try:
            entries = os.scandir(path)
        except FileNotFoundError:
            return []
        with entries:
            names = [e.name for e in entries
                     if e.name.startswith(prefix) and not e.name.startswith(".")
                     and e.is_file(follow_symlinks=False)]
        return sorted(names)
