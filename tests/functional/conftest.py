"""Functional-test fixtures: one real deployment per session.

The session fixture creates a fresh MariaDB database, writes the config,
runs ``backupsvc-manage db sync`` and starts ``backupsvc-api``; the
``worker`` fixture makes sure a ``backupsvc-worker`` with the session's host
is alive before each test (tests that kill it leave the restart to the next
one). When a test fails, what every process logged during the test is added
to the report. BACKUPSVC_FUNC_KEEP=1 keeps the session's files (config, logs,
volumes, backups) even when everything passes; a failed session keeps them
anyway.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.functional import fixtures as fx

_FAILED = pytest.StashKey[bool]()   # set once any test of the session failed


def pytest_runtest_setup(item):
    for proc in fx.PROCESSES:
        proc.mark()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and fx.PROCESSES:
        report.sections.append(("backupsvc process logs (this test)", fx.all_logs()))
    if report.failed:
        item.session.stash[_FAILED] = True
    return report


@pytest.fixture(scope="session")
def deployment(tmp_path_factory, request):
    """Database + config + running API for the session (the worker is separate)."""
    fx.require_commands("backupsvc-api", "backupsvc-worker", "backupsvc-manage")
    fx.require_rabbitmq()
    fx.mariadb_connect().close()

    dep = fx.Deployment(tmp_path_factory.mktemp("backupsvc-func"))
    dep.create_database()
    started = False
    try:
        result = dep.manage("db", "sync")
        tables = {row["TABLE_NAME"] for row in dep.query(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s",
            (dep.db_name,))}
        assert {"backups", "volumes", "services"} <= tables, (
            "db sync did not create the schema; tables: %s\n%s" % (sorted(tables),
                                                                    result.stdout))
        dep.start_api()
        started = True
        yield dep
    finally:
        dep.shutdown()
        dep.drop_database()
        # Keep the logs and images of a failed session for debugging.
        if (started and not request.session.stash.get(_FAILED, False)
                and not os.environ.get("BACKUPSVC_FUNC_KEEP")):
            shutil.rmtree(dep.base, ignore_errors=True)


@pytest.fixture
def worker(deployment):
    """A live worker for this test (restarted if a previous test stopped it)."""
    return deployment.ensure_worker()


@pytest.fixture
def api(deployment, worker):
    """A client for a fresh project, so tests never see each other's rows."""
    return fx.Api(deployment.base_url)


@pytest.fixture(scope="session")
def swift_service(tmp_path_factory):
    """A real single-node Swift for the tests here (tests/swiftserver.py)."""
    from tests.swiftserver import SwiftServer, SwiftUnavailable

    server = SwiftServer(tmp_path_factory.mktemp("swift-service"))
    try:
        server.start()
    except SwiftUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nfs_service():
    """A real nfs-ganesha for the tests here (tests/nfsserver.py)."""
    from tests.nfsserver import GaneshaServer, NfsServerError

    server = GaneshaServer()
    try:
        server.start()
    except NfsServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()
