"""Usage notifications for backups, in Cinder's event names and payload shape.

Events: backup.create.start / .end / .error, backup.createprogress,
backup.restore.start / .end / .error, backup.delete.start / .end / .error.
Publisher ``backup.<host>``. Nothing is sent unless an oslo.messaging
notification driver is configured ([oslo_messaging_notifications] driver).
"""

import threading
import time

from oslo_config import cfg
from oslo_log import log as logging

from backupsvc import rpc

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

_notifiers: dict[str, object] = {}
_lock = threading.Lock()


def _notifier():
    publisher = "backup.%s" % CONF.host
    with _lock:
        if publisher not in _notifiers:
            _notifiers[publisher] = rpc.get_notifier(publisher)
        return _notifiers[publisher]


def _iso(value):
    return value.isoformat() if value is not None else None


def usage_payload(backup, **extra) -> dict:
    payload = {
        "tenant_id": backup.project_id, "user_id": backup.user_id,
        "availability_zone": backup.availability_zone, "backup_id": backup.id,
        "host": backup.host, "display_name": backup.display_name,
        "created_at": _iso(backup.created_at), "status": backup.status,
        "volume_id": backup.volume_id, "size": backup.size,
        "service_metadata": backup.service_metadata, "service": backup.service,
        "fail_reason": backup.fail_reason, "parent_id": backup.parent_id,
        "num_dependent_backups": backup.num_dependent_backups,
        "snapshot_id": backup.snapshot_id,
    }
    payload.update(extra)
    return payload


def notify(context, backup, suffix: str, **extra) -> None:
    """Send backup.<suffix>; a broken notifier never fails the job."""
    event = "backup.%s" % suffix
    try:
        notifier = _notifier()
        payload = usage_payload(backup, **extra)
        if suffix.endswith(".error"):
            notifier.error(context, event, payload)
        else:
            notifier.info(context, event, payload)
    except Exception:
        LOG.exception("Could not send notification %s for backup %s", event, backup.id)


class ProgressReporter:
    """engine progress callback → backup.createprogress with a real percentage.

    Sent every ``every_bytes`` of volume processed (Cinder: every N objects)
    and, when the timer is enabled, at least every ``interval`` seconds.
    """

    def __init__(self, context, backup, every_bytes: int, interval: float | None):
        self.context, self.backup = context, backup
        self.every_bytes, self.interval = max(1, every_bytes), interval
        self._next_bytes = self.every_bytes
        self._last_sent = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        due_bytes = done >= self._next_bytes
        due_time = self.interval is not None and now - self._last_sent >= self.interval
        if not (due_bytes or due_time) or done >= total:
            return
        while self._next_bytes <= done:
            self._next_bytes += self.every_bytes
        self._last_sent = now
        self.send(done, total)

    def send(self, done: int, total: int) -> None:
        # A float, as Cinder sends; two decimals keep early progress visible.
        percent = 100.0 if total <= 0 else min(100.0, round(done * 100 / total, 2))
        notify(self.context, self.backup, "createprogress", backup_percent=percent)
