"""The writeback tracker: kicks run in the background on a duplicate descriptor."""

from __future__ import annotations

import os

from backupsvc import writeback


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_kicks_use_a_duplicate_that_close_releases(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    tracker = writeback.Tracker(fd)
    data = b"x" * writeback.EVERY
    for i in range(3):
        os.pwrite(fd, data, i * len(data))
        tracker.wrote(len(data))
    tracker.settle()
    dup = tracker._dup
    assert dup is not None and dup != fd
    assert os.path.samestat(os.fstat(dup), os.fstat(fd))
    # The caller may close its descriptor first: the kicks never used it.
    os.close(fd)
    tracker.close()
    assert not _is_open(dup)
    assert path.stat().st_size == 3 * len(data)


def test_small_writes_never_kick(tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        tracker = writeback.Tracker(fd)
        tracker.wrote(writeback.EVERY - 1)
        tracker.settle()
        assert tracker._dup is None
        tracker.close()
    finally:
        os.close(fd)

