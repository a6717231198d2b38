"""ShaList.zero_runs: the all-zero block runs of a sha list, against a block-by-block reference."""

from __future__ import annotations

import random

import pytest

from backupsvc.chunking.blocks import zero_sha
from backupsvc.chunking.shalist import RUN_MIN, ShaList

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
    count = rng.randint(1, 60) + rng.choice([0, RUN_MIN * 3])
    size = (count - 1) * BS + rng.choice([BS, 1, 100, BS - 1])
    tail = size - (count - 1) * BS
    shas: list[str] = []
    while len(shas) < count:
        # Zero blocks (single and in runs long enough to be kept as runs), data
        # blocks, and the full-block zero sha on a short last block (which is
        # not zeros of that length).
        run = rng.choice([1, 1, 2, RUN_MIN - 1, RUN_MIN, RUN_MIN + 5])
        pick = rng.choice([zero_sha(BS), "%064x" % rng.getrandbits(256)])
        shas += [pick] * min(run, count - len(shas))
    if rng.random() < 0.5:
        shas[-1] = zero_sha(tail)
    assert ShaList.from_hex(shas, BS).zero_runs(size) == _reference(shas, size)


def test_zero_runs_of_nothing():
    assert ShaList(BS).zero_runs(0) == []
