"""Integrity checks, retries, authentication modes and their errors, on a real Swift."""

import random
import re
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint

from backupsvc.drivers import swift as swift_driver
from backupsvc.drivers.base import StoreError
from backupsvc.drivers.swift import (
    ChecksumMismatch,
    SwiftConfigError,
    SwiftConnectionFailed,
    SwiftStore,
)
from tests.functional.swift.conftest import ProxyOutage, make_conf

pytestmark = pytest.mark.functional


class CorruptingStore(SwiftStore):
    """Compares ETags with a wrong md5.

    A real corruption on the wire cannot be produced on loopback (TCP
    checksums and the same bytes on both ends), so the md5 the store
    computes is falsified instead: the effect on the comparison is the same.
    """

    def _digest(self, md5):
        return "0" * 32


def corrupting(conf, **attrs):
    store = CorruptingStore.from_conf(conf)
    for name, value in attrs.items():
        setattr(store, name, value)
    return store


def test_streamed_put_with_etag_mismatch_is_deleted(conf, container):
    store = corrupting(conf, put_buffer_size=1000)
    store.ensure_container(container)
    with pytest.raises(ChecksumMismatch, match="obj.*%s.*ETag" % container):
        store.put(container, "obj", b"x" * 5000)
    assert store.list(container, "") == []              # the bad object was deleted


def test_buffered_put_with_wrong_md5_is_refused_by_swift(conf, container):
    # Small objects are sent with an ETag header: Swift itself refuses (422).
    store = corrupting(conf)
    store.ensure_container(container)
    with pytest.raises(ChecksumMismatch, match="obj.*%s" % container):
        store.put(container, "obj", b"x" * 5000)
    assert store.list(container, "") == []


def test_get_with_etag_mismatch(store, conf, container):
    store.ensure_container(container)
    store.put(container, "obj", b"y" * 300000)
    bad = corrupting(conf, read_chunk_size=65536)
    with pytest.raises(ChecksumMismatch, match="obj.*%s.*md5" % container):
        bad.get(container, "obj")
    with bad.open_reader(container, "obj") as r:        # partial reads are not checked
        assert r.read(10) == b"y" * 10


class DroppingListener:
    """A TCP port that accepts connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_unreachable_swift_is_retried_then_reported(swift_server):
    listener = DroppingListener()
    try:
        conf = make_conf(swift_server, backup_swift_retry_attempts=2,
                         backup_swift_auth_url="http://127.0.0.1:%d/auth/v1.0" % listener.port)
        store = SwiftStore.from_conf(conf)
        with pytest.raises(SwiftConnectionFailed) as err:
            store.list("c", "")
    finally:
        listener.close()
    message = str(err.value)
    assert "list container c" in message and "backup_swift_retry_attempts" in message
    assert "2 retries" in message
    assert listener.accepted == 3               # the first attempt and 2 retries


def test_transient_outage_is_retried(swift_server, container):
    conf = make_conf(swift_server, backup_swift_retry_attempts=6, backup_swift_retry_backoff=1)
    store = SwiftStore.from_conf(conf)
    store.ensure_container(container)
    store.put(container, "obj", b"data")           # a pooled connection, now kept alive
    swift_server.stop_server("proxy")
    restart = threading.Timer(1.0, swift_server.start_server, args=("proxy",))
    restart.start()
    try:
        start = time.monotonic()
        assert store.get(container, "obj") == b"data"
        assert store.list(container, "") == ["obj"]
        assert time.monotonic() - start >= 1.0
    finally:
        restart.join()
        swift_server.wait_ready()


def test_streamed_put_survives_a_proxy_restart_halfway(swift_server, container, caplog):
    """The proxy dies while an object is being streamed: the rest of the body goes to
    the spool file and the whole object is sent again once the proxy is back."""
    conf = make_conf(swift_server, backup_swift_retry_attempts=6, backup_swift_retry_backoff=1)
    store = SwiftStore.from_conf(conf)
    store.put_buffer_size = 64 * 1024
    store.ensure_container(container)
    data = random.Random(5).randbytes(12 * 1024 * 1024 + 77)
    half = len(data) // 2
    outage = None
    try:
        with store.open_writer(container, "obj") as w:
            w.write(data[:half])            # streaming: Swift has been sent some of it
            outage = ProxyOutage(swift_server, after=1.0)
            w.write(data[half:])
    finally:
        if outage is not None:
            outage.end()
    assert "sending the %d bytes again from its spool file" % len(data) in caplog.text
    assert store.get(container, "obj") == data
    assert store.list(container, "") == ["obj"]
    assert list(Path(tempfile.gettempdir()).glob("backupsvc-swift-put-*")) == []


def test_streamed_get_survives_a_proxy_restart_halfway(swift_server, container):
    """A GET whose connection dies halfway goes on from where it broke off (a ranged
    GET with If-Match, swiftclient's own resume), and the whole body still matches
    its ETag."""
    conf = make_conf(swift_server, backup_swift_retry_attempts=6, backup_swift_retry_backoff=1)
    store = SwiftStore.from_conf(conf)
    store.read_chunk_size = 64 * 1024
    store.ensure_container(container)
    data = random.Random(7).randbytes(32 * 1024 * 1024 + 5)
    store.put(container, "obj", data)
    outage = None
    try:
        with store.open_reader(container, "obj") as r:
            parts = [r.read(1024 * 1024)]
            outage = ProxyOutage(swift_server, after=1.0)
            while chunk := r.read(1024 * 1024):
                parts.append(chunk)
    finally:
        if outage is not None:
            outage.end()
    assert b"".join(parts) == data
    log = (swift_server.logs / "proxy.log").read_text(errors="replace")
    assert re.search(r"GET /v1/AUTH_test/%s/obj HTTP/1.0 206 " % container, log), \
        "no ranged GET: the read did not break off and resume"


def test_streamed_put_without_retries_fails_clearly(swift_server, container):
    conf = make_conf(swift_server, backup_swift_retry_attempts=0)
    store = SwiftStore.from_conf(conf)
    store.put_buffer_size = 64 * 1024
    store.ensure_container(container)
    data = random.Random(6).randbytes(6 * 1024 * 1024)
    outage = None
    try:
        with pytest.raises(SwiftConnectionFailed,
                           match="obj.*not retried when backup_swift_retry_attempts is 0"):
            with store.open_writer(container, "obj") as w:
                w.write(data[:len(data) // 2])
                outage = ProxyOutage(swift_server, after=0.5)
                w.write(data[len(data) // 2:])
    finally:
        if outage is not None:
            outage.end()
    assert store.list(container, "") == []          # nothing half-written


def test_wrong_key(swift_server):
    store = SwiftStore.from_conf(make_conf(swift_server, backup_swift_key="wrong"))
    with pytest.raises(StoreError, match="HEAD container c: Swift refused the credentials"):
        store.ensure_container("c")


def test_auth_version_1_with_tenant_and_user(swift_server, container):
    account, user = swift_server.user.split(":")
    store = SwiftStore.from_conf(make_conf(swift_server, backup_swift_user=user,
                                           backup_swift_tenant=account))
    store.ensure_container(container)
    assert store.list(container, "") == []


def test_per_user_with_the_request_token(swift_server, container):
    context = SimpleNamespace(auth_token=swift_server.token(), project_id="test")
    conf = make_conf(swift_server, backup_swift_auth="per_user",
                     backup_swift_url=swift_server.storage_url.replace("AUTH_test", "AUTH_"))
    store = SwiftStore.from_conf(conf, context)
    store.ensure_container(container)
    store.put(container, "obj", b"mine")
    assert store.get(container, "obj") == b"mine"

    stale = SwiftStore.from_conf(conf, SimpleNamespace(auth_token="AUTH_tknope",
                                                       project_id="test"))
    with pytest.raises(StoreError, match="refused the credentials"):
        stale.get(container, "obj")
    anonymous = SwiftStore.from_conf(conf)          # e.g. the worker's start-up check
    with pytest.raises(SwiftConfigError, match="per_user.*token"):
        anonymous.list(container, "")


def test_per_user_endpoint_from_the_service_catalog(swift_server, container):
    catalog = [{"type": "object-store", "name": "swift",
                "endpoints": [{"region": "other", "publicURL": "http://127.0.0.1:1/v1/x"},
                              {"region": "r1", "publicURL": swift_server.storage_url}]}]
    context = SimpleNamespace(auth_token=swift_server.token(), project_id="test",
                              service_catalog=catalog)
    conf = make_conf(swift_server, backup_swift_auth="per_user", backup_swift_region_name="r1")
    store = SwiftStore.from_conf(conf, context)
    store.ensure_container(container)
    assert store.list(container, "") == []


def test_keystone_session_path(swift_server, container, monkeypatch):
    """Auth version 3 goes through a keystoneauth1 session; here one holding a token.

    No Keystone runs here: the session's plugin hands out a tempauth token and
    the storage URL, which is what swiftclient asks a session for.
    """
    made = []

    def fake_session(conf, auth_url):
        made.append(auth_url)
        plugin = token_endpoint.Token(swift_server.storage_url, swift_server.token())
        return ks_session.Session(auth=plugin)

    monkeypatch.setattr(swift_driver, "_keystone_session", fake_session)
    conf = make_conf(swift_server, backup_swift_auth_version="3",
                     backup_swift_auth_url="http://keystone.invalid/v3")
    store = SwiftStore.from_conf(conf)
    store.ensure_container(container)
    store.put(container, "obj", b"v3")
    assert store.get(container, "obj") == b"v3"
    assert made == ["http://keystone.invalid/v3"]
