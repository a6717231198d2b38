"""The Swift driver without a Swift: options, naming, auth wiring, body checks.

Everything that talks to a server is in tests/functional/swift/.
"""

import hashlib
import random
import resource
import signal
import threading
from datetime import datetime
from types import SimpleNamespace

import pytest
from keystoneauth1.identity import v3
from oslo_config import cfg
from swiftclient.exceptions import ClientException

from backupsvc.conf import service as service_opts
from backupsvc.conf import swift as swift_opts
from backupsvc.drivers import swift as swift_driver
from backupsvc.drivers import swift_upload
from backupsvc.drivers.base import InvalidName, StoreError
from backupsvc.drivers.swift import (
    ChecksumMismatch,
    SwiftConfigError,
    SwiftStore,
    catalog_url,
    check_sizes,
    connection_factory,
)

CINDER_DEFAULTS = {
    "backup_swift_url": None, "backup_swift_auth_url": None,
    "swift_catalog_info": "object-store:swift:publicURL",
    "keystone_catalog_info": "identity:Identity Service:publicURL",
    "backup_swift_auth": "per_user", "backup_swift_auth_version": "1",
    "backup_swift_tenant": None, "backup_swift_user_domain": None,
    "backup_swift_project_domain": None, "backup_swift_project": None,
    "backup_swift_user": None, "backup_swift_key": None,
    "backup_swift_container": "volumebackups",
    "backup_swift_create_storage_policy": None,
    "backup_swift_object_size": 52428800, "backup_swift_block_size": 32768,
    "backup_swift_retry_attempts": 3, "backup_swift_retry_backoff": 2,
    "backup_swift_enable_progress_timer": True, "backup_swift_ca_cert_file": None,
    "backup_swift_auth_insecure": False, "backup_swift_region_name": None,
}


@pytest.fixture
def conf():
    conf = cfg.ConfigOpts()
    swift_opts.register_opts(conf)
    service_opts.register_opts(conf)
    conf.register_opt(cfg.BoolOpt("backup_create_containers", default=True))
    conf(args=[], default_config_files=[], default_config_dirs=[])
    return conf


def test_cinder_names_and_defaults(conf):
    for name, default in CINDER_DEFAULTS.items():
        assert conf[name] == default, name
    secret = {o.name for o in swift_opts.opts if o.secret}
    assert secret == {"backup_swift_key", "backup_swift_application_credential_secret"}
    with pytest.raises(ValueError):
        conf.set_override("backup_swift_auth", "everybody")


def test_check_sizes(conf):
    check_sizes(conf)
    conf.set_override("backup_swift_object_size", 52428800 + 1000)
    with pytest.raises(ValueError, match="backup_swift_object_size.*multiple of "
                                         "backup_swift_block_size"):
        check_sizes(conf)


def test_naming(conf):
    conf.set_override("storage_availability_zone", "zone-b")
    conf.set_override("backup_swift_container", "mine")
    store = SwiftStore.from_conf(conf)
    assert store.default_container("abc") == "mine"
    assert (store.object_prefix("v", "b", datetime(2024, 1, 2, 3, 4, 5))
            == "volume_v/20240102030405/az_zone-b_backup_b")


@pytest.mark.parametrize("container,name", [("a/b", "o"), ("", "o"), ("c", ""),
                                            ("c", "a/./b"), ("c", "\ud800")])
def test_names_checked_before_any_request(conf, container, name):
    store = SwiftStore(lambda: pytest.fail("no connection expected"))
    with pytest.raises(InvalidName):
        store.put(container, name, b"x")


# -- connections --------------------------------------------------------------------

def kwargs_of(factory) -> dict:
    return dict(factory.keywords)


def test_per_user_from_backup_swift_url(conf):
    conf.set_override("backup_swift_url", "https://swift:8080/v1/AUTH_")
    conf.set_override("backup_swift_ca_cert_file", "/ca.pem")
    ctx = SimpleNamespace(auth_token="tok", project_id="p1")
    kw = kwargs_of(connection_factory(conf, ctx))
    assert kw == {"preauthurl": "https://swift:8080/v1/AUTH_p1", "preauthtoken": "tok",
                  "retries": 3, "starting_backoff": 2, "cacert": "/ca.pem",
                  "insecure": False}


@pytest.mark.parametrize("endpoint", [
    {"region": "r1", "publicURL": "http://s/v1/AUTH_p1"},                    # Keystone v2
    {"region_id": "r1", "interface": "public", "url": "http://s/v1/AUTH_p1"},  # v3
])
def test_catalog_lookup(endpoint):
    catalog = [{"type": "identity", "name": "keystone", "endpoints": []},
               {"type": "object-store", "name": "swift", "endpoints": [
                   {"region": "r0", "publicURL": "http://elsewhere",
                    "interface": "public", "url": "http://elsewhere"}, endpoint]}]
    ctx = SimpleNamespace(service_catalog=catalog)
    info = "object-store:swift:publicURL"
    assert catalog_url(ctx, "swift_catalog_info", info, "r1") == "http://s/v1/AUTH_p1"
    assert catalog_url(ctx, "swift_catalog_info", info, "r9") is None
    assert catalog_url(ctx, "swift_catalog_info", "object-store:other:publicURL", None) is None
    with pytest.raises(SwiftConfigError, match="swift_catalog_info"):
        catalog_url(ctx, "swift_catalog_info", "object-store", None)


def test_per_user_without_token_fails_on_use_only(conf):
    conf.set_override("backup_swift_url", "http://swift/v1/AUTH_")
    store = SwiftStore.from_conf(conf)                # start-up: no user, no error
    with pytest.raises(SwiftConfigError, match="per_user.*single_user"):
        store.list("c", "")
    ctx = SimpleNamespace(auth_token="t", project_id="p", service_catalog=[])
    conf.clear_override("backup_swift_url")
    with pytest.raises(SwiftConfigError, match="object-store:swift:publicURL"):
        connection_factory(conf, ctx)()


def single_user(conf, **values):
    conf.set_override("backup_swift_auth", "single_user")
    conf.set_override("backup_swift_auth_url", "http://auth/auth/v1.0")
    for name, value in values.items():
        conf.set_override(name, value)


def test_single_user_v1(conf):
    single_user(conf, backup_swift_user="tester", backup_swift_tenant="test",
                backup_swift_key="k", backup_swift_auth_insecure=True)
    kw = kwargs_of(connection_factory(conf))
    assert kw["authurl"] == "http://auth/auth/v1.0" and kw["auth_version"] == "1"
    assert kw["user"] == "test:tester" and kw["key"] == "k" and kw["insecure"] is True
    conf.set_override("backup_swift_user", "acct:tester")
    assert kwargs_of(connection_factory(conf))["user"] == "acct:tester"


def test_single_user_needs_an_auth_url(conf):
    single_user(conf)
    conf.clear_override("backup_swift_auth_url")
    with pytest.raises(SwiftConfigError, match="backup_swift_auth_url"):
        connection_factory(conf)()


def test_single_user_v3_password_session(conf):
    single_user(conf, backup_swift_auth_version="3", backup_swift_auth_url="http://ks/v3",
                backup_swift_user="u", backup_swift_key="pw", backup_swift_user_domain="ud",
                backup_swift_project="proj", backup_swift_project_domain="pd",
                backup_swift_region_name="r1", swift_catalog_info="object-store:swift:internalURL",
                backup_swift_ca_cert_file="/ca.pem")
    kw = kwargs_of(connection_factory(conf))
    session = kw["session"]
    assert session.verify == "/ca.pem"
    auth = session.auth
    assert isinstance(auth, v3.Password) and auth.auth_url == "http://ks/v3"
    method = auth.auth_methods[0]
    assert (method.username, method.password, method.user_domain_name) == ("u", "pw", "ud")
    assert (auth.project_name, auth.project_domain_name) == ("proj", "pd")
    assert kw["os_options"] == {"service_type": "object-store", "endpoint_type": "internal",
                                "region_name": "r1"}


def test_single_user_v3_application_credential(conf):
    single_user(conf, backup_swift_auth_version="3", backup_swift_auth_url="http://ks/v3",
                backup_swift_application_credential_id="ac",
                backup_swift_application_credential_secret="s",
                backup_swift_auth_insecure=True)
    session = kwargs_of(connection_factory(conf))["session"]
    assert isinstance(session.auth, v3.ApplicationCredential) and session.verify is False
    method = session.auth.auth_methods[0]
    assert (method.application_credential_id, method.application_credential_secret) == (
        "ac", "s")


# -- streaming pieces -----------------------------------------------------------------

class FakeBody:
    def __init__(self, data: bytes, chunk: int = 3) -> None:
        self.data, self.chunk, self.closed = data, chunk, False

    def read(self, n):
        out, self.data = self.data[:min(n, self.chunk)], self.data[min(n, self.chunk):]
        return out

    def close(self):
        self.closed = True


def reader(data: bytes, **headers):
    headers.setdefault("content-length", str(len(data)))
    store = SwiftStore(lambda: None)
    return swift_driver._SwiftReader(store, FakeBody(data), headers, "GET object o in c")


def test_reader_checks_md5_and_length():
    good = hashlib.md5(b"hello world").hexdigest()
    assert reader(b"hello world", etag=good).read() == b"hello world"
    r = reader(b"hello world", etag=good)
    assert r.read(4) == b"hell" and r.read(100) == b"o world" and r.read(1) == b""
    with pytest.raises(ChecksumMismatch, match="GET object o in c.*md5"):
        reader(b"hello world", etag='"%s"' % ("0" * 32)).read()
    with pytest.raises(StoreError, match="after 11 of 12 bytes"):
        reader(b"hello world", etag=good, **{"content-length": "12"}).read()
    # Large-object manifests: the ETag is not the content's md5.
    assert reader(b"ab", etag="x", **{"x-static-large-object": "True"}).read() == b"ab"
    assert reader(b"ab", etag="x", **{"x-object-manifest": "c/seg"}).read() == b"ab"


def test_upload_streams_in_order_and_reports_the_etag():
    seen = []

    def put(body):
        for chunk in body:
            seen.append(chunk)
        return "etag!"

    done = []
    upload = swift_upload.Upload(put, done.append, limit=4)
    for i in range(50):
        upload.send(b"%02d" % i)
    assert upload.finish() == "etag!"
    assert b"".join(seen) == b"".join(b"%02d" % i for i in range(50))
    assert upload.md5.hexdigest() == hashlib.md5(b"".join(seen)).hexdigest()
    assert done == [True]


def test_upload_abort_breaks_the_request():
    started = threading.Event()
    outcome = []

    def put(body):
        try:
            for _ in body:
                started.set()
        except Exception as exc:
            outcome.append(type(exc).__name__)
            raise
        return "never"

    done = []
    upload = swift_upload.Upload(put, done.append)
    upload.send(b"x")
    started.wait(5)
    upload.abort()
    assert outcome == ["Aborted"] and done == [False]


def test_upload_failure_reaches_the_writer():
    def put(body):
        next(body)
        raise ConnectionResetError("peer went away")

    upload = swift_upload.Upload(put, lambda ok: None, limit=1)
    with pytest.raises(ConnectionResetError):
        for _ in range(100):
            upload.send(b"xx")
    with pytest.raises(ConnectionResetError):
        upload.finish()


def _failing_put(after: int, exc: BaseException):
    """A PUT that takes ``after`` chunks of its body and then fails with ``exc`` (what a
    dropped connection or a proxy's 503 does to swiftclient's put_object)."""
    def put(body):
        for _ in range(after):
            next(body)
        raise exc
    return put


@pytest.mark.parametrize("error", [ConnectionResetError("peer went away"),
                                   ClientException("busy", http_status=503)],
                         ids=["connection", "503"])
def test_failed_upload_spools_the_whole_body_for_a_replay(error):
    # Chunks of odd sizes, some over a page: the spool's direct writes see both.
    rng = random.Random(4)
    chunks = [rng.randbytes(rng.choice([3, 5000, 70000])) for _ in range(120)]
    spool = swift_upload.Spool()
    try:
        upload = swift_upload.Upload(_failing_put(3, error), lambda ok: None, limit=8,
                                      spool=spool)
        for chunk in chunks:            # the writer goes on: the thread takes the rest
            upload.send(chunk)
        with pytest.raises(type(error)):
            upload.finish()
        assert upload.replayable
        assert spool.body().read() == b"".join(chunks)
    finally:
        spool.close()
    assert upload.size == len(b"".join(chunks))
    assert upload.md5.hexdigest() == hashlib.md5(b"".join(chunks)).hexdigest()


def test_refused_upload_is_not_replayed():
    # A 404 (the container went away) or a 422 would fail again: no replay.
    spool = swift_upload.Spool()
    try:
        upload = swift_upload.Upload(
            _failing_put(1, ClientException("gone", http_status=404)), lambda ok: None,
            limit=1, spool=spool)
        with pytest.raises(ClientException):
            for _ in range(100):
                upload.send(b"xx")
        with pytest.raises(ClientException):
            upload.finish()
        assert not upload.replayable
    finally:
        spool.close()


def test_aborted_upload_is_not_replayable():
    spool = swift_upload.Spool()
    try:
        upload = swift_upload.Upload(_failing_put(1, ConnectionResetError("reset")),
                                      lambda ok: None, spool=spool)
        upload.send(b"abc")
        upload.abort()
        assert not upload.replayable
    finally:
        spool.close()


@pytest.mark.parametrize("status,retry", [(401, True), (408, True), (429, True),
                                          (500, True), (503, True), (404, False),
                                          (409, False), (422, False), (None, False)])
def test_which_failures_are_worth_a_replay(status, retry):
    assert swift_upload.worth_retrying(ClientException("x", http_status=status)) is retry
    assert swift_upload.worth_retrying(ConnectionResetError("reset"))
    assert not swift_upload.worth_retrying(ValueError("a bug"))


@pytest.fixture
def small_files():
    """Writes past 256 KiB of a file fail for real (EFBIG), as they would on a full
    TMPDIR (the kernel's RLIMIT_FSIZE; SIGXFSZ ignored so that write() fails instead)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_failing_spool_does_not_fail_the_upload(small_files, caplog):
    seen = []

    def put(body):
        seen.extend(body)
        return "etag!"

    chunks = [bytes([i]) * 1024 * 1024 for i in range(24)]
    spool = swift_upload.Spool()
    try:
        upload = swift_upload.Upload(put, lambda ok: None, spool=spool)
        for chunk in chunks:
            upload.send(chunk)
        assert upload.finish() == "etag!"
    finally:
        spool.close()
    assert b"".join(seen) == b"".join(chunks)
    assert "Cannot keep the body of a streamed PUT for a retry" in caplog.text


def test_an_upload_whose_spool_failed_is_not_replayed(small_files):
    spool = swift_upload.Spool()
    try:
        upload = swift_upload.Upload(_failing_put(2, ConnectionResetError("reset")),
                                      lambda ok: None, spool=spool)
        for i in range(24):
            upload.send(bytes([i]) * 1024 * 1024)
        with pytest.raises(ConnectionResetError):
            upload.finish()
        assert not upload.replayable
    finally:
        spool.close()
