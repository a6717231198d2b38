"""The worker's job pool: jobs run, memory is handed back, shutdown waits."""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from backupsvc import memory
from backupsvc.worker import server


def test_jobs_run_and_shutdown_waits(monkeypatch):
    trims = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: trims.append)
    pool = server.JobPool(2)
    started = threading.Event()
    release = threading.Event()

    def job(n):
        started.set()
        release.wait(5)
        return n * 2

    futures = [pool.submit(job, n) for n in range(3)]
    assert started.wait(5)
    release.set()
    assert [f.result(5) for f in futures] == [0, 2, 4]
    pool.shutdown(wait=True)            # joins the threads: every callback has run
    assert trims == [0, 0, 0]           # malloc_trim(0) after every job


def test_release_memory_is_harmless_where_there_is_no_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    memory.release_memory()


def test_tune_malloc_sets_arenas_and_fixed_thresholds(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_libc_function",
                        lambda name: (lambda *args: calls.append(args)) if name == "mallopt"
                        else None)
    memory.tune_malloc()
    assert calls == [(memory.M_ARENA_MAX, 1), (memory.M_MMAP_THRESHOLD, 32 << 20),
                     (memory.M_TRIM_THRESHOLD, 256 << 20)]


_THREADS_FREE_THEN_RELEASE = """
import sys, threading
from backupsvc import memory
memory.tune_malloc()

def anonymous_kib():
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))

def job():
    buffers = [bytearray(4 << 20) for _ in range(16)]   # 64 MiB, touched
    del buffers

before = anonymous_kib()
threads = [threading.Thread(target=job) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
memory.release_memory()
print((anonymous_kib() - before) // 1024)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup")
                    or memory._libc_function("mallopt") is None,
                    reason="needs glibc and Linux's /proc to see what a process holds")
def test_release_memory_gives_back_what_threads_freed():
    # A fresh interpreter: what the threads of a job allocated and freed goes
    # back to the system when the job ends (a second arena kept its free end).
    done = subprocess.run([sys.executable, "-c", _THREADS_FREE_THEN_RELEASE],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 16, "MiB still held: %s" % done.stdout


def test_tune_malloc_is_harmless_where_there_is_no_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_libc_function", lambda name: None)
    memory.tune_malloc()


def test_operations_are_limited_across_the_workers_processes(tmp_path):
    # backup_workers > 1: another process of the worker holds the only slot.
    shared = server.ProcessShared(1, str(tmp_path))
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()

    def other_process():
        with shared.slots.held():
            held.set()
            release.wait(10)

    proc = ctx.Process(target=other_process)
    proc.start()
    pool = server.JobPool(4, shared.slots)
    try:
        assert held.wait(10)
        future = pool.submit(lambda: "ran")
        time.sleep(0.5)
        assert not future.done()            # waiting for the other process's operation
        release.set()
        assert future.result(10) == "ran"
    finally:
        release.set()
        proc.join(10)
        pool.shutdown(wait=True)


def test_a_process_that_dies_gives_its_operation_slot_back(tmp_path):
    # The kernel drops a dead process's flocks: the slot is free again (a
    # semaphore would stay taken until the whole worker restarted).
    shared = server.ProcessShared(1, str(tmp_path))
    ctx = multiprocessing.get_context("fork")
    held = ctx.Event()

    def dies_holding_a_slot():
        with shared.slots.held():
            held.set()
            time.sleep(60)

    proc = ctx.Process(target=dies_holding_a_slot)
    proc.start()
    pool = server.JobPool(2, shared.slots)
    try:
        assert held.wait(10)
        future = pool.submit(lambda: "ran")
        time.sleep(0.5)
        assert not future.done()
        os.kill(proc.pid, signal.SIGKILL)
        assert future.result(10) == "ran"
    finally:
        proc.kill()
        proc.join(10)
        pool.shutdown(wait=True)


def test_recovery_runs_once_whatever_the_processes(tmp_path):
    shared = server.ProcessShared(0, str(tmp_path))
    assert shared.slots is None                 # 0: unlimited, as in Cinder
    ctx = multiprocessing.get_context("fork")
    runs, orphan_runs = ctx.Value("i", 0), ctx.Value("i", 0)

    def recover_rows():
        with runs.get_lock():
            runs.value += 1
        time.sleep(0.2)                     # the others must wait, not skip ahead

    def recover_orphans():
        with orphan_runs.get_lock():
            orphan_runs.value += 1

    def process(done):
        shared.recover_once(recover_rows, recover_orphans)
        done.put(runs.value)                # what it saw once it could serve

    done = ctx.Queue()
    procs = [ctx.Process(target=process, args=(done,)) for _ in range(3)]
    for proc in procs:
        proc.start()
    seen = [done.get(timeout=10) for _ in procs]
    for proc in procs:
        proc.join(10)
    assert runs.value == 1 and seen == [1, 1, 1]
    shared.recover_once(recover_rows, recover_orphans)  # one started later: no second run
    assert runs.value == 1
    # The processes after the first (or started in place of dead ones) look for
    # orphans instead.
    assert orphan_runs.value == 3


def _claim_in_a_process(claims, key, then):
    """A forked process that claims ``key`` and then exits, dies or waits."""
    ctx = multiprocessing.get_context("fork")
    claimed, release = ctx.Event(), ctx.Event()

    def run():
        fd = claims.claim(key)
        assert fd is not None
        claimed.set()
        if then == "release":
            claims.release(key, fd)
        release.wait(60)

    proc = ctx.Process(target=run)
    proc.start()
    assert claimed.wait(10)
    return proc, release


def test_a_dead_processs_claim_is_an_orphan(tmp_path):
    claims = server.JobClaims(str(tmp_path / "jobs"))
    proc, _ = _claim_in_a_process(claims, "create-b1", "hold")
    try:
        assert claims.take_orphan("create-b1") is None      # its process runs it
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        fd = claims.take_orphan("create-b1")
        assert fd is not None
        assert claims.take_orphan("create-b1") is None      # one recoverer only
        claims.release("create-b1", fd)
        assert os.listdir(tmp_path / "jobs") == []
    finally:
        proc.kill()
        proc.join(10)


def test_a_queued_or_finished_job_is_not_an_orphan(tmp_path):
    claims = server.JobClaims(str(tmp_path / "jobs"))
    assert claims.take_orphan("create-never-arrived") is None
    proc, release = _claim_in_a_process(claims, "restore-b2", "release")
    release.set()
    proc.join(10)
    assert claims.take_orphan("restore-b2") is None


def test_a_claim_ended_while_being_checked_is_not_an_orphan(tmp_path, monkeypatch):
    # The recoverer opened the file just before its holder ended the claim
    # (unlinked the file, then unlocked it): the lock it then gets is on a file
    # that is gone, not on a dead process's claim.
    claims = server.JobClaims(str(tmp_path / "jobs"))
    fd = claims.claim("delete-b3")
    opened = os.open(tmp_path / "jobs" / "delete-b3.lock", os.O_RDWR)
    claims.release("delete-b3", fd)
    monkeypatch.setattr(server.os, "open", lambda *args, **kw: os.dup(opened))
    try:
        assert claims.take_orphan("delete-b3") is None
    finally:
        monkeypatch.undo()
        os.close(opened)


def test_the_pool_holds_a_claim_from_arrival_to_the_end_of_the_job(tmp_path):
    claims = server.JobClaims(str(tmp_path / "jobs"))
    pool = server.JobPool(1, None, claims)
    busy, release = threading.Event(), threading.Event()
    try:
        first = pool.submit(lambda: (busy.set(), release.wait(10)), claim="create-a")
        assert busy.wait(10)
        queued = pool.submit(lambda: "ran", claim="create-b")   # waits for the thread
        names = sorted(os.listdir(tmp_path / "jobs"))
        assert names == ["create-a.lock", "create-b.lock"]
        # Both are held (by this process): neither is an orphan.
        assert claims.take_orphan("create-a") is None
        assert claims.take_orphan("create-b") is None
        release.set()
        first.result(10)
        assert queued.result(10) == "ran"
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert os.listdir(tmp_path / "jobs") == []
