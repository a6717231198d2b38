"""Helpers for the functional tests: real services, real processes, real HTTP.

Everything here talks to what really runs on the machine: MariaDB on
127.0.0.1:3306 (root, empty password), RabbitMQ on 127.0.0.1:5672
(guest/guest), PostgreSQL on 127.0.0.1:5432 (trust), and the installed
``backupsvc-*`` console scripts found on PATH. Nothing is skipped: when a
service or a command is missing the test fails and says how to fix it.

Contents:

* reachability checks and small database helpers,
* :class:`ServiceProcess`: one started process, its log and its output,
* :class:`Deployment`: the per-session configuration, database and processes,
* :class:`Api`: a tiny Cinder v3 client on ``requests`` that waits with timeouts,
* image helpers: scattered random writes, sparse copies, byte comparisons,
  and readers for the on-store backup files.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import requests

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# One number to stretch every wait on a slow machine.
TIMEOUT = float(os.environ.get("BACKUPSVC_FUNC_TIMEOUT", "120"))

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
RABBIT_HOSTPORT = ("127.0.0.1", 5672)
TRANSPORT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}

# Settings every service-under-test config shares (small chunks: many objects).
CHUNK_SIZE = 1 * MiB
SHA_BLOCK = 4 * KiB
FORMAT = "2.0.0"          # what the service writes by default (backup_format_version)
REPORT_INTERVAL = 1
SERVICE_DOWN_TIME = 5

WORKER_BINARY = "backupsvc-worker"
RESTART_FAIL_REASON = "incomplete backup reset on manager restart"

START_HINT = ("the machine's services are started by tools/ensure-services.sh "
              "(tools/run-tests.sh runs it)")


# --------------------------------------------------------------------------- waiting

def wait_until(check: Callable[[], tuple[bool, Any]], what: str, timeout: float = TIMEOUT,
               interval: float = 0.2, extra: Callable[[], str] | None = None) -> Any:
    """Call ``check`` until it returns ``(True, value)``; return ``value``.

    On timeout the test fails with what was awaited and the last value seen
    (or the last exception ``check`` raised), plus ``extra()`` if given.
    """
    deadline = time.monotonic() + timeout
    last: Any = "<nothing observed yet>"
    while True:
        try:
            done, last = check()
        except (requests.RequestException, OSError) as exc:
            done, last = False, "%s: %s" % (type(exc).__name__, exc)
        if done:
            return last
        if time.monotonic() >= deadline:
            message = "timed out after %.0f s waiting for %s; last seen: %s" % (
                timeout, what, last)
            if extra is not None:
                message += "\n" + extra()
            pytest.fail(message, pytrace=False)
        time.sleep(interval)


# ---------------------------------------------------------------------- reachability

def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mariadb_connect(database: str | None = None):
    """A PyMySQL connection (autocommit), or a clear test failure."""
    import pymysql

    try:
        return pymysql.connect(database=database, autocommit=True, connect_timeout=10,
                               charset="utf8mb4", **MARIADB)
    except pymysql.MySQLError as exc:
        pytest.fail("MariaDB is not usable at %(host)s:%(port)s as user %(user)s with an "
                    "empty password: %(exc)s; %(hint)s"
                    % dict(MARIADB, exc=exc, hint=START_HINT), pytrace=False)


def postgres_connect(dbname: str | None = None):
    import psycopg2

    params = dict(POSTGRES)
    if dbname:
        params["dbname"] = dbname
    try:
        conn = psycopg2.connect(connect_timeout=10, **params)
    except psycopg2.Error as exc:
        pytest.fail("PostgreSQL is not usable at %s:%s as user %s (trust auth, database "
                    "%s): %s; start it with: pg_ctlcluster --skip-systemctl-redirect "
                    "$(ls /etc/postgresql) main start"
                    % (params["host"], params["port"], params["user"], params["dbname"],
                       exc), pytrace=False)
    conn.autocommit = True
    return conn


def require_rabbitmq() -> None:
    """Fail unless RabbitMQ accepts guest/guest on 127.0.0.1:5672."""
    host, port = RABBIT_HOSTPORT
    if not port_open(host, port):
        pytest.fail("RabbitMQ is not listening on %s:%d; %s" % (host, port, START_HINT),
                    pytrace=False)
    import kombu

    try:
        with kombu.Connection("amqp://guest:guest@%s:%d//" % (host, port),
                              connect_timeout=10) as conn:
            conn.connect()
    except Exception as exc:  # kombu raises a zoo of exception types
        pytest.fail("RabbitMQ on %s:%d refused guest/guest: %s" % (host, port, exc),
                    pytrace=False)


def require_commands(*names: str) -> dict[str, str]:
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.fail("console script(s) %s not found on PATH; install the package and put "
                    "its bin directory first on PATH (tools/run-tests.sh does both)"
                    % ", ".join(missing), pytrace=False)
    return found  # type: ignore[return-value]


def rabbit_cleanup(exchange: str, queues: Iterable[str]) -> None:
    """Best effort: remove what one session declared in the default vhost."""
    import kombu

    host, port = RABBIT_HOSTPORT
    try:
        with kombu.Connection("amqp://guest:guest@%s:%d//" % (host, port),
                              connect_timeout=5) as conn:
            channel = conn.channel()
            for queue in queues:
                try:
                    channel.queue_delete(queue)
                except Exception:
                    channel = conn.channel()
            try:
                channel.exchange_delete(exchange)
            except Exception:
                pass
    except Exception:
        pass


def utcnow() -> datetime.datetime:
    """Naive UTC, as the services store timestamps."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


# ------------------------------------------------------------------------- processes

PROCESSES: list[ServiceProcess] = []   # every process started this session


def tail(path: Path, start: int = 0, max_lines: int = 200) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return "<%s does not exist>" % path
    lines = data.decode("utf-8", "replace").splitlines()
    cut = len(lines) - max_lines
    if cut > 0:
        lines = ["... (%d earlier lines in %s)" % (cut, path)] + lines[cut:]
    return "\n".join(lines) if lines else "<empty>"


class ServiceProcess:
    """One process started by a test: its command, its log file and its output."""

    def __init__(self, name: str, argv: list[str], log_path: Path, out_path: Path,
                 cwd: Path | None = None):
        self.name, self.argv = name, argv
        self.log_path, self.out_path = log_path, out_path
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None
        self.started_at: datetime.datetime | None = None
        self._marks = (0, 0)

    def start(self) -> ServiceProcess:
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out_path, "ab") as out:
            out.write(("\n===== %s: %s\n" % (utcnow().isoformat(), " ".join(self.argv)))
                      .encode())
            out.flush()
            self.started_at = utcnow()
            # A session of its own, so the whole group (gunicorn's master and
            # its workers) can be signalled by the group id we started.
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.cwd,
                                          start_new_session=True)
        PROCESSES.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def describe(self) -> str:
        if self.popen is None:
            return "%s (not started)" % self.name
        rc = self.popen.poll()
        state = "running" if rc is None else "exited with %s" % rc
        return "%s (pid %d, %s)" % (self.name, self.popen.pid, state)

    def signal(self, signo: int) -> None:
        assert self.popen is not None
        if self.alive():
            os.kill(self.popen.pid, signo)

    def kill(self) -> None:
        """SIGKILL: a crash. The process gets no chance to clean up."""
        if self.alive():
            self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code, or None if it had to be killed."""
        if self.popen is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                return None
        return self.popen.returncode

    def _kill_group(self) -> None:
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)   # the group this process leads
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)

    # logs ---------------------------------------------------------------------------
    def mark(self) -> None:
        """Remember where the logs end now; logs(since_mark=True) shows what came after."""
        self._marks = (_size(self.log_path), _size(self.out_path))

    def where(self) -> str:
        """One line for failure messages; the logs themselves go into the report."""
        return "%s; log %s, output %s (both shown under 'backupsvc process logs')" % (
            self.describe(), self.log_path, self.out_path)

    def has_new_output(self) -> bool:
        return (_size(self.log_path), _size(self.out_path)) != self._marks

    def logs(self, since_mark: bool = False, max_lines: int = 150) -> str:
        log_start, out_start = self._marks if since_mark else (0, 0)
        return ("----- %s log %s -----\n%s\n----- %s stdout/stderr %s -----\n%s" % (
            self.describe(), self.log_path, tail(self.log_path, log_start, max_lines),
            self.name, self.out_path, tail(self.out_path, out_start, max_lines)))


@atexit.register
def _no_orphans() -> None:
    """If pytest dies without running fixture teardowns, still end what it started."""
    for proc in PROCESSES:
        if proc.alive():
            proc._kill_group()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def all_logs() -> str:
    """What every process logged since the current test started (silent ones left out)."""
    parts = [p.logs(since_mark=True) for p in PROCESSES if p.has_new_output()]
    return "\n".join(parts) or "<no process wrote anything during this test>"


# ------------------------------------------------------------------------ configuration

def write_ini(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, options in sections.items():
        lines.append("[%s]" % section)
        lines.extend("%s = %s" % (key, value) for key, value in options.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Deployment:
    """One test session's backupsvc: config, MariaDB database, API and worker processes.

    The API runs for the whole session; the worker can be stopped, killed and
    restarted by tests (always with the same ``host``), and ``ensure_worker``
    brings one back for the next test.
    """

    def __init__(self, base: Path, options: dict[str, dict[str, Any]] | None = None):
        """``options``: sections and options to add to (or, with the value None,
        remove from) the generated config, e.g. another ``backup_driver``."""
        self.base = base
        self.suffix = uuid.uuid4().hex[:10]
        self.host = "functest-%s" % self.suffix
        self.exchange = "backupsvc-func-%s" % self.suffix
        self.db_name = "backupsvc_func_%s" % self.suffix
        self.port = free_port()
        self.state_path = base / "state"
        self.backup_path = base / "backups"
        self.volumes_dir = base / "volumes"
        self.logs_dir = base / "logs"
        for path in (self.state_path, self.backup_path, self.volumes_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {
                "host": self.host,
                "transport_url": TRANSPORT_URL,
                "control_exchange": self.exchange,
                "state_path": self.state_path,
                "osapi_volume_listen": "127.0.0.1",
                "osapi_volume_listen_port": self.port,
                "osapi_volume_workers": 1,
                "auth_strategy": "noauth",
                "backup_driver": "posix",
                "backup_posix_path": self.backup_path,
                "file_volumes_dir": self.volumes_dir,
                "backup_file_size": CHUNK_SIZE,
                "backup_sha_block_size_bytes": SHA_BLOCK,
                "backup_compression_algorithm": "zlib",
                "report_interval": REPORT_INTERVAL,
                "service_down_time": SERVICE_DOWN_TIME,
                "debug": "true",
            },
            "database": {
                "connection": "mysql+pymysql://root@127.0.0.1/%s?charset=utf8mb4"
                              % self.db_name,
            },
        }
        self.conf = base / "backupsvc.conf"
        self.configure(options or {})
        self.api_proc: ServiceProcess | None = None
        self.worker_proc: ServiceProcess | None = None
        self._worker_count = 0
        self._db = None

    def configure(self, options: dict[str, dict[str, Any]]) -> Path:
        """Merge ``options`` into the config and rewrite it (None removes an option).

        Processes read it when they start: restart the worker to apply it.
        """
        for section, values in options.items():
            current = self.sections.setdefault(section, {})
            for key, value in values.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
        return write_ini(self.conf, self.sections)

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    # database -------------------------------------------------------------------------
    def create_database(self) -> None:
        conn = mariadb_connect()
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % self.db_name)
        conn.close()

    def drop_database(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        conn = mariadb_connect()
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS `%s`" % self.db_name)
        conn.close()

    def query(self, sql: str, args: tuple = ()) -> list[dict]:
        """Read the session database directly (the truth the services share)."""
        import pymysql

        for attempt in (1, 2):
            if self._db is None:
                self._db = mariadb_connect(self.db_name)
            try:
                with self._db.cursor(pymysql.cursors.DictCursor) as cur:
                    cur.execute(sql, args)
                    return list(cur.fetchall())
            except pymysql.OperationalError:
                try:
                    self._db.close()
                except pymysql.Error:
                    pass
                self._db = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def backup_rows(self, project_id: str) -> dict:
        """One project's rows of the backups table (soft-deleted ones too), and the
        number of rows of every project (only an insert changes that)."""
        rows = self.query("SELECT id, status, deleted FROM backups WHERE project_id=%s "
                          "ORDER BY id", (project_id,))
        total = self.query("SELECT COUNT(*) AS n FROM backups")[0]["n"]
        return {"rows of project %s" % project_id: rows, "rows in the table": total}

    def parent_of(self, backup_id: str) -> str | None:
        rows = self.query("SELECT parent_id FROM backups WHERE id=%s", (backup_id,))
        assert rows, "no row for backup %s" % backup_id
        return rows[0]["parent_id"]

    def heartbeat(self) -> datetime.datetime | None:
        rows = self.query("SELECT heartbeat_at FROM services WHERE host=%s AND `binary`=%s "
                          "AND deleted=0", (self.host, WORKER_BINARY))
        return rows[0]["heartbeat_at"] if rows else None

    # commands -------------------------------------------------------------------------
    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["backupsvc-manage", "--config-file", str(self.conf),
                "--log-file", str(self.logs_dir / "manage.log"), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            pytest.fail("%s exited with %d\nstdout:\n%s\nstderr:\n%s\nlog:\n%s" % (
                " ".join(argv), result.returncode, result.stdout, result.stderr,
                tail(self.logs_dir / "manage.log")), pytrace=False)
        return result

    def _process(self, name: str, tag: str) -> ServiceProcess:
        log = self.logs_dir / ("%s.log" % tag)
        return ServiceProcess(name, [name, "--config-file", str(self.conf),
                                     "--log-file", str(log)],
                              log_path=log, out_path=self.logs_dir / ("%s.out" % tag),
                              cwd=self.base)

    # API --------------------------------------------------------------------------------
    def start_api(self) -> ServiceProcess:
        proc = self._process("backupsvc-api", "api").start()
        self.api_proc = proc

        def ready():
            if not proc.alive():
                pytest.fail("backupsvc-api exited before it served HTTP: " + proc.where(),
                            pytrace=False)
            resp = requests.get(self.base_url + "/", timeout=5)
            return resp.status_code == 300, "GET / -> %d %s" % (resp.status_code,
                                                                 resp.text[:200])

        wait_until(ready, "backupsvc-api to answer GET %s/ with 300" % self.base_url,
                   timeout=60, interval=0.3, extra=proc.where)
        return proc

    # worker -----------------------------------------------------------------------------
    def start_worker(self) -> ServiceProcess:
        """Start a worker with the session's host and wait until it heartbeats."""
        assert self.worker_proc is None or not self.worker_proc.alive(), \
            "a worker for %s is already running: %s" % (self.host, self.worker_proc.describe())
        # What the previous (dead or stopped) worker left in its row: any other
        # value comes from the new process.
        previous_beat = self.heartbeat()
        self._worker_count += 1
        proc = self._process("backupsvc-worker", "worker-%d" % self._worker_count).start()
        self.worker_proc = proc

        def beating():
            if not proc.alive():
                pytest.fail("backupsvc-worker exited before its first heartbeat: "
                            + proc.where(), pytrace=False)
            beat = self.heartbeat()
            fresh = (beat is not None and beat != previous_beat
                     and (utcnow() - beat).total_seconds() <= SERVICE_DOWN_TIME)
            return fresh, "heartbeat_at=%s (before the start: %s, now %s)" % (
                beat, previous_beat, utcnow().replace(microsecond=0))

        wait_until(beating, "a heartbeat of worker %s in the services table" % self.host,
                   timeout=60, interval=0.3, extra=proc.where)
        return proc

    def ensure_worker(self) -> ServiceProcess:
        if self.worker_proc is not None and self.worker_proc.alive():
            return self.worker_proc
        return self.start_worker()

    def stop_worker(self, timeout: float = 30.0) -> int | None:
        assert self.worker_proc is not None
        return self.worker_proc.stop(timeout)

    def kill_worker(self) -> None:
        assert self.worker_proc is not None
        self.worker_proc.kill()

    # teardown ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        for proc in (self.worker_proc, self.api_proc):
            if proc is not None:
                proc.stop(timeout=20)
        rabbit_cleanup(self.exchange, ["backupsvc-backup.%s" % self.host])


# ---------------------------------------------------------------------------- the API

def describe(resp: requests.Response) -> str:
    req = resp.request
    return "%s %s -> %d %s" % (req.method, req.url, resp.status_code, resp.text[:2000])


def assert_fault(resp: requests.Response, status: int, fault: str) -> str:
    """Cinder's fault shape, ``{"<fault>": {"code": N, "message": "..."}}``; the message."""
    assert resp.status_code == status, "expected %d, got: %s" % (status, describe(resp))
    try:
        body = resp.json()
    except ValueError:
        pytest.fail("%d response is not JSON: %s" % (status, describe(resp)), pytrace=False)
    assert isinstance(body, dict) and list(body) == [fault], \
        "expected a %r fault body, got: %s" % (fault, describe(resp))
    assert body[fault].get("code") == status, describe(resp)
    message = body[fault].get("message")
    assert isinstance(message, str) and message.strip(), \
        "fault without a message: %s" % describe(resp)
    return message


# Statuses a job never leaves on its own: waiting for another one is pointless.
BACKUP_SETTLED = {"available", "error", "error_deleting", "deleted"}
VOLUME_SETTLED = {"available", "in-use", "error", "error_restoring", "error_deleting"}


class Api:
    """Cinder v3 calls for one project, in noauth mode (X-Auth-Token user:project)."""

    def __init__(self, base_url: str, project: str | None = None, user: str = "admin",
                 extra: Callable[[], str] | None = None):
        self.base_url = base_url.rstrip("/")
        self.project = project or uuid.uuid4().hex
        self.user = user
        # The process logs go into the report of a failed test (conftest.py);
        # ``extra`` adds more to a timeout message.
        self.extra = extra or (lambda: "")
        self.session = requests.Session()
        self.session.headers.update({"X-Auth-Token": "%s:%s" % (user, self.project),
                                     "Content-Type": "application/json",
                                     "Accept": "application/json"})

    def url(self, path: str) -> str:
        return "%s/v3/%s/%s" % (self.base_url, self.project, path.lstrip("/"))

    def request(self, method: str, path: str, body: Any = None, *, data: str | None = None,
                headers: dict | None = None) -> requests.Response:
        kwargs: dict[str, Any] = {"headers": headers, "timeout": 60}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["data"] = json.dumps(body)
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> requests.Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def expect(self, resp: requests.Response, status: int) -> requests.Response:
        assert resp.status_code == status, "expected %d, got: %s" % (status, describe(resp))
        return resp

    # volumes ----------------------------------------------------------------------------
    def volume(self, volume_id: str) -> dict:
        return self.expect(self.get("volumes/%s" % volume_id), 200).json()["volume"]

    def create_volume(self, size: int = 1, name: str | None = None) -> dict:
        name = name or "vol-%s" % uuid.uuid4().hex[:8]
        resp = self.expect(self.post("volumes", {"volume": {"size": size, "name": name}}), 202)
        volume = resp.json()["volume"]
        return self.wait_volume(volume["id"], "available")

    def wait_volume(self, volume_id: str, status: str, timeout: float = TIMEOUT) -> dict:
        def check():
            vol = self.volume(volume_id)
            if vol["status"] != status and vol["status"] in VOLUME_SETTLED:
                pytest.fail("volume %s is %s; expected %s\n%s\n%s" % (
                    volume_id, vol["status"], status, vol, self.extra()), pytrace=False)
            return vol["status"] == status, vol

        return wait_until(check, "volume %s to be %s" % (volume_id, status), timeout,
                          extra=self.extra)

    def attach(self, volume_id: str) -> dict:
        self.expect(self.post("volumes/%s/action" % volume_id, {"os-attach": {
            "instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"}}), 202)
        return self.wait_volume(volume_id, "in-use")

    def detach(self, volume_id: str) -> dict:
        self.expect(self.post("volumes/%s/action" % volume_id, {"os-detach": {}}), 202)
        return self.wait_volume(volume_id, "available")

    def volumes(self) -> list[dict]:
        return self.expect(self.get("volumes/detail"), 200).json()["volumes"]

    # backups ----------------------------------------------------------------------------
    def backup(self, backup_id: str) -> dict:
        return self.expect(self.get("backups/%s" % backup_id), 200).json()["backup"]

    def backups(self) -> list[dict]:
        return self.expect(self.get("backups/detail"), 200).json()["backups"]

    def start_backup(self, volume_id: str, *, incremental: bool = False, force: bool = False,
                     name: str | None = None, container: str | None = None) -> dict:
        body = {"backup": {"volume_id": volume_id, "name": name or "b-%s" % uuid.uuid4().hex[:8],
                           "incremental": incremental, "force": force,
                           "container": container}}
        return self.expect(self.post("backups", body), 202).json()["backup"]

    def create_backup(self, volume_id: str, **kw) -> dict:
        """Back up and wait; the volume must be usable again once the backup is."""
        summary = self.start_backup(volume_id, **kw)
        backup = self.wait_backup(summary["id"], "available")
        status = self.volume(volume_id)["status"]
        assert status != "backing-up", (
            "backup %s is available but volume %s is still %s: a client that waits for the "
            "backup cannot use the volume yet (Cinder gives the volume back first)"
            % (backup["id"], volume_id, status))
        return backup

    def wait_backup(self, backup_id: str, status: str, timeout: float = TIMEOUT) -> dict:
        def check():
            backup = self.backup(backup_id)
            if backup["status"] != status and backup["status"] in BACKUP_SETTLED:
                pytest.fail("backup %s is %s (fail_reason %r); expected %s\n%s\n%s" % (
                    backup_id, backup["status"], backup.get("fail_reason"), status, backup,
                    self.extra()), pytrace=False)
            return backup["status"] == status, backup

        return wait_until(check, "backup %s to be %s" % (backup_id, status), timeout,
                          extra=self.extra)

    def restore(self, backup_id: str, restore: dict) -> dict:
        resp = self.expect(self.post("backups/%s/restore" % backup_id, {"restore": restore}),
                           202)
        return resp.json()["restore"]

    def restore_and_wait(self, backup_id: str, restore: dict) -> dict:
        result = self.restore(backup_id, restore)
        self.wait_volume(result["volume_id"], "available")
        self.wait_backup(backup_id, "available")
        return result

    def delete_backup(self, backup_id: str) -> None:
        self.expect(self.delete("backups/%s" % backup_id), 202)
        self.wait_backup_gone(backup_id)

    def wait_backup_gone(self, backup_id: str, timeout: float = TIMEOUT) -> None:
        def check():
            resp = self.get("backups/%s" % backup_id)
            if resp.status_code == 404:
                return True, "404"
            assert resp.status_code == 200, describe(resp)
            backup = resp.json()["backup"]
            if backup["status"] in ("error", "error_deleting", "available"):
                pytest.fail("backup %s is %s (fail_reason %r) instead of going away\n%s" % (
                    backup_id, backup["status"], backup.get("fail_reason"), self.extra()),
                    pytrace=False)
            return False, backup["status"]

        wait_until(check, "backup %s to be deleted (GET -> 404)" % backup_id, timeout,
                   extra=self.extra)


# -------------------------------------------------------------------------------- images

def volume_file(volumes_dir: Path, volume_id: str) -> Path:
    return Path(volumes_dir) / ("volume-%s" % volume_id)


def write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def data_extents(path: Path) -> list[tuple[int, int]]:
    """(start, end) ranges that may hold data; outside them the file reads as zeros."""
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    extents = []
    try:
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == 6:   # ENXIO: no data after pos
                    break
                return [(0, size)]   # no SEEK_DATA support: treat all as data
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return extents


def _union(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(a + b):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def sparse_copy(src: Path, dst: Path) -> Path:
    """Copy a (sparse) image, keeping holes: the expected image at this moment."""
    size = os.path.getsize(src)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.truncate(size)
        for start, end in data_extents(src):
            fin.seek(start)
            fout.seek(start)
            remaining = end - start
            while remaining:
                chunk = fin.read(min(remaining, 8 * MiB))
                fout.write(chunk)
                remaining -= len(chunk)
    return dst


def assert_same_image(actual: Path, expected: Path, what: str = "") -> None:
    """Byte-compare two images; on a mismatch say where and how much differs."""
    label = what or "%s vs %s" % (actual, expected)
    size_a, size_e = os.path.getsize(actual), os.path.getsize(expected)
    assert size_a == size_e, "%s: size %d != expected %d" % (label, size_a, size_e)
    first, differing, step = None, 0, 4 * MiB
    with open(actual, "rb") as fa, open(expected, "rb") as fe:
        # Where both files are holes both read as zeros: only the union of
        # their data extents needs reading.
        for start, end in _union(data_extents(actual), data_extents(expected)):
            pos = start
            while pos < end:
                n = min(step, end - pos)
                fa.seek(pos)
                fe.seek(pos)
                a, e = fa.read(n), fe.read(n)
                if a != e:
                    differing += 1
                    if first is None:
                        first = pos + next(i for i in range(n) if a[i:i + 1] != e[i:i + 1])
                pos += n
    assert first is None, ("%s: contents differ; first differing byte at offset %d "
                           "(%d differing 4 MiB windows)" % (label, first, differing))


def scattered_writes(path: Path, rng: random.Random, count: int, min_len: int,
                     max_len: int, align: int = 1) -> list[tuple[int, int]]:
    """Write ``count`` random extents at random offsets; returns (offset, length)."""
    size = os.path.getsize(path)
    done = []
    for _ in range(count):
        length = rng.randrange(min_len, max_len + 1)
        length = max(align, length - length % align)
        offset = rng.randrange(0, size - length)
        offset -= offset % align
        write_at(path, offset, rng.randbytes(length))
        done.append((offset, length))
    return done


def changed_blocks(a: Path, b: Path, block: int = SHA_BLOCK) -> set[int]:
    """Indexes of the sha blocks whose bytes differ between two images."""
    changed = set()
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for start, end in _union(data_extents(a), data_extents(b)):
            first = start - start % block
            fa.seek(first)
            fb.seek(first)
            for index in range(first // block, -(-end // block)):
                if fa.read(block) != fb.read(block):
                    changed.add(index)
    return changed


# ---------------------------------------------------------------------- on-store files

def backup_files(backup_root: Path, backup_id: str) -> list[Path]:
    """The visible object files of one backup (names carry ``backup_<id>``)."""
    pattern = re.compile(r"backup_%s(-\d+|_sha256file|_metadata)\Z" % re.escape(backup_id))
    return sorted(p for p in Path(backup_root).rglob("*")
                  if p.is_file() and not p.name.startswith(".") and pattern.search(p.name))


def hidden_files(backup_root: Path, backup_id: str) -> list[Path]:
    return sorted(p for p in Path(backup_root).rglob(".*") if backup_id in p.name)


def _one(files: list[Path], suffix: str, backup_id: str) -> Path:
    found = [p for p in files if p.name.endswith(suffix)]
    assert len(found) == 1, "expected one %s file for backup %s, found %s" % (
        suffix, backup_id, [str(p) for p in files])
    return found[0]


def load_backup_manifest(backup_root: Path, backup_id: str) -> tuple[dict, dict, Path]:
    """(metadata JSON, sha256file JSON, container dir) of one stored backup."""
    files = backup_files(backup_root, backup_id)
    meta_path = _one(files, "_metadata", backup_id)
    sha_path = _one(files, "_sha256file", backup_id)
    assert meta_path.parent == sha_path.parent, files
    meta, sha = parse_manifests(meta_path.read_bytes(), sha_path.read_bytes(), str(meta_path))
    return meta, sha, meta_path.parent


def parse_manifests(meta_raw: bytes, sha_raw: bytes, where: str) -> tuple[dict, dict]:
    """(metadata, sha256file) documents of format 1.0.0 or 2.0.0.

    A 2.0.0 sha256 file (a JSON header line, then the zlib stream of binary
    digests; doc/on-store-format.rst) is returned as the 1.0.0 document
    would be: its header with a ``sha256s`` list of hex digests.
    """
    try:
        meta = json.loads(meta_raw.decode("utf-8"))
    except ValueError as exc:
        pytest.fail("%s is not JSON: %s" % (where, exc), pytrace=False)
    if meta.get("version") == "2.0.0":
        head, _, body = sha_raw.partition(b"\n")
        sha = json.loads(head)
        digests = zlib.decompress(body)
        assert hashlib.sha256(digests).hexdigest() == sha["digests_sha256"], where
        assert len(digests) == 32 * sha["block_count"], where
        sha["sha256s"] = [digests[i:i + 32].hex() for i in range(0, len(digests), 32)]
    else:
        sha = json.loads(sha_raw.decode("utf-8"))
    return meta, sha


FRAME_CODECS = {0: "none", 1: "zlib", 2: "bz2", 3: "zstd"}


def stored_encodings(stored: bytes, rec: dict, version: str) -> set[str]:
    """How an object's data is stored: its compression (1.0.0), its frames' (2.0.0)."""
    if version != "2.0.0":
        return {(rec.get("compression") or "none").lower()}
    found, pos = set(), 0
    while pos < len(stored):
        codec, _, stored_len, _ = struct.unpack(">B3xIII", stored[pos:pos + 16])
        found.add(FRAME_CODECS[codec])
        pos += 16 + stored_len
    return found


def object_data(stored: bytes, rec: dict, version: str, name: str) -> bytes:
    """The data a stored object holds, checked against its record's checksum."""
    if version != "2.0.0":
        data = decompress(stored, rec.get("compression"))
        assert hashlib.md5(data).hexdigest() == rec["md5"], "md5 mismatch in %s" % name
        return data
    assert len(stored) == rec["stored_length"], (name, len(stored), rec)
    parts, headers, pos = [], [], 0
    while pos < len(stored):     # frames: codec, 3 zero bytes, raw length, stored length, crc32
        codec, raw_len, stored_len, crc = struct.unpack(">B3xIII", stored[pos:pos + 16])
        payload = stored[pos + 16:pos + 16 + stored_len]
        assert zlib.crc32(payload) == crc, "a frame of %s fails its CRC-32" % name
        headers.append(stored[pos:pos + 16])
        pos += 16 + stored_len
        data = decompress(payload, FRAME_CODECS[codec])
        assert len(data) == raw_len, (name, codec, len(data), raw_len)
        parts.append(data)
    # The object's checksum: sha256 of its frame headers (which hold the CRCs).
    assert hashlib.sha256(b"".join(headers)).hexdigest() == rec["frames_sha256"], (
        "frames_sha256 mismatch in %s" % name)
    return b"".join(parts)


def decompress(data: bytes, compression: str | None) -> bytes:
    name = (compression or "none").lower()
    if name in ("none", "off", "no"):
        return data
    if name in ("zlib", "gzip"):
        return zlib.decompress(data)
    if name in ("bz2", "bzip2"):
        import bz2

        return bz2.decompress(data)
    if name == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise AssertionError("unknown compression %r" % compression)


ZERO_BLOCK_SHA = hashlib.sha256(bytes(SHA_BLOCK)).hexdigest()


def expected_sha256s(image: Path, block: int = SHA_BLOCK) -> list[str]:
    size = os.path.getsize(image)
    count = -(-size // block)
    zero = hashlib.sha256(bytes(block)).hexdigest()
    shas = [zero] * count
    with open(image, "rb") as f:
        for start, end in data_extents(image):
            first = start - start % block
            f.seek(first)
            for index in range(first // block, -(-end // block)):
                shas[index] = hashlib.sha256(f.read(block)).hexdigest()
    if size % block:   # a short last block is hashed as it is
        f_last = read_at(image, (count - 1) * block, size - (count - 1) * block)
        shas[-1] = hashlib.sha256(f_last).hexdigest()
    return shas


def check_stored_backup(backup_root: Path, backup: dict, image: Path,
                        parent_id: str | None) -> dict:
    """Check one backup's files against the on-store format and the expected image.

    Every data object listed in ``_metadata`` exists, decodes to ``length``
    bytes with the recorded checksum (1.0.0: md5 of the data; 2.0.0: sha256
    of the stored bytes), and equals the image at its offset; ``_sha256file``
    lists the sha256 of every block of the image; 2.0.0's ``zero_extents``
    are exactly the image's runs of zero blocks. Returns the metadata document.
    """
    backup_id = backup["id"]
    meta, sha, container_dir = load_backup_manifest(backup_root, backup_id)
    assert meta.get("version") == sha.get("version") == FORMAT, (meta.get("version"),
                                                                 sha.get("version"))
    assert meta.get("backup_id") == backup_id and sha.get("backup_id") == backup_id
    assert meta.get("volume_id") == backup["volume_id"]
    assert sha.get("volume_id") == backup["volume_id"]
    assert meta.get("parent_id") == parent_id, (
        "backup %s has parent_id %r in its _metadata, expected %r (an incremental's parent "
        "is the newest available backup of the volume)" % (backup_id, meta.get("parent_id"),
                                                            parent_id))
    if backup.get("container"):
        assert container_dir == Path(backup_root) / backup["container"], (
            "objects of %s are in %s, not in its container %s"
            % (backup_id, container_dir, backup["container"]))
    assert sha.get("chunk_size") == SHA_BLOCK, sha.get("chunk_size")
    want = expected_sha256s(image)
    got = sha.get("sha256s")
    assert isinstance(got, list) and len(got) == len(want), \
        "sha256s has %s entries, expected %d" % (len(got) if isinstance(got, list) else got,
                                                 len(want))
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, "%d sha256s differ from the image, first at block %d" % (len(bad), bad[0])

    objects = meta.get("objects")
    assert isinstance(objects, list), meta
    data_files = {p.name for p in backup_files(backup_root, backup_id)
                  if re.search(r"-\d+\Z", p.name)}
    listed = set()
    with open(image, "rb") as img:
        for entry in objects:
            assert isinstance(entry, dict) and len(entry) == 1, entry
            ((name, rec),) = entry.items()
            listed.add(name)
            path = container_dir / name
            assert path.is_file(), "object %s listed in the metadata is missing" % path
            check_object_data(img, name, rec,
                              object_data(path.read_bytes(), rec, meta["version"], name))
    assert listed == data_files, "data files %s but metadata lists %s" % (
        sorted(data_files - listed), sorted(listed - data_files))
    if meta["version"] == "2.0.0":
        assert meta["zero_extents"] == zero_extents(want, os.path.getsize(image)), (
            "zero_extents of %s do not match the image" % backup_id)
    return meta


def check_object_data(img, name: str, rec: dict, data: bytes) -> None:
    """The object's data are the image's bytes where its record says (a packed
    object: its runs, one after the other)."""
    assert len(data) == rec["length"], (name, len(data), rec)
    at = 0
    for offset, length in rec.get("extents", [[rec["offset"], rec["length"]]]):
        img.seek(offset)
        assert img.read(length) == data[at:at + length], (
            "object %s does not hold the image's bytes at offset %d" % (name, offset))
        at += length


def zero_extents(shas: list[str], size: int, block: int = SHA_BLOCK) -> list[list[int]]:
    """[offset, length] of each maximal run of all-zero blocks (2.0.0's zero_extents)."""
    runs: list[list[int]] = []
    for i, sha in enumerate(shas):
        length = min(block, size - i * block)
        if sha != hashlib.sha256(bytes(length)).hexdigest():
            continue
        if runs and runs[-1][0] + runs[-1][1] == i * block:
            runs[-1][1] += length
        else:
            runs.append([i * block, length])
    return runs


def stored_bytes(meta: dict) -> int:
    return sum(rec["length"] for entry in meta["objects"] for rec in entry.values())


# ----------------------------------------------------------- repositories of any driver

class DirRepository:
    """A posix or NFS repository seen as the directory that holds it.

    For NFS that is the server's export directory (ganesha serves local files):
    the test reads what really reached the server, not what a client caches.
    """

    def __init__(self, root: Path | str, driver: str = "posix"):
        self.root = Path(root)
        self.driver = driver

    def names(self, contains: str = "") -> list[str]:
        """Every file (hidden and temporary ones too) whose name holds ``contains``,
        as a path relative to the root."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if contains in p.name and p.is_file())

    def read(self, container: str, name: str) -> bytes:
        return (self.root / container / name).read_bytes()

    def describe(self) -> str:
        return "%s repository %s" % (self.driver, self.root)


class SwiftRepository:
    """A Swift repository seen through swiftclient with the service's own account."""

    driver = "swift"

    def __init__(self, auth_url: str, user: str, key: str, container: str):
        from swiftclient import client as swift

        self.container = container
        self.conn = swift.Connection(authurl=auth_url, user=user, key=key, retries=2)

    def names(self, contains: str = "") -> list[str]:
        from swiftclient.exceptions import ClientException

        try:
            _, listing = self.conn.get_container(self.container, full_listing=True)
        except ClientException as exc:
            if exc.http_status == 404:
                return []
            raise
        return sorted(o["name"] for o in listing if contains in o["name"])

    def read(self, container: str, name: str) -> bytes:
        return self.conn.get_object(container, name)[1]

    def describe(self) -> str:
        return "swift container %s at %s" % (self.container, self.conn.authurl)


def start_deployment(base: Path, options: dict[str, dict[str, Any]] | None = None
                     ) -> Deployment:
    """A Deployment of its own: database, schema, API and a heartbeating worker."""
    require_commands("backupsvc-api", "backupsvc-worker", "backupsvc-manage")
    require_rabbitmq()
    mariadb_connect().close()
    dep = Deployment(base, options)
    dep.create_database()
    try:
        dep.manage("db", "sync")
        dep.start_api()
        dep.start_worker()
    except BaseException:
        stop_deployment(dep, remove=False)
        raise
    return dep


def stop_deployment(dep: Deployment, remove: bool) -> None:
    """End its processes, drop its database and (if ``remove``) delete its files."""
    try:
        dep.shutdown()
    finally:
        dep.drop_database()
        if remove and not os.environ.get("BACKUPSVC_FUNC_KEEP"):
            shutil.rmtree(dep.base, ignore_errors=True)


def repository_config(driver: str, base: Path, swift_server: Any = None,
                      nfs_server: Any = None) -> tuple[dict[str, Any], Any]:
    """[DEFAULT] options for a worker using ``driver``, and a view of its repository.

    Small objects and SHA blocks everywhere (CHUNK_SIZE, SHA_BLOCK), so that even a
    small volume makes many objects. ``swift_server`` is a tests.swiftserver
    SwiftServer, ``nfs_server`` a tests.nfsserver GaneshaServer (a fresh directory
    of its export becomes the share).
    """
    if driver == "posix":
        return {"backup_driver": "posix"}, DirRepository(base / "backups", "posix")
    if driver == "swift":
        assert swift_server is not None, "the swift driver needs a Swift server"
        container = "backups-%s" % uuid.uuid4().hex[:8]
        options = {
            "backup_driver": "cinder.backup.drivers.swift.SwiftBackupDriver",
            "backup_swift_auth": "single_user",
            "backup_swift_auth_version": "1",
            "backup_swift_auth_url": swift_server.auth_url,
            "backup_swift_user": swift_server.user,
            "backup_swift_key": swift_server.key,
            "backup_swift_container": container,
            "backup_swift_object_size": CHUNK_SIZE,
            "backup_swift_block_size": SHA_BLOCK,
            "backup_swift_retry_backoff": 1,   # see tests/functional/swift/conftest.py
        }
        return options, SwiftRepository(swift_server.auth_url, swift_server.user,
                                         swift_server.key, container)
    if driver == "nfs":
        assert nfs_server is not None, "the nfs driver needs an NFS server"
        subdir = "func-%s" % uuid.uuid4().hex[:8]
        nfs_server.mkdir(subdir)
        options = {
            "backup_driver": "cinder.backup.drivers.nfs",
            "backup_share": nfs_server.share(subdir),
            "backup_mount_options": nfs_server.mount_options("4.1"),
            "backup_nfs_client": "userspace",
            "backup_nfs_timeout": 30,
        }
        return options, DirRepository(Path(nfs_server.export_dir) / subdir, "nfs")
    raise AssertionError("unknown driver %r" % driver)
