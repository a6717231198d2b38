"""Parameters, records and results shared by the backup and restore engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from backupsvc.chunking.compression import normalize_compression
from backupsvc.chunking.manifest import COMPACT_VERSION, SUPPORTED_VERSIONS

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 1999994880          # Cinder's backup_file_size default
DEFAULT_SHA_BLOCK_SIZE = 32768
DEFAULT_PIECE_SIZE = 4 * MiB


@dataclass(frozen=True)
class EngineParams:
    chunk_size: int = DEFAULT_CHUNK_SIZE
    sha_block_size: int = DEFAULT_SHA_BLOCK_SIZE
    compression: str | None = "zlib"
    workers: int = 2
    piece_size: int = DEFAULT_PIECE_SIZE
    skip_zero_blocks: bool = True
    # What new backups are written in: "2.0.0" (compact, framed, explicit zero
    # extents) or Cinder's "1.0.0". Both are always read.
    format_version: str = COMPACT_VERSION

    def __post_init__(self) -> None:
        if self.format_version not in SUPPORTED_VERSIONS:
            raise ValueError("unknown backup format version %r; use one of %s"
                             % (self.format_version, ", ".join(sorted(SUPPORTED_VERSIONS))))
        if self.sha_block_size <= 0 or self.chunk_size <= 0:
            raise ValueError("chunk_size and sha_block_size must be positive")
        if self.chunk_size % self.sha_block_size:
            raise ValueError(
                "chunk_size (backup_file_size, %d) must be a multiple of sha_block_size "
                "(backup_sha_block_size_bytes, %d)" % (self.chunk_size, self.sha_block_size))
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.piece_size <= 0:
            raise ValueError("piece_size must be positive")
        # Frozen dataclass: normalise through object.__setattr__.
        object.__setattr__(self, "compression", normalize_compression(self.compression))
        blocks = -(-self.piece_size // self.sha_block_size)
        object.__setattr__(self, "piece_size", blocks * self.sha_block_size)


@dataclass(frozen=True)
class BackupDescription:
    """The backup record fields written into the sha256 and metadata files."""

    backup_id: str
    volume_id: str
    name: str | None
    description: str | None
    created_at: str
    parent_id: str | None
    volume_meta: str | None = None
    extra_metadata: Any = None   # written to the metadata file only when not None


@dataclass
class BackupResult:
    object_count: int = 0        # data objects written
    bytes_read: int = 0          # volume bytes read (holes of sparse files are not read)
    hole_bytes: int = 0          # volume bytes found in holes: zeros, neither read nor hashed
    bytes_stored: int = 0        # bytes of data objects as stored (compressed)
    changed_blocks: int = 0      # sha blocks that differ from the parent (all, for a full)
    zero_blocks: int = 0         # changed blocks not stored because they are all zeros


@dataclass
class RestoreResult:
    bytes_written: int = 0       # bytes passed to writer.pwrite
    # bytes restored as zeros: via write_zeros, or skipped on a zeroed target
    zero_bytes: int = 0
    objects_read: int = 0


@dataclass(frozen=True)
class Layer:
    """One backup of a restore chain."""

    container: str
    prefix: str


class VolumeReader(Protocol):
    def readinto(self, buffer: bytearray | memoryview, /) -> int | None: ...


class RestoreWriter(Protocol):
    def pwrite(self, data: bytes | memoryview, offset: int) -> None: ...

    def write_zeros(self, offset: int, length: int) -> None: ...

    def flush(self) -> None: ...
