#!/usr/bin/env python3
"""Run the whole backupsvc service for the benchmark, and time it from the outside.

:class:`BenchService` starts real processes and talks real HTTP: the client
POSTs to a ``backupsvc-api`` process, which casts over RabbitMQ to a
``backupsvc-worker`` process that writes a POSIX backup store; both share a
throwaway MariaDB database. Everything lives under one work directory::

    <workdir>/backupsvc.conf   the service's own configuration (oslo.config)
    <workdir>/backups/         the POSIX backup store (backup_posix_path)
    <workdir>/volumes/         volumes the service creates (restores to new volumes)
    <workdir>/managed/         hard links to the files adopted with manage_volume()
    <workdir>/logs/            api.log, worker-N.log and their stdout/stderr

Isolation from anything else using the same RabbitMQ and MariaDB (tests run
concurrently): a unique ``host``, ``control_exchange`` and database name per
instance; :meth:`BenchService.stop` deletes the worker's queue, the exchange
and the database.

The worker's own timing comes from its usage notifications
(``backup.create.start`` / ``.end``, ``backup.restore.start`` / ``.end``),
which the ``log`` notification driver writes, with their timestamps, into the
worker's log. The client waits for the end notification there and only then
reads the status over HTTP, so that no polling competes with the job.

Processes: each runs in its own process group, which stop() ends (SIGTERM,
then SIGKILL); they also get SIGKILL if the thread that started them dies
(PR_SET_PDEATHSIG), so start the service from a thread that outlives it.
A benchmark killed with SIGKILL leaves only its database, queue and files.
Files under ``workdir`` are the caller's to remove.

Demo: ``python tools/bench_service.py --size-gib 1`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import errno
import filecmp
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

API_VERSION = "volume 3.71"
TRANSPORT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
MARIADB: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
BACKUP_TOPIC = "backupsvc-backup"        # backupsvc.rpc.BACKUP_TOPIC
WORKER_READY = "serving topic"           # logged once RPC is served and the first beat is in

# Statuses a job never leaves by itself: waiting on is pointless.
BACKUP_FAILED = {"error", "error_deleting", "deleted"}
VOLUME_FAILED = {"error", "error_restoring", "error_deleting", "error_backing-up"}


class ServiceError(RuntimeError):
    """The service refused a request, failed a job or did not start."""


# ------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child if the benchmark dies without running stop()."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return "<%s does not exist>" % path
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


class _Process:
    """One service process, leader of its own process group (gunicorn forks)."""

    def __init__(self, name: str, argv: list[str], log: Path, out: Path) -> None:
        self.name, self.argv, self.log, self.out = name, argv, log, out
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> _Process:
        with open(self.out, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left of it."""
        if self.popen is None:
            return
        for signo, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.popen.pid, signo)
            except ProcessLookupError:
                break   # the leader and all its group are gone
            try:
                self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
            # Even after the leader exited, SIGKILL what may be left of its group.
        self.popen = None

    def explain(self) -> str:
        state = "not started"
        if self.popen is not None:
            rc = self.popen.poll()
            state = "pid %d, %s" % (self.popen.pid, "running" if rc is None else "exit %s" % rc)
        return "%s (%s)\n--- %s ---\n%s\n--- %s ---\n%s" % (
            self.name, state, self.log, _tail(self.log), self.out, _tail(self.out, 15))


# ------------------------------------------------------------------------ the service

class BenchService:
    """backupsvc-api + backupsvc-worker + a throwaway MariaDB database, driven over HTTP.

    ``options`` (not needed by the benchmark) adds or overrides config options,
    e.g. ``{"DEFAULT": {"backup_engine_threads": 4}}``.
    """

    def __init__(self, workdir: str, *, compression: str, chunk_size: int, sha_block_size: int,
                 bin_dir: str | None = None,
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(bin_dir or os.path.dirname(sys.executable))
        self.suffix = uuid.uuid4().hex[:10]
        self.host = "bench-%s" % self.suffix
        self.exchange = "backupsvc-bench-%s" % self.suffix
        self.db_name = "backupsvc_bench_%s" % self.suffix
        self.project = "bench"
        self.conf = self.workdir / "backupsvc.conf"
        self.store_dir = self.workdir / "backups"
        self.volumes_dir = self.workdir / "volumes"
        self.managed_dir = self.workdir / "managed"
        self.logs_dir = self.workdir / "logs"
        # Seconds between two status GETs, which only confirm what the worker's
        # notifications said (see _wait_job_end); and between two looks at
        # the worker's log.
        self.poll_interval = 0.2
        self.log_interval = 0.02
        self.start_timeout = 60.0           # longest wait for a job's start notification
        self.timeout = 3600.0               # longest wait for one job
        self.manage_dirs = [self.managed_dir]
        self.port = 0
        self.sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {
                "host": self.host,
                "transport_url": TRANSPORT_URL,
                "control_exchange": self.exchange,
                "state_path": self.workdir,
                "osapi_volume_listen": "127.0.0.1",
                "osapi_volume_workers": 1,
                "auth_strategy": "noauth",
                "backup_driver": "posix",
                "backup_posix_path": self.store_dir,
                "backup_compression_algorithm": compression,
                "backup_file_size": chunk_size,
                "backup_sha_block_size_bytes": sha_block_size,
                "file_volumes_dir": self.volumes_dir,
                "debug": "false",
            },
            "database": {"connection": "mysql+pymysql://root@127.0.0.1/%s?charset=utf8mb4"
                                       % self.db_name},
            # The worker's job timings, as log lines with a timestamp.
            "oslo_messaging_notifications": {"driver": "log"},
        }
        for section, values in (options or {}).items():
            self.sections.setdefault(section, {}).update(values)
        self.session = requests.Session()
        self.session.headers.update({
            "X-Auth-Token": "admin:%s" % self.project, "Content-Type": "application/json",
            "Accept": "application/json", "OpenStack-API-Version": API_VERSION})
        self.api: _Process | None = None
        self.worker: _Process | None = None
        self._workers_started = 0
        self._db_created = False
        self._volume_paths: dict[str, str] = {}   # volume id -> file the caller knows
        self._links: list[Path] = []

    # --------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for path in (self.store_dir, self.volumes_dir, self.managed_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        try:
            self._create_database()
            self._write_config()
            self._run_manage("db", "sync")
            self._start_api()
            self._start_worker()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Idempotent; safe from a finally: whatever start() got to is undone."""
        for attr in ("worker", "api"):   # the worker first: it marks itself down
            proc = getattr(self, attr)
            if proc is not None:
                proc.stop()
                setattr(self, attr, None)
        self.session.close()
        for link in self._links:   # only our links: the data stays under the caller's name
            try:
                link.unlink()
            except FileNotFoundError:
                pass
        self._links.clear()
        if self._db_created:
            self._rabbit_cleanup()
            self._drop_database()

    def __enter__(self) -> BenchService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------- volumes
    def manage_volume(self, path: str) -> str:
        """Adopt ``path`` (os-volume-manage) through a hard link; the data is not copied.

        Change the file in place afterwards (pwrite), never by replacing it.
        """
        real = Path(path).resolve()
        for volume_id, known in self._volume_paths.items():
            if known == str(real):   # the service would refuse the same path twice
                return volume_id
        size = real.stat().st_size
        if size == 0 or size % GiB:
            raise ServiceError("%s holds %d bytes; the service's volumes are whole GiB"
                               % (path, size))
        source = self._adoptable(real)
        body = {"volume": {"ref": {"source-name": str(source)}, "host": self.host,
                           "name": "bench-%s" % real.name}}
        volume = self._call("POST", "os-volume-manage", body, 202)["volume"]
        volume = self._wait_volume(volume["id"])
        self._volume_paths[volume["id"]] = str(real)
        return volume["id"]

    def _adoptable(self, real: Path) -> Path:
        """A name for ``real`` inside a manage dir: a hard link, else the dir is added."""
        if any(real.is_relative_to(d) and real != d for d in self.manage_dirs):
            return real
        link = self.managed_dir / ("%s-%s" % (uuid.uuid4().hex[:8], real.name))
        try:
            os.link(real, link)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            # Another filesystem: allow its directory instead (a restart of both
            # processes, still no copy).
            self.manage_dirs.append(real.parent)
            self._restart_all()
            return real
        self._links.append(link)
        return link

    def volume_path(self, volume_id: str) -> str:
        """The file that holds a volume's data."""
        return self._volume_paths.get(volume_id,
                                      str(self.volumes_dir / ("volume-%s" % volume_id)))

    # ----------------------------------------------------------------------- backups
    def backup(self, volume_id: str, *, incremental: bool = False) -> dict:
        before = _tree_bytes(self.store_dir)
        mark = self._worker_log_size()
        body = {"backup": {"volume_id": volume_id, "incremental": incremental, "force": True,
                           "name": "bench-%s" % uuid.uuid4().hex[:8]}}
        posted, started = _utcnow(), time.perf_counter()
        backup_id = self._call("POST", "backups", body, 202)["backup"]["id"]
        self._wait_job_end("create", backup_id, mark)
        self._wait_backup(backup_id)
        observed = time.perf_counter() - started
        return {"backup_id": backup_id, "stored": _tree_bytes(self.store_dir) - before,
                **self._timings("create", backup_id, mark, posted, observed)}

    def restore(self, backup_id: str, *, volume_id: str | None = None) -> dict:
        mark = self._worker_log_size()
        body: dict[str, Any] = {"restore": {"volume_id": volume_id} if volume_id else {}}
        posted, started = _utcnow(), time.perf_counter()
        result = self._call("POST", "backups/%s/restore" % backup_id, body, 202)["restore"]
        target = result["volume_id"]
        self._wait_job_end("restore", backup_id, mark)
        # The worker frees the volume first, then the backup; wait for both anyway.
        self._wait_backup(backup_id)
        self._wait_volume(target)
        observed = time.perf_counter() - started
        return {"volume_id": target, "volume_path": self.volume_path(target),
                **self._timings("restore", backup_id, mark, posted, observed)}

    # ----------------------------------------------------------------------- memory
    def worker_peak_rss_mib(self) -> float:
        return _proc_status_kib(self._worker_pid(), "VmHWM") / KiB

    def worker_rss_mib(self) -> float:
        """The worker's RSS now: idle, the baseline for the peak."""
        return _proc_status_kib(self._worker_pid(), "VmRSS") / KiB

    def reset_worker_peak(self) -> None:
        """Reset VmHWM through clear_refs; if the kernel refuses, restart the worker."""
        pid = self._worker_pid()
        try:
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")
        except OSError:
            self._restart_worker()
            return
        if _proc_status_kib(pid, "VmHWM") > _proc_status_kib(pid, "VmRSS") + 4 * KiB:
            self._restart_worker()   # the write was accepted but ignored (old kernel)

    def _worker_pid(self) -> int:
        if self.worker is None or not self.worker.alive():
            raise ServiceError("the worker is not running: %s"
                               % (self.worker.explain() if self.worker else "never started"))
        return self.worker.pid

    # ------------------------------------------------------------------ HTTP helpers
    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def _call(self, method: str, path: str, body: Any = None, expect: int = 200) -> dict:
        url = "%s/v3/%s/%s" % (self.base_url, self.project, path)
        data = json.dumps(body) if body is not None else None
        try:
            resp = self.session.request(method, url, data=data, timeout=60)
        except requests.RequestException as exc:
            raise ServiceError("%s %s: %s\n%s" % (method, url, exc, self._explain())) from exc
        if resp.status_code != expect:
            raise ServiceError("%s %s -> %d %s" % (method, url, resp.status_code,
                                                   resp.text[:1000]))
        return resp.json()

    def _wait(self, what: str, check) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            done, row = check()
            if done:
                return row
            if time.monotonic() > deadline:
                raise ServiceError("timed out waiting for %s; last seen %s" % (what, row))
            time.sleep(self.poll_interval)

    def _wait_job_end(self, job: str, backup_id: str, mark: int) -> None:
        """Wait for the worker's ``backup.<job>.end`` or ``.error`` notification.

        Watching the worker's log costs the measured processes nothing, where
        status GETs during the job would take API and database CPU from the
        worker on a small machine. The status is still read afterwards; if no
        notification comes (the driver is off), the polling that follows waits.
        """
        if self.worker is None:
            return
        ends = ("backup.%s.end" % job, "backup.%s.error" % job)
        began = time.monotonic()
        while self.worker.alive():
            found = _notification_times(self.worker.log, mark, backup_id)
            if any(event in found for event in ends):
                return
            waited = time.monotonic() - began
            if waited > self.timeout or ("backup.%s.start" % job not in found
                                         and waited > self.start_timeout):
                return          # let the polling find out and report what happened
            time.sleep(self.log_interval)

    def _wait_backup(self, backup_id: str) -> dict:
        def check() -> tuple[bool, dict]:
            row = self._call("GET", "backups/%s" % backup_id)["backup"]
            if row["status"] in BACKUP_FAILED:
                raise ServiceError("backup %s is %s: %s\n%s" % (
                    backup_id, row["status"], row.get("fail_reason"), self._explain()))
            return row["status"] == "available", row
        return self._wait("backup %s to be available" % backup_id, check)

    def _wait_volume(self, volume_id: str) -> dict:
        def check() -> tuple[bool, dict]:
            row = self._call("GET", "volumes/%s" % volume_id)["volume"]
            if row["status"] in VOLUME_FAILED:
                raise ServiceError("volume %s is %s\n%s" % (volume_id, row["status"],
                                                            self._explain()))
            return row["status"] == "available", row
        return self._wait("volume %s to be available" % volume_id, check)

    def _explain(self) -> str:
        return "\n".join(p.explain() for p in (self.api, self.worker) if p is not None)

    # --------------------------------------------------------------- worker timings
    def _worker_log_size(self) -> int:
        try:
            return self.worker.log.stat().st_size if self.worker else 0
        except FileNotFoundError:
            return 0

    def _job_times(self, job: str, backup_id: str, mark: int
                   ) -> tuple[datetime.datetime, datetime.datetime] | None:
        """UTC times of the worker's <job>.start and <job>.end notifications."""
        if self.worker is None:
            return None
        # The end notification follows the status change by a few milliseconds.
        deadline = time.monotonic() + 5.0
        while True:
            found = _notification_times(self.worker.log, mark, backup_id)
            start, end = found.get("backup.%s.start" % job), found.get("backup.%s.end" % job)
            if start and end:
                return start, end
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def _timings(self, job: str, backup_id: str, mark: int, posted: datetime.datetime,
                 observed: float) -> dict[str, float | None]:
        """``seconds``: from the POST to the job's end notification, which the worker
        sends right after it set the final status; ``observed_seconds``: until
        this client had read that status over HTTP."""
        times = self._job_times(job, backup_id, mark)
        if times is None:
            return {"seconds": observed, "observed_seconds": observed, "worker_seconds": None}
        start, end = times
        return {"seconds": (end - posted).total_seconds(), "observed_seconds": observed,
                "worker_seconds": (end - start).total_seconds()}

    # -------------------------------------------------------------- database, rabbit
    def _mariadb(self, database: str | None = None):  # -> pymysql.Connection
        import pymysql  # a dependency of the service itself

        return pymysql.connect(database=database, autocommit=True, connect_timeout=10,
                               charset="utf8mb4", **MARIADB)

    def _create_database(self) -> None:
        conn = self._mariadb()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % self.db_name)
            self._db_created = True
        finally:
            conn.close()

    def _drop_database(self) -> None:
        conn = self._mariadb()
        try:
            with conn.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS `%s`" % self.db_name)
            self._db_created = False
        finally:
            conn.close()

    def _rabbit_cleanup(self) -> None:
        """Best effort: our queue (not auto-deleted) and our exchange."""
        try:
            import kombu

            with kombu.Connection(AMQP_URL, connect_timeout=5) as conn:
                channel = conn.channel()
                channel.queue_delete("%s.%s" % (BACKUP_TOPIC, self.host))
                channel.exchange_delete(self.exchange)
        except Exception as exc:   # kombu raises many types; leftovers are harmless
            print("bench_service: RabbitMQ cleanup failed: %s" % exc, file=sys.stderr)

    # ------------------------------------------------------------------- processes
    def _write_config(self) -> None:
        self.sections["DEFAULT"]["file_volume_manage_dirs"] = ",".join(
            str(d) for d in self.manage_dirs)
        self.sections["DEFAULT"]["osapi_volume_listen_port"] = self.port
        lines = []
        for section, options in self.sections.items():
            lines.append("[%s]" % section)
            lines += ["%s = %s" % (key, value) for key, value in options.items()]
            lines.append("")
        self.conf.write_text("\n".join(lines))

    def _command(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise ServiceError("%s not found in %s (pass bin_dir)" % (name, self.bin_dir))
        return str(path)

    def _run_manage(self, *args: str) -> None:
        argv = [self._command("backupsvc-manage"), "--config-file", str(self.conf),
                "--log-file", str(self.logs_dir / "manage.log"), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if result.returncode:
            raise ServiceError("%s exited with %d:\n%s%s\n%s" % (
                " ".join(argv), result.returncode, result.stdout, result.stderr,
                _tail(self.logs_dir / "manage.log")))

    def _process(self, name: str, tag: str) -> _Process:
        log = self.logs_dir / ("%s.log" % tag)
        return _Process(name, [self._command(name), "--config-file", str(self.conf),
                               "--log-file", str(log)],
                        log, self.logs_dir / ("%s.out" % tag))

    def _start_api(self) -> None:
        for attempt in range(3):   # the free port may be taken before gunicorn binds it
            self.port = _free_port()
            self._write_config()
            self.api = self._process("backupsvc-api", "api").start(self.workdir)
            deadline = time.monotonic() + 60
            while self.api.alive() and time.monotonic() < deadline:
                try:
                    if requests.get(self.base_url + "/", timeout=2).status_code == 300:
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            failure = self.api.explain()
            self.api.stop()
            self.api = None
            if attempt == 2 or "in use" not in failure:   # gunicorn: "Connection in use"
                raise ServiceError("backupsvc-api did not answer GET / on port %d:\n%s"
                                   % (self.port, failure))

    def _start_worker(self) -> None:
        self._workers_started += 1
        proc = self._process("backupsvc-worker", "worker-%d" % self._workers_started)
        self.worker = proc.start(self.workdir)
        deadline = time.monotonic() + 60
        while True:
            if _contains(proc.log, WORKER_READY):
                return
            if not proc.alive() or time.monotonic() > deadline:
                raise ServiceError("backupsvc-worker did not start serving:\n%s"
                                   % proc.explain())
            time.sleep(0.1)

    def _restart_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self._start_worker()

    def _restart_all(self) -> None:
        for attr in ("worker", "api"):
            proc = getattr(self, attr)
            if proc is not None:
                proc.stop()
                setattr(self, attr, None)
        self._start_api()   # rewrites the config (new manage dirs) before starting
        self._start_worker()


# -------------------------------------------------------------------------- helpers

def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass   # a temporary object renamed meanwhile
    return total


def _proc_status_kib(pid: int, field: str) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ServiceError("no %s in /proc/%d/status" % (field, pid))


def _contains(path: Path, text: str) -> bool:
    try:
        return text in path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return False


def _utcnow() -> datetime.datetime:
    """Naive UTC, as the notifications' timestamps."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _notification_times(log: Path, offset: int, backup_id: str
                        ) -> dict[str, datetime.datetime]:
    """event_type -> timestamp of the notifications about ``backup_id`` after ``offset``.

    A later notification of the same type wins (one backup restored twice).
    """
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return {}
    decoder = json.JSONDecoder()
    found = {}
    for line in text.splitlines():
        if "oslo.messaging.notification.backup." not in line or backup_id not in line:
            continue
        start = line.find('{"')
        try:
            message, _ = decoder.raw_decode(line, start)
            if message.get("payload", {}).get("backup_id") == backup_id:
                found[message["event_type"]] = datetime.datetime.fromisoformat(
                    message["timestamp"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


# ----------------------------------------------------------------------------- demo

def build_image(path: Path, size: int, rng: random.Random, data_fraction: float = 0.5) -> None:
    """Random data in a fraction of the 4 MiB extents, zeros (holes) in the others.

    The same shape as tools/benchmark.py's image, so that the figures compare.
    """
    extent = 4 * MiB
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in range(0, size, extent):
            if rng.random() < data_fraction:
                f.seek(offset)
                f.write(rng.randbytes(min(extent, size - offset)))
        os.fsync(f.fileno())


def change_fraction(path: Path, fraction: float, rng: random.Random, block: int = 4 * KiB
                    ) -> None:
    """Overwrite ``fraction`` of the file in place, in scattered random blocks."""
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY)
    try:
        for _ in range(int(size * fraction) // block):
            os.pwrite(fd, rng.randbytes(block), rng.randrange(size // block) * block)
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=int, default=1)
    ap.add_argument("--compression", default="zlib", help="zlib, bz2, zstd or none")
    ap.add_argument("--chunk-size", type=int, default=1999994880)
    ap.add_argument("--sha-block-size", type=int, default=32768)
    ap.add_argument("--workdir", help="default: a new temporary directory, removed at the end")
    args = ap.parse_args()

    # SIGTERM as an exception, so that the finally below stops the service.
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(128 + signo))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="backupsvc-bench-service-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)
    svc = BenchService(str(workdir / "service"), compression=args.compression,
                       chunk_size=args.chunk_size, sha_block_size=args.sha_block_size)
    try:
        image = workdir / "image.raw"
        build_image(image, args.size_gib * GiB, rng)
        svc.start()
        print("service up: api %s, worker pid %d, database %s"
              % (svc.base_url, svc._worker_pid(), svc.db_name))
        idle_rss = svc.worker_rss_mib()
        volume_id = svc.manage_volume(str(image))
        size_mib = args.size_gib * GiB / MiB

        def report(label: str, result: dict) -> None:
            worker = result.get("worker_seconds")
            stored = result.get("stored")
            print("%-24s %7.2f s  %7.1f MiB/s  worker %s%s" % (
                label, result["seconds"], size_mib / result["seconds"],
                "%.2f s" % worker if worker is not None else "n/a",
                "  stored %.1f MiB" % (stored / MiB) if stored is not None else ""))

        full = svc.backup(volume_id)
        report("full backup", full)
        change_fraction(image, 0.01, rng)
        incr = svc.backup(volume_id, incremental=True)
        report("incremental (1% changed)", incr)
        print("worker RSS: %.1f MiB at start, peak %.1f MiB over the backups"
              % (idle_rss, svc.worker_peak_rss_mib()))
        svc.reset_worker_peak()
        restored = svc.restore(incr["backup_id"])
        report("restore to new volume", restored)
        same = filecmp.cmp(image, restored["volume_path"], shallow=False)
        print("restored %s %s the source" % (restored["volume_path"],
                                             "matches" if same else "DIFFERS FROM"))
        print("worker peak RSS: %.1f MiB over the restore (reset before it)"
              % svc.worker_peak_rss_mib())
        if not same:
            sys.exit(1)
    finally:
        svc.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
