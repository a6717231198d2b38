"""Incremental backups: change detection, object layout, chains, deletion."""

import random

import pytest

from backupsvc.chunking.engine import (
    EngineParams,
    read_metadata,
    read_sha256s,
    run_delete,
)
from tests.unit.chunking import Chain, KiB, random_image


def params(compression="zlib", **kw) -> EngineParams:
    base = dict(chunk_size=8 * KiB, sha_block_size=1 * KiB, piece_size=4 * KiB,
                compression=compression)
    base.update(kw)
    return EngineParams(**base)


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_scattered_changes_store_exactly_those_blocks(tmp_path, version):
    chain = Chain(tmp_path, params(format_version=version))
    rng = random.Random(1)
    image = bytearray(rng.randbytes(64 * KiB))
    chain.backup(image)
    changed = bytearray(image)
    changed[16 * KiB:17 * KiB] = rng.randbytes(KiB)
    changed[20 * KiB:21 * KiB] = rng.randbytes(KiB)
    result = chain.backup(changed)

    _, old = read_sha256s(chain.store, chain.container, chain.layers[0].prefix)
    _, new = read_sha256s(chain.store, chain.container, chain.layers[1].prefix)
    assert [i for i in range(64) if old[i] != new[i]] == [16, 20]
    meta = read_metadata(chain.store, chain.container, chain.layers[1].prefix)
    runs = ((16 * KiB, KiB), (20 * KiB, KiB))
    if version == "1.0.0":      # an object per run, as Cinder stores them
        assert [o.spans() for o in meta.objects] == [runs[:1], runs[1:]]
    else:                       # one object packing both runs
        assert [o.spans() for o in meta.objects] == [runs]
        assert meta.objects[0].length == 2 * KiB
    assert meta.parent_id == "b0"
    assert result.object_count == len(meta.objects) and result.changed_blocks == 2
    assert chain.restore()[0] == changed
    assert chain.restore(0)[0] == image


def test_adjacent_changes_join_within_a_chunk_only(tmp_path):
    chain = Chain(tmp_path, params())
    image = bytearray(random.Random(2).randbytes(32 * KiB))
    chain.backup(image)
    image[6 * KiB:11 * KiB] = bytes(b"z" * 5 * KiB)       # crosses the 8 KiB boundary
    chain.backup(image)
    meta = read_metadata(chain.store, chain.container, chain.layers[1].prefix)
    assert [(o.offset, o.length) for o in meta.objects] == [(6 * KiB, 2 * KiB),
                                                            (8 * KiB, 3 * KiB)]


def test_unchanged_volume_makes_no_objects(tmp_path):
    chain = Chain(tmp_path, params())
    image = random_image(random.Random(3), 50 * KiB)
    chain.backup(image)
    result = chain.backup(image)
    assert result.object_count == 0 and result.changed_blocks == 0
    assert chain.restore()[0] == image


@pytest.mark.parametrize("compression", ["zlib", "bz2", "zstd", "none"])
def test_chain_of_three_incrementals(tmp_path, compression):
    chain = Chain(tmp_path, params(compression))
    rng = random.Random(4)
    image = random_image(rng, 120 * KiB + 333)
    chain.backup(image)
    for step in range(3):
        image = bytearray(image)
        for _ in range(5):
            off = rng.randrange(len(image))
            n = rng.randrange(1, 6 * KiB)
            image[off:off + n] = rng.randbytes(len(image[off:off + n]))
        # Zero out a region that held data, and grow the volume once.
        zoff = rng.randrange(len(image))
        image[zoff:zoff + 4 * KiB] = bytes(len(image[zoff:zoff + 4 * KiB]))
        if step == 1:
            image += rng.randbytes(3 * KiB + 5)
        chain.backup(image)
    assert chain.restore()[0] == image
    assert chain.restore(zeroed=False, junk_seed=7)[0] == image
    for i, expected in enumerate(chain.images):
        assert chain.restore(i)[0] == expected
        assert chain.restore(i, zeroed=False, junk_seed=i)[0] == expected


def test_region_zeroed_since_parent_is_not_stored(tmp_path):
    chain = Chain(tmp_path, params())
    image = bytearray(random.Random(5).randbytes(32 * KiB))
    chain.backup(image)
    image[8 * KiB:24 * KiB] = bytes(16 * KiB)
    result = chain.backup(image)
    assert result.object_count == 0 and result.zero_blocks == 16
    assert chain.restore()[0] == image
    assert chain.restore(zeroed=False, junk_seed=1)[0] == image


def test_volume_shrunk_needs_a_full_backup(tmp_path):
    chain = Chain(tmp_path, params())
    chain.backup(bytes(10 * KiB))
    with pytest.raises(ValueError, match="Volume size decreased since the last backup"):
        chain.backup(bytes(8 * KiB))


def test_run_delete_removes_one_backup(tmp_path):
    chain = Chain(tmp_path, params())
    image = random_image(random.Random(6), 40 * KiB)
    chain.backup(image)
    image[0:2 * KiB] = b"q" * 2 * KiB
    chain.backup(image)
    first = chain.layers[0].prefix
    count = len([n for n in chain.stored_names() if n.startswith(first)])
    assert run_delete(chain.store, chain.container, first) == count
    assert all(not n.startswith(first) for n in chain.stored_names())
    assert run_delete(chain.store, chain.container, first) == 0
    assert read_metadata(chain.store, chain.container, chain.layers[1].prefix)


def test_superseded_objects_are_not_read(tmp_path):
    chain = Chain(tmp_path, params(compression="none"))
    image = bytearray(random.Random(7).randbytes(32 * KiB))
    chain.backup(image)                                   # 4 objects of 8 KiB
    image[8 * KiB:16 * KiB] = random.Random(8).randbytes(8 * KiB)
    chain.backup(image)                                   # replaces object 2 entirely
    data, result = chain.restore()
    assert data == image
    assert result.objects_read == 4
    assert result.bytes_written == 32 * KiB
