"""Full backups and their restores against real files and a PosixStore."""

import bz2
import hashlib
import io
import json
import random
import zlib

import pytest
import zstandard

from backupsvc.chunking import manifest
from backupsvc.chunking.engine import EngineParams, Layer, read_metadata, run_backup
from tests.unit.chunking import Chain, KiB, SinglePassTarget, description, random_image

COMPRESSIONS = ["zlib", "bz2", "zstd", "none"]


def small_params(**kw) -> EngineParams:
    base = dict(chunk_size=16 * KiB, sha_block_size=1 * KiB, piece_size=3 * KiB, workers=2)
    base.update(kw)
    return EngineParams(**base)


@pytest.mark.parametrize("fmt", ["1.0.0", "2.0.0"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 100 * KiB + 17, 257 * KiB])
def test_full_backup_restores_identical(tmp_path, compression, size, fmt):
    chain = Chain(tmp_path, small_params(compression=compression, format_version=fmt))
    image = random_image(random.Random(size), size)
    chain.backup(image)
    for zeroed in (True, False):
        data, _ = chain.restore(zeroed=zeroed, junk_seed=1)
        assert data == image


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_objects_decompress_with_plain_libraries(tmp_path, compression):
    chain = Chain(tmp_path, small_params(compression=compression, chunk_size=64 * KiB,
                                         format_version="1.0.0"))
    # Compressible text so that objects really are stored compressed.
    image = bytearray(random_image(random.Random(5), 200 * KiB, 0.2))
    image[0:150 * KiB] = (b"some compressible words " * 10000)[:150 * KiB]
    chain.backup(image)
    meta = read_metadata(chain.store, chain.container, chain.layers[0].prefix)
    assert meta.objects
    for obj in meta.objects:
        raw = chain.store.get(chain.container, obj.name)
        if obj.compression == "zlib":
            data = zlib.decompress(raw)
        elif obj.compression == "bz2":
            data = bz2.decompress(raw)
        elif obj.compression == "zstd":
            dctx = zstandard.ZstdDecompressor()
            data = dctx.decompressobj().decompress(raw)
            assert dctx.stream_reader(raw, read_across_frames=True).read() == data
        else:
            data = raw
        assert obj.compression in (compression, "none")
        assert len(data) == obj.length
        assert hashlib.md5(data).hexdigest() == obj.md5
        assert data == image[obj.offset:obj.end]
    if compression != "none":
        assert any(o.compression == compression for o in meta.objects)


def test_incompressible_small_object_stored_raw(tmp_path):
    chain = Chain(tmp_path, small_params(compression="zlib", format_version="1.0.0"))
    image = random.Random(3).randbytes(8 * KiB)
    chain.backup(image)
    (obj,) = read_metadata(chain.store, chain.container, chain.layers[0].prefix).objects
    assert obj.compression == "none"
    assert chain.store.get(chain.container, obj.name) == image


def test_all_zero_volume_stores_no_data_objects(tmp_path):
    chain = Chain(tmp_path, small_params())
    result = chain.backup(bytes(300 * KiB + 5))
    assert result.object_count == 0
    assert result.zero_blocks == result.changed_blocks == 301
    prefix = chain.layers[0].prefix
    assert chain.stored_names() == [prefix + "_metadata", prefix + "_sha256file"]
    data, rr = chain.restore()
    assert data == bytes(300 * KiB + 5)
    assert rr.bytes_written == 0 and rr.objects_read == 0


def test_zero_skipping_can_be_disabled(tmp_path):
    chain = Chain(tmp_path, small_params(skip_zero_blocks=False))
    result = chain.backup(bytes(40 * KiB))
    assert result.object_count == 3           # 16 + 16 + 8 KiB chunks
    assert chain.restore()[0] == bytes(40 * KiB)


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_objects_follow_runs_and_chunk_boundaries(tmp_path, version):
    chain = Chain(tmp_path, small_params(chunk_size=8 * KiB, format_version=version))
    image = bytearray(40 * KiB)
    image[1 * KiB:3 * KiB] = b"a" * 2 * KiB           # run inside chunk 0
    image[5 * KiB:13 * KiB] = b"b" * 8 * KiB          # run crossing 8 KiB: two objects
    image[39 * KiB + 10:] = b"c" * (KiB - 10)          # the last block
    chain.backup(image)
    meta = read_metadata(chain.store, chain.container, chain.layers[0].prefix)
    spans = [o.spans() for o in meta.objects]
    if version == "1.0.0":      # Cinder's layout: an object per run
        assert spans == [((1 * KiB, 2 * KiB),), ((5 * KiB, 3 * KiB),), ((8 * KiB, 5 * KiB),),
                         ((39 * KiB, KiB),)]
    else:                       # runs packed into an object, within its chunk
        assert spans == [((1 * KiB, 2 * KiB), (5 * KiB, 3 * KiB)), ((8 * KiB, 5 * KiB),),
                         ((39 * KiB, KiB),)]
    prefix = chain.layers[0].prefix
    assert [o.name for o in meta.objects] == [manifest.data_object_name(prefix, n)
                                              for n in range(1, len(spans) + 1)]
    assert chain.restore()[0] == image


def test_json_files(tmp_path):
    chain = Chain(tmp_path, small_params(format_version="1.0.0"))
    image = random_image(random.Random(9), 50 * KiB)
    chain.backup(image)
    prefix = chain.layers[0].prefix
    raw_sha = chain.store.get(chain.container, prefix + "_sha256file")
    raw_meta = chain.store.get(chain.container, prefix + "_metadata")
    sha_doc, meta_doc = json.loads(raw_sha), json.loads(raw_meta)
    assert json.dumps(sha_doc, sort_keys=True, indent=2).encode() == raw_sha
    assert json.dumps(meta_doc, sort_keys=True, indent=2).encode() == raw_meta
    assert set(sha_doc) == {"backup_description", "backup_id", "backup_name", "created_at",
                            "chunk_size", "sha256s", "version", "volume_id"}
    assert sha_doc["chunk_size"] == 1024 and sha_doc["version"] == "1.0.0"
    assert sha_doc["sha256s"] == [hashlib.sha256(image[o:o + 1024]).hexdigest()
                                  for o in range(0, len(image), 1024)]
    assert set(meta_doc) == {"backup_description", "backup_id", "backup_name", "created_at",
                             "objects", "parent_id", "version", "volume_id", "volume_meta"}
    assert meta_doc["backup_id"] == "b0" and meta_doc["parent_id"] is None
    for item in meta_doc["objects"]:
        ((name, rec),) = item.items()
        assert name.startswith(prefix + "-")
        assert set(rec) == {"compression", "length", "md5", "offset"}


def test_restore_is_single_pass(tmp_path):
    params = small_params(chunk_size=8 * KiB)
    chain = Chain(tmp_path, params)
    rng = random.Random(11)
    image = random_image(rng, 96 * KiB + 100)
    chain.backup(image)
    for _ in range(3):
        image = bytearray(image)
        for _ in range(6):
            off = rng.randrange(len(image))
            image[off:off + 3000] = rng.choice([bytes(3000), rng.randbytes(3000)])
        image = image[:96 * KiB + 100]
        chain.backup(image)
    for zeroed in (True, False):
        data, result = chain.restore(zeroed=zeroed, target_cls=SinglePassTarget)
        assert data == image
        # Every byte is accounted for exactly once (the target asserts no overlap).
        assert result.bytes_written + result.zero_bytes == len(image)


def test_progress_reaches_size(tmp_path):
    chain = Chain(tmp_path, small_params())
    image = random_image(random.Random(2), 50 * KiB)
    seen = []
    chain.backup(image, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(image), len(image))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    restored = []
    chain.restore(progress=lambda done, total: restored.append(done))
    assert restored[-1] == len(image)


def test_params_validation():
    with pytest.raises(ValueError, match="multiple of sha_block_size"):
        EngineParams(chunk_size=10000, sha_block_size=4096)
    p = EngineParams(chunk_size=8192, sha_block_size=4096, piece_size=5000, compression="GZIP")
    assert p.piece_size == 8192 and p.compression == "zlib"
    assert EngineParams(chunk_size=4096, sha_block_size=4096, compression=None).compression \
        == "none"
    with pytest.raises(ValueError):
        EngineParams(chunk_size=4096, sha_block_size=4096, compression="lzma")


def test_reader_without_readinto(tmp_path):
    class ShortReads:
        def __init__(self, data):
            self.data, self.pos = data, 0

        def read(self, n):
            out = self.data[self.pos:self.pos + min(n, 700)]
            self.pos += len(out)
            return out

    chain = Chain(tmp_path, small_params())
    image = random_image(random.Random(4), 20 * KiB)
    run_backup(ShortReads(bytes(image)), len(image), chain.store, chain.container, "p",
               description("b-x"), chain.params)
    chain.layers, chain.images = [Layer(chain.container, "p")], [bytes(image)]
    assert chain.restore()[0] == image


def test_short_volume_is_an_error(tmp_path):
    chain = Chain(tmp_path, small_params())
    with pytest.raises(EOFError):
        run_backup(io.BytesIO(b"x" * 100), 200, chain.store, chain.container, "p",
                   description("b-x"), chain.params)
    assert chain.stored_names() == []
