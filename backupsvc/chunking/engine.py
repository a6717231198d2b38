"""Public API of the chunking engine.

``run_backup`` writes one full or incremental backup in Cinder's chunked
format (version 1.0.0); ``run_restore`` restores the last backup of a chain in
a single pass; ``run_delete`` removes a backup's objects. The implementation
lives in the sibling modules; this one only gathers it.
"""

from __future__ import annotations

import re

from backupsvc.chunking import manifest, shafile
from backupsvc.chunking.backup import run_backup
from backupsvc.chunking.errors import Cancelled, FormatError, IntegrityError
from backupsvc.chunking.manifest import Metadata, ObjectEntry, Sha256File
from backupsvc.chunking.params import (
    BackupDescription,
    BackupResult,
    EngineParams,
    Layer,
    RestoreResult,
    RestoreWriter,
)
from backupsvc.chunking.restore import run_restore
from backupsvc.drivers.base import ObjectStore

__all__ = [
    "BackupDescription",
    "BackupResult",
    "Cancelled",
    "EngineParams",
    "FormatError",
    "IntegrityError",
    "Layer",
    "Metadata",
    "ObjectEntry",
    "RestoreResult",
    "RestoreWriter",
    "Sha256File",
    "read_metadata",
    "read_sha256s",
    "run_backup",
    "run_delete",
    "run_restore",
]


def read_sha256s(store: ObjectStore, container: str, prefix: str) -> tuple[int, list[str]]:
    """(sha block size, sha256 list) of a backup, e.g. the parent of an incremental."""
    sha = shafile.load(store, container, prefix)
    return sha.chunk_size, sha.sha256s


def read_metadata(store: ObjectStore, container: str, prefix: str) -> Metadata:
    return manifest.load_metadata(store, container, prefix)


def run_delete(store: ObjectStore, container: str, prefix: str) -> int:
    """Remove every object of one backup; returns how many there were.

    The metadata goes first so that an interrupted delete never leaves
    something that looks like a complete backup; a retry finishes the job.
    """
    own = re.compile(re.escape(prefix) + r"(-\d+|_sha256file|_metadata)\Z")
    names = [n for n in store.list(container, prefix) if own.match(n)]
    meta = manifest.metadata_name(prefix)
    names.sort(key=lambda n: n != meta)
    for name in names:
        store.delete(container, name)
    return len(names)
