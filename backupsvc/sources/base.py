"""The interface between the backup/restore engines and the volumes they work on.

A source hands out *locations* (opaque strings; for the file source, paths) and
the engines only ever use them through this interface, so another kind of
volume store can be plugged in later without touching the engines.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol, runtime_checkable


class SourceError(Exception):
    """Something about a volume source operation was wrong; the message says what."""


class SourceNotFound(SourceError):
    """The volume, snapshot or path does not exist."""


class SourceNotAllowed(SourceError):
    """The path may not be used: outside the allowed directories, wrong kind, unsafe id."""


@runtime_checkable
class VolumeWriter(Protocol):
    """Positional writer used by the restore engine.

    It never truncates or extends its target: writes past the end are refused.
    """

    def fileno(self) -> int: ...

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``."""

    def write_zeros(self, offset: int, length: int) -> None:
        """Make ``length`` bytes at ``offset`` read back as zeros (punching holes if possible)."""

    def flush(self) -> None:
        """Make everything written so far durable."""


@runtime_checkable
class VolumeSource(Protocol):
    """Where the volumes this service backs up and restores live."""

    def create(self, volume_id: str, size_bytes: int) -> str:
        """Create an empty (sparse) volume and return its location; never overwrites."""

    def delete(self, location: str) -> None:
        """Delete a volume this source created; adopted volumes are left on disk."""

    def size(self, location: str) -> int:
        """Size of the volume in bytes."""

    def open_read(self, location: str) -> AbstractContextManager[BinaryIO]:
        """Open the volume for large sequential reads."""

    def open_write(self, location: str) -> AbstractContextManager[VolumeWriter]:
        """Open the volume for positional writes."""

    def snapshot(self, location: str, snapshot_id: str) -> str:
        """Take a point-in-time copy of the volume and return the copy's location."""

    def delete_snapshot(self, location: str) -> None:
        """Delete a snapshot taken by :meth:`snapshot`."""

    def manage_existing(self, source_name: str) -> tuple[str, int]:
        """Validate an existing volume for adoption; return ``(location, size_bytes)``."""

    def extend(self, location: str, size_bytes: int) -> None:
        """Grow the volume to ``size_bytes``."""
