from oslo_config import cfg

opts = [
    cfg.StrOpt("volume_name_template", default="volume-%s",
               help="Template string used to generate volume names."),
    cfg.StrOpt("snapshot_name_template", default="snapshot-%s",
               help="Template string used to generate snapshot names."),
    cfg.StrOpt("file_volumes_dir", default="$state_path/volumes",
               help="Directory that holds the sparse files of the volumes this "
                    "service creates."),
    cfg.BoolOpt("backup_use_temp_snapshot", default=False,
                help="Back up an in-use volume (force) from a temporary snapshot "
                     "taken as the backup starts: one point in time, not a volume "
                     "changing while it is read. The snapshot is a reflink where "
                     "the file system has them (btrfs, XFS), instant and sharing "
                     "the data; elsewhere a sparse copy of the volume."),
    cfg.ListOpt("file_volume_manage_dirs", default=[],
                help="Directories from which an admin may adopt existing raw files "
                     "or block devices as volumes (manage-existing). Empty: "
                     "manage-existing is refused."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)
