from oslo_config import cfg

# Cinder's class paths, recorded in backups.service and in exported records so
# that records move between Cinder and backupsvc in both directions.
DRIVER_CLASS_PATHS = {
    "posix": "cinder.backup.drivers.posix.PosixBackupDriver",
    "nfs": "cinder.backup.drivers.nfs.NFSBackupDriver",
    "swift": "cinder.backup.drivers.swift.SwiftBackupDriver",
}

opts = [
    cfg.StrOpt("backup_driver", default=DRIVER_CLASS_PATHS["swift"],
               help="Driver used for backups: a short name (posix, nfs, swift) or "
                    "Cinder's dotted name (cinder.backup.drivers.posix or "
                    "cinder.backup.drivers.posix.PosixBackupDriver)."),
    cfg.StrOpt("backup_compression_algorithm", default="zlib",
               ignore_case=True,
               choices=["none", "off", "no", "zlib", "gzip", "bz2", "bzip2", "zstd"],
               help="Compression algorithm for backup objects ('none' to disable)."),
    cfg.IntOpt("backup_file_size", default=1999994880,
               help="The maximum size in bytes of the files used to hold backups "
                    "(posix, nfs). Must be a multiple of backup_sha_block_size_bytes."),
    cfg.IntOpt("backup_sha_block_size_bytes", default=32768,
               help="The size in bytes that changes are tracked for incremental "
                    "backups. backup_file_size has to be a multiple of it."),
    cfg.BoolOpt("backup_enable_progress_timer", default=True,
                help="Send periodic progress notifications while backing up "
                     "to a posix or nfs repository."),
    cfg.StrOpt("backup_posix_path", default="$state_path/backup",
               help="Path specifying where to store backups."),
    cfg.StrOpt("backup_container",
               help="Custom directory to use for backups."),
    cfg.BoolOpt("backup_create_containers", default=True,
                help="Create the backup container (directory) when it is missing."),
    cfg.IntOpt("backup_timer_interval", default=120,
               help="Interval, in seconds, between two progress notifications."),
    cfg.IntOpt("backup_object_number_per_notification", default=10,
               help="The number of chunks or objects between two progress "
                    "notifications."),
    cfg.StrOpt("backup_name_template", default="backup-%s",
               help="Template string used to generate backup names."),
    cfg.IntOpt("backup_metadata_version", default=2,
               help="Version of the volume metadata stored with a backup."),
    cfg.IntOpt("backup_engine_threads", default=2, min=1,
               help="Threads one backup or restore uses for hashing and "
                    "compression (hashlib, zlib, bz2 and zstd release the GIL)."),
    cfg.BoolOpt("backup_skip_zero_blocks", default=True,
                help="Do not store SHA blocks that are all zeros; restores "
                     "recreate them from the SHA list."),
    cfg.StrOpt("backup_format_version", default="2.0.0", choices=["2.0.0", "1.0.0"],
               help="On-store format of new backups. 2.0.0 (compact SHA list, "
                    "explicit zero extents, framed objects with a checksum) is "
                    "faster and smaller; 1.0.0 is Cinder's chunked format, for "
                    "repositories that Cinder must be able to restore. Both are "
                    "always read, and an incremental may use another format "
                    "than its parent."),
]


def driver_short_name(value: str) -> str:
    """Map 'posix', 'cinder.backup.drivers.posix[.PosixBackupDriver]' to 'posix'."""
    name = value.strip()
    for short, path in DRIVER_CLASS_PATHS.items():
        module = path.rsplit(".", 1)[0]
        if name in (short, path, module, "backupsvc.drivers." + short):
            return short
    raise ValueError(
        "backup_driver %r is not known; use one of %s or Cinder's dotted names "
        "such as %s" % (value, ", ".join(DRIVER_CLASS_PATHS), DRIVER_CLASS_PATHS["posix"]))


def check_chunk_sizes(chunk_size: int, sha_block_size: int, chunk_option: str,
                      block_option: str) -> None:
    """Refuse at start-up what Cinder only refuses at the first backup."""
    if sha_block_size <= 0 or chunk_size <= 0:
        raise ValueError("%s and %s must be positive" % (chunk_option, block_option))
    if chunk_size % sha_block_size:
        raise ValueError(
            "%s (%d) must be a multiple of %s (%d); for example %d" % (
                chunk_option, chunk_size, block_option, sha_block_size,
                (chunk_size // sha_block_size or 1) * sha_block_size))


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)
