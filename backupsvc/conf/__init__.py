"""Configuration: one module per option group, all registered on CONF.

Option names and defaults follow Cinder wherever Cinder has the option, so an
operator's cinder.conf backup section works unchanged.
"""

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_db import options as db_options
from oslo_log import log as logging
from oslo_messaging import opts as messaging_opts

from backupsvc.conf import api, backup, nfs, quota, service, swift, volumes

CONF = cfg.CONF

for _module in (api, backup, nfs, quota, service, swift, volumes):
    _module.register_opts(CONF)

logging.register_options(CONF)
# Register transport_url and friends now, so tests and tools can override them
# before the first transport exists.
messaging.set_transport_defaults(control_exchange="backupsvc")
for _group, _opts in messaging_opts.list_opts():
    CONF.register_opts(_opts, group=None if _group in (None, "DEFAULT") else _group)
db_options.set_defaults(CONF, connection="sqlite:////var/lib/backupsvc/backupsvc.sqlite")
