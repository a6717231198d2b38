"""Object stores backups are written to."""

from backupsvc.drivers.base import (
    ContainerNotFound,
    InvalidName,
    ObjectNotFound,
    ObjectReader,
    ObjectStore,
    ObjectWriter,
    StoreError,
)

__all__ = [
    "ContainerNotFound",
    "InvalidName",
    "ObjectNotFound",
    "ObjectReader",
    "ObjectStore",
    "ObjectWriter",
    "StoreError",
]
