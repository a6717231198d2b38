import socket

from oslo_config import cfg

opts = [
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this node; the worker's RPC server listens on it."),
    cfg.StrOpt("storage_availability_zone", default="nova",
               help="Availability zone of this node."),
    cfg.IntOpt("report_interval", default=10, min=1,
               help="Seconds between worker heartbeats into the services table."),
    cfg.IntOpt("service_down_time", default=60, min=1,
               help="Maximum seconds since the last heartbeat for a worker to be up."),
    cfg.IntOpt("backup_max_operations", default=15, min=0,
               help="Maximum number of concurrent backup and restore operations "
                    "of one worker (all its processes together); 0 means unlimited."),
    # (At most the number of CPUs, checked when the worker starts: a maximum
    # here would put this machine's CPU count into the sample config.)
    cfg.IntOpt("backup_workers", default=1, min=1,
               help="Number of worker processes to launch (at most the number of "
                    "CPUs). Concurrent jobs then run in several processes, each "
                    "with its own interpreter lock."),
    cfg.BoolOpt("backup_service_inithost_offload", default=True,
                help="Resume the deletes a stopped worker left unfinished in its "
                     "job pool, while it serves (True), or before it serves."),
    cfg.BoolOpt("backup_use_same_host", default=False,
                help="Backups run on the backed-up volume's host when a worker is up "
                     "there, and a backup is restored, deleted or exported only by "
                     "the worker of the host that made it (a POSIX repository on "
                     "local disks). Otherwise they prefer that host and fall back "
                     "to any live worker."),
    cfg.IntOpt("backup_driver_init_check_interval", default=60, min=5,
               help="Seconds between two checks of the backup repository while the "
                    "worker starts: it serves (and heartbeats) only once the "
                    "repository can take backups."),
    cfg.IntOpt("backup_driver_stats_polling_interval", default=60, min=10,
               deprecated_name="backup_driver_status_check_interval",
               help="Seconds between two checks of the backup repository while the "
                    "worker runs: while the check fails the worker stops "
                    "heartbeating, so no new job is sent to it."),
    cfg.IntOpt("backup_native_threads_pool_size", default=60, min=20,
               help="Size of the worker's pool for RPC dispatch."),
    cfg.StrOpt("state_path", default="/var/lib/backupsvc",
               help="Top-level directory for maintaining backupsvc's state."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)
