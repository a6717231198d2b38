"""backupsvc-all: the API and a worker in one process, on embedded defaults.

SQLite, in-process messaging (fake://), a POSIX repository and file volumes,
all under ./backupsvc-data unless the configuration says otherwise. It is
what a newcomer runs first; production runs backupsvc-api and
backupsvc-worker separately against a real database and RabbitMQ.
"""

import os
import socketserver
import threading
from wsgiref import simple_server

from oslo_config import cfg
from oslo_log import log as logging

from backupsvc import cmd, memory
from backupsvc.cmd import worker as worker_cmd

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def embedded_defaults() -> dict:
    state = os.path.abspath("backupsvc-data")
    return {
        "state_path": state,
        "database.connection": "sqlite:///$state_path/backupsvc.sqlite",
        "transport_url": "fake://",
        "backup_driver": "posix",
        "osapi_volume_listen": "127.0.0.1",
        "auth_strategy": "noauth",
        "host": "localhost",
    }


class ThreadingWSGIServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (wsgiref's signature)
        LOG.debug("%s - %s", self.address_string(), format % args)


class EmbeddedService(worker_cmd.WorkerProcessService):
    """The worker plus a threaded WSGI server for the API."""

    def start(self):
        from backupsvc.api.app import setup_app
        from backupsvc.db import migration

        try:
            os.makedirs(CONF.state_path, exist_ok=True)
            migration.upgrade()
        except Exception:
            LOG.exception("Could not prepare the embedded database in %s", CONF.state_path)
            os._exit(1)
        super().start()
        self.httpd = simple_server.make_server(
            CONF.osapi_volume_listen, CONF.osapi_volume_listen_port, setup_app(),
            server_class=ThreadingWSGIServer, handler_class=QuietHandler)
        threading.Thread(target=self.httpd.serve_forever, name="wsgi", daemon=True).start()
        LOG.info("backupsvc-all serving http://%s:%d with data in %s",
                 CONF.osapi_volume_listen, CONF.osapi_volume_listen_port, CONF.state_path)
        print("backupsvc-all: API on http://%s:%d/v3 , data in %s"
              % (CONF.osapi_volume_listen, CONF.osapi_volume_listen_port, CONF.state_path),
              flush=True)

    def stop(self, graceful=False):
        httpd = getattr(self, "httpd", None)
        if httpd is not None:
            httpd.shutdown()
        super().stop(graceful)


def main() -> None:
    # Before any thread exists: an arena a thread made before this would stay.
    memory.tune_malloc()
    cmd.prepare(defaults=embedded_defaults())
    worker_cmd.check_worker_config()
    if CONF.backup_workers > 1:
        # In-process messaging reaches this process only.
        LOG.warning("backup_workers = %d is ignored by backupsvc-all, which runs one "
                    "worker in its own process; run backupsvc-worker for more",
                    CONF.backup_workers)
    worker_cmd.run_until_signalled(EmbeddedService())
