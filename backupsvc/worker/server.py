"""The worker process: RPC server, bounded job pool, heartbeat, start-up recovery."""

import contextlib
import fcntl
import gc
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_log import log as logging

from backupsvc import memory, rpc
from backupsvc.context import get_admin_context
from backupsvc.db import api as db
from backupsvc.drivers.base import StoreError
from backupsvc.states import BackupStatus as B
from backupsvc.states import SnapshotStatus as S
from backupsvc.states import VolumeStatus as V
from backupsvc.worker import manager as worker_manager
from backupsvc.worker import storage
from backupsvc.worker.manager import JOB_OF_STATUS, claim_key

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

RESTART_REASON = "incomplete backup reset on manager restart"


SLOT_POLL = 0.2     # seconds between two looks for a free operation slot


class _FileLock:
    """An exclusive flock on a file: the kernel drops it when its holder dies, so a
    crashed process gives back what it held (a semaphore would keep it taken)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def try_acquire(self) -> int | None:
        """The locked descriptor, or None if another holder has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)            # (closing the last descriptor unlocks)


class OperationSlots:
    """backup_max_operations for all the processes of a worker: ``count`` lock
    files; a job runs while it holds one."""

    def __init__(self, directory: str, count: int) -> None:
        os.makedirs(directory, exist_ok=True)
        self._locks = [_FileLock(os.path.join(directory, "operation-%d.lock" % i))
                       for i in range(count)]

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Wait for a free slot (any order) and hold it for the block."""
        while True:
            for lock in self._locks:
                fd = lock.try_acquire()
                if fd is not None:
                    try:
                        yield
                    finally:
                        os.close(fd)
                    return
            time.sleep(SLOT_POLL)


class JobClaims:
    """Which process of the worker runs which job: while a process holds a job
    (waiting for a slot or running), it holds a lock on the job's file under
    ``directory``, created when the job arrives and removed when it ends.

    A process that dies leaves its files behind, unlocked: those jobs are
    orphans, which the process started in its place recovers. A job still
    queued in the message broker has no file, so it is not mistaken for one.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, "%s.lock" % key)

    def claim(self, key: str) -> int | None:
        """The locked descriptor of job ``key``'s file (None: another holder has it)."""
        return _FileLock(self._path(key)).try_acquire()

    def release(self, key: str, fd: int | None) -> None:
        """End the claim: the file goes first, so nobody finds it unlocked."""
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))
        os.close(fd)

    def take_orphan(self, key: str) -> int | None:
        """The locked descriptor of job ``key``'s file if a process that died left it
        (None if the job never arrived, ended, or runs)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Locked only after its holder ended the claim and removed the file?
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)
        return None

    def clear(self) -> None:
        """Forget every claim (start-up recovery: no process of the worker runs)."""
        for name in os.listdir(self.directory):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))


class ProcessShared:
    """What the processes of one worker (``backup_workers`` > 1) share: made by
    the parent before it forks them.

    * ``slots``: backup_max_operations is a limit for the whole worker, not
      per process (None: unlimited). Lock files under ``state_path``, which a
      process that dies gives back;
    * start-up recovery runs once, in the first process to start, and the
      others wait for it before they serve: a process that served first could
      see its new jobs reset by another one's recovery. (If the recovering
      process dies, the next one recovers.);
    * ``claims``: a process started again later (after a crash) recovers only
      the jobs the dead process held (see :class:`JobClaims`): the others'
      jobs are running.
    """

    def __init__(self, max_operations: int, directory: str) -> None:
        self.slots = OperationSlots(directory, max_operations) if max_operations else None
        self.claims = JobClaims(os.path.join(directory, "jobs"))
        self._recovery = _FileLock(os.path.join(directory, "recovery.lock"))
        # Shared memory, fresh for every start of the worker.
        self._recovered = multiprocessing.get_context("fork").Value("b", 0, lock=False)

    def recover_once(self, recover_rows: Callable[[], None],
                     recover_orphans: Callable[[], None]) -> None:
        """The host's start-up recovery in the first process to start; the jobs of a
        dead process in a process started in its place."""
        with self._recovery.held():
            if not self._recovered.value:
                self.claims.clear()     # nothing runs: every row is recovered
                recover_rows()
                self._recovered.value = 1
            else:
                recover_orphans()


def shared_state_dir(host: str) -> str:
    """Where the processes of this host's worker keep their lock files."""
    return os.path.join(CONF.state_path, "worker-%s" % host)


class JobPool:
    """At most backup_max_operations jobs run at once; the rest wait in order."""

    def __init__(self, size: int, slots: OperationSlots | None = None,
                 claims: JobClaims | None = None):
        # 0 means unlimited in Cinder; a generous cap keeps threads bounded.
        self._executor = futures.ThreadPoolExecutor(max_workers=size or 64,
                                                    thread_name_prefix="backup-job")
        self._slots = slots         # shared with the worker's other processes
        self._claims = claims

    def _run(self, fn: Callable, *args: Any) -> Any:
        if self._slots is None:
            return fn(*args)
        with self._slots.held():
            return fn(*args)

    def _run_claimed(self, key: str, fd: int | None, fn: Callable, *args: Any) -> Any:
        assert self._claims is not None
        try:
            return self._run(fn, *args)
        finally:
            self._claims.release(key, fd)

    def submit(self, fn, *args, claim: str | None = None) -> futures.Future:
        """Run ``fn(*args)`` in the pool. ``claim`` names the job (manager.claim_key)
        for crash recovery when the worker runs in several processes."""
        if self._claims is not None and claim is not None:
            # Claimed on arrival, before the job waits for a thread or a slot.
            fn, args = self._run_claimed, (claim, self._claims.claim(claim), fn, *args)
        else:
            fn, args = self._run, (fn, *args)
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._log_failure)
        future.add_done_callback(memory.release_memory)
        return future

    @staticmethod
    def _log_failure(future: futures.Future) -> None:
        exc = future.exception()
        if exc is not None:
            LOG.error("Backup job crashed: %s", exc, exc_info=exc)

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


def recover(host: str, manager: worker_manager.BackupManager) -> None:
    """Move rows this host left mid-flight to a safe state (Cinder's start-up rules).

    Nothing survives a crash in memory, so 'creating' and 'restoring' cannot
    still be running here: a backup goes to 'error' (partial objects are
    removed, its volume returns), a restore ends with the backup 'available'
    and the volume 'error_restoring'. Deletes are resumed (in the job pool unless
    backup_service_inithost_offload is False).
    """
    ctx = get_admin_context()
    for backup in db.backup_get_by_host_and_status(ctx, host, list(JOB_OF_STATUS)):
        recover_row(ctx, backup, manager)


def recover_orphans(host: str, manager: worker_manager.BackupManager,
                    claims: JobClaims) -> None:
    """:func:`recover` for the rows whose job a dead process of this worker held."""
    ctx = get_admin_context()
    for backup in db.backup_get_by_host_and_status(ctx, host, list(JOB_OF_STATUS)):
        key = claim_key(JOB_OF_STATUS[backup.status], backup.id)
        fd = claims.take_orphan(key)
        if fd is None:
            continue            # queued, running in another process, or just ended
        try:
            LOG.warning("The process that ran the %s job of backup %s died",
                        JOB_OF_STATUS[backup.status], backup.id)
            recover_row(ctx, backup, manager)
        finally:
            claims.release(key, fd)


def recover_row(ctx, backup, manager: worker_manager.BackupManager) -> None:
    """One row of :func:`recover`."""
    if backup.status == B.CREATING:
        LOG.warning("Backup %s was creating when this worker stopped; marking it error",
                    backup.id)
        if backup.temp_snapshot_id:
            worker_manager.remove_temp_snapshot(manager.source, backup.temp_snapshot_id)
            db.backup_update(ctx, backup.id, {"temp_snapshot_id": None})
        if db.backup_cas_status(ctx, backup.id, B.ERROR, [B.CREATING],
                                fail_reason=RESTART_REASON):
            manager._safe_delete(storage.get_store(CONF), backup.container,
                                 backup.service_metadata)
            _return_backup_source(ctx, backup)
    elif backup.status == B.RESTORING:
        LOG.warning("Backup %s was restoring when this worker stopped", backup.id)
        db.backup_cas_status(ctx, backup.id, B.AVAILABLE, [B.RESTORING])
        if backup.restore_volume_id:
            db.volume_cas_status(ctx, backup.restore_volume_id, V.ERROR_RESTORING,
                                 [V.RESTORING_BACKUP])
    elif CONF.backup_service_inithost_offload:
        LOG.info("Resuming the delete of backup %s", backup.id)
        manager.delete_backup(ctx, backup.id)
    else:
        LOG.info("Resuming the delete of backup %s before serving", backup.id)
        manager.delete_backup_now(backup.id)


def _return_backup_source(ctx, backup) -> None:
    if backup.snapshot_id:
        db.snapshot_cas_status(ctx, backup.snapshot_id, S.AVAILABLE, [S.BACKING_UP])
        return
    try:
        volume = db.volume_get(ctx, backup.volume_id, project_only=False)
    except Exception:
        return
    previous = volume.previous_status if volume.previous_status in (
        V.AVAILABLE, V.IN_USE) else V.AVAILABLE
    db.volume_cas_status(ctx, volume.id, previous, [V.BACKING_UP],
                         previous_status="error_backing-up")


def mark_down(host: str) -> None:
    """Say in the services table that this host's worker stopped."""
    try:
        db.service_mark_down(get_admin_context(), host, rpc.WORKER_BINARY)
    except Exception:
        LOG.exception("Could not mark this worker down")


def check_repository() -> None:
    """Raise StoreError unless the configured repository can take backups now."""
    storage.get_store(CONF).check()


def wait_for_repository(stopping: threading.Event) -> bool:
    """Check the repository every backup_driver_init_check_interval seconds until it
    can take backups (True) or the worker is stopping (False)."""
    while True:
        try:
            check_repository()
            return True
        except StoreError as exc:
            LOG.error("The backup repository cannot take backups (%s); this worker serves "
                      "no job until it can, checking again in %d s "
                      "(backup_driver_init_check_interval)",
                      exc, CONF.backup_driver_init_check_interval)
        if stopping.wait(CONF.backup_driver_init_check_interval):
            return False


class Heartbeat(threading.Thread):
    """Beats every ``interval`` seconds while the repository passes its check (run
    every backup_driver_stats_polling_interval seconds); while it fails, the worker
    is marked down, so that the API sends its jobs elsewhere (or refuses them)."""

    def __init__(self, host: str, interval: int, mark_down_on_stop: bool = True):
        super().__init__(name="heartbeat", daemon=True)
        self.host, self.interval = host, interval
        # One of several processes stopping (or restarted) leaves the host up.
        self.mark_down_on_stop = mark_down_on_stop
        self._stop_event = threading.Event()
        self.repository_ok = True
        self._checked_at = time.monotonic()

    def beat(self) -> None:
        db.service_heartbeat(get_admin_context(), self.host, rpc.WORKER_BINARY,
                             rpc.BACKUP_TOPIC, CONF.storage_availability_zone)

    def _check_repository(self) -> None:
        if time.monotonic() - self._checked_at < CONF.backup_driver_stats_polling_interval:
            return
        self._checked_at = time.monotonic()
        try:
            check_repository()
        except StoreError as exc:
            if self.repository_ok:
                LOG.error("The backup repository cannot take backups (%s); this worker "
                          "takes no new job until it can", exc)
                mark_down(self.host)
            self.repository_ok = False
            return
        if not self.repository_ok:
            LOG.info("The backup repository takes backups again; this worker is back")
        self.repository_ok = True

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self._check_repository()
                if self.repository_ok:
                    self.beat()
            except Exception:
                LOG.exception("Heartbeat failed; will retry")

    def stop(self) -> None:
        self._stop_event.set()
        if self.mark_down_on_stop:
            mark_down(self.host)


class WorkerService:
    """Start order: recover rows, serve RPC, then announce liveness.

    ``shared``: this is one of the worker's several processes (see
    :class:`ProcessShared`).
    """

    def __init__(self, host: str | None = None, shared: ProcessShared | None = None):
        self.host = host or CONF.host
        self.shared = shared
        self._stopping = threading.Event()
        self._serving = False
        memory.tune_malloc()
        # The libraries' objects never become garbage: out of the cyclic
        # collector's sight, the collections a job triggers do not walk them.
        gc.freeze()
        self.pool = JobPool(CONF.backup_max_operations, shared.slots if shared else None,
                            shared.claims if shared else None)
        self.manager = worker_manager.BackupManager(self.host, self.pool.submit)
        self.heartbeat = Heartbeat(self.host, CONF.report_interval,
                                   mark_down_on_stop=shared is None)
        target = messaging.Target(topic=rpc.BACKUP_TOPIC, server=self.host)
        self.rpc_server = messaging.get_rpc_server(
            rpc.get_transport(), target, [self.manager], executor="threading",
            serializer=rpc.ContextSerializer())

    def start(self) -> None:
        if not wait_for_repository(self._stopping):
            return
        if self.shared is None:
            recover(self.host, self.manager)
        else:
            self.shared.recover_once(
                lambda: recover(self.host, self.manager),
                lambda: recover_orphans(self.host, self.manager, self.shared.claims))
        self._serving = True
        self.rpc_server.start()
        self.heartbeat.beat()
        self.heartbeat.start()
        LOG.info("backupsvc worker %s serving topic %s", self.host, rpc.BACKUP_TOPIC)

    def stop(self) -> None:
        self._stopping.set()
        self.heartbeat.stop()
        if self._serving:
            self.rpc_server.stop()
        self.pool.shutdown(wait=False)
        if self._serving:
            self.rpc_server.wait()
