"""ShaList: the compact sha list behaves as the plain list of hex digests it replaces."""

from __future__ import annotations

import hashlib
import os
import random
import tracemalloc

import pytest

from backupsvc.chunking.blocks import zero_digest, zero_sha
from backupsvc.chunking.shalist import RUN_MIN, SEGMENT_BYTES, ShaList

BS = 4096
ZERO = zero_digest(BS)


def random_digests(rng: random.Random, count: int) -> list[bytes]:
    """Runs of zero-block digests (short and long) and of data digests."""
    out: list[bytes] = []
    while len(out) < count:
        run = rng.choice([1, 2, 31, RUN_MIN - 1, RUN_MIN, RUN_MIN + 1, 1025, 2100])
        out += [ZERO] * run if rng.random() < 0.5 else \
            [rng.randbytes(32) for _ in range(min(run, 40))]
    return out[:count]


def build(rng: random.Random, digests: list[bytes], memory_limit: int | None = None) -> ShaList:
    """The list appended in pieces of random sizes, as a backup appends pieces."""
    shas, pos = ShaList(BS, memory_limit), 0
    while pos < len(digests):
        n = rng.randint(1, 300)
        part = ShaList(BS)
        part.append(b"".join(digests[pos:pos + n]))
        shas.extend(part) if rng.random() < 0.5 else shas.append(part.digests())
        pos += n
    return shas


# memory_limit 0: every segment but the last is spilled to the temporary file.
@pytest.mark.parametrize("memory_limit", [None, 0], ids=["in-memory", "spilled"])
@pytest.mark.parametrize("seed", range(10))
def test_it_reads_back_exactly_what_was_appended(seed, memory_limit):
    rng = random.Random(seed)
    digests = random_digests(rng, 3000)
    shas = build(rng, digests, memory_limit)
    assert (shas.spilled_bytes > 0) == (memory_limit == 0)
    hexes = [d.hex() for d in digests]
    assert len(shas) == len(digests)
    assert list(shas) == hexes and shas == hexes
    assert shas.digests() == b"".join(digests)
    for _ in range(50):
        a = rng.randrange(len(digests))
        b = rng.randrange(a, len(digests) + 10)
        assert shas.digests(a, b) == b"".join(digests[a:b])
        assert shas[a:b] == hexes[a:b]
        assert shas[a] == hexes[a] and shas.digest(a) == digests[a]
    assert shas[-1] == hexes[-1]
    assert ShaList.from_hex(hexes, BS) == shas


def test_long_zero_runs_take_no_digest_space():
    shas = ShaList(BS)
    shas.append(b"\x01" * 32 + ZERO * 10_000 + b"\x02" * 32)
    shas.append_zeros(1_000_000)
    assert len(shas) == 1_010_002
    assert shas.nbytes < 200                # against 32 MB as digests
    assert shas[500] == ZERO.hex() and shas[1] == ZERO.hex() and shas[10_001] == "02" * 32
    assert shas.zero_runs(len(shas) * BS) == [(BS, 10_001 * BS), (10_002 * BS, len(shas) * BS)]


def test_a_zero_digest_that_is_not_aligned_is_no_zero_block():
    blob = bytes(16) + ZERO * RUN_MIN + bytes(16)
    shas = ShaList(BS)
    shas.append(blob)
    assert shas.digests() == blob
    assert shas.zero_runs(len(shas) * BS) == []


@pytest.mark.parametrize("memory_limit", [None, 0], ids=["in-memory", "spilled"])
@pytest.mark.parametrize("seed", range(10))
def test_changed_blocks_against_a_parent(seed, memory_limit):
    rng = random.Random(seed)
    parent_digests = random_digests(rng, 2000)
    child = [d if rng.random() < 0.9 else rng.choice([ZERO, rng.randbytes(32)])
             for d in parent_digests] + random_digests(rng, rng.randrange(0, 300))
    parent = build(rng, parent_digests, memory_limit)
    first = rng.randrange(len(child))
    piece = ShaList(BS)
    piece.append(b"".join(child[first:first + 500]))
    want = [i for i, d in enumerate(child[first:first + 500])
            if first + i >= len(parent_digests) or parent_digests[first + i] != d]
    assert piece.changed_since(parent, first) == want
    assert piece.changed_since(None, first) == list(range(len(piece)))


def test_a_hole_over_a_parent_hole_has_no_change():
    parent, piece = ShaList(BS), ShaList(BS)
    parent.append_zeros(100_000)
    piece.append_zeros(32_768)
    assert piece.changed_since(parent, 50_000) == []
    assert piece.changed_since(parent, 80_000) == list(range(20_000, 32_768))   # beyond


def test_nonzero_blocks_know_a_short_last_block():
    shas = ShaList(BS)
    shas.append(b"\x01" * 32 + ZERO + zero_digest(100))
    assert shas.nonzero([0, 1, 2]) == [0, 2]            # a full block's zero digest only
    assert shas.nonzero([0, 1, 2], last_length=100) == [0]


def test_bad_hex_is_named():
    with pytest.raises(ValueError, match="'xyz' is not a hex sha256 digest"):
        ShaList.from_hex([zero_sha(BS), "xyz"], BS)
    with pytest.raises(ValueError, match="is not a hex sha256 digest"):
        ShaList.from_hex([7], BS)
    with pytest.raises(ValueError, match="whole 32-byte digests"):
        ShaList(BS).append(b"x" * 33)


def test_lists_of_different_block_sizes_do_not_mix():
    with pytest.raises(ValueError, match="do not mix"):
        ShaList(BS).extend(ShaList(2 * BS))


@pytest.mark.parametrize("seed", range(3))
def test_zero_runs_are_the_same_when_spilled(seed):
    rng = random.Random(seed)
    digests = random_digests(rng, 5000)
    kept, spilled = build(random.Random(seed), digests), build(random.Random(seed), digests, 0)
    assert spilled.spilled_bytes > 0
    size = len(digests) * BS - 100          # a short last block
    assert spilled.zero_runs(size) == kept.zero_runs(size)
    assert spilled == kept
    copy = ShaList(BS)
    copy.extend(spilled)                    # reads the spilled segments back
    assert copy.digests() == b"".join(digests)


def test_a_large_list_keeps_only_its_limit_in_memory():
    """Digests beyond the limit go to disk in whole segments: what stays in memory is
    the limit plus the segment being filled, however many blocks the volume has."""
    limit = 2 * SEGMENT_BYTES
    shas = ShaList(BS, memory_limit=limit)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        piece = os.urandom(128 * 32)        # a 4 MiB piece of 32 KiB blocks
        for i in range(8 * SEGMENT_BYTES // len(piece)):
            shas.append(piece[:-32] + i.to_bytes(32, "big"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(shas) == 8 * SEGMENT_BYTES // 32
    assert shas.nbytes <= limit + SEGMENT_BYTES
    assert shas.spilled_bytes >= 8 * SEGMENT_BYTES - limit - SEGMENT_BYTES
    assert peak < limit + 2 * SEGMENT_BYTES       # held all: 8 segments
    last = len(shas) - 1
    assert shas.digest(0) == piece[:32] and shas.digest(127) == bytes(32)
    assert shas.digest(last) == ((last // 128).to_bytes(32, "big"))
    assert shas.digests(126, 130) == piece[-64:-32] + bytes(32) + piece[:64]



@pytest.mark.parametrize("memory_limit", [None, 0], ids=["in-memory", "spilled"])
def test_hash_into_hashes_the_concatenated_digests(memory_limit):
    rng = random.Random(7)
    digests = random_digests(rng, 20_000) + [ZERO] * 9000        # runs over a batch
    shas = build(rng, digests, memory_limit)
    want = hashlib.sha256(b"".join(digests)).hexdigest()
    got = hashlib.sha256()
    shas.hash_into(got)
    assert got.hexdigest() == want
