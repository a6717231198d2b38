"""Configuration: one module per option group, all registered on CONF.

Option names and defaults follow Cinder wherever Cinder has the option, so an
operator's cinder.conf backup section works unchanged.
"""

from oslo_config import cfg
from oslo_db import options as db_options
from oslo_log import log as logging

from backupsvc.conf import api, backup, quota, service, volumes

CONF = cfg.CONF

for _module in (api, backup, quota, service, volumes):
    _module.register_opts(CONF)

logging.register_options(CONF)
db_options.set_defaults(CONF, connection="sqlite:////var/lib/backupsvc/backupsvc.sqlite")
