"""The worker's job pool: jobs run, memory is handed back, shutdown waits."""

import threading

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
    assert calls == [(memory.M_ARENA_MAX, 2), (memory.M_MMAP_THRESHOLD, 32 << 20),
                     (memory.M_TRIM_THRESHOLD, 256 << 20)]


def test_tune_malloc_is_harmless_where_there_is_no_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_libc_function", lambda name: None)
    memory.tune_malloc()
