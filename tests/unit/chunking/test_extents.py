"""zero_runs: the all-zero block runs of a sha list, against a block-by-block reference."""

from __future__ import annotations

import random

import pytest

from backupsvc.chunking.blocks import zero_sha
from backupsvc.chunking.extents import zero_runs

BS = 4096


def _reference(shas: list[str], size: int) -> list[tuple[int, int]]:
    zero_bytes = [n for n in range(len(shas))
                  if shas[n] == zero_sha(min(BS, size - n * BS))]
    runs: list[tuple[int, int]] = []
    for n in zero_bytes:
        start, end = n * BS, min((n + 1) * BS, size)
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


@pytest.mark.parametrize("seed", range(20))
def test_zero_runs_matches_a_block_by_block_reference(seed):
    rng = random.Random(seed)
    count = rng.randint(1, 60)
    size = (count - 1) * BS + rng.choice([BS, 1, 100, BS - 1])
    tail = size - (count - 1) * BS
    shas = []
    for n in range(count):
        length = BS if n < count - 1 else tail
        # Zero blocks, data blocks, and the full-block zero sha on a short last block
        # (which is not zeros of that length).
        shas.append(rng.choice([zero_sha(length), "%064x" % rng.getrandbits(256),
                                zero_sha(BS)]))
    assert zero_runs(shas, BS, size) == _reference(shas, size)


def test_zero_runs_of_nothing():
    assert zero_runs([], BS, 0) == []
