"""NFS repository reached without a mount, through the nfs-rs userspace client.

Same object layout and semantics as :class:`~backupsvc.drivers.posix.PosixStore`:
containers are directories under the share, objects are files; an object is
written under a hidden temporary name (``.<name>.tmp-<hex>``, never listed)
and renamed into place on a clean exit, and removed on an exception. nfs-rs
returns from a write only once the data is on stable storage (FILE_SYNC or
COMMIT), and NFS directory operations are synchronous, so the rename is the
commit point.

Two habits keep NFSv4.1 sessions sound: nfs-rs 0.8 against nfs-ganesha 4.3
fails now and then with NFS4ERR_RETRY_UNCACHED_REP when one client has several
files open or busy at once, and when one read spans several RPCs some of which
lie past the end of the file. So there is one client per share and process,
used by one thread at a time; each file is opened only for the one call that
reads or writes it; and reads stop at the size the server reports. Whatever
still fails in a way the server may recover from is retried on a new
connection (:meth:`NfsSession.call`).

Writes are gathered into pieces of at most :data:`WRITE_PIECE` bytes and reads
are served per call, so memory stays bounded. A read checks the file id, so an
object replaced meanwhile is reported rather than read half old, half new.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from oslo_log import log as logging

from backupsvc.drivers.base import ContainerNotFound, InvalidName, ObjectNotFound, StoreError
from backupsvc.drivers.nfs import (
    ClientOptions,
    NfsConfigError,
    NfsShare,
    client_options,
    parse_share,
    share_url,
)
from backupsvc.drivers.posix import DIR_MODE, FILE_MODE

try:
    import nfs_rs
except ImportError:          # only the userspace mode needs it
    nfs_rs = None

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
WRITE_PIECE = 4 * MiB
READ_PIECE = 4 * MiB
_TMP_MARK = ".tmp-"
ATTEMPTS = 3                 # tries of one NFS call (see NfsSession.call)
T = TypeVar("T")


def _code(exc: Exception) -> str:
    return getattr(exc, "code_name", None) or type(exc).__name__


def _retryable(exc: Exception) -> bool:
    """Whether the failure can go away (not a refusal that will come back)."""
    if isinstance(exc, (nfs_rs.NfsPermissionError, nfs_rs.NfsAlreadyExistsError,
                        nfs_rs.NfsIsADirectoryError, nfs_rs.NfsNotADirectoryError,
                        nfs_rs.NfsInvalidInputError, nfs_rs.NfsUnsupportedError)):
        return False
    action = getattr(exc, "recovery_action", None)
    return action is None or action != nfs_rs.RecoveryAction.DO_NOT_RETRY


class NfsSession:
    """One connected client, used under a lock; reconnects after a lost connection."""

    def __init__(self, share: NfsShare, options: ClientOptions, timeout: float) -> None:
        if nfs_rs is None:
            raise NfsConfigError("backup_nfs_client = userspace needs the nfs-rs package "
                                 "(pip install nfs-rs)")
        self.share = share
        self.url = share_url(share)
        self.options = options
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        if self._client is None:
            o = self.options
            try:
                self._client = nfs_rs.Client.connect(
                    self.url, versions=list(o.versions), nfs_port=o.nfs_port,
                    mount_port=o.mount_port, noresvport=o.noresvport,
                    connect_timeout=self.timeout, operation_timeout=self.timeout)
            except nfs_rs.NfsError as exc:
                raise StoreError("cannot reach NFS share %s (%s, versions %s): %s" % (
                    self.share.share, self.url, ",".join(o.versions), exc)) from exc
            LOG.info("Connected to NFS share %s over NFSv%s (userspace client)",
                     self.share.share, self._client.version)
        return self._client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:    # the connection is gone anyway
                LOG.debug("Closing the NFS client of %s: %s", self.share.share, exc)

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)`` alone; NFS errors become store errors.

        Every ``fn`` given here is idempotent (a write rewrites the same bytes
        at the same offset, a rename checks whether it happened), so a failure
        the server may recover from is retried on a fresh connection: no file
        is open between calls, and an NFSv4.1 client whose server restarted
        never recovers by itself.
        """
        with self._lock:
            for attempt in range(1, ATTEMPTS + 1):
                client = self._connect()
                try:
                    return fn(client)
                except nfs_rs.NfsNotFoundError as exc:
                    raise ObjectNotFound("NFS %s on %s: %s" % (
                        what, self.share.share, exc)) from exc
                except nfs_rs.NfsError as exc:
                    retryable = _retryable(exc)
                    if retryable:               # this connection is suspect now
                        self._drop()
                    if attempt == ATTEMPTS or not retryable:
                        raise StoreError("NFS %s on %s failed: %s (%s)" % (
                            what, self.share.share, exc, _code(exc))) from exc
                    LOG.warning("NFS %s on %s failed (%s: %s); retrying on a new "
                                "connection", what, self.share.share, _code(exc), exc)
                    time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._drop()


_sessions: dict[tuple[Any, ...], NfsSession] = {}
_sessions_lock = threading.Lock()


def get_session(share: NfsShare, options: ClientOptions, timeout: float) -> NfsSession:
    """The process's session for this share and these options (created once)."""
    key = (share.host, share.path, options, timeout)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = NfsSession(share, options, timeout)
        return session


def close_sessions() -> None:
    """Close every client of this process (tests, shutdown)."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()


def _write_at(client: Any, path: str, data: memoryview, offset: int) -> None:
    with client.open(path, "r+b") as f:
        written = f.write_at(data, offset)
    if written != len(data):
        raise StoreError("short NFS write to %s: %d of %d bytes" % (path, written, len(data)))


def _create(client: Any, path: str) -> None:
    with client.open(path, "wb"):
        pass
    # Before any data: the object never exists with a wider mode.
    client.chmod(path, FILE_MODE)


def _publish(client: Any, tmp: str, final: str, state: dict[str, int]) -> None:
    if "fileid" not in state:
        state["fileid"] = client.stat(tmp).fileid
    try:
        client.rename(tmp, final)
    except nfs_rs.NfsNotFoundError:
        # Retried after an attempt whose reply was lost: did that one rename?
        if client.stat(final).fileid != state["fileid"]:
            raise


class _NfsWriter:
    def __init__(self, session: NfsSession, path: str) -> None:
        self._session = session
        self._path = path
        self._buf = bytearray()
        self._offset = 0
        self.bytes_written = 0

    def _send(self, view: memoryview) -> None:
        offset = self._offset
        self._session.call("write of %s" % self._path,
                           lambda c: _write_at(c, self._path, view, offset))
        self._offset += len(view)

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        if self._buf:
            take = min(total, WRITE_PIECE - len(self._buf))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) >= WRITE_PIECE:
                self.flush()
        while len(view) >= WRITE_PIECE:
            self._send(view[:WRITE_PIECE])
            view = view[WRITE_PIECE:]
        self._buf += view
        self.bytes_written += total
        return total

    def flush(self) -> None:
        if self._buf:
            self._send(memoryview(self._buf))
            self._buf = bytearray()


class _NfsReader:
    def __init__(self, session: NfsSession, path: str, fileid: int) -> None:
        self._session = session
        self._path = path
        self._fileid = fileid
        self._pos = 0

    def _read_at(self, client: Any, size: int) -> bytes:
        info = client.stat(self._path)
        if info.fileid != self._fileid:
            raise StoreError("object %s was replaced while being read" % self._path)
        # Never ask for bytes past the end: see the module docstring.
        size = min(size, info.size - self._pos)
        if size <= 0:
            return b""
        with client.open(self._path, "rb") as f:
            return f.read_at(self._pos, size)

    def _read_piece(self, size: int) -> bytes:
        data = self._session.call("read of %s" % self._path,
                                  lambda c: self._read_at(c, size))
        self._pos += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._read_piece(size) if size else b""
        parts = []
        while data := self._read_piece(READ_PIECE):
            parts.append(data)
        return b"".join(parts)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


class UserspaceNfsStore:
    """ObjectStore over NFS without a mount (``backup_nfs_client = userspace``)."""

    def __init__(self, share: NfsShare, session: NfsSession,
                 create_containers: bool = True) -> None:
        self.share = share
        self.session = session
        self.create_containers = create_containers

    @classmethod
    def from_conf(cls, conf: Any, connect: bool = True) -> UserspaceNfsStore:
        """Build the store; with ``connect`` reach the share now (fail at start-up)."""
        share = parse_share(conf.backup_share)
        session = get_session(share, client_options(conf.backup_mount_options),
                              conf.backup_nfs_timeout)
        store = cls(share, session, create_containers=conf.backup_create_containers)
        if connect:
            session.call("connect", lambda c: None)
        return store

    def check(self) -> None:
        """The share answers."""
        self.session.call("connect", lambda c: None)

    # -- naming (as PosixStore) ---------------------------------------------------
    def default_container(self, backup_id: str) -> str:
        return "%s/%s/%s" % (backup_id[0:2], backup_id[2:4], backup_id)

    def object_prefix(self, volume_id: str, backup_id: str, timestamp: datetime) -> str:
        if timestamp.tzinfo is not None:
            timestamp = timestamp.astimezone(UTC)
        return "volume_%s_%s_backup_%s" % (
            volume_id, timestamp.strftime("%Y%m%d%H%M%S"), backup_id)

    # -- paths (relative to the share) ----------------------------------------------
    @staticmethod
    def _container_path(container: str) -> str:
        if not container or "\0" in container or container.startswith("/"):
            raise InvalidName("invalid container name %r" % container)
        if any(p in ("", ".", "..") for p in container.split("/")):
            raise InvalidName("container name %r may not contain empty, '.' or '..' "
                              "components" % container)
        return container

    def _object_path(self, container: str, name: str) -> str:
        if not name or "/" in name or "\0" in name or name.startswith("."):
            raise InvalidName("invalid object name %r" % name)
        return "%s/%s" % (self._container_path(container), name)

    # -- operations ---------------------------------------------------------------
    def ensure_container(self, container: str) -> None:
        path = self._container_path(container)
        try:
            info = self.session.call("stat of %s" % path, lambda c: c.stat(path))
        except ObjectNotFound:
            pass
        else:
            if info.type != nfs_rs.FileType.DIRECTORY:
                raise StoreError("container %s on NFS share %s is not a directory"
                                 % (path, self.share.share))
            return
        if not self.create_containers:
            raise ContainerNotFound(
                "backup container %s does not exist on NFS share %s and "
                "backup_create_containers is False; create it or enable the option"
                % (path, self.share.share))
        self.session.call("mkdir of %s" % path, lambda c: c.mkdir(
            path, parents=True, exist_ok=True, mode=DIR_MODE))

    @contextmanager
    def open_writer(self, container: str, name: str) -> Iterator[_NfsWriter]:
        final = self._object_path(container, name)
        tmp = "%s/.%s%s%s" % (container, name, _TMP_MARK, secrets.token_hex(6))
        try:
            self.session.call("create of %s" % tmp, lambda c: _create(c, tmp))
        except ObjectNotFound:
            raise ContainerNotFound("container %s does not exist on NFS share %s"
                                    % (container, self.share.share)) from None
        try:
            writer = _NfsWriter(self.session, tmp)
            yield writer
            writer.flush()
            state: dict[str, int] = {}
            try:
                self.session.call("rename of %s" % tmp, lambda c: _publish(c, tmp, final, state))
            except ObjectNotFound as exc:
                raise StoreError("%s vanished before it was renamed to %s"
                                 % (tmp, final)) from exc
        except BaseException:
            try:
                self.session.call("removal of %s" % tmp,
                                  lambda c: c.unlink(tmp, missing_ok=True))
            except StoreError as exc:
                LOG.warning("Could not remove the partial object %s: %s", tmp, exc)
            raise

    @contextmanager
    def open_reader(self, container: str, name: str) -> Iterator[_NfsReader]:
        path = self._object_path(container, name)
        try:
            info = self.session.call("stat of %s" % path, lambda c: c.stat(path))
        except ObjectNotFound:
            raise ObjectNotFound("object %s not found in container %s"
                                 % (name, container)) from None
        if info.type != nfs_rs.FileType.FILE:
            raise StoreError("object %s in container %s is not a file" % (name, container))
        yield _NfsReader(self.session, path, info.fileid)

    def put(self, container: str, name: str, data: bytes) -> None:
        with self.open_writer(container, name) as w:
            w.write(data)

    def get(self, container: str, name: str) -> bytes:
        with self.open_reader(container, name) as r:
            return r.read()

    def delete(self, container: str, name: str) -> None:
        path = self._object_path(container, name)
        self.session.call("removal of %s" % path, lambda c: c.unlink(path, missing_ok=True))

    def list(self, container: str, prefix: str) -> list[str]:
        path = self._container_path(container)

        def names(client: Any) -> list[str]:
            return [e.name for e in client.scandir(path)
                    if e.name.startswith(prefix) and not e.name.startswith(".")
                    and e.info.type == nfs_rs.FileType.FILE]

        try:
            return sorted(self.session.call("listing of %s" % path, names))
        except ObjectNotFound:
            return []
