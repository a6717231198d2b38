"""Format 2.0.0: compact sha list, explicit zero extents, framed objects with a checksum."""

import dataclasses
import hashlib
import json
import os
import random
import zlib

import pytest

from backupsvc.chunking import frames, manifest, shafile
from backupsvc.chunking.engine import EngineParams, IntegrityError, read_metadata
from tests.unit.chunking import Chain, KiB, SinglePassTarget, data_ranges, random_image

MiB = 1024 * KiB


def params(**kw) -> EngineParams:
    base = dict(chunk_size=64 * KiB, sha_block_size=4 * KiB, piece_size=16 * KiB, workers=2,
                format_version="2.0.0")
    base.update(kw)
    return EngineParams(**base)


def text(rng: random.Random, size: int) -> bytes:
    words = [rng.randbytes(3).hex().encode() for _ in range(300)]
    out = b" ".join(rng.choice(words) for _ in range(size // 4 + 1))
    return out[:size]


def mixed_image(rng: random.Random, size: int) -> bytearray:
    """Runs of zeros, text and random data, 12 KiB each, in random order."""
    image = bytearray(size)
    for off in range(0, size, 12 * KiB):
        n = min(12 * KiB, size - off)
        kind = rng.randrange(3)
        if kind == 1:
            image[off:off + n] = text(rng, n)
        elif kind == 2:
            image[off:off + n] = rng.randbytes(n)
    return image


def test_files_are_compact_and_state_zero_extents(tmp_path):
    image = bytearray(300 * KiB)
    image[8 * KiB:20 * KiB] = random.Random(1).randbytes(12 * KiB)
    image[200 * KiB:201 * KiB] = b"x" * KiB
    chain = Chain(tmp_path, params(compression="zlib"))
    chain.backup(image)
    prefix = chain.layers[0].prefix
    raw_sha = chain.store.get(chain.container, prefix + "_sha256file")
    head, _, body = raw_sha.partition(b"\n")
    header = json.loads(head)
    assert header["version"] == "2.0.0" and header["block_count"] == 75
    assert header["volume_size"] == len(image) and header["chunk_size"] == 4 * KiB
    digests = zlib.decompress(body)
    assert digests == b"".join(hashlib.sha256(image[o:o + 4 * KiB]).digest()
                               for o in range(0, len(image), 4 * KiB))
    # Smaller than the hex JSON list alone would be.
    assert len(raw_sha) < 75 * 64

    meta = json.loads(chain.store.get(chain.container, prefix + "_metadata"))
    assert meta["version"] == "2.0.0"
    assert meta["zero_extents"] == [[0, 8 * KiB], [20 * KiB, 180 * KiB],
                                    [204 * KiB, 96 * KiB]]
    for item in meta["objects"]:
        ((name, rec),) = item.items()
        assert set(rec) == {"compression", "length", "offset", "stored_length",
                            "frames_sha256"}
        stored = chain.store.get(chain.container, name)
        assert len(stored) == rec["stored_length"]
        assert frames_checksum(stored) == rec["frames_sha256"]


def frames_checksum(stored: bytes) -> str:
    """SHA-256 of the frame headers, each holding its payload's CRC-32, as documented."""
    headers, pos = [], 0
    while pos < len(stored):
        _, _, n, crc = frames.HEADER.unpack_from(stored, pos)
        assert zlib.crc32(stored[pos + 16:pos + 16 + n]) == crc
        headers.append(stored[pos:pos + 16])
        pos += 16 + n
    return hashlib.sha256(b"".join(headers)).hexdigest()


@pytest.mark.parametrize("compression", ["zlib", "bz2", "zstd", "none"])
def test_frames_round_trip_and_skip_incompressible_data(compression):
    rng = random.Random(2)
    data = memoryview(text(rng, 3 * MiB // 2) + rng.randbytes(MiB))
    out = frames.encode(compression, data)
    parts = list(frames.read_frames(_Reader(out.data), "obj"))
    assert out.headers == [h for _, _, h, _ in parts]
    assert all(frames.check_frame(h, p, "obj") == h for _, _, h, p in parts)
    decoded = b"".join(frames.decode(c, p, n, "obj") for c, n, _, p in parts)
    assert decoded == data
    codecs = [c for c, _, _, _ in parts]
    assert len(parts) == 3                          # 1 MiB frames
    if compression != "none":
        assert codecs[0] == frames.CODECS[compression]  # text compresses
    assert codecs[-1] == 0                          # random data is stored raw


def test_incompressible_data_is_not_compressed(monkeypatch):
    """The probe spares the codec a frame of random data (counted, not timed)."""
    calls = []
    real = frames._compress
    monkeypatch.setattr(frames, "_compress",
                        lambda c, d, level: calls.append(len(d)) or real(c, d, level))
    rng = random.Random(3)
    frames.encode("zlib", memoryview(rng.randbytes(MiB)))
    assert calls == []
    frames.encode("zlib", memoryview(text(rng, MiB)))
    assert calls == [MiB]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        out = self.data[self.pos:self.pos + size]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("compression", ["zlib", "zstd", "none"])
def test_chain_restores_identical_writing_each_byte_once(tmp_path, compression):
    rng = random.Random(4)
    chain = Chain(tmp_path, params(compression=compression))
    image = mixed_image(rng, 400 * KiB + 123)
    chain.backup(image)
    for _ in range(3):
        for _ in range(5):
            off = rng.randrange(len(image) - 6000)
            image[off:off + 6000] = rng.choice([bytes(6000), rng.randbytes(6000),
                                                text(rng, 6000)])
        chain.backup(image)
    for zeroed in (True, False):
        data, result = chain.restore(zeroed=zeroed, junk_seed=5, target_cls=SinglePassTarget)
        assert data == image
        assert result.bytes_written + result.zero_bytes == len(image)


@pytest.mark.parametrize("order", [("1.0.0", "2.0.0"), ("2.0.0", "1.0.0")])
def test_incrementals_across_formats(tmp_path, order):
    rng = random.Random(6)
    chain = Chain(tmp_path, params(compression="zlib", format_version=order[0]))
    image = mixed_image(rng, 256 * KiB)
    chain.backup(image)
    formats = list(order) + [order[0]]
    for fmt in formats[1:]:
        chain.params = dataclasses.replace(chain.params, format_version=fmt)
        image[rng.randrange(200 * KiB):][:8 * KiB] = bytes(8 * KiB)
        off = rng.randrange(200 * KiB)
        image[off:off + 9 * KiB] = rng.randbytes(9 * KiB)
        result = chain.backup(image)
        assert result.changed_blocks <= 8          # only what changed is stored
    versions = [read_metadata(chain.store, chain.container, layer.prefix).version
                for layer in chain.layers]
    assert versions == formats
    for upto in range(len(chain.layers)):
        for zeroed in (True, False):
            data, _ = chain.restore(upto=upto, zeroed=zeroed, junk_seed=upto)
            assert data == chain.images[upto]


def _rewrite(chain, name, change):
    path = "%s/%s/%s" % (chain.store.base_path, chain.container, name)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    change(data)
    with open(path, "wb") as f:
        f.write(data)


def _first_object(chain):
    return read_metadata(chain.store, chain.container, chain.layers[0].prefix).objects[0]


def test_a_damaged_stored_byte_fails_the_restore(tmp_path):
    chain = Chain(tmp_path, params(compression="none"))
    image = mixed_image(random.Random(7), 128 * KiB)
    chain.backup(image)
    obj = _first_object(chain)

    def flip(data):
        data[-1] ^= 1
    _rewrite(chain, obj.name, flip)
    with pytest.raises(IntegrityError, match=obj.name):
        chain.restore()


def test_a_damaged_frame_in_an_unneeded_part_still_fails(tmp_path):
    """The stored-bytes checksum covers frames that a restore does not use."""
    chain = Chain(tmp_path, params(compression="none", chunk_size=4 * MiB,
                                   sha_block_size=64 * KiB, piece_size=2 * MiB))
    image = bytearray(random.Random(8).randbytes(2 * MiB))
    chain.backup(image)
    image[MiB:2 * MiB] = random.Random(9).randbytes(MiB)   # the second frame is replaced
    chain.backup(image)
    obj = _first_object(chain)

    def flip(data):
        data[-5] ^= 1           # inside the full backup's second frame
    _rewrite(chain, obj.name, flip)
    with pytest.raises(IntegrityError, match="fails its CRC-32 check"):
        chain.restore()


def test_a_truncated_object_fails_the_restore(tmp_path):
    chain = Chain(tmp_path, params(compression="zlib"))
    chain.backup(mixed_image(random.Random(10), 128 * KiB))
    obj = _first_object(chain)
    _rewrite(chain, obj.name, lambda data: data.__delitem__(slice(-3, None)))
    with pytest.raises(IntegrityError, match=obj.name):
        chain.restore()


def test_zero_extents_must_agree_with_the_digests(tmp_path):
    chain = Chain(tmp_path, params())
    chain.backup(mixed_image(random.Random(11), 128 * KiB))
    prefix = chain.layers[0].prefix

    def drop_one(data):
        doc = json.loads(data)
        doc["zero_extents"] = doc["zero_extents"][1:]
        data[:] = json.dumps(doc).encode()
    _rewrite(chain, prefix + "_metadata", drop_one)
    with pytest.raises(IntegrityError, match="zero extents"):
        chain.restore()


def test_a_damaged_digest_list_is_detected(tmp_path):
    chain = Chain(tmp_path, params())
    chain.backup(mixed_image(random.Random(12), 128 * KiB))
    prefix = chain.layers[0].prefix
    raw = chain.store.get(chain.container, prefix + "_sha256file")
    head, _, body = raw.partition(b"\n")
    digests = bytearray(zlib.decompress(body))
    digests[40] ^= 1
    chain.store.put(chain.container, prefix + "_sha256file",
                    head + b"\n" + zlib.compress(bytes(digests)))
    with pytest.raises(IntegrityError, match="checksum"):
        chain.restore()


def test_a_json_sha_file_claiming_2_0_0_is_refused():
    doc = {"version": "2.0.0", "chunk_size": 4096, "sha256s": []}
    with pytest.raises(manifest.FormatError, match="must not be JSON"):
        shafile.parse(json.dumps(doc, indent=2).encode(), "p_sha256file")


def test_unknown_format_version_is_refused():
    with pytest.raises(ValueError, match="unknown backup format version"):
        params(format_version="1.5.0")


def test_random_images_round_trip(tmp_path):
    rng = random.Random(13)
    for n in range(4):
        chain = Chain(tmp_path / str(n), params(compression=rng.choice(["zlib", "zstd"])))
        image = random_image(rng, rng.randrange(1, 300 * KiB), rng.random())
        chain.backup(image)
        data, _ = chain.restore(zeroed=bool(n % 2), junk_seed=n)
        assert data == image


def test_sparse_volume_stores_and_allocates_only_its_data(tmp_path):
    """2 GiB holding 16 MiB: stored and restored allocation stay within data + 1%."""
    from backupsvc.chunking.engine import Layer, run_backup, run_restore
    from backupsvc.drivers.posix import PosixStore
    from tests.unit.chunking import FileTarget, description

    size, rng = 2048 * MiB, random.Random(14)
    image = str(tmp_path / "image")
    extents = sorted(rng.sample(range(0, size // MiB - 1), 16))
    with open(image, "wb") as f:
        f.truncate(size)
        for slot in extents:
            # 4 KiB-aligned, not 32 KiB: blocks at both ends are part data, part
            # zeros, which the restore must not allocate.
            f.seek(slot * MiB + rng.randrange(4096, MiB, 4096))
            f.write(rng.randbytes(MiB))
    data_bytes = 16 * MiB
    store = PosixStore(str(tmp_path / "store"))
    p = EngineParams(compression="zlib")
    with open(image, "rb") as f:
        result = run_backup(f, size, store, "c", "p", description("b0"), p)
    assert result.bytes_read <= data_bytes + 64 * KiB * len(extents)
    assert result.bytes_stored <= data_bytes * 1.01 + 64 * KiB * len(extents)

    out = str(tmp_path / "restored")
    with open(out, "wb") as f:
        f.truncate(size)
    target = FileTarget(out)
    try:
        run_restore([Layer("c", "p")], target, size, p, target_is_zeroed=True, store=store)
    finally:
        target.close()
    assert os.stat(out).st_blocks * 512 <= data_bytes * 1.01
    # Byte-identical: wherever either file holds data, both read the same
    # (everywhere else both are holes, which read as zeros).
    with open(image, "rb") as a, open(out, "rb") as b:
        for start, end in data_ranges(image) + data_ranges(out):
            a.seek(start)
            b.seek(start)
            assert a.read(end - start) == b.read(end - start)



@pytest.mark.parametrize("codec, pack", [(1, zlib.compress), (2, __import__("bz2").compress),
                                         (3, __import__("zstandard").compress)])
def test_a_frame_that_inflates_beyond_its_length_is_refused(codec, pack):
    """Decoding stops just past the recorded length: no unbounded allocation."""
    with pytest.raises(IntegrityError, match="frame"):
        frames.decode(codec, pack(bytes(64 * MiB)), 1000, "obj")


def test_random_frame_starting_with_zeros_is_stored_raw():
    # Data 4 KiB-aligned inside a 32 KiB sha block: the frame starts with zeros.
    data = bytes(24 * 1024) + random.Random(5).randbytes(frames.FRAME_SIZE - 24 * 1024)
    assert frames.looks_incompressible(memoryview(data))
    encoded = frames.encode("zlib", memoryview(data))
    assert frames.HEADER.unpack(encoded.headers[0])[0] == frames.CODECS["none"]


@pytest.mark.parametrize("codec", ["zlib", "zstd", "bz2"])
def test_random_frame_with_zero_edges_squeezes_only_the_edge_blocks(codec, monkeypatch):
    # Data 4 KiB-aligned inside 32 KiB sha blocks: the frame starts and ends with zeros.
    block, zeros = 32 * 1024, 24 * 1024
    body = random.Random(5).randbytes(frames.FRAME_SIZE - 2 * zeros)
    data = bytes(zeros) + body + bytes(zeros)
    assert frames.looks_incompressible(memoryview(data))     # random data, for the probe
    levels = []
    real = frames._compress
    monkeypatch.setattr(frames, "_compress",
                        lambda c, d, level: levels.append(level) or real(c, d, level))
    encoded = frames.encode(codec, memoryview(data), block)
    assert levels == [frames.EDGE_LEVELS[codec]] * 2        # the edges, at the fastest level
    heads = [frames.HEADER.unpack(h) for h in encoded.headers]
    assert [raw for _, raw, _, _ in heads] == [block, len(data) - 2 * block, block]
    assert [c for c, _, _, _ in heads] == [frames.CODECS[codec], 0, frames.CODECS[codec]]
    assert len(encoded.data) < len(data) - 2 * zeros + 2048     # codec overhead only
    decoded, pos = b"", 0
    for c, raw, stored, _ in heads:
        pos += frames.HEADER.size
        decoded += frames.decode(c, encoded.data[pos:pos + stored], raw, "t")
        pos += stored
    assert decoded == data
    # Without the block size (or with a short last block) the frame stays whole.
    assert len(frames.encode(codec, memoryview(data)).headers) == 1
    assert len(frames.encode(codec, memoryview(data[:-1]), block).headers) == 2


def _runs(image: bytes, block: int, chunk: int) -> list[tuple[int, int]]:
    """(offset, length) of the runs of non-zero blocks, cut where a chunk starts."""
    runs: list[tuple[int, int]] = []
    for off in range(0, len(image), block):
        if not any(image[off:off + block]):
            continue
        if runs and sum(runs[-1]) == off and off % chunk:
            runs[-1] = (runs[-1][0], runs[-1][1] + block)
        else:
            runs.append((off, block))
    return runs


@pytest.mark.parametrize("workers", [1, 3])
def test_objects_hold_the_runs_of_data_whatever_the_pieces(tmp_path, workers):
    """Runs are planned piece by piece (each loaded and encoded on its own): a run
    crossing pieces is still one run of one object, a chunk start inside a run or a
    piece still cuts it, and zero blocks end it."""
    rng = random.Random(5)
    block, chunk, piece = 4 * KiB, 40 * KiB, 16 * KiB     # chunk starts inside pieces
    image = bytearray(400 * KiB)
    for start, length in [(4, 9), (20, 1), (26, 30), (60, 2), (70, 25)]:   # in blocks
        image[start * block:(start + length) * block] = rng.randbytes(length * block)
    chain = Chain(tmp_path, params(compression="zstd", chunk_size=chunk, piece_size=piece,
                                   workers=workers))
    chain.backup(image)
    meta = read_metadata(chain.store, chain.container, chain.layers[0].prefix)
    assert [run for o in meta.objects for run in o.spans()] == _runs(image, block, chunk)
    for o in meta.objects:
        assert len({off // chunk for off, _ in o.spans()}) == 1
    assert chain.restore()[0] == image
