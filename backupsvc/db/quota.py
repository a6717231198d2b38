"""Per-project quota counters.

Usage counters per project and resource change only by conditional UPDATEs
inside the transaction that inserts or deletes the backup row, so concurrent
creates can never exceed a limit. A missing counter is seeded from the live
rows, which also repairs a counter that was dropped.
"""

import functools

from oslo_db import exception as db_exc
from sqlalchemy import bindparam, case, func, or_, select, update

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


def seed_usage(context, project_id: str) -> None:
    """Create the project's missing counters, each in a transaction of its own
    (so never inside a caller's transaction: see CountersMissing)."""
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


class CountersMissing(Exception):
    """The project has no quota counters yet (its first backup): seed them
    (:func:`seed_usage`, outside the failed transaction) and try again."""


@functools.cache
def _consume_statement(limit_backups: bool, limit_gigabytes: bool):
    """The one UPDATE that moves both counters (:size GiB), each within its limit
    (:backups_limit, :gigabytes_limit) where there is one. Built once per variant."""
    usage = models.QuotaUsage
    query = update(usage).where(usage.project_id == bindparam("project"),
                                usage.resource.in_(sorted(RESOURCES)))
    if limit_backups:
        query = query.where(or_(usage.resource != "backups",
                                usage.in_use + 1 <= bindparam("backups_limit")))
    if limit_gigabytes:
        query = query.where(or_(usage.resource != "backup_gigabytes",
                                usage.in_use + bindparam("size") <= bindparam("gigabytes_limit")))
    increment = case((usage.resource == "backups", 1), else_=bindparam("size"))
    return (query.values(in_use=usage.in_use + increment)
            .execution_options(synchronize_session=False))


def consume_quota(session, project_id: str, size: int, limits: dict) -> None:
    """Take one backup and ``size`` GiB from the project's counters, within the limits.

    One conditional UPDATE moves both counters; unless it moved both, nothing
    is kept (the error rolls the caller's transaction back) and a read says why.
    """
    usage = models.QuotaUsage
    backups_limit = limits.get("backups", -1)
    gigabytes_limit = limits.get("backup_gigabytes", -1)
    statement = _consume_statement(backups_limit >= 0, gigabytes_limit >= 0)
    params = {"project": project_id, "size": size, "backups_limit": backups_limit,
              "gigabytes_limit": gigabytes_limit}
    if session.execute(statement, params).rowcount == len(RESOURCES):
        return
    in_use = dict(session.execute(select(usage.resource, usage.in_use)
                                  .where(usage.project_id == project_id)).all())
    if not in_use.keys() >= RESOURCES:
        raise CountersMissing(project_id)
    if 0 <= backups_limit < in_use["backups"] + 1:
        raise exception.BackupLimitExceeded(allowed=backups_limit)
    raise exception.BackupGigabytesExceeded(requested=size, quota=gigabytes_limit,
                                            consumed=in_use["backup_gigabytes"])


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
