"""The worker's jobs: load the row, claim it, run the engine, record the outcome.

The database is the truth: every job re-reads its rows, and a status change
made by someone else (force delete, reset-status) is how a job learns that it
has been cancelled.
"""

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_log import log as logging

from backupsvc import exception, notifications
from backupsvc.chunking import engine
from backupsvc.context import get_admin_context
from backupsvc.db import api as db
from backupsvc.sources.file import FileVolumeSource
from backupsvc.states import BackupStatus as B
from backupsvc.states import SnapshotStatus as S
from backupsvc.states import VolumeStatus as V
from backupsvc.worker import storage

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

VOLUME_META_VERSION = 2
# How often a running job re-reads its row to notice a cancellation.
CANCEL_POLL_SECONDS = 0.5


class StatusWatch:
    """cancelled() for the engine: True once the row has left the expected status.

    A thread of its own re-reads the row every CANCEL_POLL_SECONDS, so the
    engine's frequent checks cost nothing: a database round trip on the
    pipeline's main loop would stall reading, hashing and writing alike.
    Use it as a context manager; the thread ends with the block.
    """

    def __init__(self, backup_id: str, expected: str):
        self.backup_id, self.expected = backup_id, expected
        self._cancelled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="status-watch-%s" % backup_id)

    def __enter__(self) -> "StatusWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=4 * CANCEL_POLL_SECONDS)

    def _watch(self) -> None:
        # The job has just read the row: the first look is due a poll later.
        while not self._stop.wait(CANCEL_POLL_SECONDS):
            if self.check():
                return

    def check(self) -> bool:
        """Read the row now: True (from then on) once it has left the expected status."""
        try:
            row = db.backup_get(get_admin_context(), self.backup_id, project_only=False,
                                read_deleted=True, with_metadata=False)
        except Exception:
            LOG.warning("Could not read backup %s to look for a cancellation; will retry",
                        self.backup_id, exc_info=True)
            return False
        self._cancelled = bool(row.deleted) or row.status != self.expected
        return self._cancelled

    def __call__(self) -> bool:
        return self._cancelled


# Our own key inside volume_meta: the exact byte size of the source, which the
# SHA list alone cannot give (its last block may be short). Cinder ignores it.
SIZE_KEY = "backupsvc-source-size-bytes"


def _volume_meta(volume, size_bytes: int) -> str:
    """Cinder's volume_meta string (metadata version 2), stored with the backup."""
    base = {"display_name": volume.display_name,
            "display_description": volume.display_description,
            "encryption_key_id": volume.encryption_key_id,
            "size": volume.size, "bootable": volume.bootable}
    return json.dumps({"version": VOLUME_META_VERSION, "volume-base-metadata": base,
                       "volume-metadata": volume.metadata_dict,
                       "volume-glance-metadata": {}, SIZE_KEY: size_bytes})


def remove_temp_snapshot(source: FileVolumeSource, temp_id: str) -> None:
    """Remove a backup's temporary snapshot if it is (still) there."""
    location = source.snapshot_location(temp_id)
    if os.path.lexists(location):
        source.delete_snapshot(location)


def backup_chain(ctx, backup) -> list:
    """Rows from the full backup to ``backup``, oldest first."""
    chain = [backup]
    while chain[-1].parent_id:
        chain.append(db.backup_get(ctx, chain[-1].parent_id, project_only=False,
                                   read_deleted=True))
        if len(chain) > 10000:
            raise exception.InvalidBackup(reason="Backup chain is too long or cyclic")
    return list(reversed(chain))


def source_size(store, chain_layers, newest_meta) -> int:
    """Bytes the backup covers: recorded by us, else inferred (Cinder backups)."""
    try:
        recorded = json.loads(newest_meta.volume_meta or "{}").get(SIZE_KEY)
    except ValueError:
        recorded = None
    if isinstance(recorded, int) and recorded >= 0:
        return recorded
    block, shas = engine.read_sha256s(store, chain_layers[-1].container,
                                      chain_layers[-1].prefix)
    end = 0
    for layer in chain_layers:
        meta = engine.read_metadata(store, layer.container, layer.prefix)
        end = max([end] + [o.end for o in meta.objects])
    # Cinder volumes are whole GiB, so the last block is full unless data says less.
    return end if end > (len(shas) - 1) * block else len(shas) * block


def _apply_volume_meta(ctx, volume, volume_meta: str | None) -> None:
    """Give the restored volume the source's metadata (merged over its own)."""
    if not volume_meta:
        return
    try:
        meta = json.loads(volume_meta)
    except ValueError:
        LOG.warning("Ignoring unreadable volume_meta for volume %s", volume.id)
        return
    user_meta = meta.get("volume-metadata") or {}
    if isinstance(user_meta, dict) and user_meta:
        merged = dict(volume.metadata_dict)
        merged.update({str(k): str(v) for k, v in user_meta.items()})
        db.volume_update(ctx, volume.id, {}, metadata=merged)


def _reason(exc: Exception) -> str:
    """A fail_reason that fits Cinder's 255 characters and leads with the verdict."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, engine.IntegrityError):
        text = "checksum verification failed: %s" % text
    return text[:255]


# The job that a backup in each transitional status waits for.
JOB_OF_STATUS = {B.CREATING: "create", B.RESTORING: "restore", B.DELETING: "delete"}


def claim_key(job: str, backup_id: str) -> str:
    """The name under which a worker process holds a job while it has it (see
    backupsvc.worker.server.JobClaims: a crashed process's jobs are found by it)."""
    return "%s-%s" % (job, backup_id)


class BackupManager:
    """RPC endpoint methods run on the worker; each hands a job to the pool."""

    target = messaging.Target(version="1.0")

    def __init__(self, host: str, submit):
        self.host = host
        self._submit = submit
        self.source = FileVolumeSource.from_conf(CONF)
        # Fail at start-up, not at the first job, if the repository is unusable.
        storage.get_store(CONF)
        self.params = storage.engine_params(CONF)
        self.service = storage.service_name(CONF)

    # RPC endpoints (oslo.messaging dispatches these by name).
    # The caller's context travels with the job: repositories that act with
    # the user's own credentials (Swift per_user) need its token.
    def create_backup(self, context, backup_id):
        self._submit(self._create_backup, backup_id, context,
                     claim=claim_key("create", backup_id))

    def restore_backup(self, context, backup_id, volume_id, volume_is_new):
        self._submit(self._restore_backup, backup_id, volume_id, volume_is_new, context,
                     claim=claim_key("restore", backup_id))

    def delete_backup(self, context, backup_id):
        self._submit(self._delete_backup, backup_id, context,
                     claim=claim_key("delete", backup_id))

    def delete_backup_now(self, backup_id: str) -> None:
        """The delete job, on the calling thread (start-up recovery, not offloaded)."""
        self._delete_backup(backup_id)

    def import_record(self, context, backup_id):
        self._submit(self._import_record, backup_id, context)

    # ------------------------------------------------------------ create
    def _create_backup(self, backup_id: str, user_ctx=None) -> None:
        ctx = get_admin_context()
        store = storage.get_store(CONF, user_ctx)
        with db.writing(ctx):       # the claim reads and writes in one transaction
            # One statement: the backup, its volume (with the metadata stored with
            # the backup), its snapshot and its parent (None if deleted meanwhile:
            # _run_backup fails the backup, saying so).
            backup, volume, snapshot, parent = db.backup_job_rows(ctx, backup_id)
            container = backup.container or store.default_container(backup.id)
            prefix = store.object_prefix(volume.id, backup.id, backup.created_at)
            # Record where the objects go before writing any, so a crash or a
            # delete can always find and remove them.
            if backup.status != B.CREATING or not db.backup_claim(
                    ctx, backup, container=container, service_metadata=prefix,
                    service=self.service, host=self.host):
                # Cancelled (force delete, reset) before the job started: the
                # volume was moved to backing-up for this backup; give it back.
                LOG.info("Backup %s is no longer creating; not starting it", backup_id)
                self._return_source(ctx, volume, snapshot)
                return
        notifications.notify(ctx, backup, "create.start")
        progress = notifications.ProgressReporter(
            ctx, backup, CONF.backup_object_number_per_notification * self.params.chunk_size,
            CONF.backup_timer_interval if storage.progress_timer_enabled(CONF) else None)
        try:
            with StatusWatch(backup.id, B.CREATING) as watch:
                result = self._run_backup(store, backup, parent, volume, snapshot, container,
                                          prefix, watch, progress)
        except engine.Cancelled:
            LOG.info("Backup %s was cancelled; its objects were removed", backup.id)
            self._return_source(ctx, volume, snapshot)
            self._notify_current(ctx, backup.id, "create.end")
            return
        except Exception as exc:
            LOG.exception("Backup %s failed", backup.id)
            self._safe_delete(store, container, prefix)
            self._return_source(ctx, volume, snapshot)
            db.backup_cas_status(ctx, backup.id, B.ERROR, [B.CREATING],
                                 fail_reason=_reason(exc))
            self._notify_current(ctx, backup.id, "create.error")
            return
        progress.send(1, 1)
        # The volume and the backup in one transaction: a client that sees the
        # backup available may at once back the volume up again.
        with db.writing(ctx):
            self._return_source(ctx, volume, snapshot)
            completed = db.backup_complete(ctx, backup.id, backup.parent_id,
                                           object_count=result.object_count,
                                           size=volume.size)
        if completed:
            LOG.info("Backup %s is available: %d objects, %d bytes read, %d stored",
                     backup.id, result.object_count, result.bytes_read, result.bytes_stored)
        else:
            # Cancelled between the last check and the end: drop what we wrote.
            LOG.info("Backup %s changed status at the end; removing its objects", backup.id)
            self._safe_delete(store, container, prefix)
            self._notify_current(ctx, backup.id, "create.end")
            return
        # What the completion wrote, without reading the row back.
        notifications.notify(ctx, backup, "create.end", status=B.AVAILABLE, size=volume.size)

    @staticmethod
    def _notify_current(ctx, backup_id: str, suffix: str) -> None:
        """Notify with the row as it is now (status, counts, fail_reason)."""
        row = db.backup_get(ctx, backup_id, project_only=False, read_deleted=True)
        notifications.notify(ctx, row, suffix)

    def _run_backup(self, store, backup, parent, volume, snapshot, container, prefix, watch,
                    progress):
        parent_shas = None
        if backup.parent_id and parent is None:
            raise exception.InvalidBackup(
                reason="Parent backup %s no longer exists; do a full backup."
                % backup.parent_id)
        if parent is not None:
            block, parent_shas = engine.read_sha256s(store, parent.container,
                                                     parent.service_metadata)
            if block != self.params.sha_block_size:
                raise exception.InvalidBackup(
                    reason="Hash block size has changed since the last backup. New hash "
                           "block size: %d. Old hash block size: %d. Do a full backup."
                    % (self.params.sha_block_size, block))
        location = snapshot.provider_location if snapshot else volume.provider_location
        store.ensure_container(container)
        size = self.source.size(location)
        desc = engine.BackupDescription(
            backup_id=backup.id, volume_id=volume.id, name=backup.display_name,
            description=backup.display_description, created_at=str(backup.created_at),
            parent_id=backup.parent_id, volume_meta=_volume_meta(volume, size))
        with self._point_in_time(backup, volume, location) as source_location:
            with self.source.open_read(source_location) as reader:
                return engine.run_backup(reader, size, store,
                                         container, prefix, desc, self.params,
                                         parent_sha256s=parent_shas, cancelled=watch,
                                         progress=progress)

    @contextlib.contextmanager
    def _point_in_time(self, backup, volume, location: str) -> Iterator[str]:
        """What to read: with backup_use_temp_snapshot, an in-use volume's temporary
        snapshot, recorded on the backup (temp_snapshot_id) before it is taken so that
        start-up recovery removes it after a crash; else the volume itself."""
        if not (CONF.backup_use_temp_snapshot and backup.snapshot_id is None
                and volume.previous_status == V.IN_USE):
            yield location
            return
        ctx = get_admin_context()
        temp_id = str(uuid.uuid4())
        db.backup_update(ctx, backup.id, {"temp_snapshot_id": temp_id})
        try:
            taken = self.source.snapshot(location, temp_id)
            LOG.info("Backup %s reads temporary snapshot %s of in-use volume %s",
                     backup.id, temp_id, volume.id)
            yield taken
        finally:
            remove_temp_snapshot(self.source, temp_id)
            db.backup_update(ctx, backup.id, {"temp_snapshot_id": None})

    @staticmethod
    def _return_source(ctx, volume, snapshot) -> None:
        if snapshot is not None:
            db.snapshot_cas_status(ctx, snapshot.id, S.AVAILABLE, [S.BACKING_UP])
            return
        previous = volume.previous_status or V.AVAILABLE
        if previous not in (V.AVAILABLE, V.IN_USE):
            previous = V.AVAILABLE
        db.volume_cas_status(ctx, volume.id, previous, [V.BACKING_UP],
                             previous_status=V.BACKING_UP)

    @staticmethod
    def _safe_delete(store, container: str | None, prefix: str | None) -> None:
        if not (container and prefix):
            return
        try:
            engine.run_delete(store, container, prefix)
        except Exception:
            LOG.exception("Could not remove objects %s/%s*", container, prefix)

    # ----------------------------------------------------------- restore
    def _restore_backup(self, backup_id: str, volume_id: str, volume_is_new: bool,
                        user_ctx=None) -> None:
        ctx = get_admin_context()
        store = storage.get_store(CONF, user_ctx)
        with db.writing(ctx):       # the statuses move together or not at all
            backup = db.backup_get(ctx, backup_id, project_only=False)
            volume = db.volume_get(ctx, volume_id, project_only=False)
            if backup.status != B.RESTORING or volume.status != V.RESTORING_BACKUP:
                LOG.warning("Restore of backup %s to volume %s not started: backup is %s, "
                            "volume is %s", backup_id, volume_id, backup.status,
                            volume.status)
                # Cancelled before it started: same outcome as a cancel mid-way.
                db.backup_cas_status(ctx, backup.id, B.AVAILABLE, [B.ERROR],
                                     admin_override=True)
                db.volume_cas_status(ctx, volume.id, V.ERROR, [V.RESTORING_BACKUP])
                return
        notifications.notify(ctx, backup, "restore.start", restore_volume_id=volume.id)
        try:
            chain = backup_chain(ctx, backup)
            layers = [engine.Layer(b.container, b.service_metadata) for b in chain]
            metadata = engine.read_metadata(store, backup.container,
                                            backup.service_metadata)
            size = source_size(store, layers, metadata)
            target_size = self.source.size(volume.provider_location)
            if size > target_size:
                raise exception.InvalidVolume(
                    reason="volume %s holds %d bytes, the backup needs %d"
                    % (volume.id, target_size, size))
            with self.source.open_write(volume.provider_location) as writer, \
                    StatusWatch(backup.id, B.RESTORING) as watch:
                result = engine.run_restore(layers, writer, size, self.params,
                                            cancelled=watch, target_is_zeroed=volume_is_new,
                                            store=store)
            _apply_volume_meta(ctx, volume, metadata.volume_meta)
        except engine.Cancelled:
            LOG.info("Restore of backup %s to volume %s was cancelled", backup.id, volume.id)
            # Cinder's rule: the backup is usable again; the volume's content is unknown.
            with db.writing(ctx):
                db.backup_cas_status(ctx, backup.id, B.AVAILABLE, [B.ERROR, B.RESTORING],
                                     admin_override=True)
                db.volume_cas_status(ctx, volume.id, V.ERROR, [V.RESTORING_BACKUP])
                row = db.backup_get(ctx, backup.id, project_only=False, read_deleted=True)
            notifications.notify(ctx, row, "restore.end")
            return
        except Exception as exc:
            LOG.exception("Restore of backup %s to volume %s failed", backup.id, volume.id)
            with db.writing(ctx):
                db.backup_cas_status(ctx, backup.id, B.AVAILABLE, [B.RESTORING])
                db.volume_cas_status(ctx, volume.id, V.ERROR_RESTORING, [V.RESTORING_BACKUP])
                row = db.backup_get(ctx, backup.id, project_only=False)
            notifications.notify(ctx, row, "restore.error", restore_volume_id=volume.id,
                                 fail_reason=_reason(exc))
            return
        with db.writing(ctx):       # the volume and the backup become available together
            db.volume_cas_status(ctx, volume.id, V.AVAILABLE, [V.RESTORING_BACKUP])
            db.backup_cas_status(ctx, backup.id, B.AVAILABLE, [B.RESTORING])
            row = db.backup_get(ctx, backup.id, project_only=False, read_deleted=True)
        notifications.notify(ctx, row, "restore.end")
        LOG.info("Restored backup %s to volume %s: %d bytes written", backup.id, volume.id,
                 result.bytes_written)

    # ------------------------------------------------------------ delete
    def _delete_backup(self, backup_id: str, user_ctx=None) -> None:
        ctx = get_admin_context()
        store = storage.get_store(CONF, user_ctx)
        backup = db.backup_get(ctx, backup_id, project_only=False)
        if backup.status != B.DELETING:
            LOG.info("Backup %s is %s, not deleting; nothing to do", backup_id, backup.status)
            return
        notifications.notify(ctx, backup, "delete.start")
        try:
            if db.backup_objects_shared(ctx, backup):
                # Never delete what another backup record still restores from.
                LOG.info("Backup %s shares its objects with another record; keeping them",
                         backup.id)
            elif backup.container and backup.service_metadata:
                engine.run_delete(store, backup.container, backup.service_metadata)
        except Exception as exc:
            LOG.exception("Deleting the objects of backup %s failed", backup.id)
            db.backup_cas_status(ctx, backup.id, B.ERROR_DELETING, [B.DELETING],
                                 fail_reason=str(exc)[:255])
            self._notify_current(ctx, backup.id, "delete.error")
            return
        if db.backup_cas_status(ctx, backup.id, B.DELETED, [B.DELETING]):
            if backup.parent_id:
                db.backup_adjust_dependents(ctx, backup.parent_id, -1)
            LOG.info("Backup %s deleted", backup.id)
            self._notify_current(ctx, backup.id, "delete.end")

    # ------------------------------------------------------------ import
    def _import_record(self, backup_id: str, user_ctx=None) -> None:
        ctx = get_admin_context()
        store = storage.get_store(CONF, user_ctx)
        backup = db.backup_get(ctx, backup_id, project_only=False)
        if backup.status != B.CREATING:
            return
        try:
            metadata = engine.read_metadata(store, backup.container,
                                            backup.service_metadata)
            if metadata.backup_id != backup.id:
                # A record imported under a new id (tempest's export/import
                # test does this) shares the objects of the original backup.
                LOG.info("Backup %s imports the objects of backup %s",
                         backup.id, metadata.backup_id)
        except Exception as exc:
            LOG.exception("Import of backup %s failed", backup.id)
            db.backup_cas_status(ctx, backup.id, B.ERROR, [B.CREATING],
                                 fail_reason=("Import failed: %s" % exc)[:255])
            return
        db.backup_cas_status(ctx, backup.id, B.AVAILABLE, [B.CREATING],
                             service=self.service)
        LOG.info("Backup %s imported", backup.id)
