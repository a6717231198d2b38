from oslo_config import cfg

opts = [
    cfg.IntOpt("quota_backups", default=10,
               help="Number of volume backups allowed per project; -1 is unlimited."),
    cfg.IntOpt("quota_backup_gigabytes", default=1000,
               help="Total amount of backup storage, in GiB, allowed per project; "
                    "-1 is unlimited."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)
