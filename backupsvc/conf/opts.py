"""List of options for oslo-config-generator (entry point oslo.config.opts)."""

import itertools

from backupsvc.conf import api, backup, nfs, quota, service, swift, volumes


def list_opts():
    return [
        ("DEFAULT", list(itertools.chain(api.opts, backup.opts, nfs.opts, quota.opts,
                                         service.opts, swift.opts, volumes.opts))),
        (swift.SERVICE_USER_GROUP, swift.list_service_user_opts()),
    ]
