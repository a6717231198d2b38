"""The chunking engine end to end through UserspaceNfsStore on a real server.

Full + incremental backups and chain restores byte for byte, cancellation,
deletion; what the engine wrote is also checked in the server's export
directory (read only: files changed behind ganesha's back can look stale).
"""

import hashlib
import os
import random

import pytest

from backupsvc.chunking import manifest
from backupsvc.chunking.engine import Cancelled, EngineParams, read_metadata, run_delete
from backupsvc.drivers.posix import PosixStore
from tests.unit.chunking import Chain, KiB, MiB, random_image

pytestmark = pytest.mark.functional


def params(**kw) -> EngineParams:
    base = dict(chunk_size=256 * KiB, sha_block_size=4 * KiB, piece_size=64 * KiB,
                compression="zlib", workers=2)
    base.update(kw)
    return EngineParams(**base)


def mutate(rng: random.Random, image: bytearray, changes: int = 6) -> bytearray:
    image = bytearray(image)
    for _ in range(changes):
        off = rng.randrange(len(image))
        n = min(rng.randrange(1, 40 * KiB), len(image) - off)
        image[off:off + n] = rng.randbytes(n)
    zoff = rng.randrange(len(image))                    # a region that held data
    image[zoff:zoff + 16 * KiB] = bytes(len(image[zoff:zoff + 16 * KiB]))
    return image


def local_dir(share, chain) -> str:
    return os.path.join(share.local, chain.container)


@pytest.mark.parametrize("compression", ["zlib", "zstd", "none"])
def test_full_incremental_chain_restores_identical(tmp_path, share41, compression):
    store = share41.store()
    chain = Chain(tmp_path, params(compression=compression), store=store)
    rng = random.Random(11)
    image = random_image(rng, 3 * MiB + 777, 0.6)
    chain.backup(image)
    for _ in range(2):
        image = mutate(rng, image)
        chain.backup(image)
    assert chain.results[1].changed_blocks < chain.results[0].changed_blocks
    for level in range(3):
        data, _ = chain.restore(level, zeroed=level % 2 == 0, junk_seed=level)
        assert data == chain.images[level], level
    # What the metadata lists is on the server's disk, with the recorded md5
    # (of the data before compression: compare the stored object's digest
    # through NFS with the local file's).
    names = os.listdir(local_dir(share41, chain))
    for layer in chain.layers:
        meta = read_metadata(store, chain.container, layer.prefix)
        assert manifest.metadata_name(layer.prefix) in names
        assert manifest.sha256file_name(layer.prefix) in names
        for obj in meta.objects:
            with open(os.path.join(local_dir(share41, chain), obj.name), "rb") as f:
                on_disk = f.read()
            assert hashlib.md5(on_disk).digest() == hashlib.md5(
                store.get(chain.container, obj.name)).digest()
    assert not [n for n in names if n.startswith(".")]


def test_big_chunks_stream_in_pieces(tmp_path, share41):
    """Objects far bigger than the store's write piece, restored with 2 workers."""
    store = share41.store()
    p = params(chunk_size=12 * MiB, sha_block_size=32 * KiB, piece_size=1 * MiB,
               compression="none")
    chain = Chain(tmp_path, p, store=store)
    image = random.Random(3).randbytes(20 * MiB + 5)
    chain.backup(image)
    meta = read_metadata(store, chain.container, chain.layers[0].prefix)
    assert [o.length for o in meta.objects] == [12 * MiB, 8 * MiB + 5]
    data, result = chain.restore()
    assert data == image and result.objects_read == 2


class Counter:
    """A ``cancelled`` callback that says yes at its n-th call."""

    def __init__(self, at: int = 0) -> None:
        self.at, self.calls = at, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls == self.at


def test_cancellation_leaves_no_objects(tmp_path, share41):
    store = share41.store()
    image = random.Random(5).randbytes(1 * MiB)
    probe = Chain(tmp_path / "probe", params())
    counter = Counter()
    probe.backup(image, cancelled=counter)
    total = counter.calls
    for i, at in enumerate((1, total // 3, total // 2)):
        chain = Chain(tmp_path / ("c%d" % i), params(), store=store)
        chain.container = "ca/nc/cancel-%d" % i
        with pytest.raises(Cancelled):
            chain.backup(image, cancelled=Counter(at))
        assert share41.names_over_nfs(chain.container) == [], at   # temp names too
        assert os.listdir(local_dir(share41, chain)) == []


def test_delete_removes_everything_of_a_backup(tmp_path, share41):
    store = share41.store()
    chain = Chain(tmp_path, params(), store=store)
    rng = random.Random(9)
    image = random_image(rng, 2 * MiB, 0.7)
    chain.backup(image)
    chain.backup(mutate(rng, image))
    first, second = (layer.prefix for layer in chain.layers)
    everything = share41.names_over_nfs(chain.container)
    assert any(n.startswith(second) for n in everything)

    removed = run_delete(store, chain.container, second)
    assert removed == len([n for n in everything if n.startswith(second)])
    left = share41.names_over_nfs(chain.container)
    assert left and all(n.startswith(first) for n in left)
    assert sorted(os.listdir(local_dir(share41, chain))) == left
    assert chain.restore(0)[0] == chain.images[0]      # the parent is intact

    run_delete(store, chain.container, first)
    assert share41.names_over_nfs(chain.container) == []
    assert os.listdir(local_dir(share41, chain)) == []


def test_repository_is_the_posix_layout(tmp_path, share41):
    """What the userspace store wrote restores through a PosixStore on the export
    directory: the same files a kernel mount of the share would show."""
    chain = Chain(tmp_path, params(), store=share41.store())
    rng = random.Random(13)
    image = random_image(rng, 1 * MiB, 0.5)
    chain.backup(image)
    chain.backup(mutate(rng, image))
    chain.store = PosixStore(share41.local)       # read only: restores just read
    assert chain.restore()[0] == chain.images[1]
