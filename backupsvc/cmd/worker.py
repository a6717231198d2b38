"""backupsvc-worker: serve backup, restore and delete jobs over RPC."""

import os
import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging
from oslo_service import service

from backupsvc import cmd

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


class WorkerProcessService(service.Service):
    """oslo.service wrapper around the worker (RPC server, pool, heartbeat)."""

    def __init__(self):
        super().__init__()
        self.worker = None

    def start(self):
        from backupsvc.worker.server import WorkerService

        super().start()
        try:
            self.worker = WorkerService()
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
    except (ValueError, storage.DriverNotAvailable, StoreError) as exc:
        sys.exit("backupsvc-worker: configuration error: %s" % exc)
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


def main() -> None:
    cmd.prepare()
    check_worker_config()
    run_until_signalled(WorkerProcessService())
