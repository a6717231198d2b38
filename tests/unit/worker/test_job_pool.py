"""The worker's job pool: jobs run, memory is handed back, shutdown waits."""

import threading

from backupsvc.worker import server


def test_jobs_run_and_shutdown_waits(monkeypatch):
    trims = []
    monkeypatch.setattr(server, "_malloc_trim", lambda: trims.append)
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
    monkeypatch.setattr(server, "_malloc_trim", lambda: None)
    server._release_memory()
