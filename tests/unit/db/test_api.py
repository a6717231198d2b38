import datetime
import threading
import uuid

import pytest

from backupsvc import exception
from backupsvc.states import BackupStatus as B
from backupsvc.states import VolumeStatus as V


def _backup(db, ctx, **values):
    values.setdefault("volume_id", str(uuid.uuid4()))
    values.setdefault("project_id", ctx.project_id)
    values.setdefault("user_id", ctx.user_id)
    values.setdefault("size", 1)
    return db.backup_create(ctx, values)


def test_create_and_get_scoped_to_project(sqlite_db, project_ctx, admin_ctx):
    row = _backup(sqlite_db, project_ctx, display_name="b1")
    assert row.status == B.CREATING
    assert sqlite_db.backup_get(project_ctx, row.id).display_name == "b1"
    other = type(project_ctx)(user_id="x", project_id="someone-else", roles=["member"])
    with pytest.raises(exception.BackupNotFound):
        sqlite_db.backup_get(other, row.id)
    assert sqlite_db.backup_get(admin_ctx, row.id).id == row.id


def test_cas_moves_only_from_expected_status(sqlite_db, project_ctx):
    row = _backup(sqlite_db, project_ctx)
    assert sqlite_db.backup_cas_status(project_ctx, row.id, B.AVAILABLE, [B.CREATING])
    # A second racer expecting 'creating' loses.
    assert not sqlite_db.backup_cas_status(project_ctx, row.id, B.ERROR, [B.CREATING])
    assert sqlite_db.backup_get(project_ctx, row.id).status == B.AVAILABLE


def test_claim_records_the_job_only_while_creating(sqlite_db, project_ctx):
    row = _backup(sqlite_db, project_ctx)
    where = {"container": "c", "service_metadata": "p", "host": "w1", "service": "s"}
    with sqlite_db.writing(project_ctx):
        held = sqlite_db.backup_get(project_ctx, row.id)
        assert sqlite_db.backup_claim(project_ctx, held, **where)
        # The row the job holds shows what was recorded.
        assert (held.container, held.service_metadata, held.host) == ("c", "p", "w1")
    assert sqlite_db.backup_get(project_ctx, row.id).host == "w1"
    # Cancelled (a force delete) before the job claimed it: nothing is recorded.
    other = _backup(sqlite_db, project_ctx)
    assert sqlite_db.backup_cas_status(project_ctx, other.id, B.DELETING, [B.CREATING],
                                       admin_override=True)
    assert not sqlite_db.backup_claim(project_ctx, other, **where)
    assert other.host is None
    after = sqlite_db.backup_get(project_ctx, other.id)
    assert after.status == B.DELETING and after.host is None and after.container is None


def test_cas_refuses_transitions_the_table_forbids(sqlite_db, project_ctx):
    row = _backup(sqlite_db, project_ctx)
    with pytest.raises(ValueError):
        sqlite_db.backup_cas_status(project_ctx, row.id, B.RESTORING, [B.CREATING])


def test_concurrent_cas_has_one_winner(sqlite_db, project_ctx):
    row = _backup(sqlite_db, project_ctx)
    sqlite_db.backup_cas_status(project_ctx, row.id, B.AVAILABLE, [B.CREATING])
    wins = []

    def racer():
        wins.append(sqlite_db.backup_cas_status(project_ctx, row.id, B.RESTORING,
                                                [B.AVAILABLE]))

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_deleted_backup_and_metadata_are_soft_deleted(sqlite_db, project_ctx):
    row = sqlite_db.backup_create(project_ctx, {"volume_id": str(uuid.uuid4()),
                                                "project_id": project_ctx.project_id},
                                  metadata={"k": "v"})
    assert sqlite_db.backup_get(project_ctx, row.id).metadata_dict == {"k": "v"}
    sqlite_db.backup_cas_status(project_ctx, row.id, B.AVAILABLE, [B.CREATING])
    sqlite_db.backup_cas_status(project_ctx, row.id, B.DELETING, [B.AVAILABLE])
    assert sqlite_db.backup_cas_status(project_ctx, row.id, B.DELETED, [B.DELETING])
    with pytest.raises(exception.BackupNotFound):
        sqlite_db.backup_get(project_ctx, row.id)
    gone = sqlite_db.backup_get(project_ctx, row.id, read_deleted=True)
    assert gone.deleted and gone.status == B.DELETED and gone.metadata_dict == {}


def test_metadata_update_replaces(sqlite_db, project_ctx):
    row = sqlite_db.backup_create(project_ctx, {"volume_id": str(uuid.uuid4()),
                                                "project_id": project_ctx.project_id},
                                  metadata={"a": "1", "b": "2"})
    row = sqlite_db.backup_update(project_ctx, row.id, {}, metadata={"b": "3", "c": "4"})
    assert row.metadata_dict == {"b": "3", "c": "4"}


def test_dependents_counter_never_negative(sqlite_db, project_ctx):
    row = _backup(sqlite_db, project_ctx)
    sqlite_db.backup_adjust_dependents(project_ctx, row.id, -1)
    assert sqlite_db.backup_get(project_ctx, row.id).num_dependent_backups == 0
    sqlite_db.backup_adjust_dependents(project_ctx, row.id, 2)
    sqlite_db.backup_adjust_dependents(project_ctx, row.id, -1)
    assert sqlite_db.backup_get(project_ctx, row.id).num_dependent_backups == 1


def test_latest_available_parent_by_data_timestamp(sqlite_db, project_ctx):
    volume_id = str(uuid.uuid4())
    t0 = datetime.datetime(2026, 1, 1)
    older = _backup(sqlite_db, project_ctx, volume_id=volume_id, data_timestamp=t0,
                    status=B.AVAILABLE)
    newer = _backup(sqlite_db, project_ctx, volume_id=volume_id,
                    data_timestamp=t0 + datetime.timedelta(hours=2), status=B.AVAILABLE)
    _backup(sqlite_db, project_ctx, volume_id=volume_id,
            data_timestamp=t0 + datetime.timedelta(hours=3), status=B.ERROR)
    pick = sqlite_db.backup_latest_available(project_ctx, volume_id, project_ctx.project_id)
    assert pick.id == newer.id
    before = sqlite_db.backup_latest_available(project_ctx, volume_id, project_ctx.project_id,
                                               before=t0 + datetime.timedelta(hours=1))
    assert before.id == older.id
    assert sqlite_db.backup_latest_available(project_ctx, str(uuid.uuid4()),
                                             project_ctx.project_id) is None


def test_list_filters_sorting_and_marker(sqlite_db, project_ctx):
    t0 = datetime.datetime(2026, 1, 1)
    ids = [_backup(sqlite_db, project_ctx, display_name="n%d" % i,
                   created_at=t0 + datetime.timedelta(minutes=i)).id for i in range(5)]
    listed = [b.id for b in sqlite_db.backup_get_all(project_ctx)]
    assert listed == list(reversed(ids))
    page = sqlite_db.backup_get_all(project_ctx, limit=2, marker=listed[1])
    assert [b.id for b in page] == listed[2:4]
    assert [b.display_name for b in sqlite_db.backup_get_all(
        project_ctx, filters={"display_name": "n3"})] == ["n3"]
    assert len(sqlite_db.backup_get_all(project_ctx, filters={"display_name~": "n"})) == 5
    assert sqlite_db.backup_count(project_ctx) == 5
    with pytest.raises(exception.BackupNotFound):
        sqlite_db.backup_get_all(project_ctx, marker=str(uuid.uuid4()))


def test_volume_cas_and_destroy(sqlite_db, project_ctx):
    vol = sqlite_db.volume_create(project_ctx, {"project_id": project_ctx.project_id,
                                                "size": 1}, metadata={"m": "1"})
    assert vol.status == V.CREATING and vol.metadata_dict == {"m": "1"}
    assert sqlite_db.volume_cas_status(project_ctx, vol.id, V.AVAILABLE, [V.CREATING])
    assert not sqlite_db.volume_cas_status(project_ctx, vol.id, V.BACKING_UP, [V.IN_USE])
    assert sqlite_db.volume_cas_status(project_ctx, vol.id, V.DELETING, [V.AVAILABLE])
    assert sqlite_db.volume_destroy(project_ctx, vol.id)
    with pytest.raises(exception.VolumeNotFound):
        sqlite_db.volume_get(project_ctx, vol.id)


def test_service_heartbeat_and_liveness(sqlite_db, admin_ctx):
    host = "host-" + uuid.uuid4().hex[:6]
    sqlite_db.service_heartbeat(admin_ctx, host, "backupsvc-worker", "t", "nova")
    sqlite_db.service_heartbeat(admin_ctx, host, "backupsvc-worker", "t", "nova")
    rows = [s for s in sqlite_db.service_get_all(admin_ctx) if s.host == host]
    assert len(rows) == 1 and rows[0].report_count == 2
    assert sqlite_db.service_is_up(rows[0], 60)
    sqlite_db.service_mark_down(admin_ctx, host, "backupsvc-worker")
    assert host not in [s.host for s in sqlite_db.service_get_all_up(
        admin_ctx, "backupsvc-worker", 60)]


def test_usage_counts_live_backups(sqlite_db, project_ctx):
    _backup(sqlite_db, project_ctx, size=3)
    _backup(sqlite_db, project_ctx, size=4)
    assert sqlite_db.backup_usage(project_ctx, project_ctx.project_id) == (2, 7)


def test_quota_is_exact_under_concurrent_creates(sqlite_db, project_ctx):
    limits = {"backups": 3, "backup_gigabytes": 1000}
    outcomes = []

    def create():
        try:
            _backup_with_quota(sqlite_db, project_ctx, limits, size=1)
            outcomes.append("ok")
        except exception.BackupLimitExceeded:
            outcomes.append("over")

    threads = [threading.Thread(target=create) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 3 and outcomes.count("over") == 7
    assert sqlite_db.backup_count(project_ctx) == 3
    assert sqlite_db.quota_usage(project_ctx, project_ctx.project_id) == {
        "backups": 3, "backup_gigabytes": 3}


def test_quota_released_on_delete_and_gigabytes_enforced(sqlite_db, project_ctx):
    limits = {"backups": 10, "backup_gigabytes": 5}
    first = _backup_with_quota(sqlite_db, project_ctx, limits, size=4)
    with pytest.raises(exception.BackupGigabytesExceeded, match="consumed"):
        _backup_with_quota(sqlite_db, project_ctx, limits, size=2)
    sqlite_db.backup_cas_status(project_ctx, first.id, B.ERROR, [B.CREATING])
    sqlite_db.backup_cas_status(project_ctx, first.id, B.DELETING, [B.ERROR])
    sqlite_db.backup_cas_status(project_ctx, first.id, B.DELETED, [B.DELETING])
    assert sqlite_db.quota_usage(project_ctx, project_ctx.project_id)["backup_gigabytes"] == 0
    _backup_with_quota(sqlite_db, project_ctx, limits, size=5)


def _backup_with_quota(db, ctx, limits, size):
    return db.backup_create(ctx, {"volume_id": str(uuid.uuid4()), "project_id": ctx.project_id,
                                  "size": size}, quota_limits=limits)


def test_a_refused_gigabytes_quota_takes_no_backup_either(sqlite_db, project_ctx):
    """Both counters move in one statement: when one may not, neither does."""
    limits = {"backups": 10, "backup_gigabytes": 5}
    _backup_with_quota(sqlite_db, project_ctx, limits, size=4)
    with pytest.raises(exception.BackupGigabytesExceeded,
                       match="quota is 5G and 4G has been consumed"):
        _backup_with_quota(sqlite_db, project_ctx, limits, size=2)
    assert sqlite_db.quota_usage(project_ctx, project_ctx.project_id) == {
        "backups": 1, "backup_gigabytes": 4}
    assert sqlite_db.backup_count(project_ctx) == 1


def test_quota_consume_without_counters_says_so_and_takes_nothing(sqlite_db, project_ctx):
    with pytest.raises(sqlite_db.CountersMissing):
        with sqlite_db.writing(project_ctx):
            sqlite_db.quota_consume(project_ctx, project_ctx.project_id, 1,
                                    {"backups": -1, "backup_gigabytes": -1})
    assert sqlite_db.quota_usage(project_ctx, project_ctx.project_id) == {}


def test_created_row_is_the_stored_row(sqlite_db, project_ctx):
    row = _backup(sqlite_db, project_ctx, display_name="b", size=2)
    stored = sqlite_db.backup_get(project_ctx, row.id)
    for column in ("id", "status", "display_name", "size", "num_dependent_backups",
                   "deleted", "created_at", "updated_at", "project_id", "volume_id"):
        assert getattr(row, column) == getattr(stored, column), column
    assert row.metadata_dict == {} == stored.metadata_dict


def test_job_rows_read_backup_volume_snapshot_and_parent_together(sqlite_db, project_ctx):
    vol = sqlite_db.volume_create(project_ctx, {"project_id": project_ctx.project_id,
                                                "size": 1}, metadata={"m": "1"})
    snap = sqlite_db.snapshot_create(project_ctx, {"project_id": project_ctx.project_id,
                                                   "volume_id": vol.id, "volume_size": 1})
    parent = _backup(sqlite_db, project_ctx, volume_id=vol.id, container="pc")
    child = _backup(sqlite_db, project_ctx, volume_id=vol.id, parent_id=parent.id,
                    snapshot_id=snap.id)
    backup, volume, snapshot, found = sqlite_db.backup_job_rows(project_ctx, child.id)
    assert (backup.id, volume.id, snapshot.id, found.id) == (child.id, vol.id, snap.id,
                                                            parent.id)
    assert volume.metadata_dict == {"m": "1"} and found.container == "pc"
    with pytest.raises(Exception, match="lazy='raise'"):
        _ = backup.metadata_dict    # the job never reads it; the read did not load it

    # A parent deleted meanwhile is None (the job then fails, saying so).
    sqlite_db.backup_cas_status(project_ctx, parent.id, B.ERROR, [B.CREATING])
    sqlite_db.backup_cas_status(project_ctx, parent.id, B.DELETING, [B.ERROR])
    sqlite_db.backup_cas_status(project_ctx, parent.id, B.DELETED, [B.DELETING])
    assert sqlite_db.backup_job_rows(project_ctx, child.id)[3] is None

    alone = _backup(sqlite_db, project_ctx, volume_id=vol.id)
    _, _, no_snapshot, no_parent = sqlite_db.backup_job_rows(project_ctx, alone.id)
    assert no_snapshot is None and no_parent is None
    orphan = _backup(sqlite_db, project_ctx)      # its volume does not exist
    with pytest.raises(exception.VolumeNotFound):
        sqlite_db.backup_job_rows(project_ctx, orphan.id)
    with pytest.raises(exception.BackupNotFound):
        sqlite_db.backup_job_rows(project_ctx, str(uuid.uuid4()))
