"""Helpers shared by the chunking engine tests (real files, a real PosixStore)."""

from __future__ import annotations

import io
import os
import random

from backupsvc.chunking.engine import (
    BackupDescription,
    BackupResult,
    EngineParams,
    Layer,
    RestoreResult,
    read_sha256s,
    run_backup,
    run_restore,
)
from backupsvc.drivers.posix import PosixStore

KiB = 1024
MiB = 1024 * KiB


class FileTarget:
    """Restore writer over a real file, as a volume source would hand out."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR)
        self.flushes = 0

    def _pwrite(self, data, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def pwrite(self, data, offset: int) -> None:
        self._pwrite(data, offset)

    def write_zeros(self, offset: int, length: int) -> None:
        zeros = bytes(min(length, MiB))
        while length:
            n = min(length, len(zeros))
            self._pwrite(zeros[:n], offset)
            offset, length = offset + n, length - n

    def flush(self) -> None:
        os.fsync(self.fd)
        self.flushes += 1

    def close(self) -> None:
        os.close(self.fd)


class SinglePassTarget(FileTarget):
    """Fails the test if any volume byte is written twice or past the end."""

    def __init__(self, path: str, size: int) -> None:
        super().__init__(path)
        self.size = size
        self.written = bytearray(size)      # 1 where written
        self.total = 0

    def _mark(self, offset: int, length: int) -> None:
        assert 0 <= offset and offset + length <= self.size, (offset, length)
        assert not any(self.written[offset:offset + length]), "byte written twice"
        self.written[offset:offset + length] = b"\1" * length
        self.total += length
        assert self.total <= self.size

    def pwrite(self, data, offset: int) -> None:
        self._mark(offset, len(data))
        super().pwrite(data, offset)

    def write_zeros(self, offset: int, length: int) -> None:
        self._mark(offset, length)
        super().write_zeros(offset, length)


def description(backup_id: str, parent_id: str | None = None) -> BackupDescription:
    return BackupDescription(backup_id=backup_id, volume_id="vol-1", name="name " + backup_id,
                             description="desc", created_at="2024-05-01 10:00:00",
                             parent_id=parent_id)


def random_image(rng: random.Random, size: int, data_fraction: float = 0.5,
                 extent: int = 3000) -> bytearray:
    """Zeros with random data extents (some compressible, some not)."""
    img = bytearray(size)
    if size == 0:
        return img
    for _ in range(max(1, int(size * data_fraction / extent))):
        off = rng.randrange(size)
        n = min(rng.randrange(1, extent * 2), size - off)
        if rng.random() < 0.5:
            img[off:off + n] = rng.randbytes(n)
        else:
            img[off:off + n] = (b"text %d " % rng.randrange(100)) * (n // 8) + b"x" * (n % 8)
    return img


class Chain:
    """Successive backups of one volume image in a PosixStore, and their restores."""

    def __init__(self, tmp_path, params: EngineParams, store: PosixStore | None = None,
                 name: str = "b") -> None:
        self.tmp_path = tmp_path
        self.name = name
        self.params = params
        self.store = store or PosixStore(str(tmp_path / "store"))
        self.container = "vo/lu/volume-backups"
        self.layers: list[Layer] = []
        self.images: list[bytes] = []
        self.results: list[BackupResult] = []
        self.restores = 0

    def backup(self, image: bytes, **kwargs) -> BackupResult:
        n = len(self.layers)
        prefix = "volume_vol-1_2024050110%04d_backup_%s%d" % (n, self.name, n)
        parent = None
        if self.layers:
            parent = read_sha256s(self.store, self.container, self.layers[-1].prefix)[1]
        result = run_backup(io.BytesIO(bytes(image)), len(image), self.store, self.container,
                            prefix, description("b%d" % n, "b%d" % (n - 1) if n else None),
                            self.params, parent_sha256s=parent, **kwargs)
        self.layers.append(Layer(self.container, prefix))
        self.images.append(bytes(image))
        self.results.append(result)
        return result

    def restore(self, upto: int = -1, zeroed: bool = True, junk_seed: int | None = None,
                target_cls=FileTarget, **kwargs) -> tuple[bytes, RestoreResult]:
        """Restore backup ``upto`` into a fresh sparse file, or one full of junk."""
        idx = upto % len(self.layers)
        size = len(self.images[idx])
        self.restores += 1
        path = str(self.tmp_path / ("restore-%d" % self.restores))
        with open(path, "wb") as f:
            if zeroed:
                f.truncate(size)
            else:
                f.write(random.Random(junk_seed).randbytes(size))
        target = (target_cls(path, size) if issubclass(target_cls, SinglePassTarget)
                  else target_cls(path))
        try:
            result = run_restore(self.layers[:idx + 1], target, size, self.params,
                                 target_is_zeroed=zeroed, store=self.store, **kwargs)
        finally:
            target.close()
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        return data, result

    def stored_names(self) -> list[str]:
        path = self.store.base_path + "/" + self.container
        return sorted(os.listdir(path)) if os.path.isdir(path) else []


def data_ranges(path) -> list[tuple[int, int]]:
    """The file's data extents, as the file system reports them (an independent walk)."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, min(end, size)))
            pos = end
    finally:
        os.close(fd)
    return out
