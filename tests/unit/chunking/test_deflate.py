"""Whole-frame zlib: libdeflate when installed, zlib-ng otherwise; plain zlib streams
either way, and damaged or oversized streams refused."""

from __future__ import annotations

import random
import zlib

import pytest

from backupsvc.chunking import deflate, frames
from backupsvc.chunking.errors import IntegrityError

TEXT = bytes(random.Random(3).choices(b"abcdefgh \n", k=frames.FRAME_SIZE))


@pytest.fixture(params=["installed", "zlib-ng"])
def whole(request, monkeypatch):
    """Both implementations: libdeflate (a dependency), and the fallback without it."""
    if request.param == "zlib-ng":
        monkeypatch.setattr(deflate, "_whole", None)
    return request.param


def test_libdeflate_is_installed():
    assert deflate.WHOLE_IMPLEMENTATION == "libdeflate"     # a dependency: slower without


def test_whole_streams_are_plain_zlib_both_ways(whole):
    packed = deflate.compress_whole(memoryview(TEXT), 6)
    assert len(packed) < len(TEXT) // 2
    assert zlib.decompress(packed) == TEXT                  # what any inflater reads
    for level in (1, 6, 9):                                 # and frames others wrote
        assert deflate.decompress_whole(zlib.compress(TEXT, level), len(TEXT)) == TEXT
        assert deflate.decompress_whole(deflate.compress(TEXT, level), len(TEXT)) == TEXT


def test_damaged_cut_or_oversized_streams_are_refused(whole):
    packed = deflate.compress_whole(TEXT, 6)
    damaged = packed[:100] + bytes([packed[100] ^ 0xFF]) + packed[101:]
    for bad in (damaged, packed[:-10], b"not a zlib stream"):
        with pytest.raises(deflate.ERRORS):
            deflate.decompress_whole(bad, len(TEXT))
    with pytest.raises(deflate.ERRORS):
        deflate.decompress_whole(packed, len(TEXT) - 1)     # more data than recorded


def test_frames_decode_checks_the_recorded_length(whole):
    packed = deflate.compress_whole(TEXT, 6)
    assert frames.decode(1, packed, len(TEXT), "obj") == TEXT
    with pytest.raises(IntegrityError, match="decodes to %d bytes, %d recorded"
                       % (len(TEXT), len(TEXT) + 5)):
        frames.decode(1, packed, len(TEXT) + 5, "obj")
    with pytest.raises(IntegrityError, match="obj: corrupt zlib frame"):
        frames.decode(1, packed[:-10], len(TEXT), "obj")


def test_encoded_frames_round_trip_with_either_implementation(whole, monkeypatch):
    data = memoryview(TEXT + random.Random(4).randbytes(frames.FRAME_SIZE))
    encoded = frames.encode("zlib", data)
    assert len(encoded.data) < len(data) * 0.8
    monkeypatch.undo()          # written with one, read with the other (and itself)
    out, pos = [], 0
    for header in encoded.headers:
        codec, raw_length, stored, _ = frames.HEADER.unpack(header)
        payload = encoded.data[pos + len(header):pos + len(header) + stored]
        frames.check_frame(header, payload, "obj")
        out.append(frames.decode(codec, payload, raw_length, "obj"))
        pos += len(header) + stored
    assert b"".join(out) == data


def test_a_zstd_context_is_reused_after_a_corrupt_frame():
    """zstd contexts live as long as their thread: a failed decode leaves the next
    frame's decode (and encode) intact."""
    data = memoryview(TEXT)
    encoded = frames.encode("zstd", data)
    header = encoded.headers[0]
    codec, raw_length, stored, _ = frames.HEADER.unpack(header)
    payload = encoded.data[len(header):len(header) + stored]
    with pytest.raises(IntegrityError, match="corrupt zstd frame"):
        frames.decode(codec, payload[:len(payload) // 2], raw_length, "obj")
    assert frames.decode(codec, payload, raw_length, "obj") == TEXT
    assert frames.encode("zstd", data).data == encoded.data
