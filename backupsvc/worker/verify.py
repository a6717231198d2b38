"""Checking that backups restore, without writing a volume.

``backupsvc-manage backup verify`` runs the restore of a backup, with every
check a restore makes (each object's checksum, each frame's CRC-32, each
block's SHA-256 against the backup's sha256 file), into a target that keeps
nothing. It reads what a restore of that backup reads: the objects of its
chain that still provide data, once each. Nothing is written and no status
changes: a failure is reported, and it is the operator's to act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from oslo_config import cfg
from oslo_log import log as logging

from backupsvc.chunking import engine
from backupsvc.db import api as db
from backupsvc.states import BackupStatus as B
from backupsvc.worker import storage
from backupsvc.worker.manager import backup_chain, source_size

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


@dataclass
class Verified:
    """What verifying one backup found; ``error`` is None when it restores."""

    backup_id: str
    status: str
    chain: int = 0              # backups read: the backup and its parents
    size: int = 0               # bytes of the volume it restores
    data_bytes: int = 0         # of those, data checked (the rest is zeros)
    objects_read: int = 0
    error: str | None = None
    skipped: bool = False       # not available: not verified

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped


class _Discard:
    """A restore target that keeps nothing: the restore's own checks are the point."""

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        pass

    def write_zeros(self, offset: int, length: int) -> None:
        pass

    def flush(self) -> None:
        pass


def verify_backup(ctx, backup_id: str) -> Verified:
    """Restore ``backup_id`` to nowhere, checking everything a restore checks."""
    backup = db.backup_get(ctx, backup_id, project_only=False)
    found = Verified(backup.id, backup.status)
    if backup.status != B.AVAILABLE:
        found.skipped = True
        found.error = "backup is %s; only available backups are verified" % backup.status
        return found
    try:
        chain = backup_chain(ctx, backup)
        found.chain = len(chain)
        store = storage.get_store(CONF)
        layers = [engine.Layer(b.container, b.service_metadata) for b in chain]
        metadata = engine.read_metadata(store, backup.container, backup.service_metadata)
        found.size = source_size(store, layers, metadata)
        result = engine.run_restore(layers, _Discard(), found.size,
                                    storage.engine_params(CONF), target_is_zeroed=True,
                                    store=store)
    except Exception as exc:
        LOG.warning("Backup %s does not verify: %s", backup.id, exc)
        found.error = "%s: %s" % (type(exc).__name__, exc)
        return found
    found.data_bytes = result.bytes_written
    found.objects_read = result.objects_read
    LOG.info("Backup %s verified: %d bytes of data in %d objects", backup.id,
             result.bytes_written, result.objects_read)
    return found


def available_backups(ctx) -> list[str]:
    """Ids of every available backup, oldest first (``verify --all``)."""
    rows = db.backup_get_all(ctx, filters={"status": B.AVAILABLE},
                             sort_keys=("created_at", "id"), sort_dirs=("asc", "asc"),
                             project_only=False)
    return [b.id for b in rows]
