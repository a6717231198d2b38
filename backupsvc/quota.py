"""Per-project backup quotas (Cinder's resources and defaults).

Usage is counted from the live rows themselves, so a delete or a failed
create releases quota without separate bookkeeping.
"""

from oslo_config import cfg

from backupsvc import exception
from backupsvc.db import api as db

CONF = cfg.CONF


def check_backup_quota(context, project_id: str, size_gb: int) -> None:
    count, gigabytes = db.backup_usage(context, project_id)
    if 0 <= CONF.quota_backups < count + 1:
        raise exception.BackupLimitExceeded(allowed=CONF.quota_backups)
    if 0 <= CONF.quota_backup_gigabytes < gigabytes + size_gb:
        raise exception.BackupGigabytesExceeded(
            requested=size_gb, quota=CONF.quota_backup_gigabytes, consumed=gigabytes)
