"""Per-project quota counters.

Usage counters per project and resource change only by conditional UPDATEs
inside the transaction that inserts or deletes the backup row, so concurrent
creates can never exceed a limit. A missing counter is seeded from the live
rows, which also repairs a counter that was dropped.
"""

from oslo_db import exception as db_exc
from sqlalchemy import func, select, update

from backupsvc import exception
from backupsvc.db import models
from backupsvc.db.session import main_context_manager


def backup_usage(context, project_id: str) -> tuple[int, int]:
    """(number of backups, GiB) a project holds; what quotas are checked against."""
    with main_context_manager.reader.using(context) as session:
        count, gigabytes = session.execute(
            select(func.count(), func.coalesce(func.sum(models.Backup.size), 0))
            .where(models.Backup.project_id == project_id,
                   models.Backup.deleted == False)).one()  # noqa: E712
    return int(count), int(gigabytes)


RESOURCES = frozenset({"backups", "backup_gigabytes"})


def _present(context, project_id: str) -> set[str]:
    with main_context_manager.reader.using(context) as session:
        return set(session.scalars(select(models.QuotaUsage.resource).where(
            models.QuotaUsage.project_id == project_id)))


def usage_seeded(usage: dict[str, int]) -> bool:
    """Whether ``usage`` (what :func:`quota_usage` read) holds every counter."""
    return usage.keys() >= RESOURCES


def seed_usage(context, project_id: str) -> None:
    """Create the project's missing counters, each in a transaction of its own
    (so not inside a caller's transaction, unless they exist: see usage_seeded)."""
    present = _present(context, project_id)
    if present >= RESOURCES:
        return
    count, gigabytes = backup_usage(context, project_id)
    for resource, in_use in (("backups", count), ("backup_gigabytes", gigabytes)):
        if resource in present:
            continue
        try:
            with main_context_manager.writer.using(context) as session:
                session.add(models.QuotaUsage(project_id=project_id, resource=resource,
                                              in_use=in_use))
        except db_exc.DBDuplicateEntry:
            pass  # a concurrent request seeded it


def consume_quota(session, project_id: str, size: int, limits: dict) -> None:
    usage = models.QuotaUsage
    for resource, delta in (("backups", 1), ("backup_gigabytes", size)):
        limit = limits.get(resource, -1)
        query = update(usage).where(usage.project_id == project_id,
                                    usage.resource == resource)
        if limit >= 0:
            query = query.where(usage.in_use + delta <= limit)
        if session.execute(query.values(in_use=usage.in_use + delta)).rowcount:
            continue
        in_use = session.scalar(select(usage.in_use).where(
            usage.project_id == project_id, usage.resource == resource)) or 0
        if resource == "backups":
            raise exception.BackupLimitExceeded(allowed=limit)
        raise exception.BackupGigabytesExceeded(requested=size, quota=limit, consumed=in_use)


def release_quota(session, project_id: str, size: int) -> None:
    usage = models.QuotaUsage
    for resource, delta in (("backups", 1), ("backup_gigabytes", size or 0)):
        session.execute(update(usage)
                        .where(usage.project_id == project_id, usage.resource == resource,
                               usage.in_use >= delta)
                        .values(in_use=usage.in_use - delta))


def quota_usage(context, project_id: str) -> dict[str, int]:
    with main_context_manager.reader.using(context) as session:
        rows = session.execute(select(models.QuotaUsage.resource, models.QuotaUsage.in_use)
                               .where(models.QuotaUsage.project_id == project_id)).all()
    return {resource: in_use for resource, in_use in rows}
