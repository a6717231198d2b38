"""Object store on OpenStack Swift, through python-swiftclient.

Writing: an object of at most ``put_buffer_size`` bytes is sent in one PUT
with Content-Length and ETag (Swift refuses a body that does not match; the
PUT can be retried). A larger object is streamed with chunked transfer
encoding: the PUT runs in a thread that pulls the body from a small bounded
queue fed by ``write``, so memory stays bounded whatever the object size.
Swift stores an object only once the whole body arrived (the terminating
chunk), so the object appears when the writer exits cleanly; an exception
aborts the request and leaves nothing behind (an older object of the same name
is kept).

A stream can fail halfway (a proxy restarts, a connection drops) where a
buffered PUT would simply be sent again. So, unless retries are off
(``backup_swift_retry_attempts = 0``), the PUT's thread also copies the
body it sends into an unlinked temporary file (in ``TMPDIR``; at most one
object, ``backup_swift_object_size``, per stream). If the stream fails with
an error worth retrying, the thread keeps taking the rest of the body into
that file, and the object is then sent again from it, with Content-Length,
ETag and the connection's retries and backoff, as Cinder retries its
buffered chunks. The file goes away with the writer.

The ETag Swift returns is compared with the md5 of what was sent; on a
mismatch the object is deleted. Reading streams the body and, when the
whole object was read, compares its md5 with the ETag (large-object manifests
excepted: their ETag is not the md5 of the content).

swiftclient's ``Connection`` is not thread-safe: every operation takes one
from a small pool; a streaming PUT or GET holds its own until it is done.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from oslo_log import log as logging
from requests.exceptions import RequestException
from swiftclient import client as swift
from swiftclient.exceptions import ClientException
from urllib3.exceptions import HTTPError as Urllib3Error

from backupsvc.conf.backup import check_chunk_sizes
from backupsvc.drivers import swift_upload
from backupsvc.drivers.base import ContainerNotFound, InvalidName, ObjectNotFound, StoreError

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
PUT_BUFFER_SIZE = 4 * MiB      # objects up to this size go in one retryable PUT
STREAM_PIECE = 1 * MiB         # largest chunk handed to the HTTP layer
READ_CHUNK_SIZE = 1 * MiB      # resp_chunk_size of streamed GETs
MAX_IDLE_CONNECTIONS = 8

Connect = Callable[[], swift.Connection]


class SwiftConnectionFailed(StoreError):
    """Swift could not be reached (after the configured retries)."""


class ChecksumMismatch(StoreError):
    """The md5 of an object's body differs from the ETag Swift reported."""


class SwiftConfigError(StoreError, ValueError):
    """The configuration (or request context) does not allow reaching Swift."""


def check_sizes(conf: Any) -> None:
    """Refuse at start-up an object size that is not a multiple of the block size."""
    check_chunk_sizes(conf.backup_swift_object_size, conf.backup_swift_block_size,
                      "backup_swift_object_size", "backup_swift_block_size")


# -- authentication -------------------------------------------------------------

def _parse_catalog_info(option: str, value: str) -> tuple[str, str, str]:
    parts = value.split(":")
    if len(parts) != 3 or not all(parts):
        raise SwiftConfigError("%s must be <service_type>:<service_name>:<endpoint_type>, "
                               "not %r" % (option, value))
    return parts[0], parts[1], parts[2]


def _interface(endpoint_type: str) -> str:
    return endpoint_type[:-3] if endpoint_type.endswith("URL") else endpoint_type


def catalog_url(context: Any, option: str, info: str, region: str | None) -> str | None:
    """The endpoint matching ``info`` in the context's service catalog (v2 or v3 form)."""
    service_type, service_name, endpoint_type = _parse_catalog_info(option, info)
    for service in getattr(context, "service_catalog", None) or []:
        if service.get("type") != service_type or service.get("name") != service_name:
            continue
        for ep in service.get("endpoints") or []:
            if region and region not in (ep.get("region"), ep.get("region_id")):
                continue
            if ep.get(endpoint_type):
                return ep[endpoint_type]
            if ep.get("interface") == _interface(endpoint_type) and ep.get("url"):
                return ep["url"]
    return None


def _failing(message: str) -> Connect:
    def connect() -> swift.Connection:
        raise SwiftConfigError(message)
    return connect


def _keystone_session(conf: Any, auth_url: str) -> ks_session.Session:
    if conf.backup_swift_application_credential_id:
        auth: Any = v3.ApplicationCredential(
            auth_url=auth_url,
            application_credential_id=conf.backup_swift_application_credential_id,
            application_credential_secret=conf.backup_swift_application_credential_secret)
    else:
        auth = v3.Password(
            auth_url=auth_url, username=conf.backup_swift_user,
            password=conf.backup_swift_key, user_domain_name=conf.backup_swift_user_domain,
            project_name=conf.backup_swift_project or conf.backup_swift_tenant,
            project_domain_name=conf.backup_swift_project_domain)
    verify = False if conf.backup_swift_auth_insecure else (
        conf.backup_swift_ca_cert_file or True)
    return ks_session.Session(auth=auth, verify=verify)


def service_token_source(conf: Any) -> Callable[[], str]:
    """backup_swift_service_auth: a callable giving the service user's token (from
    [service_user], renewed by keystoneauth when it nears its expiry)."""
    from keystoneauth1 import loading as ks_loading

    from backupsvc.conf.swift import SERVICE_USER_GROUP

    if not conf.service_user.send_service_user_token:
        raise SwiftConfigError("backup_swift_service_auth needs [service_user] "
                               "send_service_user_token = True, with the service user's "
                               "credentials in that section")
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, SERVICE_USER_GROUP)
    except ks_exceptions.ClientException as exc:
        raise SwiftConfigError("[service_user]: %s" % exc) from exc
    if auth is None:
        raise SwiftConfigError("backup_swift_service_auth needs the service user's "
                               "credentials in [service_user] (auth_type and its options)")
    session = ks_loading.load_session_from_conf_options(conf, SERVICE_USER_GROUP, auth=auth)

    def token() -> str:
        try:
            return session.get_token()
        except ks_exceptions.ClientException as exc:
            raise StoreError("could not get the service user's token from Keystone "
                             "([service_user], backup_swift_service_auth): %s" % exc) from exc

    return token


def connection_factory(conf: Any, context: Any = None) -> Connect:
    """A callable making swiftclient Connections as the options say.

    Problems that depend on the request context (per_user without a token,
    endpoints looked up in a catalog that is missing) are raised as
    :class:`SwiftConfigError` by the callable, so that a store can be built
    at start-up without a user.
    """
    region = conf.backup_swift_region_name
    common = dict(retries=conf.backup_swift_retry_attempts,
                  starting_backoff=conf.backup_swift_retry_backoff,
                  cacert=conf.backup_swift_ca_cert_file,
                  insecure=conf.backup_swift_auth_insecure)
    if conf.backup_swift_auth == "per_user":
        token = getattr(context, "auth_token", None)
        project = getattr(context, "project_id", None)
        if conf.backup_swift_url:
            url = conf.backup_swift_url + project if project else None
        else:
            url = catalog_url(context, "swift_catalog_info", conf.swift_catalog_info, region)
        if not token or not url:
            return _failing(
                "per_user Swift auth needs the requesting user's token and project "
                "(and backup_swift_url or a service catalog with %s); this request has "
                "%s. Set backup_swift_auth = single_user to use a service account."
                % (conf.swift_catalog_info, "a token" if token else "no token"))
        return functools.partial(swift.Connection, preauthurl=url, preauthtoken=token, **common)

    auth_url = conf.backup_swift_auth_url or catalog_url(
        context, "keystone_catalog_info", conf.keystone_catalog_info, region)
    if not auth_url:
        return _failing("single_user Swift auth needs backup_swift_auth_url (or a service "
                        "catalog with %s)" % conf.keystone_catalog_info)
    version = str(conf.backup_swift_auth_version).lower().lstrip("v")
    if version in ("3", "3.0"):
        service_type, _, endpoint_type = _parse_catalog_info(
            "swift_catalog_info", conf.swift_catalog_info)
        options = {"service_type": service_type, "endpoint_type": _interface(endpoint_type),
                   "region_name": region}
        return functools.partial(swift.Connection, session=_keystone_session(conf, auth_url),
                                 os_options=options, **common)
    user = conf.backup_swift_user
    if version in ("1", "1.0") and conf.backup_swift_tenant and user and ":" not in user:
        user = "%s:%s" % (conf.backup_swift_tenant, user)
    options = {k: v for k, v in (("user_domain_name", conf.backup_swift_user_domain),
                                 ("project_domain_name", conf.backup_swift_project_domain),
                                 ("project_name", conf.backup_swift_project),
                                 ("region_name", region)) if v}
    return functools.partial(swift.Connection, authurl=auth_url, user=user,
                             key=conf.backup_swift_key, auth_version=version,
                             tenant_name=conf.backup_swift_tenant, os_options=options,
                             **common)


class _SwiftWriter:
    def __init__(self, store: SwiftStore, container: str, name: str) -> None:
        self._store, self._container, self._name = store, container, name
        self._what = "PUT object %s in container %s" % (name, container)
        self._buf = bytearray()
        self._upload: swift_upload.Upload | None = None
        self._spool: swift_upload.Spool | None = None
        self.bytes_written = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        with self._store._call(self._what, retried=self._upload is None):
            if self._upload is None and len(self._buf) + len(view) <= self._store.put_buffer_size:
                self._buf += view
            else:
                if self._upload is None:
                    self._start()
                    self._send(memoryview(self._buf), copy=False)   # handed over
                    self._buf = bytearray()
                self._send(view, copy=True)      # the caller may reuse its buffer
        self.bytes_written += len(view)
        return len(view)

    def _start(self) -> None:
        if self._store.retries > 0:
            self._spool = swift_upload.Spool()
        self._upload = self._store._start_upload(self._container, self._name, self._spool)

    def _send(self, view: memoryview, copy: bool) -> None:
        assert self._upload is not None
        for i in range(0, len(view), STREAM_PIECE):
            piece = view[i:i + STREAM_PIECE]
            self._upload.send(piece.tobytes() if copy else piece)

    def abort(self) -> None:
        try:
            if self._upload is not None:
                self._upload.abort()
        finally:
            self._close_spool()

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def commit(self) -> None:
        try:
            self._commit()
        finally:
            self._close_spool()

    def _commit(self) -> None:
        store, what = self._store, self._what
        missing = ContainerNotFound("container %s does not exist" % self._container)
        upload = self._upload
        try:
            with store._call(what, missing, retried=upload is None or self._spool is not None):
                if upload is None:
                    expected = store._digest(hashlib.md5(self._buf, usedforsecurity=False))
                    with store._connection() as conn:
                        etag = conn.put_object(self._container, self._name,
                                               io.BytesIO(self._buf),
                                               content_length=len(self._buf), etag=expected)
                else:
                    try:
                        etag = upload.finish()
                    except Exception as exc:
                        if not upload.replayable:
                            raise
                        etag = self._replay(upload, exc)
                    expected = store._digest(upload.md5)
        except SwiftConnectionFailed:
            # The body may have arrived even though the answer did not.
            store._delete_quietly(self._container, self._name)
            raise
        if etag != expected:
            LOG.warning("Swift stored object %s in container %s with ETag %s, but the md5 "
                        "of the body sent is %s; deleting it", self._name, self._container,
                        etag, expected)
            store._delete_quietly(self._container, self._name)
            raise ChecksumMismatch("%s: Swift reported ETag %s but the body sent has md5 %s; "
                                   "the object was deleted" % (what, etag, expected))

    def _replay(self, upload: swift_upload.Upload, failure: BaseException) -> str:
        """Send the whole body again from the spool, with swiftclient's retries."""
        assert self._spool is not None
        LOG.warning("%s failed after %d of its bytes were taken (%s); sending the "
                    "%d bytes again from its spool file", self._what, upload.failed_at,
                    failure, upload.size)
        try:
            body = self._spool.body()
        except OSError as exc:
            LOG.warning("The spool file of %s failed (%s): the PUT is not retried",
                        self._what, exc)
            raise failure from exc
        with self._store._connection() as conn:
            return conn.put_object(self._container, self._name, body,
                                   content_length=upload.size,
                                   etag=self._store._digest(upload.md5))


class _SwiftReader:
    def __init__(self, store: SwiftStore, body: Any, headers: dict[str, str],
                 what: str) -> None:
        self._store, self._body, self._what = store, body, what
        self._buf = bytearray()
        self._eof = False
        self._length = int(headers.get("content-length", -1))
        self._received = 0
        manifest = ("x-object-manifest" in headers
                    or headers.get("x-static-large-object", "").lower() == "true")
        self._etag = None if manifest else headers.get("etag", "").strip('"') or None
        self._md5 = hashlib.md5(usedforsecurity=False)

    def _fill(self) -> None:
        with self._store._call(self._what):
            chunk = self._body.read(self._store.read_chunk_size)
        if not chunk:
            self._eof = True
            self._check()
            return
        self._received += len(chunk)
        self._md5.update(chunk)
        self._buf += chunk

    def _check(self) -> None:
        if 0 <= self._length != self._received:
            raise StoreError("%s: the body ended after %d of %d bytes"
                             % (self._what, self._received, self._length))
        if self._etag is not None:
            digest = self._store._digest(self._md5)
            if digest != self._etag:
                raise ChecksumMismatch("%s: the body read has md5 %s but Swift's ETag is %s"
                                       % (self._what, digest, self._etag))

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size is None or size < 0 or len(self._buf) < size):
            self._fill()
        if size is None or size < 0 or size >= len(self._buf):
            out, self._buf = bytes(self._buf), bytearray()
            return out
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


# -- the store ------------------------------------------------------------------

def _check_names(container: str, name: str | None = None) -> None:
    try:
        if (not container or "/" in container or "\0" in container
                or container in (".", "..") or len(container.encode()) > 256):
            raise InvalidName("invalid Swift container name %r" % container)
        if name is not None and (not name or "\0" in name or len(name.encode()) > 1024
                                 or any(p in (".", "..") for p in name.split("/"))):
            raise InvalidName("invalid Swift object name %r" % name)
    except UnicodeEncodeError:
        raise InvalidName("container %r / object %r is not valid UTF-8"
                          % (container, name)) from None


class SwiftStore:
    """An :class:`~backupsvc.drivers.base.ObjectStore` on one Swift account."""

    def __init__(self, connect: Connect, container: str = "volumebackups",
                 availability_zone: str = "nova", create_containers: bool = True,
                 storage_policy: str | None = None, retries: int = 3,
                 put_buffer_size: int = PUT_BUFFER_SIZE,
                 read_chunk_size: int = READ_CHUNK_SIZE,
                 service_token: Callable[[], str] | None = None) -> None:
        self._connect = connect
        self._service_token = service_token     # X-Service-Token of every request
        self.container = container
        self.availability_zone = availability_zone
        self.create_containers = create_containers
        self.storage_policy = storage_policy
        self.retries = retries
        self.put_buffer_size = put_buffer_size
        self.read_chunk_size = read_chunk_size
        self._idle: list[swift.Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def from_conf(cls, conf: Any, context: Any = None) -> SwiftStore:
        """The store for ``context``'s user (per_user) or the service account."""
        service_token = None
        if conf.backup_swift_auth == "per_user" and conf.backup_swift_service_auth:
            service_token = service_token_source(conf)
        return cls(connection_factory(conf, context), container=conf.backup_swift_container,
                   availability_zone=conf.storage_availability_zone,
                   create_containers=conf.backup_create_containers,
                   storage_policy=conf.backup_swift_create_storage_policy,
                   retries=conf.backup_swift_retry_attempts, service_token=service_token)

    def check(self) -> None:
        """Nothing to check ahead: with per_user auth only a request's user can
        reach Swift, and every request is retried (backup_swift_retry_attempts)."""

    # -- naming ---------------------------------------------------------------
    def default_container(self, backup_id: str) -> str:
        return self.container

    def object_prefix(self, volume_id: str, backup_id: str, timestamp: datetime) -> str:
        # Naive timestamps are taken as UTC (that is how the database stores them).
        if timestamp.tzinfo is not None:
            timestamp = timestamp.astimezone(UTC)
        return "volume_%s/%s/az_%s_backup_%s" % (
            volume_id, timestamp.strftime("%Y%m%d%H%M%S"), self.availability_zone, backup_id)

    # -- plumbing -------------------------------------------------------------
    def _digest(self, md5: Any) -> str:
        """The hex md5 compared with ETags (tests override it to fake a corruption)."""
        return md5.hexdigest()

    def _acquire(self) -> swift.Connection:
        conn = None
        with self._lock:
            if self._idle:
                conn = self._idle.pop()
        if conn is None:
            conn = self._connect()
        if self._service_token is not None:
            # (swiftclient sends a Connection's service_token with every request.)
            conn.service_token = self._service_token()
        return conn

    def _release(self, conn: swift.Connection, healthy: bool = True) -> None:
        if healthy:
            with self._lock:
                if len(self._idle) < MAX_IDLE_CONNECTIONS:
                    self._idle.append(conn)
                    return
        conn.close()

    @contextmanager
    def _connection(self) -> Iterator[swift.Connection]:
        # swiftclient drops a broken HTTP connection itself; the Connection stays usable.
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    @contextmanager
    def _call(self, what: str, missing: StoreError | None = None,
              retried: bool = True) -> Iterator[None]:
        """Turn swiftclient/requests exceptions into StoreErrors that say what failed."""
        try:
            yield
        except ClientException as exc:
            status = exc.http_status
            if status == 404:
                raise (missing or ObjectNotFound("%s: not found" % what)) from exc
            if status == 422:
                raise ChecksumMismatch("%s: Swift refused the body, whose md5 does not "
                                       "match the ETag sent (%s)" % (what, exc)) from exc
            if status in (401, 403):
                raise StoreError("%s: Swift refused the credentials (%s)" % (what, exc)) from exc
            raise StoreError("%s failed: %s" % (what, exc)) from exc
        except ks_exceptions.ClientException as exc:
            raise StoreError("%s: Keystone authentication or endpoint lookup failed: %s"
                             % (what, exc)) from exc
        except (RequestException, Urllib3Error, OSError) as exc:
            how = ("gave up after %d retries, backup_swift_retry_attempts" % self.retries
                   if retried else "a streamed upload is not retried when "
                   "backup_swift_retry_attempts is 0")
            raise SwiftConnectionFailed("%s: Swift is unreachable (%s): %s"
                                        % (what, how, exc)) from exc

    def _start_upload(self, container: str, name: str,
                      spool: swift_upload.Spool | None = None) -> swift_upload.Upload:
        conn = self._acquire()
        try:
            # Authenticates (or renews an expired token) before the body starts,
            # and turns a missing container into a clear error.
            with self._call("HEAD container %s" % container,
                            ContainerNotFound("container %s does not exist" % container)):
                conn.head_container(container)
        except BaseException:
            self._release(conn)
            raise
        url, token, http_conn = conn.url, conn.token, conn.http_conn
        service_token = conn.service_token

        def put(body: Iterator[bytes]) -> str:
            return swift.put_object(url, token, container, name, contents=body,
                                    http_conn=http_conn, service_token=service_token)

        return swift_upload.Upload(put, lambda ok: self._release(conn, healthy=ok), spool=spool)

    def _delete_quietly(self, container: str, name: str) -> None:
        try:
            self.delete(container, name)
        except StoreError as exc:
            LOG.warning("Could not delete object %s from container %s: %s",
                        name, container, exc)

    # -- operations -----------------------------------------------------------
    def ensure_container(self, container: str) -> None:
        _check_names(container)
        try:
            with self._call("HEAD container %s" % container, ContainerNotFound(container)), \
                    self._connection() as conn:
                conn.head_container(container)
            return
        except ContainerNotFound:
            if not self.create_containers:
                raise ContainerNotFound(
                    "Swift container %s does not exist and backup_create_containers is "
                    "False; create it or enable the option" % container) from None
        headers = {"X-Storage-Policy": self.storage_policy} if self.storage_policy else None
        with self._call("PUT container %s" % container), self._connection() as conn:
            conn.put_container(container, headers=headers)

    @contextmanager
    def open_writer(self, container: str, name: str) -> Iterator[_SwiftWriter]:
        _check_names(container, name)
        writer = _SwiftWriter(self, container, name)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.commit()

    @contextmanager
    def open_reader(self, container: str, name: str) -> Iterator[_SwiftReader]:
        _check_names(container, name)
        what = "GET object %s in container %s" % (name, container)
        with self._connection() as conn:
            with self._call(what):
                headers, body = conn.get_object(container, name,
                                                resp_chunk_size=self.read_chunk_size)
            try:
                yield _SwiftReader(self, body, headers, what)
            finally:
                body.close()

    def put(self, container: str, name: str, data: bytes) -> None:
        with self.open_writer(container, name) as w:
            w.write(data)

    def get(self, container: str, name: str) -> bytes:
        with self.open_reader(container, name) as r:
            return r.read()

    def delete(self, container: str, name: str) -> None:
        _check_names(container, name)
        try:
            with self._call("DELETE object %s in container %s" % (name, container)), \
                    self._connection() as conn:
                conn.delete_object(container, name)
        except ObjectNotFound:
            pass

    def list(self, container: str, prefix: str) -> list[str]:
        _check_names(container)
        try:
            with self._call("list container %s" % container, ContainerNotFound(container)), \
                    self._connection() as conn:
                _, items = conn.get_container(container, prefix=prefix, full_listing=True)
        except ContainerNotFound:
            return []
        return sorted(item["name"] for item in items)
