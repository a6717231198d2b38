"""One engine measurement in a fresh process, for tools/benchmark.py.

    python tools/bench_engine.py '<json job>'

Job fields: ``op`` ("backup", "restore" or "idle"), ``repo`` (PosixStore base
path), ``compression``, ``chunk_size``, ``sha_block_size``, ``workers``,
optionally ``format_version``; backup: ``volume_path``, ``size``,
``backup_id``, ``volume_id``, ``parent_id`` (or null); restore: ``chain``
(backup ids, full first), ``volume_id``, ``target_path`` (an existing file of
the volume's size), ``volume_is_new``.

Objects go where the worker puts them (the store's default container and
object prefix), and a backup is timed until it is durable: the engine's own
fsyncs plus a final ``os.sync()``, as the Cinder harness does. The last
stdout line is JSON: ``seconds``, ``sync_seconds``, ``cpu`` (process CPU
seconds, all threads), ``rss_mib`` (this process's peak RSS, VmHWM, interpreter
included) and the engine's result counters.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backupsvc import memory  # noqa: E402
from backupsvc.chunking.engine import (  # noqa: E402
    BackupDescription,
    EngineParams,
    Layer,
    read_sha256s,
    run_backup,
    run_restore,
)
from backupsvc.drivers.posix import PosixStore  # noqa: E402
from backupsvc.sources.file import FileVolumeWriter  # noqa: E402

MiB = 1024 * 1024
# A fixed creation time: object names (and so the layout) do not depend on when we ran.
CREATED = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)

def peak_rss_mib() -> float:
    """VmHWM: unlike ru_maxrss it is not inherited from a vfork()ing parent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def engine_params(job: dict) -> EngineParams:
    kw = dict(chunk_size=job["chunk_size"], sha_block_size=job["sha_block_size"],
              compression=job["compression"], workers=job.get("workers", 2))
    names = {f.name for f in dataclasses.fields(EngineParams)}
    if job.get("format_version") and "format_version" in names:
        kw["format_version"] = job["format_version"]
    return EngineParams(**kw)


def layer(store: PosixStore, volume_id: str, backup_id: str) -> Layer:
    return Layer(store.default_container(backup_id),
                 store.object_prefix(volume_id, backup_id, CREATED))


def backup(job: dict, store: PosixStore, params: EngineParams) -> dict:
    where = layer(store, job["volume_id"], job["backup_id"])
    parent = None
    if job.get("parent_id"):
        up = layer(store, job["volume_id"], job["parent_id"])
        parent = read_sha256s(store, up.container, up.prefix)[1]
    desc = BackupDescription(job["backup_id"], job["volume_id"], None, None,
                             CREATED.isoformat(), job.get("parent_id"))
    store.ensure_container(where.container)
    with open(job["volume_path"], "rb") as f:
        result = run_backup(f, job["size"], store, where.container, where.prefix, desc,
                            params, parent)
    return dataclasses.asdict(result)


def restore(job: dict, store: PosixStore, params: EngineParams) -> dict:
    chain = [layer(store, job["volume_id"], b) for b in job["chain"]]
    size = os.path.getsize(job["target_path"])
    # The writer the worker restores volumes with (pwrite, punched holes,
    # early writeback, fsync).
    fd = os.open(job["target_path"], os.O_WRONLY)
    writer = FileVolumeWriter(fd, "file", size)
    try:
        result = run_restore(chain, writer, size, params,
                             target_is_zeroed=job["volume_is_new"], store=store)
    finally:
        writer.close()
        os.close(fd)
    return dataclasses.asdict(result)


def main() -> None:
    job = json.loads(sys.argv[1])
    out: dict = {}
    if job["op"] != "idle":
        memory.tune_malloc()    # as the worker does once it has started
        gc.freeze()
        store = PosixStore(job["repo"])
        params = engine_params(job)
        start, cpu = time.perf_counter(), time.process_time()
        out["result"] = (backup if job["op"] == "backup" else restore)(job, store, params)
        synced = time.perf_counter()
        os.sync()
        end = time.perf_counter()
        out.update(seconds=end - start, sync_seconds=end - synced,
                   cpu=time.process_time() - cpu)
    out["rss_mib"] = peak_rss_mib()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
