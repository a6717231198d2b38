"""Backups laid out the way Cinder's chunked driver writes them restore correctly.

The backups here are built by hand from the format description (whole-chunk
objects made with one-shot compress calls, no zero skipping), not by the engine.
"""

import bz2
import hashlib
import json
import random
import zlib

from backupsvc.chunking.engine import EngineParams, Layer, read_metadata, read_sha256s
from tests.unit.chunking import Chain, KiB

CHUNK = 64 * KiB
BLOCK = 4 * KiB


def sha_list(image: bytes) -> list[str]:
    return [hashlib.sha256(image[o:o + BLOCK]).hexdigest() for o in range(0, len(image), BLOCK)]


def write_backup(store, container, prefix, backup_id, parent_id, image, objects):
    """``objects``: list of (offset, length, compression-name-as-recorded, compress-fn)."""
    entries = []
    for n, (offset, length, recorded, compress) in enumerate(objects, 1):
        data = image[offset:offset + length]
        name = "%s-%05d" % (prefix, n)
        store.put(container, name, compress(data))
        entries.append({name: {"offset": offset, "length": length,
                               "md5": hashlib.md5(data).hexdigest(),
                               "compression": recorded}})
    common = {"backup_id": backup_id, "volume_id": "vol-1", "backup_name": None,
              "backup_description": None, "created_at": "2023-01-02 03:04:05+00:00",
              "version": "1.0.0"}
    sha = dict(common, chunk_size=BLOCK, sha256s=sha_list(image))
    meta = dict(common, objects=entries, parent_id=parent_id, volume_meta=None)
    store.put(container, prefix + "_sha256file",
              json.dumps(sha, sort_keys=True, indent=2).encode("utf-8"))
    store.put(container, prefix + "_metadata",
              json.dumps(meta, sort_keys=True, indent=2).encode("utf-8"))


def changed_runs(old: bytes, new: bytes) -> list[tuple[int, int]]:
    """Cinder-style incremental objects: runs of changed sha blocks within each chunk."""
    runs = []
    for chunk_start in range(0, len(new), CHUNK):
        start = None
        chunk_end = min(chunk_start + CHUNK, len(new))
        for off in range(chunk_start, chunk_end, BLOCK):
            changed = old[off:off + BLOCK] != new[off:off + BLOCK]
            if changed and start is None:
                start = off
            if not changed and start is not None:
                runs.append((start, off - start))
                start = None
        if start is not None:
            runs.append((start, chunk_end - start))
    return runs


def test_cinder_shaped_chain_restores(tmp_path):
    rng = random.Random(1)
    size = 5 * CHUNK + 1234
    full = bytearray(size)
    full[0:30 * KiB] = rng.randbytes(30 * KiB)
    full[100 * KiB:190 * KiB] = (b"cinder volume data " * 6000)[:90 * KiB]
    full[size - 1000:] = rng.randbytes(1000)
    full = bytes(full)
    chain = Chain(tmp_path, EngineParams(chunk_size=CHUNK, sha_block_size=BLOCK))
    store, container = chain.store, "cinder/container"
    chain.container = container
    store.ensure_container(container)

    # Full backup: one zlib object per chunk, zeros included.
    objs = [(o, min(CHUNK, size - o), "zlib", zlib.compress) for o in range(0, size, CHUNK)]
    write_backup(store, container, "volume_vol-1_20230102030405_backup_full", "full", None,
                 full, objs)

    # Incremental 1: a few blocks changed (some to zeros); other algorithm names.
    inc = bytearray(full)
    inc[8 * KiB:12 * KiB] = rng.randbytes(4 * KiB)
    inc[100 * KiB:116 * KiB] = bytes(16 * KiB)          # data replaced by zeros: stored
    inc[200 * KiB:280 * KiB] = rng.randbytes(80 * KiB)  # crosses a chunk boundary
    inc = bytes(inc)
    kinds = [("bz2", bz2.compress), (None, bytes), ("GZIP", zlib.compress), ("off", bytes)]
    objs = [(o, n, *kinds[i % len(kinds)]) for i, (o, n) in enumerate(changed_runs(full, inc))]
    assert len(objs) >= 4
    write_backup(store, container, "volume_vol-1_20230103030405_backup_inc1", "inc1", "full",
                 inc, objs)

    chain.layers = [Layer(container, "volume_vol-1_20230102030405_backup_full"),
                    Layer(container, "volume_vol-1_20230103030405_backup_inc1")]
    chain.images = [full, inc]
    assert read_metadata(store, container, chain.layers[1].prefix).objects[1].compression \
        == "none"
    for zeroed in (True, False):
        assert chain.restore(0, zeroed=zeroed, junk_seed=2)[0] == full
        assert chain.restore(1, zeroed=zeroed, junk_seed=3)[0] == inc

    # Our engine continues the Cinder chain with an incremental of its own.
    block_size, parent = read_sha256s(store, container, chain.layers[1].prefix)
    assert block_size == BLOCK and parent == sha_list(inc)
    ours = bytearray(inc)
    ours[50 * KiB:51 * KiB] = b"\1" * KiB
    ours[8 * KiB:12 * KiB] = bytes(4 * KiB)
    chain.backup(ours)
    meta = read_metadata(store, container, chain.layers[2].prefix)
    assert [(o.offset, o.length) for o in meta.objects] == [(48 * KiB, 4 * KiB)]
    assert chain.restore()[0] == ours
    assert chain.restore(zeroed=False, junk_seed=4)[0] == ours
