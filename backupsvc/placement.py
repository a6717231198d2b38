"""Which live worker gets a job.

A worker is alive when its heartbeat in the services table is younger than
``service_down_time``. POSIX repositories are local to a host, so jobs on an
existing backup go to the host that holds its data whenever it is alive.
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


def choose_worker(preferred_host: str | None = None, ctx=None) -> str:
    """The preferred host if it is alive, else any live worker; 503 if none."""
    hosts = live_workers(ctx)
    if not hosts:
        raise exception.NoWorkerAlive()
    if preferred_host in hosts:
        return preferred_host
    return random.choice(hosts)
