"""Backup use cases: what the API asks for, checked and recorded, then cast.

Each use case authorizes, validates, changes statuses with compare-and-swap,
commits, and only then casts to a worker. A refused request leaves no row and
no status change behind.
"""

import base64
import binascii
import datetime
import functools
import json

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import timeutils, uuidutils

from backupsvc import exception, notifications, placement, policy, quota
from backupsvc.conf.backup import DRIVER_CLASS_PATHS, driver_short_name
from backupsvc.db import api as db
from backupsvc.states import BackupStatus as B
from backupsvc.states import SnapshotStatus as S
from backupsvc.states import VolumeStatus as V
from backupsvc.worker import rpcapi

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

UNSET = object()
FIXED_KEY_ID = "00000000-0000-0000-0000-000000000000"
IMPORT_VOLUME_ID = "00000000-0000-0000-0000-000000000000"

# API filter and sort names -> columns.
_COLUMN_FOR = {"name": "display_name", "description": "display_description"}
FILTERS = ("name", "status", "volume_id")


def _rpc() -> rpcapi.BackupWorkerAPI:
    return rpcapi.BackupWorkerAPI()


def _target(row) -> dict:
    return {"project_id": row.project_id, "user_id": row.user_id}


def _column_filters(filters: dict) -> dict:
    mapped = {}
    for key, value in filters.items():
        inexact = key.endswith("~")
        base = key.rstrip("~")
        mapped[_COLUMN_FOR.get(base, base) + ("~" if inexact else "")] = value
    return mapped


def column_for(sort_key: str) -> str:
    return _COLUMN_FOR.get(sort_key, sort_key)


# ------------------------------------------------------------------ reading

def get(ctx, backup_id: str):
    backup = db.backup_get(ctx, backup_id)
    policy.authorize(ctx, "backup:get", _target(backup))
    return backup


def get_all(ctx, *, filters: dict, marker=None, limit=None, offset=None,
            sort_keys: list[str], sort_dirs: list[str], all_tenants: bool = False):
    policy.authorize(ctx, "backup:get_all")
    return db.backup_get_all(
        ctx, filters=_column_filters(filters), marker=marker, limit=limit, offset=offset,
        sort_keys=[column_for(k) for k in sort_keys], sort_dirs=sort_dirs,
        project_only=not (all_tenants and ctx.is_admin))


def count(ctx, *, filters: dict, all_tenants: bool = False) -> int:
    policy.authorize(ctx, "backup:get_all")
    return db.backup_count(ctx, filters=_column_filters(filters),
                           project_only=not (all_tenants and ctx.is_admin))


# ------------------------------------------------------------------- create

def _check_source(ctx, volume, snapshot_id, force):
    """Return (snapshot or None, data_timestamp) or raise a 400."""
    if snapshot_id:
        snapshot = db.snapshot_get(ctx, snapshot_id)
        if snapshot.volume_id != volume.id:
            raise exception.InvalidVolume(
                reason="Volume %s does not match with snapshot.volume_id %s."
                % (volume.id, snapshot.volume_id))
        if snapshot.status != S.AVAILABLE:
            raise exception.InvalidSnapshot(
                reason='Snapshot to be backed up must be available, but the current '
                       'status is "%s".' % snapshot.status)
        return snapshot, snapshot.created_at
    if volume.status not in (V.AVAILABLE, V.IN_USE):
        raise exception.InvalidVolume(
            reason='Volume to be backed up must be available or in-use, but the current '
                   'status is "%s".' % volume.status)
    if volume.status == V.IN_USE and not force:
        raise exception.InvalidVolume(
            reason="Backing up an in-use volume must use the force flag.")
    return None, None


def _choose_parent(ctx, volume, snapshot):
    before = snapshot.created_at if snapshot is not None else None
    parent = db.backup_latest_available(ctx, volume.id, ctx.project_id, before=before)
    if parent is None:
        raise exception.InvalidBackup(
            reason="No backups available to do an incremental backup. "
                   "Take a full backup of the volume first.")
    return parent


def create(ctx, volume_id: str, *, name=None, description=None, container=None,
           incremental=False, force=False, snapshot_id=None, metadata=None,
           availability_zone=None):
    request = {"name": name, "description": description, "container": container,
               "incremental": incremental, "force": force, "snapshot_id": snapshot_id,
               "metadata": metadata, "availability_zone": availability_zone}
    try:
        backup, give_back = _check_and_insert(ctx, volume_id, **request)
    except db.CountersMissing:
        # Counters are created each in a transaction of its own (a concurrent
        # first backup may create them too), so not inside the one that failed.
        db.seed_usage(ctx, ctx.project_id)
        backup, give_back = _check_and_insert(ctx, volume_id, **request)
    _cast_or_fail(ctx, backup, lambda: _rpc().create_backup(ctx, backup.host, backup.id),
                  give_back)
    return backup


def _check_and_insert(ctx, volume_id: str, *, name, description, container, incremental,
                      force, snapshot_id, metadata, availability_zone):
    """Check the request, take the quota, move the source to backing-up and insert
    the row: one transaction (one round of the database's fixed costs), all or none.
    Returns the row and what gives the source back if the job cannot be cast.

    Raises db.CountersMissing, leaving nothing changed, if the project has no
    quota counters yet.
    """
    with db.writing(ctx):
        volume = db.volume_get(ctx, volume_id, with_metadata=False)
        policy.authorize(ctx, "backup:create", _target(volume))
        snapshot, snapshot_time = _check_source(ctx, volume, snapshot_id, force)
        source_status = volume.status
        # The authoritative check (safe under concurrent creates); a refusal rolls
        # the transaction back, so nothing is taken.
        db.quota_consume(ctx, ctx.project_id, volume.size or 0, quota.backup_limits())
        parent = _choose_parent(ctx, volume, snapshot) if incremental else None
        # POSIX data lives on one host: an incremental must run where its parent is
        # (only there with backup_use_same_host, which also sends a full backup
        # to the volume's host when a worker is up there).
        same_host = CONF.backup_use_same_host
        if parent is not None:
            host = placement.choose_worker(parent.host, ctx, required=same_host)
        else:
            host = placement.choose_worker(volume.host if same_host else None, ctx)

        if snapshot is not None:
            if not db.snapshot_cas_status(ctx, snapshot.id, S.BACKING_UP, [S.AVAILABLE]):
                raise exception.InvalidSnapshot(
                    reason="Snapshot %s changed status while the backup was being "
                           "requested; retry." % snapshot.id)
        elif not db.volume_cas_status(ctx, volume.id, V.BACKING_UP, [volume.status],
                                      previous_status=volume.status):
            raise exception.InvalidVolume(
                reason="Volume %s changed status while the backup was being requested; "
                       "retry." % volume.id)
        # Taken now: the session may refresh the loaded volume after the update.
        give_back = functools.partial(_return_source, ctx, volume.id, source_status,
                                      snapshot.id if snapshot is not None else None)
        now = timeutils.utcnow()
        backup = db.backup_create(ctx, {
            "user_id": ctx.user_id, "project_id": ctx.project_id,
            "volume_id": volume.id, "display_name": name,
            "display_description": description, "container": container,
            "parent_id": parent.id if parent is not None else None,
            "size": volume.size, "snapshot_id": snapshot_id, "host": host,
            "availability_zone": availability_zone or volume.availability_zone
            or CONF.storage_availability_zone,
            "status": B.CREATING, "created_at": now,
            "data_timestamp": snapshot_time or now,
        }, metadata=metadata or None)
    return backup, give_back


def _return_source(ctx, volume_id: str, volume_status: str, snapshot_id) -> None:
    if snapshot_id is not None:
        db.snapshot_cas_status(ctx, snapshot_id, S.AVAILABLE, [S.BACKING_UP])
    else:
        db.volume_cas_status(ctx, volume_id, volume_status, [V.BACKING_UP],
                             admin_override=True)


def _cast_or_fail(ctx, backup, cast, undo) -> None:
    """Cast; if the broker refuses, record the failure instead of a stuck row."""
    try:
        cast()
    except Exception as exc:
        LOG.exception("Could not cast a job for backup %s", backup.id)
        db.backup_cas_status(ctx, backup.id, B.ERROR, [B.CREATING, B.DELETING, B.RESTORING],
                             fail_reason=("Could not reach a backup worker: %s" % exc)[:255])
        undo()
        raise exception.ServiceUnavailable(
            "Could not reach a backup worker over the message bus; the request was "
            "not carried out.") from exc


# ------------------------------------------------------------ update/delete

def update(ctx, backup_id: str, *, name=UNSET, description=UNSET, metadata=None):
    backup = db.backup_get(ctx, backup_id)
    policy.authorize(ctx, "backup:update", _target(backup))
    values = {}
    if name is not UNSET:
        values["display_name"] = name
    if description is not UNSET:
        values["display_description"] = description
    return db.backup_update(ctx, backup_id, values, metadata=metadata)


def delete(ctx, backup_id: str, force: bool = False) -> None:
    backup = db.backup_get(ctx, backup_id)
    if force:
        policy.authorize(ctx, "volume_extension:backup_admin_actions:force_delete",
                         _target(backup))
    else:
        policy.authorize(ctx, "backup:delete", _target(backup))
        if backup.status not in (B.AVAILABLE, B.ERROR):
            raise exception.InvalidBackup(reason="Backup status must be available or error")
    if db.backup_has_children(ctx, backup.id):
        raise exception.InvalidBackup(reason="Incremental backups exist for this backup.")
    host = placement.worker_for_backup(backup)
    expected = [B.AVAILABLE, B.ERROR]
    if force:
        # Forcing a creating or restoring backup is how those jobs are cancelled.
        expected += [B.CREATING, B.RESTORING, B.ERROR_DELETING, B.DELETING]
    if not db.backup_cas_status(ctx, backup.id, B.DELETING, expected,
                                admin_override=True, host=host):
        current = db.backup_get(ctx, backup.id).status
        raise exception.InvalidBackup(
            reason="Backup status must be available or error, not %s" % current)
    _cast_or_fail(ctx, backup, lambda: _rpc().delete_backup(ctx, host, backup.id),
                  lambda: None)


# ------------------------------------------------------------------ restore

def restore(ctx, backup_id: str, *, volume_id=None, name=None) -> dict:
    backup = db.backup_get(ctx, backup_id)
    policy.authorize(ctx, "backup:restore", _target(backup))
    if backup.status != B.AVAILABLE:
        raise exception.InvalidBackup(reason="Backup status must be available")
    if backup.size is None:
        raise exception.InvalidBackup(reason="Backup has no size; it cannot be restored")
    host = placement.worker_for_backup(backup)

    from backupsvc import volumes  # volumes imports this module for create-from-backup

    if volume_id is None:
        volume = volumes.create_restore_target(
            ctx, backup.size, name=name or "restore_backup_%s" % backup.id,
            description="auto-created_from_restore_from_backup")
        is_new = True
    else:
        volume = db.volume_get(ctx, volume_id)
        policy.authorize(ctx, "backup:restore", _target(volume))
        if volume.status != V.AVAILABLE:
            raise exception.InvalidVolume(reason="Volume to be restored to must be available")
        if backup.size > (volume.size or 0):
            raise exception.InvalidVolume(
                reason="volume size %d is too small to restore backup of size %d."
                % (volume.size or 0, backup.size))
        is_new = False
    start_restore(ctx, backup, volume, is_new, host)
    return {"backup_id": backup.id, "volume_id": volume.id,
            "volume_name": volume.display_name}


def start_restore(ctx, backup, volume, is_new: bool, host: str) -> None:
    """CAS backup and volume into their restoring states, then cast."""
    volume_from = V.CREATING if is_new else V.AVAILABLE

    def undo_volume():
        if is_new:
            from backupsvc import volumes
            volumes.discard_restore_target(ctx, volume.id)

    try:
        with db.writing(ctx):       # both or neither
            if not db.backup_cas_status(ctx, backup.id, B.RESTORING, [B.AVAILABLE],
                                        restore_volume_id=volume.id, host=host):
                raise exception.InvalidBackup(reason="Backup status must be available")
            if not db.volume_cas_status(ctx, volume.id, V.RESTORING_BACKUP, [volume_from]):
                raise exception.InvalidVolume(
                    reason="Volume to be restored to must be available")
    except (exception.InvalidBackup, exception.InvalidVolume):
        undo_volume()
        raise

    def undo():
        db.backup_cas_status(ctx, backup.id, B.AVAILABLE, [B.ERROR], admin_override=True)
        db.volume_cas_status(ctx, volume.id, V.AVAILABLE if not is_new else V.ERROR,
                             [V.RESTORING_BACKUP], admin_override=True)

    _cast_or_fail(ctx, backup,
                  lambda: _rpc().restore_backup(ctx, host, backup.id, volume.id, is_new),
                  undo)


# ------------------------------------------------------------ admin actions

def reset_status(ctx, backup_id: str, status: str) -> None:
    backup = db.backup_get(ctx, backup_id)
    policy.authorize(ctx, "volume_extension:backup_admin_actions:reset_status",
                     _target(backup))
    status = (status or "").lower()
    if status not in B.RESETTABLE:
        raise exception.Invalid(
            "Backup status: %s is invalid, valid statuses are: %s."
            % (status, ", ".join(B.RESETTABLE)))
    # From any state (Cinder's rule). Moving a restoring backup elsewhere
    # cancels the restore: the worker sees the status change.
    current = [s for s in B.ALL if s != B.DELETED]
    notifications.notify(ctx, backup, "reset_status.start")
    if not db.backup_cas_status(ctx, backup.id, status, current, admin_override=True):
        raise exception.BackupNotFound(backup_id=backup_id)
    notifications.notify(ctx, db.backup_get(ctx, backup.id), "reset_status.end")


def _isoformat(value):
    return value.isoformat() if isinstance(value, datetime.datetime) else value


_RECORD_FIELDS = (
    "id", "user_id", "project_id", "volume_id", "host", "availability_zone", "container",
    "parent_id", "status", "fail_reason", "size", "display_name", "display_description",
    "service_metadata", "service", "object_count", "temp_volume_id", "temp_snapshot_id",
    "num_dependent_backups", "snapshot_id", "data_timestamp", "restore_volume_id",
    "encryption_key_id", "created_at", "updated_at", "deleted_at", "deleted")


def export_record(ctx, backup_id: str) -> dict:
    backup = db.backup_get(ctx, backup_id)
    policy.authorize(ctx, "backup:export-import", _target(backup))
    if backup.status != B.AVAILABLE:
        raise exception.InvalidBackup(
            reason="Backup status must be available and not %s." % backup.status)
    record = {field: _isoformat(getattr(backup, field)) for field in _RECORD_FIELDS}
    record["metadata"] = backup.metadata_dict
    record["driver_info"] = {}
    url = base64.b64encode(json.dumps(record).encode("utf-8")).decode("ascii")
    configured = DRIVER_CLASS_PATHS[driver_short_name(CONF.backup_driver)]
    return {"backup_service": backup.service or configured,
            "backup_url": url}


def _decode_record(backup_url: str) -> dict:
    try:
        raw = base64.b64decode(backup_url.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise exception.Invalid("Can't decode backup record.") from exc
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise exception.Invalid("Can't parse backup record.") from exc
    if not isinstance(record, dict):
        raise exception.Invalid("Can't parse backup record.")
    if "id" not in record:
        raise exception.Invalid("Provided backup record is missing an id")
    if "size" not in record:
        raise exception.Invalid("Provided backup record is missing size attribute")
    if not isinstance(record["id"], str) or not uuidutils.is_uuid_like(record["id"]):
        raise exception.Invalid("Provided backup record has an invalid id %r; it must be "
                                "a UUID" % (record["id"],))
    size = record["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise exception.Invalid("Provided backup record has an invalid size %r; it must "
                                "be a non-negative integer (GiB)" % (size,))
    return record


def _parse_time(value):
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise exception.Invalid("Backup record has an invalid timestamp %r" % value) from exc
    return parsed.replace(tzinfo=None)


def import_record(ctx, backup_service: str, backup_url: str):
    policy.authorize(ctx, "backup:backup-import")
    record = _decode_record(backup_url)
    missing = [k for k in ("service_metadata", "container") if not record.get(k)]
    if missing:
        raise exception.Invalid("Provided backup record is missing %s" % ", ".join(missing))
    host = placement.choose_worker(record.get("host"))
    values = {
        "user_id": ctx.user_id, "project_id": ctx.project_id,
        "volume_id": record.get("volume_id") or IMPORT_VOLUME_ID,
        "display_name": record.get("display_name"),
        "display_description": record.get("display_description"),
        "container": record["container"], "parent_id": record.get("parent_id"),
        "size": int(record["size"]), "service_metadata": record["service_metadata"],
        "service": backup_service, "object_count": record.get("object_count"),
        "num_dependent_backups": record.get("num_dependent_backups") or 0,
        "snapshot_id": record.get("snapshot_id"),
        "data_timestamp": _parse_time(record.get("data_timestamp")),
        "encryption_key_id": record.get("encryption_key_id"),
        "availability_zone": record.get("availability_zone"),
        "created_at": _parse_time(record.get("created_at")) or timeutils.utcnow(),
        "host": host, "status": B.CREATING, "fail_reason": None,
    }
    quota.check_backup_quota(ctx, ctx.project_id, values["size"])
    backup = db.backup_import(ctx, record["id"], values,
                              metadata=record.get("metadata") or {},
                              quota_limits=quota.backup_limits())
    _cast_or_fail(ctx, backup, lambda: _rpc().import_record(ctx, host, backup.id),
                  lambda: None)
    return backup
