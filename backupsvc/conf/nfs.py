"""Options of the NFS backup repository (``backup_driver = nfs``).

The first four are Cinder's NFS backup options with Cinder's names and
defaults, so a cinder.conf NFS section works unchanged. The chunk, SHA block
and progress-timer options are the posix ones in :mod:`backupsvc.conf.backup`.
"""

from oslo_config import cfg

KERNEL = "kernel"
USERSPACE = "userspace"

opts = [
    cfg.StrOpt("backup_share",
               help="NFS share in hostname:path, ipv4addr:path or "
                    "\"[ipv6addr]:path\" format, e.g. nfs.example.com:/srv/backups. "
                    "Required by the NFS backup driver."),
    cfg.StrOpt("backup_mount_options",
               help="Comma-separated NFS mount options, as for mount -o "
                    "(see nfs(5)). The userspace client honours vers/nfsvers, "
                    "minorversion, port, mountport and resvport/noresvport, "
                    "and ignores the others."),
    cfg.StrOpt("backup_mount_point_base", default="$state_path/backup_mount",
               help="Base directory of the NFS mount points; each share is "
                    "mounted on <base>/<md5 hex of the share string>."),
    cfg.IntOpt("backup_mount_attempts", default=3, min=1,
               help="Number of attempts to mount the NFS share before failing."),
    cfg.StrOpt("backup_nfs_client", default=KERNEL, choices=[
                   (KERNEL, "Mount the share with the kernel NFS client (mount -t "
                            "nfs, needs root rights) and store backups as files "
                            "under the mount point, as Cinder does."),
                   (USERSPACE, "Speak NFS from the worker process itself (the "
                               "nfs-rs package): no mount, no root rights and "
                               "no kernel NFS client needed.")],
               help="How the worker reaches the NFS share."),
    cfg.IntOpt("backup_nfs_timeout", default=60, min=1,
               help="Userspace client only: seconds to wait for the connection "
                    "and for each NFS operation before failing."),
    cfg.StrOpt("backup_nfs_root_helper", default="",
               help="Kernel client only: command prefix that runs mount, chgrp "
                    "and chmod with root rights, e.g. 'sudo'. Empty runs them "
                    "directly (the worker runs as root)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)
