"""Machine limits for tools/benchmark.py, and the bound model built on them.

Measured in the benchmark's own run, on its own data and file system:

* ``sha256``: two threads hashing 32 KiB blocks with hashlib (OpenSSL, one
  message at a time; hashlib drops the GIL): the SHA-256 limit the issue names.
* ``sha256_engine``: two threads hashing 32 KiB blocks of 4 MiB pieces the
  way the engine does (backupsvc.chunking.blocks.digest_range: with the SHA
  extensions, two messages at once per core, native/sha256x2.c). Faster than
  ``sha256`` where the CPU allows it, so a bound built on it is tighter; the
  benchmark prints the fraction of both bounds.
* ``codecs[codec][sample]``: compress / decompress throughput on two threads,
  each working through 4 MiB pieces independently with the engine's codec
  implementations for whole frames (zlib: backupsvc.chunking.deflate's
  compress_whole / decompress_whole, libdeflate when installed) and levels
  (zlib 6, zstd 3, bz2 9), in uncompressed bytes per second, for two
  samples of the main volume: ``text`` (its text blocks: the data that
  compresses) and ``mix`` (all its non-zero blocks, for reference). ``none``
  has no cost.
* ``read``: two threads reading the volume file's data regions from the page
  cache with 4 MiB ``preadv`` (the file was just written or read).
* ``write``: one 512 MiB file written in 4 MiB writes, then fsynced: durable
  throughput of the file system that holds the repository and the volumes,
  the better of writing through the page cache and with O_DIRECT.
* ``disk_read``: that file read back from the disk, two threads of 4 MiB
  ``O_DIRECT`` reads (the page cache does not hold it): what reading data
  the page cache does not hold costs, such as a restore's objects, which the
  engine writes and reads with O_DIRECT.
* ``disk_mixed``: bytes read plus bytes written per second while one thread
  reads that file from the disk and another writes a new one: a restore reads
  and writes at once, and a virtual disk may share one bandwidth between the
  two (seen here: reading and writing 268 MB each took the sum of the two
  times, not the larger).

Every rate is the best of a few repetitions: a limit is what the machine can do.

The bound of an operation is the least time its unavoidable work takes:

* CPU: hashed bytes / sha256 + compressed bytes / compress + decompressed
  bytes / decompress (both cores share all of it, so the terms add up).
  Only compressible (text) blocks count as compressed or decompressed, at the
  text rates: random data gains nothing from a codec and can be stored raw,
  so the least work does not compress it;
* read: bytes read from the page cache / read + bytes read from the disk /
  disk_read; write: bytes made durable / write; disk (when some bytes come
  from the disk): (bytes read from the disk + bytes written) / disk_mixed;
* bound = the largest of these (the tightest limit); fraction = bound
  time / measured time, 1.0 meaning the operation ran at the machine's limit.

The work of each operation (tools/benchmark.py), from the volumes' layout:

* full backup: hash every non-zero 32 KiB block, compress its text blocks,
  read every byte outside holes, write what the backup stored;
* incremental: the same reading and hashing (changes must be found), compress
  the rewritten text blocks, write what it stored;
* restore of a chain: read every stored byte of the chain (from the disk, as
  much of it as the page cache did not hold when the restore started, asked
  with mincore()), decompress every
  text block ever stored in it, write every non-zero block of the final
  volume (zeros are holes or punched).

Object checksums (MD5, CRC-32 or SHA-256 of stored bytes: the format's
choice), memory copies, zero detection and hole punching are not counted, so
the bound is optimistic and the fraction conservative.
"""

from __future__ import annotations

import bz2
import hashlib
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable

import zstandard

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from backupsvc import directio  # noqa: E402  (mincore(), for what a restore reads cold)
from backupsvc.chunking import blocks, deflate  # noqa: E402  (the engine's hashing, zlib)

MiB = 1024 * 1024
LEVELS = {"zlib": 6, "zstd": 3, "bz2": 9}    # as backupsvc/chunking/compression.py


def _store(work: Callable[[int], int], done: list[int], i: int) -> None:
    done[i] = work(i)


def _two_threads(work: Callable[[int], int], repeat: int = 3) -> float:
    """Best bytes/second of ``work(thread_index) -> bytes`` run in two threads at once."""
    best = 0.0
    for _ in range(repeat):
        done = [0, 0]
        threads = [threading.Thread(target=_store, args=(work, done, i)) for i in range(2)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = max(best, sum(done) / (time.perf_counter() - start))
    return best


def sha256_rate(total: int, block: int = 32 * 1024) -> float:
    buf = memoryview(os.urandom(total // 2))

    def work(_: int) -> int:
        for off in range(0, len(buf), block):
            hashlib.sha256(buf[off:off + block]).digest()
        return len(buf)

    return _two_threads(work)


def engine_sha256_rate(total: int, block: int = 32 * 1024, piece: int = 4 * MiB) -> float:
    """Two threads hashing ``piece``-sized buffers of random blocks as the engine does."""
    buf = os.urandom(total // 2)

    def work(_: int) -> int:
        for off in range(0, len(buf), piece):
            blocks.digest_range(buf, off, min(off + piece, len(buf)), block)
        return len(buf)

    return _two_threads(work)


_zstd = threading.local()


def _compress_one(codec: str, data: bytes) -> bytes:
    if codec == "zlib":
        return deflate.compress_whole(data, LEVELS["zlib"])
    if codec == "zstd":
        if not hasattr(_zstd, "compressor"):        # one per thread, as the engine does
            _zstd.compressor = zstandard.ZstdCompressor(level=LEVELS["zstd"])
        return _zstd.compressor.compress(data)
    if codec == "bz2":
        return bz2.compress(data, LEVELS["bz2"])
    return data


def _decompress_one(codec: str, data: bytes) -> bytes:
    if codec == "zlib":
        return deflate.decompress_whole(data, 4 * MiB)
    if codec == "zstd":
        if not hasattr(_zstd, "decompressor"):
            _zstd.decompressor = zstandard.ZstdDecompressor()
        return _zstd.decompressor.decompress(data)
    if codec == "bz2":
        return bz2.decompress(data)
    return data


def codec_rates(codec: str, pieces: list[bytes]) -> tuple[float, float, float]:
    """(compress, decompress) input-bytes/s on two cores, and the compression ratio."""
    if codec == "none":
        return float("inf"), float("inf"), 1.0
    halves = [pieces[0::2], pieces[1::2]]
    packed: list[list[bytes]] = [[], []]

    def squeeze(i: int) -> int:
        packed[i] = [_compress_one(codec, p) for p in halves[i]]
        return sum(map(len, halves[i]))

    def expand(i: int) -> int:
        return sum(len(_decompress_one(codec, p)) for p in packed[i])

    comp = _two_threads(squeeze, repeat=2)
    decomp = _two_threads(expand)
    ratio = sum(map(len, pieces)) / max(1, sum(len(p) for half in packed for p in half))
    return comp, decomp, ratio


def read_rate(path: str, regions: list[tuple[int, int]], piece: int = 4 * MiB) -> float:
    """Page-cache read throughput of ``regions`` of ``path``, two threads."""
    spans = [(off, min(piece, end - off)) for start, end in regions
             for off in range(start, end, piece)]
    fd = os.open(path, os.O_RDONLY)
    try:
        for off, n in spans:                 # make sure it is all cached
            os.pread(fd, n, off)

        def work(i: int) -> int:
            buf = bytearray(piece)
            total = 0
            for off, n in spans[i::2]:
                total += os.preadv(fd, [memoryview(buf)[:n]], off)
            return total

        return _two_threads(work)
    finally:
        os.close(fd)


def _open(path: str, flags: int, direct: bool) -> int:
    """``path`` opened with O_DIRECT if asked and the file system takes it, else without."""
    if direct and hasattr(os, "O_DIRECT"):
        try:
            return os.open(path, flags | os.O_DIRECT, 0o600)
        except OSError:
            pass
    return os.open(path, flags, 0o600)


def _write_file(path: str, total: int, data: mmap.mmap, direct: bool) -> float:
    """Seconds to write ``total`` bytes of ``data`` pieces to a new ``path`` and fsync it."""
    fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, direct)
    start = time.perf_counter()
    try:
        for _ in range(total // len(data)):
            os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def _read_file(path: str, buf: mmap.mmap, step: int = 1, first: int = 0) -> int:
    """Read pieces ``first``, ``first + step``, ... of ``path`` from the disk; bytes read."""
    fd = _open(path, os.O_RDONLY, True)
    try:
        total, size = 0, os.fstat(fd).st_size // len(buf) * len(buf)
        for off in range(first * len(buf), size, step * len(buf)):
            total += os.preadv(fd, [buf], off)
        return total
    finally:
        os.close(fd)


def _drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def disk_rates(directory: str, total: int, piece: int = 4 * MiB) -> dict[str, float]:
    """The disk's limits in bytes/second, from files of ``total`` bytes in ``directory``.

    ``write``: durable writes (written in ``piece`` writes and fsynced; the
    better of through the page cache and with O_DIRECT, as the engine writes
    large files); ``disk_read``: reading a file the page cache does not hold
    (two threads of O_DIRECT reads); ``disk_mixed``: bytes read plus bytes
    written per second while one thread reads such a file and another
    writes a new one (a restore does both; a virtual disk may share one
    bandwidth between them). Best of two each.
    """
    data = mmap.mmap(-1, piece)         # page-aligned, as O_DIRECT needs
    data.write(os.urandom(piece))
    bufs = [mmap.mmap(-1, piece) for _ in range(2)]
    source = os.path.join(directory, "disk-rate-source")
    target = os.path.join(directory, "disk-rate-target")
    total = total // piece * piece
    rates = {"write": 0.0, "disk_read": 0.0, "disk_mixed": 0.0}
    try:
        for direct in (False, True):
            for _ in range(2):
                os.sync()
                rates["write"] = max(rates["write"],
                                     total / _write_file(source, total, data, direct))
        for _ in range(2):
            _drop_cache(source)
            rates["disk_read"] = max(rates["disk_read"], _two_threads(
                lambda i: _read_file(source, bufs[i], 2, i), repeat=1))
        for _ in range(2):
            _drop_cache(source)
            os.sync()
            done = [0, 0]

            def both(i: int) -> int:
                if i == 0:
                    return _read_file(source, bufs[0])
                _write_file(target, total, data, True)
                return total

            start = time.perf_counter()
            threads = [threading.Thread(target=_store, args=(both, done, i)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rates["disk_mixed"] = max(rates["disk_mixed"],
                                      sum(done) / (time.perf_counter() - start))
    finally:
        for buf in (data, *bufs):
            buf.close()
        for path in (source, target):
            if os.path.exists(path):
                os.unlink(path)
    return rates


def bound(limits: dict, codec: str, *, hashed: int = 0, compressed: int = 0,
          decompressed: int = 0, read: int = 0, read_from_disk: int = 0,
          written: int = 0, sha256: str = "sha256") -> dict:
    """Least time of an operation that must do this much work (see the module docstring).

    ``read`` bytes come from the page cache, ``read_from_disk`` bytes (a part
    of them, or more) from the disk; ``sha256`` names the hashing limit
    (``sha256`` or ``sha256_engine``).
    """
    free = {"compress": float("inf"), "decompress": float("inf")}
    rates = limits["codecs"].get(codec, {}).get("text", free)
    cpu = hashed / limits[sha256] + compressed / rates["compress"] \
        + decompressed / rates["decompress"]
    cached = max(0, read - read_from_disk)
    reading = cached / limits["read"] + read_from_disk / limits["disk_read"]
    terms = {"cpu": cpu, "read": reading, "write": written / limits["write"],
             # reading from the disk and writing to it at once
             "disk": (read_from_disk + written) / limits["disk_mixed"] if read_from_disk else 0.0}
    tightest = max(terms, key=lambda k: terms[k])
    return dict(terms, seconds=terms[tightest], limit=tightest,
                work=dict(hashed=hashed, compressed=compressed, decompressed=decompressed,
                          read=read, read_from_disk=read_from_disk, written=written))


def uncached_bytes(root: str) -> int:
    """Bytes of the files under ``root`` that the page cache does not hold (mincore())."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                size = os.fstat(fd).st_size
                total += round(size * (1.0 - directio.cached_fraction(fd, size)))
            finally:
                os.close(fd)
    return total
