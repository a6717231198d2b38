"""The zlib codec's implementations.

Streams (format 1.0.0 objects, the sha256 file) go through zlib-ng (the
``zlib-ng`` package) when it is installed, else the standard library's zlib:
zlib-ng reads and writes the same zlib and raw deflate streams at the same
levels, about 1.6 times as fast for compression and twice for decompression,
and its CRC-32 runs at several GB/s.

Whole buffers whose decoded size is known (format 2.0.0 frames, at most
1 MiB each) go through libdeflate (the ``deflate`` package) when it is
installed: on text it compresses about 1.4 times as fast as zlib-ng at the
same level, with a slightly better ratio, and decompresses 1.5 to 2 times as
fast. Its output is a plain zlib stream (any inflater reads it) and it reads
any zlib stream, so frames written with either are read with either.
"""

from __future__ import annotations

import zlib as _stdlib

try:
    from zlib_ng import zlib_ng as _impl
except ImportError:      # pragma: no cover - zlib-ng is a dependency
    _impl = _stdlib

try:
    import deflate as _whole  # libdeflate's bindings (not this module)
except ImportError:      # pragma: no cover - deflate is a dependency
    _whole = None

IMPLEMENTATION = "zlib-ng" if _impl is not _stdlib else "zlib"
WHOLE_IMPLEMENTATION = "libdeflate" if _whole is not None else IMPLEMENTATION

DEFLATED = _impl.DEFLATED
Z_FINISH = _impl.Z_FINISH
Z_FULL_FLUSH = _impl.Z_FULL_FLUSH
adler32 = _impl.adler32
compress = _impl.compress
compressobj = _impl.compressobj
crc32 = _impl.crc32
decompress = _impl.decompress
decompressobj = _impl.decompressobj

# Neither zlib-ng's nor libdeflate's error is a subclass of zlib.error: catch all.
ERRORS: tuple[type[Exception], ...] = tuple(
    {_impl.error, _stdlib.error} | ({_whole.DeflateError} if _whole is not None else set()))


def compress_whole(data: bytes | memoryview, level: int) -> bytes:
    """``data`` as one zlib stream (libdeflate when installed)."""
    if _whole is not None:
        return _whole.zlib_compress(data, level)
    return _impl.compress(data, level)


def decompress_whole(stream: bytes | memoryview, size: int) -> bytes:
    """The data of a zlib stream that decodes to ``size`` bytes.

    Raises one of :data:`ERRORS` when the stream is damaged, incomplete or
    decodes to more than ``size`` bytes; the caller checks that it gave
    exactly ``size`` (libdeflate ignores bytes after the end of the stream,
    which the frame's CRC-32 covers).
    """
    if _whole is not None:
        return _whole.zlib_decompress(stream, size)
    inflater = _impl.decompressobj()
    data = inflater.decompress(stream, size + 1)      # (one byte over: too long)
    if len(data) > size:
        raise _impl.error("the zlib stream holds more than %d bytes" % size)
    if not inflater.eof:
        raise _impl.error("the zlib stream does not end where recorded")
    return data
