"""One real single-node Swift for the session (tests/swiftserver.py).

If Swift or memcached is missing the tests fail (never skip) with a message
naming tools/install-swift.sh.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from oslo_config import cfg

from backupsvc.conf import backup as backup_opts
from backupsvc.conf import service as service_opts
from backupsvc.conf import swift as swift_opts
from backupsvc.drivers.swift import SwiftStore
from tests.swiftserver import SwiftServer, SwiftUnavailable


@pytest.fixture(scope="session")
def swift_server(tmp_path_factory):
    server = SwiftServer(tmp_path_factory.mktemp("swift"))
    try:
        server.start()
    except SwiftUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def make_conf(server: SwiftServer, **overrides) -> cfg.ConfigOpts:
    """A private ConfigOpts: single_user tempauth against ``server``."""
    conf = cfg.ConfigOpts()
    for module in (backup_opts, service_opts, swift_opts):
        module.register_opts(conf)
    conf(args=[], default_config_files=[], default_config_dirs=[])
    values = dict(backup_swift_auth="single_user", backup_swift_auth_url=server.auth_url,
                  backup_swift_user=server.user, backup_swift_key=server.key,
                  # A one-node Swift on a loaded two-core machine answers 503 now
                  # and then (its container server busy): retried after a short
                  # pause, as in production (default backoff 2 s), not at once.
                  backup_swift_retry_backoff=1, storage_availability_zone="az1")
    values.update(overrides)
    for name, value in values.items():
        conf.set_override(name, value)
    return conf


@pytest.fixture
def conf(swift_server):
    return make_conf(swift_server)


@pytest.fixture
def store(conf):
    return SwiftStore.from_conf(conf)


@pytest.fixture
def container():
    """A container name of this test's own."""
    return "test-%s" % uuid.uuid4().hex[:12]


class ProxyOutage:
    """Stops the real Swift proxy now (in-flight requests die with it) and starts it
    again ``after`` seconds later."""

    def __init__(self, swift_server, after: float) -> None:
        self.swift_server = swift_server
        swift_server.stop_server("proxy")
        self.restart = threading.Timer(after, swift_server.start_server, args=("proxy",))
        self.restart.start()

    def end(self) -> None:
        self.restart.join()
        self.swift_server.wait_ready()
