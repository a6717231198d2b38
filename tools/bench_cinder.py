"""Drive OpenStack Cinder's own POSIX chunked backup driver for benchmarking.

Run with the python of the Cinder virtualenv made by ``tools/cinder-venv.sh``
(this script must not import ``backupsvc``; it only imports the installed
``cinder`` package)::

    <cinder-venv>/bin/python tools/bench_cinder.py '<json job>'

Job fields (all ops):

``op``             "backup" or "restore"
``state_dir``      directory owned by this harness: cinder.conf, the SQLite
                   database (created and db-synced on first use, reused later)
``repo``           ``backup_posix_path``
``compression``    ``backup_compression_algorithm``: zlib, bz2, zstd, none
``chunk_size``     ``backup_file_size`` (a multiple of ``sha_block_size``)
``sha_block_size`` ``backup_sha_block_size_bytes``

backup: ``volume_path`` (regular file, size a whole number of GiB), ``size``
(bytes), ``backup_id`` (uuid4 chosen by the caller), ``parent_id`` (uuid of an
earlier backup made with the same state_dir, or null for a full backup).

restore: ``backup_id``, ``target_path`` (existing file of the right size),
``volume_is_new`` (bool: the target reads as all zeros).

The last line of stdout is one JSON object::

    {"seconds", "sync_seconds", "cpu", "rss_mib", "stored", "cinder_version",
     "op", "backup_id"}

``seconds`` is wall time of the driver call plus a final ``os.sync()``
(``sync_seconds``); ``cpu`` is ``time.process_time()`` over the same region;
``rss_mib`` is peak RSS of the process; ``stored`` is the bytes of the files the
backup created in the repo (0 for a restore).  Imports and DB setup are not
timed.  On failure the exit status is non-zero and stderr says why.

The records are made and saved the way Cinder's backup API/manager do it
(status creating -> available, size in GiB, parent_id and the parent's
dependent count; status restoring during a restore, since the driver aborts a
restore whose backup is not "restoring").  Cinder runs in its native-threading
mode (``OS_CINDER_DISABLE_EVENTLET_PATCHING=1``), so ``tpool_wrap`` is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
import uuid
import warnings
from typing import Any

# Cinder imports eventlet at import time, which warns loudly, and logs a
# warning about threading mode; keep stderr for real errors.
warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

GiB = 1024**3
REQUIRED = {
    "backup": ("volume_path", "size", "backup_id", "parent_id"),
    "restore": ("backup_id", "target_path", "volume_is_new"),
}
COMMON = ("op", "state_dir", "repo", "compression", "chunk_size", "sha_block_size")
# Fixed owner of every record so the DB queries scoped by project still match.
PROJECT_ID = "bench-project"
USER_ID = "bench-user"


class JobError(Exception):
    """A problem with the job description (reported without a traceback)."""


def parse_job(argv: list[str]) -> dict[str, Any]:
    if len(argv) != 2:
        raise JobError("usage: bench_cinder.py '<json job>'")
    try:
        job = json.loads(argv[1])
    except json.JSONDecodeError as exc:
        raise JobError(f"job is not valid JSON: {exc}") from exc
    if not isinstance(job, dict):
        raise JobError("job must be a JSON object")
    op = job.get("op")
    if op not in REQUIRED:
        raise JobError(f"op must be 'backup' or 'restore', not {op!r}")
    missing = [k for k in COMMON + REQUIRED[op] if k not in job]
    if missing:
        raise JobError(f"job is missing field(s): {', '.join(missing)}")
    if job["chunk_size"] % job["sha_block_size"]:
        raise JobError("chunk_size must be a multiple of sha_block_size")
    if op == "backup":
        if job["size"] <= 0 or job["size"] % GiB:
            # Cinder volumes are sized in whole GiB; the driver reads the file
            # to EOF but sizes its records from the volume's GiB count.
            raise JobError(f"size must be a positive multiple of 1 GiB, got {job['size']}")
        actual = os.path.getsize(job["volume_path"])
        if actual != job["size"]:
            raise JobError(f"{job['volume_path']} is {actual} bytes, job says {job['size']}")
    else:
        if not os.path.isfile(job["target_path"]):
            raise JobError(f"target_path {job['target_path']} is not an existing file")
    return job


def write_config(job: dict[str, Any]) -> str:
    """Write state_dir/cinder.conf for this call's options; return its path."""
    state_dir = os.path.abspath(job["state_dir"])
    os.makedirs(os.path.join(state_dir, "lock"), exist_ok=True)
    os.makedirs(job["repo"], exist_ok=True)
    conf = f"""[DEFAULT]
state_path = {state_dir}
host = bench
# Cinder's rpc layer must be initialised; the fake transport keeps it in-process
# and notifications stay disabled (no notification driver configured).
transport_url = fake://
backup_driver = cinder.backup.drivers.posix.PosixBackupDriver
backup_posix_path = {os.path.abspath(job["repo"])}
backup_compression_algorithm = {job["compression"]}
backup_file_size = {int(job["chunk_size"])}
backup_sha_block_size_bytes = {int(job["sha_block_size"])}

[database]
connection = sqlite:///{state_dir}/cinder.sqlite

[oslo_concurrency]
lock_path = {state_dir}/lock
"""
    path = os.path.join(state_dir, "cinder.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def setup_cinder(conf_path: str, state_dir: str) -> Any:
    """Load config, sync the DB once per state_dir, return an admin context."""
    # Cinder's native-threading mode, as cinder-backup runs with
    # OS_CINDER_DISABLE_EVENTLET_PATCHING=1: tpool_wrap() becomes a no-op and
    # the driver's progress timer runs as a real thread.  (Eventlet mode would
    # only add a thread-pool hop per chunk read/compress/write.)
    os.environ["OS_CINDER_DISABLE_EVENTLET_PATCHING"] = "1"
    from cinder import monkey_patch

    monkey_patch.patch()

    from cinder import context, objects, rpc
    from oslo_config import cfg

    objects.register_all()
    # The driver modules register their options at import time, so import them
    # before parsing the config file.
    import cinder.backup.drivers.posix  # noqa: F401

    cfg.CONF([], project="cinder", default_config_files=[conf_path])
    rpc.init(cfg.CONF)

    marker = os.path.join(state_dir, "db-synced")
    if not os.path.exists(marker):
        from cinder.db import migration

        migration.db_sync()
        with open(marker, "w") as f:
            f.write(cinder_version() + "\n")
    ctx = context.get_admin_context()
    ctx.project_id = PROJECT_ID
    ctx.user_id = USER_ID
    return ctx


def cinder_version() -> str:
    from importlib.metadata import version

    return version("cinder")


def ensure_volume(ctx: Any, path: str, size: int) -> Any:
    """Return the Volume record for (path, size), creating it on first use."""
    from cinder import exception, objects
    from cinder.db import api as db
    from cinder.volume import volume_types

    # Deterministic id so repeated calls for the same file reuse the record.
    vol_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-volume:{os.path.realpath(path)}:{size}"))
    try:
        return objects.Volume.get_by_id(ctx, vol_id)
    except exception.VolumeNotFound:
        pass
    # Through the DB API because objects.Volume.create() refuses a preset id.
    db.volume_create(
        ctx,
        {
            "id": vol_id,
            "size": size // GiB,
            "status": "available",
            "attach_status": "detached",
            "display_name": os.path.basename(path),
            "project_id": PROJECT_ID,
            "user_id": USER_ID,
            "host": "bench@posix#posix",
            "availability_zone": "nova",
            "volume_type_id": volume_types.get_default_volume_type(ctx)["id"],
        },
    )
    return objects.Volume.get_by_id(ctx, vol_id)


def run_backup(ctx: Any, job: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from cinder import exception, objects
    from cinder.backup.drivers.posix import PosixBackupDriver
    from cinder.db import api as db
    from cinder.objects import fields

    volume = ensure_volume(ctx, job["volume_path"], job["size"])
    parent_id = job["parent_id"]
    if parent_id:
        try:
            parent = objects.Backup.get_by_id(ctx, parent_id)
        except exception.BackupNotFound as exc:
            raise JobError(f"parent_id {parent_id} is not a backup in this state_dir") from exc
        if parent.status != fields.BackupStatus.AVAILABLE:
            raise JobError(f"parent backup {parent_id} has status {parent.status}")
        if parent.volume_id != volume.id:
            raise JobError(f"parent backup {parent_id} is of another volume/size")
    # Same fields as cinder.backup.api.API.create() sets; through the DB API
    # because objects.Backup.create() refuses the caller-chosen id.
    db.backup_create(
        ctx,
        {
            "id": job["backup_id"],
            "user_id": USER_ID,
            "project_id": PROJECT_ID,
            "display_name": f"bench-{job['backup_id']}",
            "display_description": "",
            "volume_id": volume.id,
            "status": fields.BackupStatus.CREATING,
            "container": None,
            "parent_id": parent_id,
            "size": volume.size,
            "host": "bench",
            "service": "cinder.backup.drivers.posix.PosixBackupDriver",
            "availability_zone": "nova",
        },
    )
    backup = objects.Backup.get_by_id(ctx, job["backup_id"])

    driver = PosixBackupDriver(ctx)
    with open(job["volume_path"], "rb") as volume_file:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            updates = driver.backup(backup, volume_file)
        except Exception as exc:
            # As the manager does, so the record is not left "creating".
            backup.status = fields.BackupStatus.ERROR
            backup.fail_reason = str(exc)[:255]
            backup.save()
            raise
        s0 = time.perf_counter()
        os.sync()
        t1, c1 = time.perf_counter(), time.process_time()

    # As BackupManager._finish_backup() does after the driver succeeded.
    backup.status = fields.BackupStatus.AVAILABLE
    backup.size = volume.size
    if updates:
        backup.update(updates)
    backup.save()
    if backup.parent_id:
        db.backup_add_dependent(ctx, backup.parent_id)

    stored = 0
    container = os.path.join(os.path.abspath(job["repo"]), backup.container)
    for name in os.listdir(container):
        if name.startswith(backup.service_metadata):
            stored += os.path.getsize(os.path.join(container, name))
    return backup, {"seconds": t1 - t0, "sync_seconds": t1 - s0, "cpu": c1 - c0, "stored": stored}


def run_restore(ctx: Any, job: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from cinder import exception, objects
    from cinder.backup.drivers.posix import PosixBackupDriver
    from cinder.objects import fields

    try:
        backup = objects.Backup.get_by_id(ctx, job["backup_id"])
    except exception.BackupNotFound as exc:
        raise JobError(f"backup {job['backup_id']} is not in this state_dir") from exc
    if backup.status != fields.BackupStatus.AVAILABLE:
        raise JobError(f"backup {backup.id} has status {backup.status}")
    target_size = os.path.getsize(job["target_path"])
    if target_size != backup.size * GiB:
        raise JobError(f"target is {target_size} bytes, the backup's volume is {backup.size} GiB")
    # The restore target is a volume of its own in Cinder; the driver writes
    # the saved volume metadata onto it.
    target = ensure_volume(ctx, job["target_path"], target_size)

    # The API sets "restoring" before the manager runs; the driver checks it
    # before every object and cancels otherwise.
    backup.status = fields.BackupStatus.RESTORING
    backup.restore_volume_id = target.id
    backup.save()
    driver = PosixBackupDriver(ctx)
    try:
        # r+b, not the manager's wb: on a regular file wb would truncate it.
        with open(job["target_path"], "r+b") as volume_file:
            t0, c0 = time.perf_counter(), time.process_time()
            driver.restore(backup, target.id, volume_file, bool(job["volume_is_new"]))
            s0 = time.perf_counter()
            os.sync()
            t1, c1 = time.perf_counter(), time.process_time()
    finally:
        # As BackupManager.restore_backup() does, success or not.
        backup.status = fields.BackupStatus.AVAILABLE
        backup.restore_volume_id = None
        backup.save()
    return backup, {"seconds": t1 - t0, "sync_seconds": t1 - s0, "cpu": c1 - c0, "stored": 0}


def main(argv: list[str]) -> int:
    job: dict[str, Any] = {}
    try:
        job = parse_job(argv)
        state_dir = os.path.abspath(job["state_dir"])
        conf_path = write_config(job)
        ctx = setup_cinder(conf_path, state_dir)
        runner = run_backup if job["op"] == "backup" else run_restore
        backup, result = runner(ctx, job)
    except JobError as exc:
        print(f"bench_cinder: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # any Cinder failure: show the traceback too
        import traceback

        traceback.print_exc()
        print(f"bench_cinder: {job.get('op', '?')} failed: {exc!r}", file=sys.stderr)
        return 1
    result.update(
        rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        cinder_version=cinder_version(),
        op=job["op"],
        backup_id=backup.id,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
