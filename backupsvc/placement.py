"""Which live worker gets a job.

A worker is alive when its heartbeat in the services table is younger than
``service_down_time``. POSIX repositories are local to a host, so jobs on an
existing backup go to the host that holds its data whenever it is alive; with
``backup_use_same_host`` only to that host (and new backups to the volume's
host when a worker is up there), as in Cinder.
"""

import random

from oslo_config import cfg

from backupsvc import exception, rpc
from backupsvc.context import get_admin_context
from backupsvc.db import api as db

CONF = cfg.CONF


def live_workers(ctx=None) -> list[str]:
    """Hosts of the live workers; ``ctx``: read in its transaction (any context will do)."""
    services = db.service_get_all_up(ctx or get_admin_context(), rpc.WORKER_BINARY,
                                     CONF.service_down_time)
    return [s.host for s in services]


def choose_worker(preferred_host: str | None = None, ctx=None,
                  required: bool = False) -> str:
    """The preferred host if it is alive, else any live worker; 503 if none.

    ``required``: only the preferred host will do (backup_use_same_host, for a
    backup's own jobs); 503 naming it when it is down.
    """
    hosts = live_workers(ctx)
    if preferred_host in hosts:
        return preferred_host
    if required and preferred_host:
        raise exception.BackupHostDown(host=preferred_host)
    if not hosts:
        raise exception.NoWorkerAlive()
    return random.choice(hosts)


def worker_for_backup(backup, ctx=None) -> str:
    """The worker for a job on an existing backup (restore, delete, export...)."""
    return choose_worker(backup.host, ctx, required=CONF.backup_use_same_host)
