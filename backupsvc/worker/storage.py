"""The worker's repository and engine settings, built from configuration."""

from oslo_config import cfg

from backupsvc.chunking.engine import EngineParams
from backupsvc.conf.backup import DRIVER_CLASS_PATHS, check_chunk_sizes, driver_short_name
from backupsvc.drivers import nfs
from backupsvc.drivers.posix import PosixStore
from backupsvc.drivers.swift import SwiftStore
from backupsvc.drivers.swift import check_sizes as check_swift_sizes

CONF = cfg.CONF


class DriverNotAvailable(RuntimeError):
    pass


def driver_name(conf: cfg.ConfigOpts = CONF) -> str:
    return driver_short_name(conf.backup_driver)


def service_name(conf: cfg.ConfigOpts = CONF) -> str:
    """Cinder's class path, recorded in backups.service and exported records."""
    return DRIVER_CLASS_PATHS[driver_name(conf)]


def get_store(conf: cfg.ConfigOpts = CONF, context=None):
    """The configured repository; ``context`` is the requesting user's (per_user auth)."""
    name = driver_name(conf)
    if name == "posix":
        return PosixStore.from_conf(conf)
    if name == "swift":
        return SwiftStore.from_conf(conf, context)
    if name == "nfs":
        return nfs.from_conf(conf)
    raise DriverNotAvailable("backup_driver %s is not available" % conf.backup_driver)


def engine_params(conf: cfg.ConfigOpts = CONF) -> EngineParams:
    """Chunk and SHA block sizes come from the driver's own options, as in Cinder."""
    if driver_name(conf) == "swift":
        chunk, block = conf.backup_swift_object_size, conf.backup_swift_block_size
    else:
        chunk, block = conf.backup_file_size, conf.backup_sha_block_size_bytes
    return EngineParams(chunk_size=chunk, sha_block_size=block,
                        compression=conf.backup_compression_algorithm,
                        workers=conf.backup_engine_threads,
                        skip_zero_blocks=conf.backup_skip_zero_blocks,
                        format_version=conf.backup_format_version)


def check_config(conf: cfg.ConfigOpts = CONF) -> None:
    """Refuse to start with a configuration that would fail every backup."""
    get_store(conf)
    if driver_name(conf) == "swift":
        check_swift_sizes(conf)
    else:
        check_chunk_sizes(conf.backup_file_size, conf.backup_sha_block_size_bytes,
                          "backup_file_size", "backup_sha_block_size_bytes")


def progress_timer_enabled(conf: cfg.ConfigOpts = CONF) -> bool:
    """Cinder's per-driver switch for periodic progress notifications."""
    if driver_name(conf) == "swift" and hasattr(conf, "backup_swift_enable_progress_timer"):
        return conf.backup_swift_enable_progress_timer
    return conf.backup_enable_progress_timer
