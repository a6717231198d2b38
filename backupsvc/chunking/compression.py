"""Compression for backup objects, streamed and (where the format allows) parallel.

Objects must stay readable by a plain one-shot decompress of the whole object
(what Cinder does), so each algorithm produces a single standard stream:

* zlib: pieces are deflated independently (raw deflate, full flush) in worker
  threads and framed as one zlib stream: 2-byte header, the deflate blocks, a
  final empty block if needed, and the adler32 of the whole object.
* bz2: pieces become independent bz2 streams; concatenated streams are valid
  input for ``bz2.decompress``.
* zstd: one frame from a streaming compressor; zstd multithreads internally,
  so pieces are fed in order from one thread.
* none: the data itself.
"""

from __future__ import annotations

import bz2
import struct
from typing import Protocol

import zstandard

from backupsvc.chunking import deflate
from backupsvc.chunking.errors import IntegrityError

ZLIB_LEVEL = 6      # zlib's own default, what Cinder's zlib.compress(data) uses
BZ2_LEVEL = 9       # bz2.compress default
ZSTD_LEVEL = 3      # zstandard default

_ALIASES = {
    "zlib": "zlib", "gzip": "zlib",
    "bz2": "bz2", "bzip2": "bz2",
    "zstd": "zstd",
    "none": "none", "off": "none", "no": "none",
}

# Final, empty fixed-Huffman deflate block: closes a stream whose last piece was
# only full-flushed because we did not yet know it was the last.
_DEFLATE_END = deflate.compressobj(ZLIB_LEVEL, deflate.DEFLATED, -15).flush()


def normalize_compression(name: str | None) -> str:
    """Map a configured or recorded algorithm name to zlib, bz2, zstd or none."""
    if name is None:
        return "none"
    try:
        return _ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError("unknown compression algorithm %r; use one of %s"
                         % (name, ", ".join(sorted(_ALIASES)))) from None


def _zlib_header(level: int) -> bytes:
    cmf = 0x78  # deflate, 32 KiB window
    flevel = 0 if level in (0, 1) else 1 if level < 6 else 2 if level in (6, -1) else 3
    flg = flevel << 6
    flg += 31 - ((cmf << 8) + flg) % 31
    return bytes((cmf, flg))


class ObjectCompressor(Protocol):
    """Compression state of one object.

    ``compress_segment`` may run in a worker thread when ``parallel`` is true
    (it then touches no shared state); otherwise it must be called in order.
    ``update`` and ``trailer`` are always called in order from one thread.
    """

    name: str
    parallel: bool

    def header(self) -> bytes: ...

    def compress_segment(self, data: memoryview, final: bool) -> bytes | memoryview: ...

    def update(self, data: memoryview) -> None: ...

    def trailer(self, last_was_final: bool) -> bytes: ...


class _ZlibCompressor:
    name = "zlib"
    parallel = True

    def __init__(self, level: int = ZLIB_LEVEL) -> None:
        self._level = level
        self._adler = 1

    def header(self) -> bytes:
        return _zlib_header(self._level)

    def compress_segment(self, data: memoryview, final: bool) -> bytes:
        c = deflate.compressobj(self._level, deflate.DEFLATED, -15)
        return c.compress(data) + c.flush(deflate.Z_FINISH if final else deflate.Z_FULL_FLUSH)

    def update(self, data: memoryview) -> None:
        self._adler = deflate.adler32(data, self._adler)

    def trailer(self, last_was_final: bool) -> bytes:
        end = b"" if last_was_final else _DEFLATE_END
        return end + struct.pack(">I", self._adler)


class _Bz2Compressor:
    name = "bz2"
    parallel = True

    def __init__(self, level: int = BZ2_LEVEL) -> None:
        self._level = level

    def header(self) -> bytes:
        return b""

    def compress_segment(self, data: memoryview, final: bool) -> bytes:
        return bz2.compress(data, self._level)

    def update(self, data: memoryview) -> None:
        pass

    def trailer(self, last_was_final: bool) -> bytes:
        return b""


class _Sink:
    """Collects what a zstd stream writer emits, so the caller can take it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class _ZstdCompressor:
    name = "zstd"
    parallel = False

    def __init__(self, cctx: zstandard.ZstdCompressor) -> None:
        self._cctx = cctx
        self._sink = _Sink()
        self._w: zstandard.ZstdCompressionWriter | None = None

    def _writer(self) -> zstandard.ZstdCompressionWriter:
        # Created on first use: the context is shared by the objects of one
        # backup, and the previous object must have been flushed by then. A
        # stream writer (unlike compressobj) hands out finished output as it
        # goes, which keeps zstd's own buffers small in multithreaded mode.
        if self._w is None:
            self._w = self._cctx.stream_writer(self._sink, closefd=False)
        return self._w

    def header(self) -> bytes:
        return b""

    def compress_segment(self, data: memoryview, final: bool) -> bytes:
        self._writer().write(data)
        return self._sink.take()

    def update(self, data: memoryview) -> None:
        pass

    def trailer(self, last_was_final: bool) -> bytes:
        self._writer().flush(zstandard.FLUSH_FRAME)
        return self._sink.take()


class _NoCompressor:
    name = "none"
    parallel = True

    def header(self) -> bytes:
        return b""

    def compress_segment(self, data: memoryview, final: bool) -> memoryview:
        return data

    def update(self, data: memoryview) -> None:
        pass

    def trailer(self, last_was_final: bool) -> bytes:
        return b""


class CompressorFactory:
    """Makes the per-object compressors of one backup.

    Objects of one backup are finished strictly one after the other, so the
    zstd context (and its worker threads) is shared by all of them.
    """

    framed = False      # 1.0.0 objects: one standard stream each

    def __init__(self, name: str | None, threads: int = 1, job_size: int = 2 << 20) -> None:
        self.name = normalize_compression(name)
        self._zstd: zstandard.ZstdCompressor | None = None
        if self.name == "zstd":
            # zstd's worker threads buffer whole jobs; small jobs bound that memory.
            cp = zstandard.ZstdCompressionParameters.from_level(
                ZSTD_LEVEL, threads=threads if threads > 1 else 0,
                job_size=job_size if threads > 1 else 0, write_checksum=1)
            self._zstd = zstandard.ZstdCompressor(compression_params=cp)

    def new(self) -> ObjectCompressor:
        if self.name == "zlib":
            return _ZlibCompressor()
        if self.name == "bz2":
            return _Bz2Compressor()
        if self._zstd is not None:
            return _ZstdCompressor(self._zstd)
        return _NoCompressor()


class _Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ChunksReader:
    """File-like ``read`` over a list of byte strings (a buffered object)."""

    def __init__(self, chunks: list[bytes | memoryview]) -> None:
        self._chunks = [c for c in reversed(chunks) if len(c)]  # b"" would mean EOF

    def read(self, size: int = -1, /) -> bytes:
        if not self._chunks:
            return b""
        head = bytes(self._chunks.pop())
        if 0 <= size < len(head):
            self._chunks.append(memoryview(head)[size:])
            head = head[:size]
        return head


class DecompressingReader:
    """``read(n)`` of an object's decompressed data with bounded memory.

    Returns exactly ``n`` bytes until the end of the data. Corrupt or truncated
    streams raise :class:`IntegrityError` whose message starts with ``label``.
    """

    def __init__(self, raw: _Source, compression: str, label: str = "object",
                 input_size: int = 1 << 20) -> None:
        self._raw = raw
        self._kind = normalize_compression(compression)
        self._label = label
        self._in = input_size
        self._raw_eof = False
        self._done = False
        self._zstd = None
        if self._kind == "zlib":
            self._d = deflate.decompressobj()
        elif self._kind == "bz2":
            self._d = bz2.BZ2Decompressor()
        elif self._kind == "zstd":
            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=input_size, read_across_frames=True, closefd=False)

    def _read_raw(self) -> bytes:
        data = b"" if self._raw_eof else self._raw.read(self._in)
        if not data:
            self._raw_eof = True
        return data

    def _truncated(self) -> IntegrityError:
        return IntegrityError("%s: truncated %s stream" % (self._label, self._kind))

    def _step_zlib(self, max_out: int) -> bytes | None:
        d = self._d
        if d.eof:  # trailing bytes are ignored, as zlib.decompress does
            return None
        data = d.unconsumed_tail or self._read_raw()
        out = d.decompress(data, max_out)
        if not out and not d.eof and self._raw_eof and not d.unconsumed_tail:
            raise self._truncated()
        return out

    def _step_bz2(self, max_out: int) -> bytes | None:
        d = self._d
        if d.eof:
            # Another stream may follow (parallel compression writes several).
            data = d.unused_data or self._read_raw()
            if not data:
                return None
            d = self._d = bz2.BZ2Decompressor()
        elif d.needs_input:
            data = self._read_raw()
            if not data:
                raise self._truncated()
        else:
            data = b""
        return d.decompress(data, max_out)

    def _step(self, max_out: int) -> bytes | None:
        if self._kind == "zlib":
            return self._step_zlib(max_out)
        if self._kind == "bz2":
            return self._step_bz2(max_out)
        src = self._zstd if self._zstd is not None else self._raw
        out = src.read(max_out)
        return out or None

    def read(self, size: int) -> bytes:
        parts: list[bytes] = []
        have = 0
        try:
            while have < size and not self._done:
                out = self._step(size - have)
                if out is None:
                    self._done = True
                elif out:
                    parts.append(out)
                    have += len(out)
        except (*deflate.ERRORS, OSError, EOFError, zstandard.ZstdError) as exc:
            raise IntegrityError("%s: corrupt %s data: %s" % (self._label, self._kind, exc)) \
                from exc
        return parts[0] if len(parts) == 1 else b"".join(parts)
