"""The three things tools/benchmark.py measures, behind one small interface.

* :class:`EngineBackend`: backupsvc's engine on a PosixStore, every backup or
  restore in a fresh ``tools/bench_engine.py`` process (its peak RSS is that
  process's own ``ru_maxrss``).
* :class:`CinderBackend`: OpenStack Cinder's POSIX chunked driver, installed in
  its own virtualenv, every call a fresh ``tools/bench_cinder.py`` process.
* :class:`ServiceBackend`: the whole service (HTTP API -> RabbitMQ -> worker)
  through ``tools/bench_service.py``; figures are end to end, as a client sees
  them, and peak RSS is the worker's (VmHWM, reset before each job).

Each backup or restore returns a dict with at least ``seconds``, ``cpu`` (None
when not known), ``rss_mib`` and ``stored`` (bytes the backup added to its
repository, every file counted; 0 for restores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

TOOLS = os.path.dirname(os.path.abspath(__file__))


class BenchError(RuntimeError):
    """A measured program failed; the message carries its output."""


def tree_bytes(root: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _fork_not_vfork() -> None:
    """A preexec_fn makes subprocess fork() instead of vfork(): after a vfork() the
    child's ru_maxrss starts at the parent's peak RSS, which would be charged to
    the measured program (Cinder's harness reports ru_maxrss)."""


def run_json(argv: list[str], what: str, timeout: float = 7200) -> dict:
    """Run a measuring child; its last stdout line is a JSON object."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=_fork_not_vfork)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise BenchError("%s failed (exit %d):\n%s\n%s" % (
            what, proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:]))
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise BenchError("%s printed no JSON result:\n%s\n%s"
                         % (what, proc.stdout[-2000:], proc.stderr[-2000:])) from None


class EngineBackend:
    who = "engine"

    def __init__(self, workdir: str, *, chunk_size: int, sha_block_size: int, workers: int,
                 format_version: str | None = None, python: str = sys.executable) -> None:
        self.workdir, self.python = workdir, python
        self.common: dict[str, Any] = dict(chunk_size=chunk_size, sha_block_size=sha_block_size,
                                           workers=workers, format_version=format_version)
        self.repo = ""
        self.volume_id = "bench-volume"

    def _run(self, job: dict) -> dict:
        job = dict(self.common, repo=self.repo, compression=self.codec,
                   volume_id=self.volume_id, **job)
        return run_json([self.python, os.path.join(TOOLS, "bench_engine.py"), json.dumps(job)],
                        "engine %s" % job["op"])

    def begin(self, tag: str, codec: str) -> None:
        self.repo = os.path.join(self.workdir, "engine-%s" % tag)
        self.codec = codec
        os.makedirs(self.repo)

    def backup(self, volume: str, backup_id: str, parent_id: str | None) -> dict:
        before = tree_bytes(self.repo)
        os.sync()       # nobody else's writeback inside our timing
        out = self._run(dict(op="backup", volume_path=volume, size=os.path.getsize(volume),
                             backup_id=backup_id, parent_id=parent_id))
        out["stored"] = tree_bytes(self.repo) - before
        return out

    def restore(self, chain: list[str], target: str, new: bool) -> dict:
        os.sync()
        out = self._run(dict(op="restore", chain=chain, target_path=target,
                             volume_is_new=new))
        out["stored"] = 0
        return out

    def idle_rss_mib(self) -> float:
        return run_json([self.python, os.path.join(TOOLS, "bench_engine.py"),
                         json.dumps({"op": "idle"})], "engine idle")["rss_mib"]

    def end(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)


class CinderBackend:
    who = "cinder"

    def __init__(self, workdir: str, venv: str, *, chunk_size: int,
                 sha_block_size: int) -> None:
        self.workdir = workdir
        self.python = os.path.join(venv, "bin", "python")
        self.common: dict[str, Any] = dict(chunk_size=chunk_size, sha_block_size=sha_block_size)
        self.repo = self.state = ""
        self.version: str | None = None

    def _run(self, job: dict) -> dict:
        job = dict(self.common, state_dir=self.state, repo=self.repo, compression=self.codec,
                   **job)
        out = run_json([self.python, os.path.join(TOOLS, "bench_cinder.py"), json.dumps(job)],
                       "cinder %s" % job["op"])
        self.version = out.get("cinder_version", self.version)
        return out

    def begin(self, tag: str, codec: str) -> None:
        self.repo = os.path.join(self.workdir, "cinder-%s" % tag)
        self.state = os.path.join(self.workdir, "cinder-state-%s" % tag)
        self.codec = codec
        os.makedirs(self.repo)
        os.makedirs(self.state)

    def backup(self, volume: str, backup_id: str, parent_id: str | None) -> dict:
        os.sync()
        return self._run(dict(op="backup", volume_path=volume, size=os.path.getsize(volume),
                              backup_id=backup_id, parent_id=parent_id))

    def restore(self, chain: list[str], target: str, new: bool) -> dict:
        os.sync()
        out = self._run(dict(op="restore", backup_id=chain[-1], target_path=target,
                             volume_is_new=new))
        out["stored"] = 0
        return out

    def end(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


class ServiceBackend:
    """One running service (one codec). Volumes are adopted files changed in place."""

    who = "service"

    def __init__(self, workdir: str, codec: str, *, chunk_size: int, sha_block_size: int,
                 format_version: str | None = None) -> None:
        sys.path.insert(0, TOOLS)
        from bench_service import BenchService  # only needed when the service runs

        self.workdir = workdir
        # Our own venv's console scripts, else whatever PATH has.
        bin_dir = os.path.dirname(sys.executable)
        if not os.path.exists(os.path.join(bin_dir, "backupsvc-api")):
            found = shutil.which("backupsvc-api")
            bin_dir = os.path.dirname(found) if found else bin_dir
        # Every run adds backups and volumes: no quota may stop the benchmark.
        options: dict[str, dict[str, Any]] = {
            "DEFAULT": {"quota_backups": -1, "quota_backup_gigabytes": -1}}
        if format_version:
            options["DEFAULT"]["backup_format_version"] = format_version
        self.svc = BenchService(workdir, compression=codec, chunk_size=chunk_size,
                                sha_block_size=sha_block_size, bin_dir=bin_dir, options=options)

    def start(self) -> None:
        self.svc.start()

    def stop(self) -> None:
        self.svc.stop()

    def manage(self, path: str) -> str:
        return self.svc.manage_volume(path)

    def backup(self, volume_id: str, incremental: bool) -> dict:
        os.sync()
        self.svc.reset_worker_peak()
        before = self.svc.worker_rss_mib()
        out = self.svc.backup(volume_id, incremental=incremental)
        out.update(rss_mib=self.svc.worker_peak_rss_mib(), rss_before_mib=before, cpu=None)
        return out

    def restore(self, backup_id: str, volume_id: str | None) -> dict:
        os.sync()
        self.svc.reset_worker_peak()
        before = self.svc.worker_rss_mib()
        out = self.svc.restore(backup_id, volume_id=volume_id)
        out.update(rss_mib=self.svc.worker_peak_rss_mib(), rss_before_mib=before, cpu=None,
                   stored=0)
        return out
