"""Per-project backup quotas (Cinder's resources and defaults).

The check is the conditional counter update (db.quota.consume_quota) made in
the transaction that inserts the row, safe under concurrent creates; its
refusal says which limit was hit. An import also checks early, from the live
rows, before it touches anything. As in Cinder, an 'error' backup holds
its quota until it is deleted.
"""

from oslo_config import cfg

from backupsvc import exception
from backupsvc.db import api as db

CONF = cfg.CONF


def check_backup_quota(context, project_id: str, size_gb: int,
                       counters: dict[str, int] | None = None) -> None:
    """``counters``: the project's usage counters, when the caller read them and every
    one exists (the numbers the authoritative check uses); else the live rows
    are counted."""
    if counters is not None:
        count, gigabytes = counters["backups"], counters["backup_gigabytes"]
    else:
        count, gigabytes = db.backup_usage(context, project_id)
    if 0 <= CONF.quota_backups < count + 1:
        raise exception.BackupLimitExceeded(allowed=CONF.quota_backups)
    if 0 <= CONF.quota_backup_gigabytes < gigabytes + size_gb:
        raise exception.BackupGigabytesExceeded(
            requested=size_gb, quota=CONF.quota_backup_gigabytes, consumed=gigabytes)


def backup_limits() -> dict[str, int]:
    return {"backups": CONF.quota_backups, "backup_gigabytes": CONF.quota_backup_gigabytes}
