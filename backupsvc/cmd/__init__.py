"""Console entry points. Each parses configuration, sets up logging, and runs."""

import os
import sys

from oslo_config import cfg
from oslo_log import log as logging

from backupsvc import conf as _conf  # noqa: F401  (registers options)

CONF = cfg.CONF
DEFAULT_CONFIG = "/etc/backupsvc/backupsvc.conf"


def prepare(argv: list[str] | None = None, defaults: dict | None = None) -> None:
    """Parse the command line and config files, then set up oslo.log."""
    from oslo_service import backend

    if backend.get_backend_type() != backend.BackendType.THREADING:
        sys.exit("backupsvc: oslo.service's eventlet backend was selected before "
                 "backupsvc was imported; backupsvc runs on native threads only")
    for name, value in (defaults or {}).items():
        group, _, option = name.rpartition(".")
        CONF.set_default(option, value, group=group or None)
    config_files = [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []
    CONF(sys.argv[1:] if argv is None else argv, project="backupsvc",
         default_config_files=config_files)
    logging.setup(CONF, "backupsvc")
