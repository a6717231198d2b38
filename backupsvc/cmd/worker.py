"""backupsvc-worker: serve backup, restore and delete jobs over RPC."""

import os
import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging
from oslo_service import service

from backupsvc import cmd, memory

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


class WorkerProcessService(service.Service):
    """oslo.service wrapper around the worker (RPC server, pool, heartbeat).

    ``shared``: the :class:`~backupsvc.worker.server.ProcessShared` of a worker
    running in several processes, each of which starts a copy of this service.
    """

    def __init__(self, shared=None):
        super().__init__()
        self.worker = None
        self.shared = shared

    def start(self):
        from backupsvc.worker.server import WorkerService

        super().start()
        try:
            self.worker = WorkerService(shared=self.shared)
            self.worker.start()
        except Exception:
            # The launcher would log this and carry on; a worker that cannot
            # start must exit non-zero so that its supervisor sees it.
            LOG.exception("The worker could not start")
            os._exit(1)

    def stop(self, graceful=False):
        if self.worker is not None:
            self.worker.stop()
        super().stop(graceful)


def check_worker_config() -> None:
    from backupsvc.db import api as db_api
    from backupsvc.drivers.base import StoreError
    from backupsvc.worker import storage

    try:
        storage.check_config(CONF)
    except (ValueError, storage.DriverNotAvailable) as exc:
        sys.exit("backupsvc-worker: configuration error: %s" % exc)
    except StoreError as exc:
        # The configuration is right but the repository cannot be reached yet (an
        # NFS server still starting): the worker waits for it before serving.
        LOG.warning("The backup repository is not reachable yet: %s", exc)
    cpus = os.cpu_count() or 1
    if CONF.backup_workers > cpus:
        sys.exit("backupsvc-worker: configuration error: backup_workers = %d, but this "
                 "machine has %d CPUs" % (CONF.backup_workers, cpus))
    db_api.configure()


def run_until_signalled(svc: service.Service) -> None:
    launcher = service.Launcher(CONF)
    launcher.launch_service(svc)

    def on_signal(signo, frame):
        LOG.info("Signal %d received; stopping", signo)
        threading.Thread(target=launcher.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    launcher.wait()


def run_processes(count: int) -> None:
    """``backup_workers`` > 1: that many processes serve the worker's queue.

    oslo.service's process launcher forks them (and forks a new one for any
    that dies); SIGTERM stops them all. Nothing that holds a connection (the
    database engine, messaging transports) exists before the fork: each
    process makes its own.
    """
    from backupsvc.worker.server import ProcessShared, mark_down, shared_state_dir

    shared = ProcessShared(CONF.backup_max_operations, shared_state_dir(CONF.host))
    launcher = service.ProcessLauncher(CONF, restart_method="mutate")
    launcher.launch_service(WorkerProcessService(shared), workers=count)
    LOG.info("backupsvc worker %s: %d processes", CONF.host, count)
    try:
        launcher.wait()
    finally:
        mark_down(CONF.host)


def main() -> None:
    # Before any thread exists: an arena a thread made before this would stay.
    memory.tune_malloc()
    cmd.prepare()
    check_worker_config()
    if CONF.backup_workers > 1:
        run_processes(CONF.backup_workers)
    else:
        run_until_signalled(WorkerProcessService())
