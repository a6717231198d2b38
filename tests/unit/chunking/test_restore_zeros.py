"""Restores check blocks recorded as zeros by comparing them with zeros, not by hashing."""

import os
import random

import pytest

from backupsvc.chunking import restore
from backupsvc.chunking.engine import EngineParams, IntegrityError, read_metadata
from tests.unit.chunking import Chain, KiB, SinglePassTarget

BLOCK = 4 * KiB


def params(**kw) -> EngineParams:
    # Zero blocks stored inside objects, as Cinder (and skip_zero_blocks=False) does.
    base = dict(chunk_size=64 * KiB, sha_block_size=BLOCK, piece_size=16 * KiB,
                compression="none", skip_zero_blocks=False)
    base.update(kw)
    return EngineParams(**base)


def image_with_zero_blocks() -> bytearray:
    rng = random.Random(1)
    image = bytearray(200 * KiB + 123)
    for off in (0, 30 * KiB + 7, 90 * KiB, 199 * KiB):
        image[off:off + 5 * KiB] = rng.randbytes(len(image[off:off + 5 * KiB]))
    return image


@pytest.fixture(params=["inline", "aside"])
def checks(request, monkeypatch):
    """Blocks checked by the producers themselves, or handed to checker threads."""
    monkeypatch.setattr(restore, "CHECK_ASIDE", 0 if request.param == "aside" else 1 << 40)


def blocks_of(image: bytes) -> list[bytes]:
    return [bytes(image[o:o + BLOCK]) for o in range(0, len(image), BLOCK)]


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_zero_blocks_in_objects_are_not_hashed(tmp_path, checks, hashed_blocks, compression):
    chain = Chain(tmp_path, params(compression=compression))
    image = image_with_zero_blocks()
    chain.backup(image)
    assert read_metadata(chain.store, chain.container, chain.layers[0].prefix).objects
    non_zero = [b for b in blocks_of(image) if any(b)]
    for zeroed in (True, False):
        hashed_blocks.clear()
        data, result = chain.restore(zeroed=zeroed, junk_seed=3, target_cls=SinglePassTarget)
        assert data == image
        assert sorted(hashed_blocks) == sorted(non_zero)
        zero_bytes = len(image) - sum(map(len, non_zero)) if zeroed else 0
        assert result.zero_bytes == zero_bytes
        assert result.bytes_written == len(image) - zero_bytes


def test_non_zero_data_in_a_block_recorded_as_zeros_is_detected(tmp_path, checks):
    # 1.0.0: the object is the data itself (2.0.0 frames fail their CRC first).
    chain = Chain(tmp_path, params(format_version="1.0.0"))
    image = image_with_zero_blocks()
    chain.backup(image)
    (first, *_) = read_metadata(chain.store, chain.container, chain.layers[0].prefix).objects
    path = os.path.join(chain.store.base_path, chain.container, first.name)
    victim = 50 * KiB + 1                          # inside block 12, recorded as zeros
    assert first.offset <= victim < first.end and not any(image[48 * KiB:52 * KiB])
    with open(path, "r+b") as f:
        f.seek(victim - first.offset)
        f.write(b"\x01")
    for zeroed in (True, False):
        with pytest.raises(IntegrityError, match="block 12 .*%s" % first.name):
            chain.restore(zeroed=zeroed)
