"""``backupsvc.wsgi.api:application`` for uWSGI, mod_wsgi or gunicorn.

Configuration comes from the file named by ``BACKUPSVC_CONFIG_FILE``, else
``/etc/backupsvc/backupsvc.conf`` when it exists, else the defaults.
"""

from __future__ import annotations

import os

from oslo_config import cfg
from oslo_log import log as logging

from backupsvc import conf as _conf  # noqa: F401  (registers options)
from backupsvc.api import app

CONF = cfg.CONF
DEFAULT_CONFIG = "/etc/backupsvc/backupsvc.conf"
CONFIG_ENV = "BACKUPSVC_CONFIG_FILE"


def config_files() -> list[str]:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return [explicit]
    return [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []


def init_application():
    # The WSGI server owns argv, so only configuration files are read.
    CONF([], project="backupsvc", default_config_files=config_files(),
         default_config_dirs=[])
    logging.setup(CONF, "backupsvc")
    return app.setup_app(CONF)


application = init_application()
