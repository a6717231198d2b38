"""backupsvc-api: serve the REST API with gunicorn (threaded workers)."""

from gunicorn.app.base import BaseApplication
from oslo_config import cfg

from backupsvc import cmd

CONF = cfg.CONF


class APIServer(BaseApplication):
    """gunicorn, configured from our options instead of its own command line."""

    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Each gunicorn worker builds its own app (and DB engine) after the fork.
        from backupsvc.api.app import setup_app

        return setup_app()


def gunicorn_options() -> dict:
    return {
        "bind": "%s:%d" % (CONF.osapi_volume_listen, CONF.osapi_volume_listen_port),
        "workers": CONF.osapi_volume_workers,
        "worker_class": "gthread",
        "threads": CONF.osapi_volume_threads,
        "timeout": 300,
        "graceful_timeout": 10,
        "accesslog": None,
        "proc_name": "backupsvc-api",
        # One shared control socket per user would collide between API servers.
        "control_socket_disable": True,
    }


def main() -> None:
    cmd.prepare()
    APIServer(gunicorn_options()).run()
