"""Use cases and worker jobs end to end in one process, without RPC.

The use cases run for real on SQLite (their casts go to the in-process fake
transport and are not consumed); the test then runs the worker's job
functions directly, so every status change, the engine, the POSIX store and
the file volumes are real.
"""

import hashlib
import json
import os
import random
import threading
import time
import uuid

import pytest
from oslo_config import cfg

from backupsvc import backups, exception, volumes
from backupsvc.db import api as db
from backupsvc.states import BackupStatus as B
from backupsvc.states import VolumeStatus as V
from backupsvc.worker import manager as worker_manager
from backupsvc.worker import server as worker_server
from backupsvc.worker import storage
from tests.unit.chunking import data_ranges

CONF = cfg.CONF
MiB = 1024 * 1024


@pytest.fixture
def env(sqlite_db, tmp_path, project_ctx):
    host = "flow-" + uuid.uuid4().hex[:8]
    overrides = {"transport_url": "fake://", "backup_driver": "posix", "host": host,
                 "backup_posix_path": str(tmp_path / "backups"),
                 "file_volumes_dir": str(tmp_path / "volumes"),
                 "backup_file_size": 256 * 1024, "backup_sha_block_size_bytes": 4096,
                 "quota_backups": -1, "quota_backup_gigabytes": -1}
    for key, value in overrides.items():
        CONF.set_override(key, value)
    db.service_heartbeat(project_ctx.elevated(), host, "backupsvc-worker",
                         "backupsvc-backup", "nova")
    mgr = worker_manager.BackupManager(host, lambda fn, *args, claim=None: fn(*args))
    yield project_ctx, mgr, tmp_path
    db.service_mark_down(project_ctx.elevated(), host, "backupsvc-worker")
    for key in overrides:
        CONF.clear_override(key)


def _write_random(path, rng, regions):
    with open(path, "r+b") as f:
        for offset, length in regions:
            f.seek(offset)
            f.write(rng.randbytes(length))


def _image(path):
    """A digest of the file's content that byte-compares 1 GiB volumes quickly.

    Hashes (offset, bytes) of every non-zero MiB plus the size, reading only
    the data regions (SEEK_DATA); equal contents give equal digests whatever
    the hole layout of the two files.
    """
    digest = hashlib.sha256()
    zero = bytes(MiB)
    digest.update(str(os.path.getsize(path)).encode())
    with open(path, "rb") as f:
        done = 0                    # MiB pieces below this offset are hashed
        for start, end in data_ranges(path):
            pos = max(done, start - start % MiB)
            while pos < end:
                piece = os.pread(f.fileno(), MiB, pos)
                if piece != zero[:len(piece)]:
                    digest.update(b"%d:" % pos + piece)
                pos += MiB
            done = pos
    return digest.hexdigest()


def _sparse_volume(ctx, rng):
    vol = volumes.create_volume(ctx, 1, name="src", metadata={"role": "db"})
    size = os.path.getsize(vol.provider_location)
    _write_random(vol.provider_location, rng,
                  [(0, 3 * MiB), (500 * MiB, 64 * 1024), (size - 10000, 10000)])
    return vol


def test_full_incremental_and_chain_restore(env):
    ctx, mgr, tmp = env
    rng = random.Random(7)
    vol = _sparse_volume(ctx, rng)
    full = backups.create(ctx, vol.id, name="full")
    assert db.volume_get(ctx, vol.id).status == V.BACKING_UP
    mgr._create_backup(full.id)
    full = backups.get(ctx, full.id)
    assert full.status == B.AVAILABLE and full.object_count > 0
    assert db.volume_get(ctx, vol.id).status == V.AVAILABLE
    image0 = _image(vol.provider_location)

    _write_random(vol.provider_location, rng, [(4096 * 3, 4096), (300 * MiB, 8192)])
    inc = backups.create(ctx, vol.id, incremental=True)
    mgr._create_backup(inc.id)
    inc = backups.get(ctx, inc.id)
    assert inc.status == B.AVAILABLE and inc.parent_id == full.id
    assert inc.object_count == 2
    assert backups.get(ctx, full.id).num_dependent_backups == 1
    image1 = _image(vol.provider_location)
    assert image1 != image0          # the digest does see a 4 KiB change

    # Restore the incremental into a new volume and the full one over the source.
    result = backups.restore(ctx, inc.id)
    assert result["volume_name"] == "restore_backup_%s" % inc.id
    mgr._restore_backup(inc.id, result["volume_id"], True)
    restored = db.volume_get(ctx, result["volume_id"])
    assert restored.status == V.AVAILABLE
    assert _image(restored.provider_location) == image1
    assert restored.metadata_dict == {"role": "db"}
    assert backups.get(ctx, inc.id).status == B.AVAILABLE

    backups.restore(ctx, full.id, volume_id=vol.id)
    mgr._restore_backup(full.id, vol.id, False)
    assert _image(vol.provider_location) == image0


def test_an_incremental_whose_parent_row_vanished_fails_cleanly(env):
    """The claim reads the parent with the backup; a parent deleted meanwhile (by
    hand in the database: the API refuses while a child row exists) fails the
    backup with the reason, gives the volume back and leaves no objects."""
    ctx, mgr, tmp = env
    vol = _sparse_volume(ctx, random.Random(3))
    full = backups.create(ctx, vol.id)
    mgr._create_backup(full.id)
    inc = backups.create(ctx, vol.id, incremental=True)
    assert db.backup_cas_status(ctx, full.id, B.DELETING, [B.AVAILABLE])
    assert db.backup_cas_status(ctx, full.id, B.DELETED, [B.DELETING])
    mgr._create_backup(inc.id)
    row = db.backup_get(ctx, inc.id, project_only=False)
    assert row.status == B.ERROR
    assert "Parent backup %s no longer exists" % full.id in row.fail_reason
    assert db.volume_get(ctx, vol.id).status == V.AVAILABLE
    store = storage.get_store(CONF)
    assert store.list(row.container, row.service_metadata) == []


def test_delete_rules_and_object_removal(env):
    ctx, mgr, tmp = env
    vol = _sparse_volume(ctx, random.Random(1))
    full = backups.create(ctx, vol.id)
    mgr._create_backup(full.id)
    inc = backups.create(ctx, vol.id, incremental=True)
    mgr._create_backup(inc.id)
    with pytest.raises(exception.InvalidBackup, match="Incremental backups exist"):
        backups.delete(ctx, full.id)
    with pytest.raises(exception.InvalidBackup, match="Incremental backups exist"):
        backups.delete(ctx.elevated(), full.id, force=True)
    full_row = backups.get(ctx, full.id)
    container_dir = os.path.join(CONF.backup_posix_path, full_row.container)
    assert any(n.startswith(full_row.service_metadata) for n in os.listdir(container_dir))
    backups.delete(ctx, inc.id)
    mgr._delete_backup(inc.id)
    assert backups.get(ctx, full.id).num_dependent_backups == 0
    backups.delete(ctx, full.id)
    mgr._delete_backup(full.id)
    with pytest.raises(exception.BackupNotFound):
        backups.get(ctx, full.id)
    assert not any(n.startswith(full_row.service_metadata) for n in os.listdir(container_dir))


def test_refusals_leave_nothing_behind(env):
    ctx, mgr, tmp = env
    vol = volumes.create_volume(ctx, 1)
    before = db.backup_count(ctx)
    with pytest.raises(exception.InvalidBackup, match="full backup"):
        backups.create(ctx, vol.id, incremental=True)
    volumes.attach(ctx, vol.id, instance_uuid=str(uuid.uuid4()))
    with pytest.raises(exception.InvalidVolume, match="force"):
        backups.create(ctx, vol.id)
    assert db.backup_count(ctx) == before
    assert db.volume_get(ctx, vol.id).status == V.IN_USE
    forced = backups.create(ctx, vol.id, force=True)
    mgr._create_backup(forced.id)
    assert backups.get(ctx, forced.id).status == B.AVAILABLE
    assert db.volume_get(ctx, vol.id).status == V.IN_USE
    with pytest.raises(exception.InvalidVolume, match="must be available"):
        backups.restore(ctx, forced.id, volume_id=vol.id)
    assert backups.get(ctx, forced.id).status == B.AVAILABLE


@pytest.mark.parametrize("temp_snapshot", [True, False])
def test_an_in_use_volume_is_backed_up_at_one_point_in_time(env, temp_snapshot):
    """backup_use_temp_snapshot: the volume changes right after the backup starts
    (for real, in its file); the backup holds it as it was at the start only when
    it read a temporary snapshot, which is gone afterwards."""
    ctx, mgr, tmp = env
    rng = random.Random(13)
    vol = _sparse_volume(ctx, rng)
    at_start = _image(vol.provider_location)
    volumes.attach(ctx, vol.id, instance_uuid=str(uuid.uuid4()))
    backup = backups.create(ctx, vol.id, force=True)
    real_open_read = mgr.source.open_read

    def open_read_after_a_write(location):
        # The guest writes between the start of the backup and its reading.
        _write_random(vol.provider_location, random.Random(14), [(2 * MiB, 64 * 1024)])
        return real_open_read(location)

    mgr.source.open_read = open_read_after_a_write
    CONF.set_override("backup_use_temp_snapshot", temp_snapshot)
    try:
        mgr._create_backup(backup.id)
    finally:
        CONF.clear_override("backup_use_temp_snapshot")
        del mgr.source.open_read
    row = backups.get(ctx, backup.id)
    assert row.status == B.AVAILABLE and row.temp_snapshot_id is None
    assert db.volume_get(ctx, vol.id).status == V.IN_USE
    assert not [n for n in os.listdir(CONF.file_volumes_dir) if n.startswith("snapshot-")]
    changed = _image(vol.provider_location)
    assert changed != at_start
    result = backups.restore(ctx, backup.id)
    mgr._restore_backup(backup.id, result["volume_id"], True)
    restored = _image(db.volume_get(ctx, result["volume_id"]).provider_location)
    assert restored == (at_start if temp_snapshot else changed)


def test_recovery_removes_a_crashed_backups_temporary_snapshot(env):
    ctx, mgr, tmp = env
    vol = _sparse_volume(ctx, random.Random(15))
    volumes.attach(ctx, vol.id, instance_uuid=str(uuid.uuid4()))
    backup = backups.create(ctx, vol.id, force=True)
    temp_id = str(uuid.uuid4())          # as _create_backup records it, then dies
    db.backup_update(ctx.elevated(), backup.id, {"temp_snapshot_id": temp_id})
    left = mgr.source.snapshot(vol.provider_location, temp_id)
    worker_server.recover(mgr.host, mgr)
    assert not os.path.exists(left)
    row = backups.get(ctx, backup.id)
    assert row.status == B.ERROR and row.temp_snapshot_id is None
    assert db.volume_get(ctx, vol.id).status == V.IN_USE


def test_no_live_worker_gives_503_and_writes_nothing(env):
    ctx, mgr, tmp = env
    vol = volumes.create_volume(ctx, 1)
    db.service_mark_down(ctx.elevated(), mgr.host, "backupsvc-worker")
    before = db.backup_count(ctx)
    with pytest.raises(exception.NoWorkerAlive):
        backups.create(ctx, vol.id)
    assert db.backup_count(ctx) == before
    assert db.volume_get(ctx, vol.id).status == V.AVAILABLE


def test_force_delete_cancels_a_running_backup(env):
    ctx, mgr, tmp = env
    vol = _sparse_volume(ctx, random.Random(3))
    backup = backups.create(ctx, vol.id)
    # Force delete lands before the worker picks the job up; the job must notice.
    backups.delete(ctx.elevated(), backup.id, force=True)
    mgr._create_backup(backup.id)
    mgr._delete_backup(backup.id)
    with pytest.raises(exception.BackupNotFound):
        backups.get(ctx, backup.id)
    assert db.volume_get(ctx, vol.id).status == V.AVAILABLE


def test_the_cancellation_watch_reads_its_row_in_its_own_thread(env, monkeypatch):
    ctx, _mgr, _tmp = env
    vol = volumes.create_volume(ctx, 1)
    backup = backups.create(ctx, vol.id)
    reads = []
    real_get = db.backup_get

    def counting_get(*args, **kwargs):
        reads.append(threading.current_thread().name)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(worker_manager.db, "backup_get", counting_get)
    monkeypatch.setattr(worker_manager, "CANCEL_POLL_SECONDS", 0.05)
    with worker_manager.StatusWatch(backup.id, B.CREATING) as watch:
        # The engine asks often; the asking reads nothing.
        assert not any(watch() for _ in range(10000))
        time.sleep(0.3)
        assert not watch() and len(reads) >= 2
        assert set(reads) == {"status-watch-%s" % backup.id}
        backups.delete(ctx.elevated(), backup.id, force=True)
        deadline = time.monotonic() + 5
        while not watch() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watch() is True
        polls = len([r for r in reads if r.startswith("status-watch")])
        time.sleep(0.2)
        # Cancelled stays cancelled, and the watch stops reading.
        assert watch() is True
        assert len([r for r in reads if r.startswith("status-watch")]) == polls
    assert not watch._thread.is_alive()


def test_the_cancellation_watch_survives_a_failed_read(env, monkeypatch):
    ctx, _mgr, _tmp = env
    vol = volumes.create_volume(ctx, 1)
    backup = backups.create(ctx, vol.id)
    real_get = db.backup_get
    failures = [RuntimeError("database went away")]

    def flaky_get(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real_get(*args, **kwargs)

    monkeypatch.setattr(worker_manager.db, "backup_get", flaky_get)
    watch = worker_manager.StatusWatch(backup.id, B.CREATING)
    assert watch.check() is False                    # the failure is logged, not raised
    backups.delete(ctx.elevated(), backup.id, force=True)
    assert watch.check() is True and watch() is True


def test_restart_recovery_moves_stuck_rows(env):
    ctx, mgr, tmp = env
    vol = volumes.create_volume(ctx, 1)
    stuck = backups.create(ctx, vol.id)      # cast never consumed: as if the worker died
    worker_server.recover(mgr.host, mgr)
    row = backups.get(ctx, stuck.id)
    assert row.status == B.ERROR
    assert row.fail_reason == worker_server.RESTART_REASON
    assert db.volume_get(ctx, vol.id).status == V.AVAILABLE


@pytest.mark.parametrize("offload", [True, False])
def test_restart_recovery_resumes_deletes_offloaded_or_before_serving(env, offload):
    ctx, mgr, tmp = env
    vol = _sparse_volume(ctx, random.Random(2))
    backup = backups.create(ctx, vol.id)
    mgr._create_backup(backup.id)
    backups.delete(ctx, backup.id)          # cast never consumed: the worker died
    submitted = []
    restarted = worker_manager.BackupManager(mgr.host,
                                             lambda fn, *args, claim=None: submitted.append(args))
    CONF.set_override("backup_service_inithost_offload", offload)
    try:
        worker_server.recover(mgr.host, restarted)
    finally:
        CONF.clear_override("backup_service_inithost_offload")
    if offload:                             # handed to the job pool
        assert [args[0] for args in submitted] == [backup.id]
        assert backups.get(ctx, backup.id).status == B.DELETING
    else:                                   # done before recover() returned
        assert submitted == []
        with pytest.raises(exception.BackupNotFound):
            backups.get(ctx, backup.id)


def test_export_and_import_record_round_trip(env):
    ctx, mgr, tmp = env
    admin = ctx.elevated()
    vol = _sparse_volume(ctx, random.Random(5))
    backup = backups.create(ctx, vol.id)
    mgr._create_backup(backup.id)
    image = _image(vol.provider_location)
    record = backups.export_record(admin, backup.id)
    assert record["backup_service"].startswith("cinder.backup.drivers.")
    with pytest.raises(exception.InvalidBackup, match="already exists"):
        backups.import_record(admin, record["backup_service"], record["backup_url"])
    # Lose the row (as a database loss would), then bring it back.
    db.backup_cas_status(admin, backup.id, B.DELETING, [B.AVAILABLE])
    db.backup_cas_status(admin, backup.id, B.DELETED, [B.DELETING])
    imported = backups.import_record(admin, record["backup_service"], record["backup_url"])
    assert imported.id == backup.id and imported.status == B.CREATING
    mgr._import_record(backup.id)
    assert backups.get(admin, backup.id).status == B.AVAILABLE
    result = backups.restore(admin, backup.id)
    mgr._restore_backup(backup.id, result["volume_id"], True)
    target = db.volume_get(admin, result["volume_id"])
    assert _image(target.provider_location) == image


def test_metadata_files_use_cinder_format(env):
    ctx, mgr, tmp = env
    CONF.set_override("backup_format_version", "1.0.0")
    try:
        mgr.params = storage.engine_params(CONF)     # (read once, at start-up)
        _check_cinder_format_files(ctx, mgr)
    finally:
        CONF.clear_override("backup_format_version")


def _check_cinder_format_files(ctx, mgr):
    vol = _sparse_volume(ctx, random.Random(9))
    backup = backups.create(ctx, vol.id, name="fmt")
    mgr._create_backup(backup.id)
    row = backups.get(ctx, backup.id)
    base = os.path.join(CONF.backup_posix_path, row.container, row.service_metadata)
    with open(base + "_metadata") as f:
        meta = json.load(f)
    with open(base + "_sha256file") as f:
        sha = json.load(f)
    assert meta["version"] == sha["version"] == "1.0.0"
    assert meta["backup_id"] == backup.id and meta["backup_name"] == "fmt"
    assert sha["chunk_size"] == 4096
    assert len(sha["sha256s"]) == os.path.getsize(vol.provider_location) // 4096


def test_notifications_sequence_and_progress(env):
    """Listen on the in-process transport and check what a backup announces."""
    import oslo_messaging as messaging

    from backupsvc import notifications, rpc

    ctx, mgr, tmp = env
    CONF.set_override("driver", ["messagingv2"], group="oslo_messaging_notifications")
    CONF.set_override("backup_object_number_per_notification", 1)
    notifications._notifiers.clear()
    events = []

    class Endpoint:
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            events.append((event_type, payload))

        def error(self, ctxt, publisher_id, event_type, payload, metadata):
            events.append((event_type, payload))

    rpc.init()
    listener = messaging.get_notification_listener(
        rpc._NOTIFICATION_TRANSPORT, [messaging.Target(topic="notifications")],
        [Endpoint()], executor="threading")
    listener.start()
    try:
        vol = _sparse_volume(ctx, random.Random(11))
        backup = backups.create(ctx, vol.id)
        mgr._create_backup(backup.id)
        result = backups.restore(ctx, backup.id)
        mgr._restore_backup(backup.id, result["volume_id"], True)
        backups.delete(ctx, backup.id)
        mgr._delete_backup(backup.id)
        deadline = time.time() + 10
        while time.time() < deadline and not any(e == "backup.delete.end" for e, _ in events):
            time.sleep(0.05)
    finally:
        listener.stop()
        listener.wait()
        CONF.clear_override("driver", group="oslo_messaging_notifications")
        CONF.clear_override("backup_object_number_per_notification")
        notifications._notifiers.clear()
    names = [e for e, _ in events]
    lifecycle = [n for n in names if n != "backup.createprogress"]
    assert lifecycle == ["backup.create.start", "backup.create.end", "backup.restore.start",
                         "backup.restore.end", "backup.delete.start", "backup.delete.end"]
    percents = [p["backup_percent"] for e, p in events if e == "backup.createprogress"]
    assert len(percents) >= 3 and percents == sorted(percents) and percents[-1] == 100
    assert 0 < percents[0] < 100
    start, end = dict(events)["backup.create.start"], dict(events)["backup.create.end"]
    # The start notification tells where the job runs and writes.
    assert start["host"] == mgr.host and start["service_metadata"]
    assert start["service_metadata"] == end["service_metadata"]
    assert end["backup_id"] == backup.id and end["status"] == "available"
    assert end["tenant_id"] == ctx.project_id and end["size"] == 1


def test_reset_to_error_cancels_a_restore(env):
    ctx, mgr, tmp = env
    admin = ctx.elevated()
    vol = _sparse_volume(ctx, random.Random(13))
    backup = backups.create(ctx, vol.id)
    mgr._create_backup(backup.id)
    result = backups.restore(ctx, backup.id)
    assert backups.get(ctx, backup.id).status == B.RESTORING
    backups.reset_status(admin, backup.id, "error")
    mgr._restore_backup(backup.id, result["volume_id"], True)
    assert backups.get(ctx, backup.id).status == B.AVAILABLE
    assert db.volume_get(ctx, result["volume_id"]).status == V.ERROR


def test_backup_of_a_snapshot(env):
    ctx, mgr, tmp = env
    rng = random.Random(17)
    vol = _sparse_volume(ctx, rng)
    full = backups.create(ctx, vol.id)
    mgr._create_backup(full.id)
    snap = volumes.create_snapshot(ctx, vol.id, name="s1")
    at_snapshot = _image(vol.provider_location)
    # The volume moves on after the snapshot; the backup must not see it.
    _write_random(vol.provider_location, rng, [(8192, 4096)])
    later = backups.create(ctx, vol.id)
    mgr._create_backup(later.id)

    inc = backups.create(ctx, vol.id, incremental=True, snapshot_id=snap.id)
    assert db.snapshot_get(ctx, snap.id).status == "backing-up"
    assert db.volume_get(ctx, vol.id).status == V.AVAILABLE     # stays usable
    mgr._create_backup(inc.id)
    inc = backups.get(ctx, inc.id)
    assert inc.status == B.AVAILABLE and inc.snapshot_id == snap.id
    assert inc.parent_id == full.id                # latest backup older than the snapshot
    assert inc.data_timestamp == db.snapshot_get(ctx, snap.id).created_at
    assert db.snapshot_get(ctx, snap.id).status == "available"
    result = backups.restore(ctx, inc.id)
    mgr._restore_backup(inc.id, result["volume_id"], True)
    assert _image(db.volume_get(ctx, result["volume_id"]).provider_location) == at_snapshot


def test_a_whole_chain_survives_a_database_loss(env):
    """Export every record of a chain, lose the rows, import them, restore."""
    ctx, mgr, tmp = env
    admin = ctx.elevated()
    rng = random.Random(19)
    vol = _sparse_volume(ctx, rng)
    chain = []
    for incremental in (False, True, True):
        _write_random(vol.provider_location, rng, [(rng.randrange(0, 900) * MiB, 4096)])
        backup = backups.create(ctx, vol.id, incremental=incremental)
        mgr._create_backup(backup.id)
        chain.append(backup.id)
    image = _image(vol.provider_location)
    records = [backups.export_record(admin, backup_id) for backup_id in chain]
    for backup_id in reversed(chain):          # the rows are gone; the objects stay
        db.backup_cas_status(admin, backup_id, B.DELETING, [B.AVAILABLE])
        db.backup_cas_status(admin, backup_id, B.DELETED, [B.DELETING])
    for record in records:
        imported = backups.import_record(admin, record["backup_service"], record["backup_url"])
        mgr._import_record(imported.id)
        assert backups.get(admin, imported.id).status == B.AVAILABLE
    assert backups.get(admin, chain[-1]).parent_id == chain[1]
    result = backups.restore(admin, chain[-1])
    mgr._restore_backup(chain[-1], result["volume_id"], True)
    assert _image(db.volume_get(admin, result["volume_id"]).provider_location) == image
