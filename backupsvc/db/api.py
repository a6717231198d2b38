"""Every query and every compare-and-swap of the service.

Status changes are single UPDATE statements guarded by the expected current
status (``UPDATE ... WHERE id=? AND status IN (...)``), so two actors racing
for the same row cannot both win. Functions return detached ORM rows
(enginefacade keeps attributes loaded after the transaction ends).

Each function runs in its own transaction, unless the caller groups several
in one with :func:`reading` or :func:`writing`: the calls made inside with
the same context join that transaction (one connection checkout and one
commit instead of one each, and the writes succeed or fail together).

The statements every job runs are built once (see :func:`statements.built_once`) and
take their values as parameters. Their UPDATEs do not touch rows already
loaded in the caller's transaction: a caller that needs the new values
sets them (none does today).
"""

import datetime
import uuid
from collections.abc import Iterable

from oslo_db.sqlalchemy import utils as db_utils
from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import aliased, joinedload, raiseload
from sqlalchemy.orm.attributes import set_committed_value

from backupsvc import exception, states
from backupsvc.db import models, session, statements
from backupsvc.db.quota import (  # noqa: F401  (usage readers are re-exported)
    CountersMissing,
    backup_usage,
    consume_quota,
    quota_usage,
    release_quota,
    seed_usage,
)
from backupsvc.db.services import (  # noqa: F401  (re-exported: callers use db.api)
    service_get_all,
    service_get_all_up,
    service_heartbeat,
    service_is_up,
    service_mark_down,
)

# Re-exported: callers configure the database through this module.
configure = session.configure
get_engine = session.get_engine
main_context_manager = session.main_context_manager
_now = session.now


def reading(context):
    """One read transaction for the db calls made with ``context`` inside the block."""
    return main_context_manager.reader.using(context)


def writing(context):
    """One write transaction for the db calls made with ``context`` inside the block
    (reads join it too; a writer cannot be opened inside a :func:`reading` block)."""
    return main_context_manager.writer.using(context)


# --------------------------------------------------------------------- helpers

def _scope(query, model, context, project_only: bool):
    query = query.where(model.deleted == False)  # noqa: E712
    if project_only:
        query = query.where(model.project_id == context.project_id)
    return query


def _check_transition(table: dict, to_status: str, from_statuses,
                      admin_override: bool = False) -> tuple[str, ...]:
    """The expected current states, checked against states.py.

    admin_override is for reset-status and force-delete, which Cinder allows
    from any state; the caller still names the states it expects.
    """
    allowed = states.allowed_from(table, to_status)
    if from_statuses is None:
        if not allowed:
            raise ValueError("an explicit from-state set is required for %s" % to_status)
        return allowed
    if not admin_override and not set(from_statuses) <= set(allowed or ()):
        raise ValueError("transition %s -> %s is not allowed" % (from_statuses, to_status))
    return tuple(from_statuses)


def _apply_filters(query, model, filters: dict):
    for key, value in (filters or {}).items():
        inexact = key.endswith("~")
        column = getattr(model, key.rstrip("~"))
        if inexact:
            query = query.filter(column.like("%" + str(value) + "%"))
        elif isinstance(value, (list, tuple, set)):
            query = query.filter(column.in_(list(value)))
        else:
            query = query.filter(column == value)
    return query


def _list(context, model, *, filters, marker, limit, offset, sort_keys, sort_dirs,
          project_only, not_found):
    with main_context_manager.reader.using(context) as session:
        query = session.query(model).filter(model.deleted == False)  # noqa: E712
        if project_only:
            query = query.filter(model.project_id == context.project_id)
        query = _apply_filters(query, model, filters)
        marker_row = None
        if marker:
            marker_row = session.get(model, marker)
            if marker_row is None or marker_row.deleted:
                raise not_found
        query = db_utils.paginate_query(query, model, limit, list(sort_keys),
                                        marker=marker_row, sort_dirs=list(sort_dirs))
        if offset:
            query = query.offset(offset)
        return query.all()


def _count(context, model, *, filters, project_only) -> int:
    with main_context_manager.reader.using(context) as session:
        query = _scope(select(func.count()).select_from(model), model, context, project_only)
        query = _apply_filters(query, model, filters)
        return session.scalar(query)


def _replace_metadata(session, meta_model, fk: str, owner_id: str, metadata: dict,
                      delete: bool) -> None:
    rows = session.scalars(select(meta_model).where(
        getattr(meta_model, fk) == owner_id, meta_model.deleted == False))  # noqa: E712
    existing = {row.key: row for row in rows}
    for key, value in metadata.items():
        if key in existing:
            existing.pop(key).value = value
        else:
            session.add(meta_model(key=key, value=value, **{fk: owner_id}))
    if delete:
        for row in existing.values():
            row.deleted, row.deleted_at = True, _now()


# --------------------------------------------------------------------- backups

def backup_create(context, values: dict, metadata: dict | None = None,
                  quota_limits: dict | None = None) -> models.Backup:
    """Insert a backup row; with quota_limits, seed the project's counters if it
    has none and consume quota in the insert's transaction (or use quota_consume
    first, in the caller's transaction)."""
    values = dict(values)
    values.setdefault("id", str(uuid.uuid4()))
    values.setdefault("status", states.BackupStatus.CREATING)
    values.setdefault("num_dependent_backups", 0)
    if quota_limits is not None:
        seed_usage(context, values["project_id"])
    with main_context_manager.writer.using(context) as session:
        if quota_limits is not None:
            consume_quota(session, values["project_id"], values.get("size") or 0,
                          quota_limits)
        row = models.Backup(**values)
        session.add(row)
        session.flush()
        if not metadata:
            # The row as inserted is the row as read: no second round trip.
            set_committed_value(row, "backup_metadata", [])
            return row
        _replace_metadata(session, models.BackupMetadata, "backup_id", row.id,
                          metadata, delete=False)
    return backup_get(context, values["id"], project_only=False)


def quota_consume(context, project_id: str, size: int, limits: dict) -> None:
    """Take quota for one backup of ``size`` GiB in the caller's write transaction.
    Raises CountersMissing if the project has no counters yet (see seed_usage)."""
    with main_context_manager.writer.using(context) as session:
        consume_quota(session, project_id, size, limits)


def backup_import(context, backup_id: str, values: dict, metadata: dict | None = None,
                  quota_limits: dict | None = None) -> models.Backup:
    """Insert an imported record, or revive a soft-deleted row with its id.

    An existing live row is never touched (an import must not clobber a
    record that is still in use).
    """
    if quota_limits is not None:
        seed_usage(context, values["project_id"])
    with main_context_manager.writer.using(context) as session:
        row = session.get(models.Backup, backup_id)
        if row is not None and not row.deleted:
            raise exception.InvalidBackup(reason="Backup already exists in database.")
        if quota_limits is not None:
            consume_quota(session, values["project_id"], values.get("size") or 0,
                          quota_limits)
        if row is None:
            session.add(models.Backup(id=backup_id, **values))
        else:
            session.execute(update(models.Backup)
                            .where(models.Backup.id == backup_id,
                                   models.Backup.deleted == True)  # noqa: E712
                            .values(deleted=False, deleted_at=None, updated_at=_now(),
                                    **values))
        session.flush()
        _replace_metadata(session, models.BackupMetadata, "backup_id", backup_id,
                          metadata or {}, delete=True)
    return backup_get(context, backup_id, project_only=False)


def backup_get(context, backup_id: str, project_only: bool | None = None,
               read_deleted: bool = False, with_metadata: bool = True) -> models.Backup:
    """``with_metadata=False``: a row for jobs, which never read the user's
    metadata (one narrower statement); touching it raises."""
    if project_only is None:
        project_only = not context.is_admin
    with main_context_manager.reader.using(context) as session:
        row = statements.get_by_id(session, models.Backup, backup_id, context,
                         project_only=project_only, read_deleted=read_deleted,
                         metadata=models.Backup.backup_metadata, with_metadata=with_metadata)
    if row is None:
        raise exception.BackupNotFound(backup_id=backup_id)
    return row


def _job_rows_statement():
    backup, volume, snapshot = models.Backup, models.Volume, models.Snapshot
    parent = aliased(models.Backup, name="parent")
    return (
        select(backup, volume, snapshot, parent)
        .outerjoin(volume, and_(volume.id == backup.volume_id,
                                volume.deleted == False))  # noqa: E712
        .outerjoin(snapshot, and_(snapshot.id == backup.snapshot_id,
                                  snapshot.deleted == False))  # noqa: E712
        .outerjoin(parent, and_(parent.id == backup.parent_id,
                                parent.deleted == False))  # noqa: E712
        .where(backup.id == bindparam("id"), backup.deleted == False)  # noqa: E712
        .options(joinedload(volume.volume_metadata),
                 raiseload(backup.backup_metadata), raiseload(parent.backup_metadata)))


_JOB_ROWS = _job_rows_statement()


def backup_job_rows(context, backup_id: str):
    """(backup, volume, snapshot, parent) for a create job, read by one statement.

    The volume comes with its metadata (stored with the backup); snapshot and
    parent are None when the backup names none or they no longer exist. The
    backups' own metadata is not loaded (touching it raises). Raises
    BackupNotFound, VolumeNotFound or SnapshotNotFound.
    """
    with main_context_manager.reader.using(context) as session:
        row = session.execute(_JOB_ROWS, {"id": backup_id}).unique().first()
    if row is None:
        raise exception.BackupNotFound(backup_id=backup_id)
    backup, volume, snapshot, parent = row
    if volume is None:
        raise exception.VolumeNotFound(volume_id=backup.volume_id)
    if backup.snapshot_id and snapshot is None:
        raise exception.SnapshotNotFound(snapshot_id=backup.snapshot_id)
    return backup, volume, snapshot, parent


def backup_get_all(context, filters: dict | None = None, marker: str | None = None,
                   limit: int | None = None, offset: int | None = None,
                   sort_keys=("created_at", "id"), sort_dirs=("desc", "desc"),
                   project_only: bool = True) -> list[models.Backup]:
    return _list(context, models.Backup, filters=filters, marker=marker, limit=limit,
                 offset=offset, sort_keys=sort_keys, sort_dirs=sort_dirs,
                 project_only=project_only,
                 not_found=exception.BackupNotFound(backup_id=marker))


def backup_count(context, filters: dict | None = None, project_only: bool = True) -> int:
    return _count(context, models.Backup, filters=filters, project_only=project_only)


def backup_cas_status(context, backup_id: str, to_status: str,
                      from_statuses: Iterable[str] | None = None,
                      admin_override: bool = False, **values) -> bool:
    """Move a backup to ``to_status`` iff it is in one of ``from_statuses``."""
    expected = _check_transition(states.BACKUP_TRANSITIONS, to_status, from_statuses,
                                 admin_override)
    values.update(status=to_status, updated_at=_now())
    if to_status == states.BackupStatus.DELETED:
        values.update(deleted=True, deleted_at=_now())
    with main_context_manager.writer.using(context) as session:
        changed = statements.cas(session, models.Backup, backup_id, expected, values)
        if changed and to_status == states.BackupStatus.DELETED:
            session.execute(
                update(models.BackupMetadata)
                .where(models.BackupMetadata.backup_id == backup_id)
                .values(deleted=True, deleted_at=_now()))
            row = session.get(models.Backup, backup_id)
            release_quota(session, row.project_id, row.size or 0)
        return changed == 1


def backup_claim(context, backup: models.Backup, **values) -> bool:
    """Record where a backup's job runs and writes (host, container, object prefix)
    iff the backup is still creating; the loaded ``backup`` then holds them too."""
    values["updated_at"] = _now()
    with main_context_manager.writer.using(context) as session:
        claimed = statements.cas(session, models.Backup, backup.id, [states.BackupStatus.CREATING],
                       values) == 1
    if claimed:
        for column, value in values.items():
            set_committed_value(backup, column, value)
    return claimed


_ADD_DEPENDENT = (
    update(models.Backup).where(models.Backup.id == bindparam("row_id"))
    .values(num_dependent_backups=func.coalesce(models.Backup.num_dependent_backups, 0) + 1)
    .execution_options(synchronize_session=False))


def backup_complete(context, backup_id: str, parent_id: str | None, **values) -> bool:
    """creating -> available and the parent's dependents +1, in one transaction."""
    values.update(status=states.BackupStatus.AVAILABLE, updated_at=_now())
    with main_context_manager.writer.using(context) as session:
        changed = statements.cas(session, models.Backup, backup_id, [states.BackupStatus.CREATING],
                       values)
        if changed == 1 and parent_id:
            session.execute(_ADD_DEPENDENT, {"row_id": parent_id})
        return changed == 1


def backup_update(context, backup_id: str, values: dict,
                  metadata: dict | None = None) -> models.Backup:
    """Update non-status fields (name, description, metadata, counters)."""
    if "status" in values:
        raise ValueError("use backup_cas_status to change a backup's status")
    with main_context_manager.writer.using(context) as session:
        if values:
            session.execute(update(models.Backup)
                            .where(models.Backup.id == backup_id,
                                   models.Backup.deleted == False)  # noqa: E712
                            .values(updated_at=_now(), **values))
        if metadata is not None:
            _replace_metadata(session, models.BackupMetadata, "backup_id", backup_id,
                              metadata, delete=True)
    return backup_get(context, backup_id, project_only=False)


def backup_has_children(context, backup_id: str) -> bool:
    with main_context_manager.reader.using(context) as session:
        return session.scalar(
            select(func.count()).select_from(models.Backup)
            .where(models.Backup.parent_id == backup_id,
                   models.Backup.deleted == False)) > 0  # noqa: E712


def backup_objects_shared(context, backup) -> bool:
    """Another live row uses the same objects (a record imported under a new id)."""
    if not (backup.container and backup.service_metadata):
        return False
    with main_context_manager.reader.using(context) as session:
        return session.scalar(
            select(func.count()).select_from(models.Backup)
            .where(models.Backup.id != backup.id,
                   models.Backup.container == backup.container,
                   models.Backup.service_metadata == backup.service_metadata,
                   models.Backup.deleted == False)) > 0  # noqa: E712


def backup_adjust_dependents(context, backup_id: str, delta: int) -> None:
    """Atomic counter change in SQL; decrements never go below zero."""
    counter = func.coalesce(models.Backup.num_dependent_backups, 0)
    with main_context_manager.writer.using(context) as session:
        query = update(models.Backup).where(models.Backup.id == backup_id)
        if delta < 0:
            query = query.where(counter >= -delta)
        session.execute(query.values(num_dependent_backups=counter + delta))


@statements.built_once
def _latest_available(before: bool):
    backup = models.Backup
    query = (select(backup)
             .where(backup.volume_id == bindparam("volume_id"),
                    backup.project_id == bindparam("project_id"),
                    backup.deleted == False,  # noqa: E712
                    backup.status == states.BackupStatus.AVAILABLE)
             .order_by(backup.data_timestamp.desc(), backup.created_at.desc())
             # Only a parent: its metadata is never read.
             .options(raiseload(backup.backup_metadata)).limit(1))
    if before:
        query = query.where(backup.data_timestamp < bindparam("before"))
    return query


def backup_latest_available(context, volume_id: str, project_id: str,
                            before: datetime.datetime | None = None) -> models.Backup | None:
    """The incremental parent: newest available backup of the volume by data_timestamp."""
    params = {"volume_id": volume_id, "project_id": project_id}
    if before is not None:
        params["before"] = before
    with main_context_manager.reader.using(context) as session:
        return session.scalars(_latest_available(before is not None), params).first()


def backup_get_by_host_and_status(context, host: str,
                                  statuses: Iterable[str]) -> list[models.Backup]:
    with main_context_manager.reader.using(context) as session:
        return list(session.scalars(
            select(models.Backup).where(models.Backup.host == host,
                                        models.Backup.deleted == False,  # noqa: E712
                                        models.Backup.status.in_(list(statuses)))))


# --------------------------------------------------------------------- volumes

def volume_create(context, values: dict, metadata: dict | None = None) -> models.Volume:
    values = dict(values)
    values.setdefault("id", str(uuid.uuid4()))
    values.setdefault("status", states.VolumeStatus.CREATING)
    values.setdefault("attach_status", "detached")
    with main_context_manager.writer.using(context) as session:
        session.add(models.Volume(**values))
        session.flush()
        if metadata:
            _replace_metadata(session, models.VolumeMetadata, "volume_id", values["id"],
                              metadata, delete=False)
    return volume_get(context, values["id"], project_only=False)


def volume_get(context, volume_id: str, project_only: bool | None = None,
               with_metadata: bool = True) -> models.Volume:
    """``with_metadata=False``: one narrower statement for callers that never
    read the volume's metadata; touching it raises."""
    if project_only is None:
        project_only = not context.is_admin
    with main_context_manager.reader.using(context) as session:
        row = statements.get_by_id(session, models.Volume, volume_id, context,
                         project_only=project_only,
                         metadata=models.Volume.volume_metadata, with_metadata=with_metadata)
    if row is None:
        raise exception.VolumeNotFound(volume_id=volume_id)
    return row


def volume_get_all(context, filters: dict | None = None, marker: str | None = None,
                   limit: int | None = None, offset: int | None = None,
                   sort_keys=("created_at", "id"), sort_dirs=("desc", "desc"),
                   project_only: bool = True) -> list[models.Volume]:
    return _list(context, models.Volume, filters=filters, marker=marker, limit=limit,
                 offset=offset, sort_keys=sort_keys, sort_dirs=sort_dirs,
                 project_only=project_only,
                 not_found=exception.VolumeNotFound(volume_id=marker))


def volume_count(context, filters: dict | None = None, project_only: bool = True) -> int:
    return _count(context, models.Volume, filters=filters, project_only=project_only)


def volume_cas_status(context, volume_id: str, to_status: str,
                      from_statuses: Iterable[str] | None = None,
                      admin_override: bool = False, **values) -> bool:
    expected = _check_transition(states.VOLUME_TRANSITIONS, to_status, from_statuses,
                                 admin_override)
    values.update(status=to_status, updated_at=_now())
    with main_context_manager.writer.using(context) as session:
        return statements.cas(session, models.Volume, volume_id, expected, values) == 1


def volume_update(context, volume_id: str, values: dict,
                  metadata: dict | None = None, delete_metadata: bool = True) -> models.Volume:
    if "status" in values:
        raise ValueError("use volume_cas_status to change a volume's status")
    with main_context_manager.writer.using(context) as session:
        if values:
            session.execute(update(models.Volume)
                            .where(models.Volume.id == volume_id)
                            .values(updated_at=_now(), **values))
        if metadata is not None:
            _replace_metadata(session, models.VolumeMetadata, "volume_id", volume_id,
                              metadata, delete=delete_metadata)
    return volume_get(context, volume_id, project_only=False)


def volume_destroy(context, volume_id: str) -> bool:
    """Soft-delete a volume that is in ``deleting``."""
    with main_context_manager.writer.using(context) as session:
        result = session.execute(
            update(models.Volume)
            .where(models.Volume.id == volume_id,
                   models.Volume.status == states.VolumeStatus.DELETING)
            .values(status="deleted", deleted=True, deleted_at=_now()))
        session.execute(update(models.VolumeMetadata)
                        .where(models.VolumeMetadata.volume_id == volume_id)
                        .values(deleted=True, deleted_at=_now()))
        return result.rowcount == 1


def volume_has_dependents(context, volume_id: str) -> bool:
    """Snapshots or unfinished backups still need the volume."""
    with main_context_manager.reader.using(context) as session:
        snaps = session.scalar(select(func.count()).select_from(models.Snapshot).where(
            models.Snapshot.volume_id == volume_id,
            models.Snapshot.deleted == False))  # noqa: E712
    return bool(snaps)


# ------------------------------------------------------------------- snapshots

def snapshot_create(context, values: dict) -> models.Snapshot:
    values = dict(values)
    values.setdefault("id", str(uuid.uuid4()))
    values.setdefault("status", states.SnapshotStatus.CREATING)
    with main_context_manager.writer.using(context) as session:
        session.add(models.Snapshot(**values))
    return snapshot_get(context, values["id"], project_only=False)


def snapshot_get(context, snapshot_id: str, project_only: bool | None = None) -> models.Snapshot:
    if project_only is None:
        project_only = not context.is_admin
    with main_context_manager.reader.using(context) as session:
        row = statements.get_by_id(session, models.Snapshot, snapshot_id, context,
                         project_only=project_only)
    if row is None:
        raise exception.SnapshotNotFound(snapshot_id=snapshot_id)
    return row


def snapshot_get_all(context, filters: dict | None = None, marker: str | None = None,
                     limit: int | None = None, offset: int | None = None,
                     sort_keys=("created_at", "id"), sort_dirs=("desc", "desc"),
                     project_only: bool = True) -> list[models.Snapshot]:
    return _list(context, models.Snapshot, filters=filters, marker=marker, limit=limit,
                 offset=offset, sort_keys=sort_keys, sort_dirs=sort_dirs,
                 project_only=project_only,
                 not_found=exception.SnapshotNotFound(snapshot_id=marker))


def snapshot_count(context, filters: dict | None = None, project_only: bool = True) -> int:
    return _count(context, models.Snapshot, filters=filters, project_only=project_only)


def snapshot_cas_status(context, snapshot_id: str, to_status: str,
                        from_statuses: Iterable[str] | None = None,
                        admin_override: bool = False, **values) -> bool:
    expected = _check_transition(states.SNAPSHOT_TRANSITIONS, to_status, from_statuses,
                                 admin_override)
    values.update(status=to_status, updated_at=_now())
    with main_context_manager.writer.using(context) as session:
        return statements.cas(session, models.Snapshot, snapshot_id, expected, values) == 1


def snapshot_destroy(context, snapshot_id: str) -> bool:
    with main_context_manager.writer.using(context) as session:
        result = session.execute(
            update(models.Snapshot)
            .where(models.Snapshot.id == snapshot_id,
                   models.Snapshot.status == states.SnapshotStatus.DELETING)
            .values(status="deleted", deleted=True, deleted_at=_now()))
        return result.rowcount == 1
