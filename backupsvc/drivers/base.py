"""The object-store interface the chunking engine writes backups through.

A store holds named objects inside containers. Names are flat strings; a
container may contain ``/`` (the posix store maps it to nested directories).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """A store operation failed; the message says which container/object."""


class ObjectNotFound(StoreError):
    """The object (or its container) does not exist."""


class ContainerNotFound(StoreError):
    """The container is missing and the store may not create it."""


class InvalidName(StoreError, ValueError):
    """A container or object name is not acceptable (e.g. it escapes the store)."""


@runtime_checkable
class ObjectWriter(Protocol):
    def write(self, data: bytes | memoryview) -> int | None: ...


@runtime_checkable
class ObjectReader(Protocol):
    def read(self, size: int = -1) -> bytes: ...


@runtime_checkable
class ObjectStore(Protocol):
    def check(self) -> None:
        """Raise :class:`StoreError` if the repository cannot take backups now (the
        worker checks before it serves, and then periodically)."""

    def ensure_container(self, container: str) -> None:
        """Create the container if needed (and allowed)."""

    def open_writer(self, container: str, name: str) -> AbstractContextManager[ObjectWriter]:
        """Stream an object. It appears atomically on clean exit; never on exception."""

    def open_reader(self, container: str, name: str) -> AbstractContextManager[ObjectReader]:
        """Stream an object; raises :class:`ObjectNotFound`."""

    def put(self, container: str, name: str, data: bytes) -> None: ...

    def get(self, container: str, name: str) -> bytes: ...

    def delete(self, container: str, name: str) -> None:
        """Remove an object; a missing object is not an error."""

    def list(self, container: str, prefix: str) -> list[str]:
        """Sorted names of the complete objects starting with ``prefix``."""

    def default_container(self, backup_id: str) -> str: ...

    def object_prefix(self, volume_id: str, backup_id: str, timestamp: datetime) -> str: ...
