"""Framed data objects of format 2.0.0 (see doc/on-store-format.rst).

A format 2.0.0 data object is a sequence of independent *frames*, each of
at most :data:`FRAME_SIZE` uncompressed bytes::

    codec (1 byte) | 3 zero bytes | raw length | stored length | CRC-32 of the payload | payload

(the three numbers are big-endian u32).

Frames are encoded and decoded independently, so both run in parallel
threads whatever the object size, and each frame chooses its own encoding:
a frame whose data does not compress (a cheap probe of a few samples says so,
or the compressed form is not smaller) is stored raw.

An object's checksum is the SHA-256 of its frame headers, in order: with
each payload's CRC-32 in its header it covers every stored byte, and costs
no serial pass over the object (CRCs are computed and checked by the
threads that encode and decode the frames, at several GB/s). Each block's
SHA-256 in the sha256 file still guarantees the restored data.
"""

from __future__ import annotations

import bz2
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import zstandard

from backupsvc import native
from backupsvc.chunking import deflate
from backupsvc.chunking.compression import BZ2_LEVEL, ZLIB_LEVEL, ZSTD_LEVEL
from backupsvc.chunking.errors import IntegrityError
from backupsvc.chunking.params import MiB

FRAME_SIZE = 1 * MiB
HEADER = struct.Struct(">B3xIII")
CODECS = {"none": 0, "zlib": 1, "bz2": 2, "zstd": 3}
_NAMES = {v: k for k, v in CODECS.items()}

# The probe: compress a few small samples fast; if they barely shrink, the
# frame is (almost certainly) incompressible and compressing it would burn a
# core for nothing.
PROBE_SAMPLES = 4
PROBE_SAMPLE_SIZE = 4096
PROBE_MIN_SAVING = 0.03


LEVELS = {"zlib": ZLIB_LEVEL, "zstd": ZSTD_LEVEL, "bz2": BZ2_LEVEL}
# An edge frame (see _split_zero_edges) is zeros and data that does not
# compress: any level removes the zeros, and the fastest spends a third of
# zlib's default level's time on the rest (a sparse volume has two edges per
# data extent).
EDGE_LEVELS = {"zlib": 1, "zstd": 1, "bz2": 1}


# zstd contexts, one per thread and level (they are not thread-safe): making
# one per frame allocates and touches a megabyte of tables each time, which
# costs a tenth of the compression and a third of the decompression.
_zstd = threading.local()


def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    made = _zstd.__dict__.setdefault("compressors", {})
    if level not in made:
        made[level] = zstandard.ZstdCompressor(level=level)
    return made[level]


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_zstd, "decompressor"):
        _zstd.decompressor = zstandard.ZstdDecompressor()
    return _zstd.decompressor


def _compress(codec: str, data: memoryview, level: int) -> bytes:
    if codec == "zlib":
        return deflate.compress_whole(data, level)
    if codec == "zstd":
        return _zstd_compressor(level).compress(data)
    return bz2.compress(data, level)


def looks_incompressible(data: memoryview) -> bool:
    """A few samples spread over ``data`` (up to 4 KiB each, half of it at most),
    deflated at level 1, barely shrink.

    Each sample is taken from the middle of its share of the frame, not its
    start: a frame often starts where data starts after zeros (data that is
    4 KiB-aligned in a 32 KiB sha block), and a sample of those few zeros
    would make a whole frame of random data look compressible.
    """
    n = len(data)
    size = min(PROBE_SAMPLE_SIZE, n // (2 * PROBE_SAMPLES))
    if size < 1024:
        return False        # too small to judge: just try
    step = n // PROBE_SAMPLES
    first = (step - size) // 2
    sample = b"".join(data[first + i * step:first + i * step + size]
                      for i in range(PROBE_SAMPLES))
    return len(deflate.compress(sample, 1)) > len(sample) * (1 - PROBE_MIN_SAVING)


@dataclass
class EncodedFrames:
    """Consecutive frames as stored, and their headers (what the object checksum covers)."""

    data: bytes
    headers: list[bytes]


def check_frame(header: bytes, payload: bytes, label: str) -> bytes:
    """The frame's header, once its payload matched the CRC-32 it records."""
    if deflate.crc32(payload) != HEADER.unpack(header)[3]:
        raise IntegrityError("%s: a frame fails its CRC-32 check" % label)
    return header


EDGE = 512          # bytes at each end of an incompressible frame checked for zeros
_ZERO_EDGE = bytes(EDGE)


def _split_zero_edges(raw: memoryview, codec: str,
                      block: int) -> list[tuple[memoryview, int | None]]:
    """An incompressible frame as (part, compression level or None) pieces.

    Data that starts or ends inside a sha block leaves zeros in that block
    (up to 28 KiB of a 32 KiB block when data is 4 KiB-aligned); such an edge
    block becomes a frame of its own, which is compressed (at the codec's
    fastest level), and the rest stays raw. Frames stay on sha block
    boundaries, as restores need.
    """
    head = raw[:EDGE] == _ZERO_EDGE
    # (A volume's short last block would put the split off the block grid.)
    tail = raw[-EDGE:] == _ZERO_EDGE and len(raw) % block == 0
    if not (head or tail) or len(raw) <= 2 * block:
        return [(raw, None)]
    start, end = (block if head else 0), len(raw) - (block if tail else 0)
    edge = EDGE_LEVELS[codec]
    parts = [(raw[:start], edge), (raw[start:end], None), (raw[end:], edge)]
    return [(part, level) for part, level in parts if part]


def _frame(codec: str, raw: memoryview,
           level: int | None) -> tuple[bytes, bytes | memoryview]:
    """(header, payload) of one frame, compressed at ``level`` if that makes it smaller
    (None: stored raw)."""
    payload: bytes | memoryview = raw
    used = "none"
    if level is not None:
        packed = _compress(codec, raw, level)
        if len(packed) < len(raw):
            payload, used = packed, codec
    return HEADER.pack(CODECS[used], len(raw), len(payload), deflate.crc32(payload)), payload


def encode(codec: str, data: memoryview, block: int | None = None) -> EncodedFrames:
    """The frames holding ``data``; ``block``: the sha block size, when frames may be
    split on its boundaries (see :func:`_split_zero_edges`)."""
    out: list[bytes | memoryview] = []
    headers: list[bytes] = []
    for start in range(0, len(data), FRAME_SIZE):
        raw = data[start:start + FRAME_SIZE]
        parts: list[tuple[memoryview, int | None]]
        if codec == "none":
            parts = [(raw, None)]
        elif not looks_incompressible(raw):
            parts = [(raw, LEVELS[codec])]
        elif block is None:
            parts = [(raw, None)]
        else:
            parts = _split_zero_edges(raw, codec, block)
        for part, level in parts:
            header, payload = _frame(codec, part, level)
            out += (header, payload)
            headers.append(header)
    # (Joined with the lock released: most of it is frames of raw volume data.)
    return EncodedFrames(native.concat(out), headers)


class FramedCompressor:
    """The :class:`~backupsvc.chunking.compression.ObjectCompressor` of format 2.0.0.

    Segments become whole frames, so they are encoded in parallel and need
    no stream header, trailer or running state.
    """

    parallel = True

    def __init__(self, codec: str, block: int | None = None) -> None:
        self.name, self.block = codec, block

    def header(self) -> bytes:
        return b""

    def compress_segment(self, data: memoryview, final: bool) -> EncodedFrames:  # type: ignore[override]
        return encode(self.name, data, self.block)

    def update(self, data: memoryview) -> None:
        pass

    def trailer(self, last_was_final: bool) -> bytes:
        return b""


class FramedCompressorFactory:
    """What :class:`~backupsvc.chunking.objects.ObjectOutput` makes compressors with."""

    framed = True

    def __init__(self, codec: str, block: int | None = None) -> None:
        self.name, self.block = codec, block     # block: the sha block size

    def new(self) -> FramedCompressor:
        return FramedCompressor(self.name, self.block)


def decode(codec: int, payload: bytes, raw_length: int, label: str) -> bytes:
    """One frame's data; a wrong length or corrupt payload raises IntegrityError.

    Output is capped just above the recorded length, so a damaged or hostile
    frame cannot make a restore allocate more than that.
    """
    try:
        if codec == 0:
            data = payload
        elif codec == 1:
            data = deflate.decompress_whole(payload, raw_length)
        elif codec == 2:
            data = bz2.BZ2Decompressor().decompress(payload, raw_length + 1)
        elif codec == 3:
            data = _zstd_decompressor().decompress(payload, max_output_size=raw_length)
        else:
            raise IntegrityError("%s: unknown frame encoding %d" % (label, codec))
    except (*deflate.ERRORS, OSError, EOFError, ValueError, zstandard.ZstdError) as exc:
        raise IntegrityError("%s: corrupt %s frame: %s"
                             % (label, _NAMES.get(codec, codec), exc)) from exc
    if len(data) != raw_length:
        raise IntegrityError("%s: a frame decodes to %d bytes, %d recorded"
                             % (label, len(data), raw_length))
    return data


class _Raw(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_frames(raw: _Raw, label: str) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Yield ``(codec, raw length, header, payload)`` of each frame of an object stream."""
    while True:
        head = _read_exactly(raw, HEADER.size, label, allow_eof=True)
        if not head:
            return
        codec, raw_length, stored, _ = HEADER.unpack(head)
        if not 0 < raw_length <= FRAME_SIZE or stored > raw_length \
                or (codec == 0 and stored != raw_length):
            raise IntegrityError("%s: a frame header is damaged (raw %d, stored %d bytes)"
                                 % (label, raw_length, stored))
        payload = _read_exactly(raw, stored, label)
        yield codec, raw_length, head, payload


def _read_exactly(raw: _Raw, size: int, label: str, allow_eof: bool = False) -> bytes:
    parts, have = [], 0
    while have < size:
        data = raw.read(size - have)
        if not data:
            if allow_eof and not have:
                return b""
            raise IntegrityError("%s: truncated frame" % label)
        parts.append(data)
        have += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)
