"""Where volumes live: the interface the engines use and its implementations."""

from backupsvc.sources.base import (
    SourceError,
    SourceNotAllowed,
    SourceNotFound,
    VolumeSource,
    VolumeWriter,
)
from backupsvc.sources.file import FileVolumeSource, FileVolumeWriter

__all__ = [
    "FileVolumeSource",
    "FileVolumeWriter",
    "SourceError",
    "SourceNotAllowed",
    "SourceNotFound",
    "VolumeSource",
    "VolumeWriter",
]
