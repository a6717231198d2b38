"""Use cases for the volumes and snapshots the service holds.

A volume is a sparse raw file (or an adopted file / block device) handled by
a VolumeSource; its row says where the bytes are (provider_location). Files
are created and copied here, synchronously, by the API process.
"""

import json
import math
import uuid

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import timeutils

from backupsvc import exception, placement, policy
from backupsvc.db import api as db
from backupsvc.sources import base as source_base
from backupsvc.sources.file import FileVolumeSource
from backupsvc.states import SnapshotStatus as S
from backupsvc.states import VolumeStatus as V

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

GiB = 1024 ** 3
UNSET = object()
_COLUMN_FOR = {"name": "display_name", "description": "display_description"}


def get_source() -> FileVolumeSource:
    return FileVolumeSource.from_conf(CONF)


def _target(row) -> dict:
    return {"project_id": row.project_id, "user_id": row.user_id}


def _column_filters(filters: dict) -> dict:
    mapped = {}
    for key, value in filters.items():
        base = key.rstrip("~")
        mapped[_COLUMN_FOR.get(base, base) + key[len(base):]] = value
    return mapped


def _columns(sort_keys):
    return [_COLUMN_FOR.get(k, k) for k in sort_keys]


def _validate_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise exception.Invalid(
            "Invalid input received: size must be an integer (GiB) greater than 0, got %r"
            % (size,))
    return size


# ------------------------------------------------------------------ volumes

def _create_file_volume(ctx, size: int, *, name, description, metadata,
                        availability_zone, status_after: str, **extra):
    """Insert a 'creating' row, make the sparse file, then move the row on."""
    volume = db.volume_create(ctx, {
        "user_id": ctx.user_id, "project_id": ctx.project_id, "size": size,
        "display_name": name, "display_description": description,
        "availability_zone": availability_zone or CONF.storage_availability_zone,
        "host": CONF.host, "status": V.CREATING, **extra,
    }, metadata=metadata or None)
    try:
        location = get_source().create(volume.id, size * GiB)
    except (OSError, source_base.SourceError) as exc:
        LOG.exception("Could not create the file of volume %s", volume.id)
        db.volume_cas_status(ctx, volume.id, V.ERROR, [V.CREATING])
        raise exception.BackupsvcError("Could not create the volume's file: %s" % exc) from exc
    volume = db.volume_update(ctx, volume.id, {"provider_location": location})
    if status_after != V.CREATING:
        db.volume_cas_status(ctx, volume.id, status_after, [V.CREATING],
                             launched_at=timeutils.utcnow())
    return db.volume_get(ctx, volume.id, project_only=False)


def create_volume(ctx, size: int, *, name=None, description=None, metadata=None,
                  availability_zone=None, snapshot_id=None, source_volid=None,
                  backup_id=None, volume_type=None):
    policy.authorize(ctx, "volume:create")
    if snapshot_id or source_volid:
        raise exception.NotSupported(
            operation="creating a volume from a snapshot or another volume")
    if backup_id is not None:
        return _create_from_backup(ctx, size, backup_id, name=name,
                                   description=description, metadata=metadata,
                                   availability_zone=availability_zone)
    return _create_file_volume(ctx, _validate_size(size), name=name,
                               description=description, metadata=metadata,
                               availability_zone=availability_zone,
                               status_after=V.AVAILABLE)


def _create_from_backup(ctx, size, backup_id, **kwargs):
    """What `cinder backup-restore --volume-type` sends (microversion 3.47)."""
    from backupsvc import backups

    backup = backups.get(ctx, backup_id)
    policy.authorize(ctx, "backup:restore", _target(backup))
    if backup.status != "available":
        raise exception.InvalidBackup(reason="Backup status must be available")
    size = _validate_size(size if size is not None else backup.size)
    if backup.size and size < backup.size:
        raise exception.InvalidVolume(
            reason="volume size %d is too small to restore backup of size %d."
            % (size, backup.size))
    host = placement.worker_for_backup(backup)
    volume = _create_file_volume(ctx, size, status_after=V.CREATING, **kwargs)
    backups.start_restore(ctx, backup, volume, True, host)
    return db.volume_get(ctx, volume.id, project_only=False)


def create_restore_target(ctx, size: int, *, name, description):
    """A new, zeroed volume for a restore; left in 'creating' for start_restore."""
    return _create_file_volume(ctx, _validate_size(size), name=name,
                               description=description, metadata=None,
                               availability_zone=None, status_after=V.CREATING)


def discard_restore_target(ctx, volume_id: str) -> None:
    volume = db.volume_get(ctx, volume_id, project_only=False)
    if db.volume_cas_status(ctx, volume_id, V.DELETING, [V.CREATING, V.ERROR],
                            admin_override=True):
        _remove_file(volume)
        db.volume_destroy(ctx, volume_id)


def get_volume(ctx, volume_id):
    volume = db.volume_get(ctx, volume_id)
    policy.authorize(ctx, "volume:get", _target(volume))
    return volume


def get_all_volumes(ctx, *, filters, marker=None, limit=None, offset=None,
                    sort_keys, sort_dirs, all_tenants=False):
    policy.authorize(ctx, "volume:get_all")
    return db.volume_get_all(ctx, filters=_column_filters(filters), marker=marker,
                             limit=limit, offset=offset, sort_keys=_columns(sort_keys),
                             sort_dirs=sort_dirs,
                             project_only=not (all_tenants and ctx.is_admin))


def count_volumes(ctx, *, filters, all_tenants=False) -> int:
    policy.authorize(ctx, "volume:get_all")
    return db.volume_count(ctx, filters=_column_filters(filters),
                           project_only=not (all_tenants and ctx.is_admin))


def update_volume(ctx, volume_id, *, name=UNSET, description=UNSET, metadata=None):
    volume = db.volume_get(ctx, volume_id)
    policy.authorize(ctx, "volume:update", _target(volume))
    values = {}
    if name is not UNSET:
        values["display_name"] = name
    if description is not UNSET:
        values["display_description"] = description
    return db.volume_update(ctx, volume_id, values, metadata=metadata)


def _remove_file(volume) -> None:
    if volume.provider_location and not volume.managed:
        try:
            get_source().delete(volume.provider_location)
        except (OSError, source_base.SourceError):
            LOG.exception("Could not remove the file of volume %s", volume.id)
            raise


def delete_volume(ctx, volume_id, *, cascade=False) -> None:
    volume = db.volume_get(ctx, volume_id)
    policy.authorize(ctx, "volume:delete", _target(volume))
    deletable = (V.AVAILABLE, V.ERROR, V.ERROR_RESTORING, V.ERROR_DELETING)
    if volume.status not in deletable:
        raise exception.InvalidVolume(
            reason="Volume status must be available or error or error_restoring or "
                   "error_deleting, but current status is: %s." % volume.status)
    snapshots = db.snapshot_get_all(ctx, filters={"volume_id": volume.id},
                                    project_only=False)
    if snapshots and not cascade:
        raise exception.InvalidVolume(
            reason="Volume %s still has %d dependent snapshots; delete them first or "
                   "use cascade." % (volume.id, len(snapshots)))
    if not db.volume_cas_status(ctx, volume.id, V.DELETING, [volume.status]):
        raise exception.InvalidVolume(reason="Volume %s changed status; retry." % volume.id)
    for snapshot in snapshots:
        _delete_snapshot_row(ctx, snapshot)
    try:
        _remove_file(volume)
    except Exception:
        db.volume_cas_status(ctx, volume.id, V.ERROR_DELETING, [V.DELETING])
        raise
    db.volume_destroy(ctx, volume.id)


def attach(ctx, volume_id, *, instance_uuid=None, mountpoint=None, host_name=None) -> None:
    volume = db.volume_get(ctx, volume_id)
    policy.authorize(ctx, "volume_extension:volume_actions:attach", _target(volume))
    if not db.volume_cas_status(ctx, volume.id, V.IN_USE, [V.AVAILABLE],
                                attach_status="attached", attachment_id=str(uuid.uuid4()),
                                attached_instance_uuid=instance_uuid,
                                attached_host=host_name, attach_mountpoint=mountpoint,
                                attach_time=timeutils.utcnow()):
        raise exception.InvalidVolume(
            reason="Volume status must be available to attach, but the current status "
                   "is %s." % volume.status)


def detach(ctx, volume_id, *, attachment_id=None) -> None:
    volume = db.volume_get(ctx, volume_id)
    policy.authorize(ctx, "volume_extension:volume_actions:detach", _target(volume))
    if attachment_id and attachment_id != volume.attachment_id:
        raise exception.InvalidVolume(
            reason="Attachment %s is not an attachment of volume %s."
            % (attachment_id, volume.id))
    if not db.volume_cas_status(ctx, volume.id, V.AVAILABLE, [V.IN_USE],
                                attach_status="detached", attachment_id=None,
                                attached_instance_uuid=None, attached_host=None,
                                attach_mountpoint=None, attach_time=None):
        raise exception.InvalidVolume(
            reason="Volume must be in-use to detach, but the current status is %s."
            % volume.status)


def reset_volume_status(ctx, volume_id, *, status, attach_status=None) -> None:
    volume = db.volume_get(ctx, volume_id)
    policy.authorize(ctx, "volume_extension:volume_admin_actions:reset_status",
                     _target(volume))
    if status not in V.RESETTABLE:
        raise exception.Invalid("Invalid volume status %r; valid statuses are: %s."
                                % (status, ", ".join(V.RESETTABLE)))
    extra = {"attach_status": attach_status} if attach_status else {}
    if not db.volume_cas_status(ctx, volume.id, status, [volume.status],
                                admin_override=True, **extra):
        raise exception.Conflict(reason="volume %s changed status while it was being "
                                        "reset; retry" % volume.id)


def manage_existing(ctx, *, host, ref: dict, name=None, description=None, metadata=None,
                    availability_zone=None, bootable=False):
    policy.authorize(ctx, "volume_extension:volume_manage")
    source_name = (ref or {}).get("source-name")
    if not source_name:
        raise exception.Invalid(
            "Invalid input received: ref must contain 'source-name' with the path of a "
            "file or block device to manage")
    try:
        location, size_bytes = get_source().manage_existing(source_name)
    except source_base.SourceNotFound as exc:
        raise exception.Invalid("Cannot manage %s: %s" % (source_name, exc)) from exc
    except source_base.SourceError as exc:
        raise exception.Invalid("Cannot manage %s: %s" % (source_name, exc)) from exc
    existing = db.volume_get_all(ctx, filters={"provider_location": location},
                                 project_only=False)
    if existing:
        raise exception.Invalid("%s is already managed as volume %s"
                                % (location, existing[0].id))
    volume = db.volume_create(ctx, {
        "user_id": ctx.user_id, "project_id": ctx.project_id,
        "size": max(1, math.ceil(size_bytes / GiB)), "display_name": name,
        "display_description": description, "provider_location": location,
        "managed": True, "bootable": bool(bootable), "host": host or CONF.host,
        "availability_zone": availability_zone or CONF.storage_availability_zone,
        "status": V.CREATING,
    }, metadata=metadata or None)
    db.volume_cas_status(ctx, volume.id, V.AVAILABLE, [V.CREATING],
                         launched_at=timeutils.utcnow())
    return db.volume_get(ctx, volume.id, project_only=False)


# ---------------------------------------------------------------- snapshots

def create_snapshot(ctx, volume_id, *, name=None, description=None, force=False,
                    metadata=None):
    volume = db.volume_get(ctx, volume_id)
    policy.authorize(ctx, "volume:create_snapshot", _target(volume))
    if volume.status not in (V.AVAILABLE, V.IN_USE) or (
            volume.status == V.IN_USE and not force):
        raise exception.InvalidVolume(
            reason="Volume %s status must be available, or in-use with force, but the "
                   "current status is %s." % (volume.id, volume.status))
    snapshot = db.snapshot_create(ctx, {
        "user_id": ctx.user_id, "project_id": ctx.project_id, "volume_id": volume.id,
        "volume_size": volume.size, "display_name": name,
        "display_description": description, "progress": "0%",
        "metadata_json": json.dumps(metadata) if metadata else None,
    })
    try:
        location = get_source().snapshot(volume.provider_location, snapshot.id)
    except (OSError, source_base.SourceError) as exc:
        LOG.exception("Could not snapshot volume %s", volume.id)
        db.snapshot_cas_status(ctx, snapshot.id, S.ERROR, [S.CREATING])
        raise exception.BackupsvcError("Could not snapshot the volume: %s" % exc) from exc
    db.snapshot_cas_status(ctx, snapshot.id, S.AVAILABLE, [S.CREATING],
                           provider_location=location, progress="100%")
    return db.snapshot_get(ctx, snapshot.id, project_only=False)


def get_snapshot(ctx, snapshot_id):
    snapshot = db.snapshot_get(ctx, snapshot_id)
    policy.authorize(ctx, "volume:get_snapshot", _target(snapshot))
    return snapshot


def get_all_snapshots(ctx, *, filters, marker=None, limit=None, offset=None,
                      sort_keys, sort_dirs, all_tenants=False):
    policy.authorize(ctx, "volume:get_all_snapshots")
    return db.snapshot_get_all(ctx, filters=_column_filters(filters), marker=marker,
                               limit=limit, offset=offset, sort_keys=_columns(sort_keys),
                               sort_dirs=sort_dirs,
                               project_only=not (all_tenants and ctx.is_admin))


def count_snapshots(ctx, *, filters, all_tenants=False) -> int:
    policy.authorize(ctx, "volume:get_all_snapshots")
    return db.snapshot_count(ctx, filters=_column_filters(filters),
                             project_only=not (all_tenants and ctx.is_admin))


def _delete_snapshot_row(ctx, snapshot) -> None:
    if snapshot.status not in (S.AVAILABLE, S.ERROR):
        raise exception.InvalidSnapshot(
            reason="Snapshot status must be available or error, but the current status "
                   "is %s." % snapshot.status)
    if not db.snapshot_cas_status(ctx, snapshot.id, S.DELETING, [snapshot.status]):
        raise exception.InvalidSnapshot(reason="Snapshot %s changed status; retry."
                                        % snapshot.id)
    if snapshot.provider_location:
        get_source().delete_snapshot(snapshot.provider_location)
    db.snapshot_destroy(ctx, snapshot.id)


def delete_snapshot(ctx, snapshot_id) -> None:
    snapshot = db.snapshot_get(ctx, snapshot_id)
    policy.authorize(ctx, "volume:delete_snapshot", _target(snapshot))
    _delete_snapshot_row(ctx, snapshot)
