"""Packed objects (format 2.0.0): an object holds several runs of blocks.

An incremental's changed blocks are scattered; stored one object per run (as
Cinder does) each costs a file or a request. The backup packs runs into
objects of up to PACK_LIMIT within a chunk; the restore reads each packed
object once and writes each run where the writer reaches it.
"""

import collections
import json
import random

import pytest

from backupsvc.chunking import manifest, packs
from backupsvc.chunking.backup import PACK_LIMIT
from backupsvc.chunking.engine import read_metadata
from backupsvc.chunking.errors import FormatError, IntegrityError
from backupsvc.chunking.manifest import COMPACT_VERSION
from backupsvc.drivers.posix import PosixStore
from tests.unit.chunking import KiB
from tests.unit.chunking.test_restore_splice import (
    RecordingTarget,
    breaks,
    chain_of_scattered_changes,
)


class CountingStore(PosixStore):
    """A POSIX store that counts how often each object is opened for reading."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.reads: collections.Counter[str] = collections.Counter()

    def open_reader(self, container, name):
        self.reads[name] += 1
        return super().open_reader(container, name)


def test_scattered_changes_are_packed_within_their_chunk(tmp_path):
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers=2)
    chunk = chain.params.chunk_size
    for layer in chain.layers[1:]:
        meta = read_metadata(chain.store, chain.container, layer.prefix)
        runs = [run for o in meta.objects for run in o.spans()]
        assert len(runs) >= 20 and len(meta.objects) < len(runs)
        for o in meta.objects:
            assert len({offset // chunk for offset, _ in o.spans()}) == 1
            assert o.length <= PACK_LIMIT + 4 * KiB
        # Another object of the same chunk only once the first is full.
        chunks = [o.offset // chunk for o in meta.objects]
        assert len(chunks) == len(set(chunks))


def test_a_chain_of_packs_restores_reading_each_object_once(tmp_path):
    store = CountingStore(str(tmp_path / "store"))
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers=2, store=store)
    data, result = chain.restore(target_cls=RecordingTarget)
    assert data == chain.images[-1]
    assert breaks(RecordingTarget.last.writes) == 0        # still in volume order
    data_objects = {n: c for n, c in store.reads.items() if "_" not in n.rsplit("-", 1)[-1]}
    assert data_objects and max(data_objects.values()) == 1
    assert result.objects_read == len(data_objects)


def test_packs_dropped_from_memory_are_read_again(tmp_path, monkeypatch):
    store = CountingStore(str(tmp_path / "store"))
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers=2, store=store)
    monkeypatch.setattr(packs, "budget", lambda layers: 0)
    data, result = chain.restore()
    assert data == chain.images[-1]
    assert max(store.reads.values()) > 1          # some pack was read for several runs


def _edit_metadata(chain, layer, edit) -> None:
    name = manifest.metadata_name(chain.layers[layer].prefix)
    doc = json.loads(chain.store.get(chain.container, name))
    edit(doc)
    chain.store.put(chain.container, name, json.dumps(doc).encode())


def _first_pack(doc) -> dict:
    return next(rec for item in doc["objects"] for rec in item.values() if "extents" in rec)


def test_runs_recorded_at_the_wrong_place_fail_the_restore(tmp_path):
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers=2)

    def shift_last_run(doc):
        rec = _first_pack(doc)
        offset, length = rec["extents"][-1]
        rec["extents"][-1] = [offset + 4 * KiB, length]    # one block further on

    _edit_metadata(chain, -1, shift_last_run)
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        chain.restore()


def test_runs_that_do_not_cut_the_frames_fail_the_restore(tmp_path):
    rng = random.Random(3)
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers=2)
    image = bytearray(chain.images[-1])
    image[8 * KiB:16 * KiB] = rng.randbytes(8 * KiB)     # one run of two blocks...
    image[40 * KiB:44 * KiB] = rng.randbytes(4 * KiB)    # ...and one of one
    chain.backup(bytes(image))

    def split_differently(doc):
        rec = next(r for item in doc["objects"] for r in item.values()
                   if r["offset"] == 8 * KiB)
        assert rec["extents"][:2] == [[8 * KiB, 8 * KiB], [40 * KiB, 4 * KiB]]
        rec["extents"][:2] = [[8 * KiB, 4 * KiB], [40 * KiB, 8 * KiB]]

    _edit_metadata(chain, -1, split_differently)
    # Whichever the restore meets first: the pack's frame longer than the run,
    # or the block of the older backup that the pack no longer claims.
    with pytest.raises(IntegrityError,
                       match="crosses the end of a run|does not match the sha256"):
        chain.restore()


@pytest.mark.parametrize("extents", [
    [[0, 4096]],                            # a single run is no pack
    [[0, 4096], [2048, 4096]],              # overlapping
    [[4096, 4096], [0, 4096]],              # out of order
    [[0, 4096], [4096, 4096]],              # touching: one run
    [[0, 4096], [8192, 0]],                 # empty
    [[0, 4096], [8192, 8192]],              # more than the object's length
    [[100, 4096], [8192, 4096]],            # not from the object's offset
    [[0, "4096"], [8192, 4096]],
    "0-4096",
])
def test_bad_extents_are_refused(extents):
    doc = {"version": COMPACT_VERSION, "backup_id": "b", "volume_id": "v", "zero_extents": [],
           "objects": [{"p-00001": {"offset": 0, "length": 8192, "compression": "zlib",
                                    "stored_length": 9000, "frames_sha256": "ab" * 32,
                                    "extents": extents}}]}
    with pytest.raises(FormatError, match="p_metadata, object p-00001: .*extents"):
        manifest.parse_metadata(json.dumps(doc).encode(), "p_metadata")


@pytest.mark.parametrize("packed", [False, True])
def test_an_object_of_another_stored_size_fails_the_restore(tmp_path, packed):
    chain = chain_of_scattered_changes(tmp_path, COMPACT_VERSION, workers=2)

    def grow(doc):
        rec = next(r for item in doc["objects"] for r in item.values()
                   if ("extents" in r) == packed)
        rec["stored_length"] += 1

    _edit_metadata(chain, -1 if packed else 0, grow)
    with pytest.raises(IntegrityError, match="bytes in the store, .* recorded"):
        chain.restore()
