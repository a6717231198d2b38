"""NFS backup repository (Cinder's ``NFSBackupDriver``).

Two ways to reach the share, chosen by ``backup_nfs_client``:

* ``kernel`` (default, what Cinder does): mount the share with
  ``mount -t nfs`` on ``<backup_mount_point_base>/<md5 hex of the share>`` and
  keep backups as files under the mount point through a :class:`PosixStore`.
  The mount is checked in the mount table, never assumed: a failed mount
  leaves a plain local directory behind, and writing there would put the
  backups on local disk.
* ``userspace``: the worker speaks NFS itself
  (:mod:`backupsvc.drivers.nfs_client`); nothing is mounted.

Both use the posix object layout, so a repository written one way is readable
the other way and by Cinder's NFS driver. ``backup_share`` and
``backup_mount_options`` are parsed here for both.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import re
import shlex
import stat
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from oslo_log import log as logging

from backupsvc.conf.nfs import USERSPACE
from backupsvc.drivers.base import ObjectStore, ObjectWriter, StoreError
from backupsvc.drivers.posix import PosixStore

LOG = logging.getLogger(__name__)

SHARE_FORMATS = ("HOST:/PATH, IPV4:/PATH or [IPV6]:/PATH, for example "
                 "nfs.example.com:/srv/backups, 192.0.2.10:/backups or "
                 "[2001:db8::10]:/backups")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")
_NFS_FSTYPES = ("nfs", "nfs4")
_VERSIONS = {"3": ("3",), "4": ("4.1", "4.0"), "4.0": ("4.0",), "4.1": ("4.1",)}
_DEFAULT_VERSIONS = ("4.1", "4.0", "3")
_USERSPACE_OPTIONS = {"vers", "nfsvers", "minorversion", "port", "mountport", "resvport",
                      "noresvport", "sec"}
_reported: set[frozenset[str]] = set()


class NfsConfigError(ValueError):
    """``backup_share`` or another NFS option is missing or malformed."""


class NfsMountError(StoreError):
    """The share could not be mounted, or the mount point is not a mount."""


class CommandError(Exception):
    """A command run by :class:`NfsMounter` failed."""


@dataclass(frozen=True)
class NfsShare:
    """A parsed ``backup_share``: ``share`` is the string as configured."""

    share: str
    host: str           # a hostname, an IPv4 address or an IPv6 address (no brackets)
    path: str           # the export path, starting with "/"

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host


def _valid_if_ipv4(host: str) -> bool:
    if not re.fullmatch(r"[0-9.]+", host):
        return True
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def parse_share(share: str | None) -> NfsShare:
    """Validate ``backup_share``; raise :class:`NfsConfigError` with the formats."""
    if share is None or not share.strip():
        raise NfsConfigError("backup_share is not set; the NFS backup driver needs "
                             "the share to use, as %s" % SHARE_FORMATS)
    share = share.strip()
    if share.startswith("["):
        end = share.find("]")
        if end < 0 or share[end + 1:end + 2] != ":":
            raise NfsConfigError("backup_share %r: an IPv6 address must be followed by "
                                 "']:' and the path; use %s" % (share, SHARE_FORMATS))
        host, path = share[1:end], share[end + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise NfsConfigError("backup_share %r: %r is not an IPv6 address; use %s"
                                 % (share, host, SHARE_FORMATS)) from None
    else:
        host, sep, path = share.partition(":")
        if not sep:
            raise NfsConfigError("backup_share %r has no ':' between the host and the "
                                 "path; use %s" % (share, SHARE_FORMATS))
        if path.count(":") and not path.startswith("/"):
            raise NfsConfigError("backup_share %r: put an IPv6 address in brackets; "
                                 "use %s" % (share, SHARE_FORMATS))
        if not _HOSTNAME.match(host) or not _valid_if_ipv4(host):
            raise NfsConfigError("backup_share %r: %r is not a host name or IPv4 "
                                 "address; use %s" % (share, host, SHARE_FORMATS))
    if not path.startswith("/") or "\0" in path:
        raise NfsConfigError("backup_share %r: the export path must be absolute "
                             "(start with '/'); use %s" % (share, SHARE_FORMATS))
    return NfsShare(share=share, host=host, path=path)


def mount_point_for(base: str, share: str) -> str:
    """``<base>/<md5 hex of the share string>``, as Cinder (os-brick) names it."""
    digest = hashlib.md5(share.encode("utf-8"), usedforsecurity=False).hexdigest()
    return os.path.join(os.path.abspath(base), digest)


@dataclass(frozen=True)
class ClientOptions:
    """What the userspace client takes from ``backup_mount_options``."""

    versions: tuple[str, ...] = _DEFAULT_VERSIONS
    nfs_port: int | None = None
    mount_port: int | None = None
    noresvport: bool | None = None


def client_options(mount_options: str | None) -> ClientOptions:
    """Read what the userspace client can honour from ``backup_mount_options``."""
    opts: dict[str, str | None] = {}
    for item in (mount_options or "").split(","):
        if item.strip():
            key, sep, value = item.strip().partition("=")
            opts[key.lower()] = value if sep else None
    version = opts.get("nfsvers") or opts.get("vers")
    if version and version in ("4", "4.0", "4.1") and opts.get("minorversion"):
        version = "4.%s" % opts["minorversion"]
    if version is not None and version not in _VERSIONS:
        raise NfsConfigError("backup_mount_options: NFS version %r is not supported by the "
                             "userspace client (3, 4, 4.0 and 4.1 are)" % version)
    if opts.get("sec") not in (None, "sys"):
        raise NfsConfigError("backup_mount_options: sec=%s is not supported by the "
                             "userspace client (AUTH_SYS only)" % opts["sec"])

    def port(key: str) -> int | None:
        value = opts.get(key)
        if value is None or value == "0":
            return None
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise NfsConfigError("backup_mount_options: %s=%s is not a port" % (key, value))
        return int(value)

    noresvport = True if "noresvport" in opts else False if "resvport" in opts else None
    ignored = frozenset(opts) - _USERSPACE_OPTIONS
    if ignored and ignored not in _reported:      # tuning of the kernel client, mostly
        _reported.add(ignored)
        LOG.info("backup_mount_options: the userspace NFS client ignores %s",
                 ", ".join(sorted(ignored)))
    return ClientOptions(versions=_VERSIONS[version] if version else _DEFAULT_VERSIONS,
                         nfs_port=port("port"), mount_port=port("mountport"),
                         noresvport=noresvport)


def share_url(share: NfsShare) -> str:
    host = "[%s]" % share.host if share.is_ipv6 else share.host
    return "nfs://%s%s" % (host, urllib.parse.quote(share.path, safe="/"))


@dataclass(frozen=True)
class MountEntry:
    device: str
    mount_point: str
    fstype: str


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mount_table(path: str = "/proc/self/mounts") -> list[MountEntry]:
    entries = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3:
                entries.append(MountEntry(*(_unescape(x) for x in fields[:3])))
    return entries


def run_command(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError("%s: %s" % (shlex.join(cmd), exc)) from exc
    if proc.returncode:
        raise CommandError("%s exited with %d: %s" % (
            shlex.join(cmd), proc.returncode, (proc.stderr or proc.stdout).strip()))


class NfsMounter:
    """Mounts shares under ``base`` and tells whether a mount point really is one.

    ``runner`` and ``mount_table`` are injectable: the unit tests use fakes
    because this machine's kernel has no NFS client.
    """

    _thread_lock = threading.Lock()

    def __init__(self, base: str, options: str | None = None, attempts: int = 3,
                 root_helper: str = "",
                 runner: Callable[[list[str]], None] = run_command,
                 mount_table: Callable[[], list[MountEntry]] = read_mount_table,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base = os.path.abspath(base)
        self.options = options.strip() if options and options.strip() else None
        self.attempts = max(1, attempts)
        self.root_helper = shlex.split(root_helper or "")
        self._run = runner
        self._mount_table = mount_table
        self._sleep = sleep

    def mount_point(self, share: str) -> str:
        return mount_point_for(self.base, share)

    def mount_command(self, share: str) -> list[str]:
        cmd = ["mount", "-t", "nfs"]
        if self.options:
            cmd += ["-o", self.options]
        return self.root_helper + cmd + [share, self.mount_point(share)]

    def is_mounted(self, mount_point: str, share: str | None = None) -> bool:
        """True when an NFS file system is mounted on ``mount_point``.

        A plain directory (a mount that failed, or was undone) is not a mount.
        Something other than NFS mounted there is an error.
        """
        path = os.path.abspath(mount_point)
        found = [e for e in self._mount_table() if e.mount_point == path]
        if not found:
            return False
        top = found[-1]                     # the last mount on a path hides the others
        if top.fstype not in _NFS_FSTYPES:
            raise NfsMountError("%s has a %s file system (%s) mounted, not an NFS share"
                                % (path, top.fstype, top.device))
        if share is not None and top.device.rstrip("/") != share.rstrip("/"):
            LOG.warning("NFS mount point %s holds %s, configured share is %s",
                        path, top.device, share)
        return True

    @contextmanager
    def _locked(self, mount_point: str) -> Iterator[None]:
        # One mount at a time per process (thread lock) and per host (flock),
        # as Cinder's coordination lock does: two workers starting together
        # would otherwise stack two mounts on one mount point.
        os.makedirs(self.base, exist_ok=True)
        lock_path = os.path.join(self.base, ".%s.lock" % os.path.basename(mount_point))
        with self._thread_lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def ensure_mounted(self, share: str) -> str:
        """Mount ``share`` unless it is mounted already; return the mount point."""
        mount_point = self.mount_point(share)
        with self._locked(mount_point):
            if self.is_mounted(mount_point, share):
                return mount_point
            os.makedirs(mount_point, exist_ok=True)
            problem = ""
            for attempt in range(1, self.attempts + 1):
                try:
                    self._run(self.mount_command(share))
                except CommandError as exc:
                    problem = str(exc)
                else:
                    problem = ("mount reported success, but %s is still a plain "
                               "directory" % mount_point)
                # Also covers "already mounted": another host process won a race.
                if self.is_mounted(mount_point, share):
                    LOG.info("Mounted NFS share %s on %s", share, mount_point)
                    self._fix_permissions(mount_point)
                    return mount_point
                LOG.warning("Mounting NFS share %s on %s failed (attempt %d of %d): %s",
                            share, mount_point, attempt, self.attempts, problem)
                if attempt < self.attempts:
                    self._sleep(min(2 ** (attempt - 1), 10))
        raise NfsMountError("could not mount NFS share %s on %s after %d attempt(s) "
                            "(backup_mount_attempts): %s" % (share, mount_point,
                                                             self.attempts, problem))

    def _fix_permissions(self, mount_point: str) -> None:
        # Cinder's rule: the service's group owns the repository and may write.
        st = os.stat(mount_point)
        try:
            if st.st_gid != os.getegid():
                self._run(self.root_helper + ["chgrp", "-R", str(os.getegid()),
                                              mount_point])
            if not st.st_mode & stat.S_IWGRP:
                self._run(self.root_helper + ["chmod", "-R", "g+w", mount_point])
        except CommandError as exc:
            raise NfsMountError("NFS share mounted on %s, but setting its group "
                                "permissions failed: %s" % (mount_point, exc)) from exc


class KernelNfsStore:
    """A :class:`PosixStore` on a kernel NFS mount that is checked before writing."""

    def __init__(self, share: NfsShare, mounter: NfsMounter,
                 create_containers: bool = True) -> None:
        self.share = share
        self.mounter = mounter
        self.mount_point = mounter.ensure_mounted(share.share)
        self._posix = PosixStore(self.mount_point, create_containers=create_containers)

    @classmethod
    def from_conf(cls, conf: Any, **mounter_kwargs: Any) -> KernelNfsStore:
        share = parse_share(conf.backup_share)
        mounter = NfsMounter(conf.backup_mount_point_base, conf.backup_mount_options,
                             conf.backup_mount_attempts, conf.backup_nfs_root_helper,
                             **mounter_kwargs)
        return cls(share, mounter, create_containers=conf.backup_create_containers)

    @property
    def base_path(self) -> str:
        return self._posix.base_path

    def check(self) -> None:
        """The share is mounted (mounting it if needed) and takes new files."""
        self.mounter.ensure_mounted(self.share.share)
        self._posix.check()

    def _check_mounted(self) -> None:
        if not self.mounter.is_mounted(self.mount_point, self.share.share):
            raise NfsMountError(
                "NFS share %s is no longer mounted on %s; refusing to write backups "
                "to the local directory underneath" % (self.share.share, self.mount_point))

    # -- ObjectStore ------------------------------------------------------------
    def default_container(self, backup_id: str) -> str:
        return self._posix.default_container(backup_id)

    def object_prefix(self, volume_id: str, backup_id: str, timestamp: datetime) -> str:
        return self._posix.object_prefix(volume_id, backup_id, timestamp)

    def ensure_container(self, container: str) -> None:
        # A backup starts here: mount again if the share went away meanwhile.
        self.mounter.ensure_mounted(self.share.share)
        self._posix.ensure_container(container)

    def open_writer(self, container: str, name: str) -> AbstractContextManager[ObjectWriter]:
        self._check_mounted()
        return self._posix.open_writer(container, name)

    def open_reader(self, container: str, name: str) -> AbstractContextManager[BinaryIO]:
        return self._posix.open_reader(container, name)

    def will_read(self, container: str, name: str) -> None:
        self._posix.will_read(container, name)

    def put(self, container: str, name: str, data: bytes) -> None:
        with self.open_writer(container, name) as w:
            w.write(data)

    def get(self, container: str, name: str) -> bytes:
        return self._posix.get(container, name)

    def delete(self, container: str, name: str) -> None:
        self._posix.delete(container, name)

    def list(self, container: str, prefix: str) -> list[str]:
        return self._posix.list(container, prefix)


def from_conf(conf: Any) -> ObjectStore:
    """The NFS repository configured in ``conf`` (mounted or spoken to directly).

    Raises :class:`NfsConfigError` (a ``ValueError``) for a bad configuration
    and :class:`~backupsvc.drivers.base.StoreError` when the share cannot be
    mounted or reached.
    """
    if conf.backup_nfs_client == USERSPACE:
        from backupsvc.drivers.nfs_client import UserspaceNfsStore

        return UserspaceNfsStore.from_conf(conf)
    return KernelNfsStore.from_conf(conf)
