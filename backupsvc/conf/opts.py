"""List of options for oslo-config-generator (entry point oslo.config.opts)."""

import itertools

from backupsvc.conf import api, backup, quota, service, volumes


def list_opts():
    return [
        ("DEFAULT", list(itertools.chain(api.opts, backup.opts, quota.opts,
                                         service.opts, volumes.opts))),
    ]
