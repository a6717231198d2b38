"""Reproducible test volumes for tools/benchmark.py.

Everything is drawn from ``random.Random("<seed>-<purpose>")`` (string seeds
are hashed deterministically), so one seed gives byte-identical volumes on
every machine and Python 3 version.

* The main volume: extents of 1-4 MiB (4 KiB multiples, so most extents start
  and end inside a 32 KiB sha block, as file-system allocations do), 40% zeros,
  30% text-like data, 30% random, in shuffled order. Zero extents are, at
  random, real written zeros or holes.
* Text-like data: sentences of words drawn from a seeded vocabulary of 3000
  letter strings with Zipf frequencies; zlib level 6 compresses it about 3:1.
* Versions 2-4: each a copy of the previous one with 1% of its 32 KiB blocks,
  chosen at random, rewritten with new data (random or text, half each).
* The sparse volume: a large sparse file holding random data in scattered
  extents of 256 KiB-4 MiB at 4 KiB-aligned offsets, holes everywhere else.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import random
from dataclasses import asdict, dataclass, field

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
ALIGN = 4 * KiB
ZERO, RANDOM, TEXT = 0, 1, 2      # what a sha block holds (text wins over random)
_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
_LETTER_WEIGHTS = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4,
                   2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07]


class TextSource:
    """Endless seeded text: words with Zipf frequencies, in sentences."""

    def __init__(self, rng: random.Random, vocabulary: int = 3000, top: int = 2000) -> None:
        self.rng = rng
        words: set[str] = set()
        while len(words) < vocabulary:
            n = 1 + min(13, int(rng.expovariate(1 / 4.0)))
            words.add("".join(rng.choices(_LETTERS, _LETTER_WEIGHTS, k=n)))
        ranked = sorted(words)
        rng.shuffle(ranked)
        # Uniform draws from a list where rank i appears ~top/i times = Zipf draws,
        # and much faster than weighted choices.
        self.pool = [w.encode() for i, w in enumerate(ranked)
                     for _ in range(math.ceil(top / (i + 1)))]
        self.spare = b""

    def take(self, length: int) -> bytes:
        parts, have = [self.spare], len(self.spare)
        while have < length:
            words = self.rng.choices(self.pool, k=2048)
            words[0] = words[0].capitalize()
            line = b" ".join(words) + b".\n"
            parts.append(line)
            have += len(line)
        data = b"".join(parts)
        self.spare = data[length:]
        return data[:length]


@dataclass
class Extent:
    offset: int
    length: int
    kind: str           # "text", "random", "zeros" (written) or "hole"


@dataclass
class VolumeStats:
    """What a backup or restore of the volume has to process, at sha-block granularity."""

    path: str
    size: int
    data_bytes: int = 0          # bytes outside holes (SEEK_DATA), what a reader must read
    nonzero_blocks: int = 0      # sha blocks holding any non-zero byte
    block_size: int = 32 * KiB
    text_blocks: int = 0         # non-zero blocks holding text (compressible) data
    changed_blocks: int = 0      # blocks rewritten since the previous version
    changed_text_blocks: int = 0
    digest: str = ""
    extent_bytes: dict[str, int] = field(default_factory=dict)   # by kind, from the layout
    changed: list[int] = field(default_factory=list, repr=False)
    kinds: bytearray = field(default_factory=bytearray, repr=False)  # ZERO/RANDOM/TEXT

    @property
    def nonzero_bytes(self) -> int:
        return self.nonzero_blocks * self.block_size

    @property
    def text_bytes(self) -> int:
        return self.text_blocks * self.block_size

    @property
    def changed_bytes(self) -> int:
        return self.changed_blocks * self.block_size

    @property
    def changed_text_bytes(self) -> int:
        return self.changed_text_blocks * self.block_size

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("changed", "kinds")}


def _aligned_sizes(rng: random.Random, total: int, low: int, high: int) -> list[int]:
    sizes, left = [], total
    while left > 0:
        n = min(left, rng.randrange(low, high + 1, ALIGN))
        sizes.append(n)
        left -= n
    return sizes


def main_layout(seed: int, size: int, span: int | None = None) -> list[Extent]:
    """Shuffled 1-4 MiB extents over ``span`` bytes (default: all): 40/30/30 zeros/text/random.

    Past ``span`` (used by --quick to keep whole-GiB volumes small) the volume is a hole.
    """
    rng = random.Random("%d-layout" % seed)
    span = size if span is None else span
    text = span * 3 // 10 // ALIGN * ALIGN
    rand = text
    kinds: list[tuple[str, int]] = []
    for kind, total in (("text", text), ("random", rand), ("zeros", span - text - rand)):
        kinds += [(kind, n) for n in _aligned_sizes(rng, total, MiB, 4 * MiB)]
    rng.shuffle(kinds)
    extents, offset = [], 0
    for kind, n in kinds:
        if kind == "zeros" and rng.random() < 0.5:
            kind = "hole"
        extents.append(Extent(offset, n, kind))
        offset += n
    if offset < size:
        extents.append(Extent(offset, size - offset, "hole"))
    return extents


def block_kinds(extents: list[Extent], size: int, block: int = 32 * KiB) -> bytearray:
    """ZERO, RANDOM or TEXT for every sha block (a block with any text is TEXT)."""
    kinds = bytearray(-(-size // block))
    for e in extents:
        mark = {"text": TEXT, "random": RANDOM}.get(e.kind)
        if mark is None:
            continue
        for i in range(e.offset // block, -(-(e.offset + e.length) // block)):
            kinds[i] = max(kinds[i], mark)
    return kinds


def _fill(f, offset: int, length: int, kind: str, text: TextSource | None,
          rng: random.Random) -> None:
    f.seek(offset)
    while length:
        n = min(length, 4 * MiB)
        if kind == "text" and text is not None:
            f.write(text.take(n))
        elif kind == "random":
            f.write(rng.randbytes(n))
        else:
            f.write(bytes(n))
        length -= n


def build_main(path: str, seed: int, size: int, span: int | None = None) -> list[Extent]:
    extents = main_layout(seed, size, span)
    rng = random.Random("%d-data" % seed)
    text = TextSource(random.Random("%d-text" % seed))
    with open(path, "wb") as f:
        f.truncate(size)
        for e in extents:
            if e.kind != "hole":
                _fill(f, e.offset, e.length, e.kind, text, rng)
    return extents


def copy_sparse(src: str, dst: str) -> None:
    """Copy a file keeping its holes exactly (written zeros stay written)."""
    size = os.path.getsize(src)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.truncate(size)
        for start, end in data_regions(fin.fileno(), size):
            left, off = end - start, start
            while left:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), left, off, off)
                if n == 0:
                    raise OSError("short copy of %s" % src)
                left, off = left - n, off + n


def build_version(prev: str, path: str, seed: int, number: int, fraction: float = 0.01,
                  block: int = 32 * KiB, span: int | None = None) -> dict[int, int]:
    """``prev`` with ``fraction`` of its blocks (within ``span``) rewritten.

    Returns {block index: TEXT or RANDOM} of the rewritten blocks.
    """
    copy_sparse(prev, path)
    size = os.path.getsize(prev)
    blocks = (size if span is None else span) // block
    rng = random.Random("%d-version-%d" % (seed, number))
    text = TextSource(random.Random("%d-version-text-%d" % (seed, number)))
    changed = {}
    with open(path, "r+b") as f:
        for index in sorted(rng.sample(range(blocks), max(1, round(blocks * fraction)))):
            changed[index] = TEXT if rng.random() < 0.5 else RANDOM
            f.seek(index * block)
            f.write(text.take(block) if changed[index] == TEXT else rng.randbytes(block))
    return changed


def apply_changes(src: str, dst: str, changed: list[int], block: int = 32 * KiB) -> None:
    """Copy the ``changed`` blocks of ``src`` into ``dst`` in place (a volume changing)."""
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        for index in changed:
            os.pwrite(fout.fileno(), os.pread(fin.fileno(), block, index * block),
                      index * block)
        os.fsync(fout.fileno())


def build_sparse(path: str, seed: int, size: int, data: int) -> list[Extent]:
    """Random data in scattered extents, one per equal slot of the file; holes elsewhere."""
    rng = random.Random("%d-sparse" % seed)
    sizes = _aligned_sizes(rng, data, 256 * KiB, 4 * MiB)
    rng.shuffle(sizes)
    slot = size // len(sizes) // ALIGN * ALIGN
    if slot < 4 * MiB:
        raise ValueError("sparse volume too small for %d bytes of data" % data)
    extents = []
    with open(path, "wb") as f:
        f.truncate(size)
        for i, n in enumerate(sizes):
            offset = i * slot + rng.randrange(0, slot - n + 1, ALIGN)
            extents.append(Extent(offset, n, "random"))
            _fill(f, offset, n, "random", None, rng)
    return extents


# -- inspection -------------------------------------------------------------------------

def data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of the non-hole regions of a file, by SEEK_DATA / SEEK_HOLE."""
    regions, pos = [], 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        regions.append((start, end))
        pos = end
    return regions


def allocated_bytes(path: str) -> int:
    return os.stat(path).st_blocks * 512


def _blocks(path: str, block: int):
    """(index, bytes) of every sha block touching a data region, each once, in order."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        done = 0                      # first block index not yet yielded
        for start, end in data_regions(f.fileno(), size):
            first, last = max(done, start // block), -(-end // block)
            for piece in range(first, last, 128):
                n = min(128, last - piece)
                data = os.pread(f.fileno(), n * block, piece * block)
                for i in range(0, len(data), block):
                    yield piece + i // block, data[i:i + block]
            done = max(done, last)


def scan(path: str, block: int = 32 * KiB, kinds: bytearray | None = None) -> VolumeStats:
    """Data bytes, non-zero sha blocks and content digest of a volume file.

    ``kinds`` (from the generator) gives the text blocks; the non-zero blocks
    found must be exactly its non-ZERO ones, which checks the generator.

    The digest is the sha256 of the size and of every non-zero block with its
    index: equal digests mean byte-identical volumes, and only data regions
    are read (a 16 GiB sparse file is checked in the time its data takes).
    """
    size = os.path.getsize(path)
    stats = VolumeStats(path, size, block_size=block)
    with open(path, "rb") as f:
        stats.data_bytes = sum(end - start for start, end in data_regions(f.fileno(), size))
    zero_block = bytes(block)
    h = hashlib.sha256(b"%d:" % size)
    for index, data in _blocks(path, block):
        if data != zero_block[:len(data)]:
            stats.nonzero_blocks += 1
            h.update(b"%d:" % index)
            h.update(data)
    stats.digest = h.hexdigest()
    if kinds is not None:
        stats.kinds = kinds
        stats.text_blocks = kinds.count(TEXT)
        expected = len(kinds) - kinds.count(ZERO)
        if expected != stats.nonzero_blocks:
            raise AssertionError("%s: %d non-zero blocks, the layout says %d"
                                 % (path, stats.nonzero_blocks, expected))
    return stats


def content_digest(path: str, block: int = 32 * KiB) -> str:
    return scan(path, block).digest


def sample(path: str, kinds: bytearray, which: set[int], limit: int, piece: int = 4 * MiB,
           block: int = 32 * KiB) -> list[bytes]:
    """Up to ``limit`` bytes of the volume's blocks of the kinds ``which``, in ``piece``s.

    What a backup compresses; taken evenly over the volume when it holds more.
    """
    pieces, current = [], bytearray()
    for index, data in _blocks(path, block):
        if kinds[index] in which:
            current += data
            if len(current) >= piece:
                pieces.append(bytes(current))
                current.clear()
    if current:
        pieces.append(bytes(current))
    keep = max(1, limit // piece)
    if len(pieces) > keep:
        step = len(pieces) / keep
        pieces = [pieces[int(i * step)] for i in range(keep)]
    return pieces
