"""Cancellation, failing stores and damaged backups."""

import contextlib
import errno
import json
import os
import random

import pytest

from backupsvc.chunking.engine import (
    Cancelled,
    EngineParams,
    IntegrityError,
    read_metadata,
)
from backupsvc.drivers.posix import PosixStore
from tests.unit.chunking import Chain, KiB, random_image


def params(compression="zlib", **kw) -> EngineParams:
    base = dict(chunk_size=8 * KiB, sha_block_size=1 * KiB, piece_size=3 * KiB,
                compression=compression)
    base.update(kw)
    return EngineParams(**base)


def image_with_data(seed=1, size=100 * KiB) -> bytearray:
    return bytearray(random.Random(seed).randbytes(size))


class Counter:
    """A ``cancelled`` callback that says yes at its n-th call (0: never)."""

    def __init__(self, at: int = 0) -> None:
        self.at, self.calls = at, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls == self.at


def test_cancellation_leaves_nothing(tmp_path):
    probe = Chain(tmp_path / "probe", params())
    counter = Counter()
    probe.backup(image_with_data(), cancelled=counter)
    total = counter.calls
    assert total > 30            # at least once per piece
    # (How often the pipeline asks varies with thread timing; stay clear of the end.)
    for at in (1, 2, total // 3, total // 2):
        chain = Chain(tmp_path / ("c%d" % at), params())
        with pytest.raises(Cancelled):
            chain.backup(image_with_data(), cancelled=Counter(at))
        assert chain.stored_names() == [], at   # listdir: temp files count too


def test_cancellation_after_the_sha_file_leaves_nothing(tmp_path):
    chain = Chain(tmp_path, params())

    def sha_file_written() -> bool:
        return any(n.endswith("_sha256file") for n in chain.stored_names())

    with pytest.raises(Cancelled):
        chain.backup(image_with_data(), cancelled=sha_file_written)
    assert chain.stored_names() == []


class FailingStore(PosixStore):
    """The third data object's write fails half-way.

    This simulates a disk failing (EIO) in the middle of writing a backup.
    """

    def __init__(self, base_path, fail_on: int = 3, fail_name: str | None = None) -> None:
        super().__init__(base_path)
        self.data_objects = 0
        self.fail_on, self.fail_name = fail_on, fail_name

    @contextlib.contextmanager
    def open_writer(self, container, name):
        failing = False
        if name[-6:-5] == "-" and name[-5:].isdigit():
            self.data_objects += 1
            failing = self.data_objects == self.fail_on
        failing = failing or (self.fail_name is not None and name.endswith(self.fail_name))
        with super().open_writer(container, name) as writer:
            if not failing:
                yield writer
                return

            class Broken:
                def write(self, data):
                    writer.write(data[: len(data) // 2])
                    raise OSError(errno.EIO, "Input/output error")

            yield Broken()


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_store_failure_mid_write_leaves_nothing(tmp_path, compression):
    store = FailingStore(str(tmp_path / "store"))
    chain = Chain(tmp_path, params(compression), store=store)
    image = random_image(random.Random(2), 100 * KiB, 0.3)
    with pytest.raises(OSError, match="Input/output error"):
        chain.backup(image)
    assert store.data_objects >= 3
    assert chain.stored_names() == []


@pytest.mark.parametrize("which", ["_sha256file", "_metadata"])
def test_failure_writing_the_json_files_leaves_nothing(tmp_path, which):
    store = FailingStore(str(tmp_path / "store"), fail_on=0, fail_name=which)
    chain = Chain(tmp_path, params(), store=store)
    with pytest.raises(OSError):
        chain.backup(image_with_data())
    assert chain.stored_names() == []


@pytest.mark.parametrize("compression", ["zlib", "bz2", "zstd", "none"])
def test_restore_detects_a_flipped_byte(tmp_path, compression):
    chain = Chain(tmp_path, params(compression, chunk_size=32 * KiB))
    image = bytearray((b"compressible %d " % 7) * 3000)[:40 * KiB]
    chain.backup(image)
    meta = read_metadata(chain.store, chain.container, chain.layers[0].prefix)
    victim = meta.objects[0].name
    path = os.path.join(chain.store.base_path, chain.container, victim)
    with open(path, "r+b") as f:
        blob = bytearray(f.read())
        blob[len(blob) // 2] ^= 0x40
        f.seek(0)
        f.write(blob)
    with pytest.raises(IntegrityError, match=victim):
        chain.restore()


def test_restore_detects_a_missing_object(tmp_path):
    chain = Chain(tmp_path, params())
    chain.backup(image_with_data())
    meta = read_metadata(chain.store, chain.container, chain.layers[0].prefix)
    victim = meta.objects[3].name
    chain.store.delete(chain.container, victim)
    with pytest.raises(IntegrityError, match="b0.*missing.*" + victim):
        chain.restore()


def test_restore_detects_a_wrong_sha_list(tmp_path):
    chain = Chain(tmp_path, params(format_version="1.0.0"))
    chain.backup(image_with_data())
    prefix = chain.layers[0].prefix
    doc = json.loads(chain.store.get(chain.container, prefix + "_sha256file"))
    doc["sha256s"][5] = "0" * 64
    chain.store.put(chain.container, prefix + "_sha256file", json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="block 5 "):
        chain.restore()


def test_restore_detects_a_wrong_length(tmp_path):
    chain = Chain(tmp_path, params(skip_zero_blocks=False))
    chain.backup(bytes(20 * KiB))
    prefix = chain.layers[0].prefix
    doc = json.loads(chain.store.get(chain.container, prefix + "_metadata"))
    ((name, rec),) = doc["objects"][0].items()
    rec["length"] -= KiB
    chain.store.put(chain.container, prefix + "_metadata", json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match=name):
        chain.restore()


def test_unsupported_version(tmp_path):
    chain = Chain(tmp_path, params())
    chain.backup(image_with_data())
    prefix = chain.layers[0].prefix
    doc = json.loads(chain.store.get(chain.container, prefix + "_metadata"))
    doc["version"] = "3.0.0"
    chain.store.put(chain.container, prefix + "_metadata", json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="unsupported backup format version 3.0.0"):
        chain.restore()


def test_missing_parent_sha_file(tmp_path):
    chain = Chain(tmp_path, params())
    image = image_with_data(size=16 * KiB)
    chain.backup(image)
    chain.store.delete(chain.container, chain.layers[0].prefix + "_sha256file")
    with pytest.raises(IntegrityError, match="_sha256file is missing"):
        chain.backup(image)


def test_mismatched_block_sizes_in_a_chain(tmp_path):
    image = image_with_data(size=16 * KiB)
    one = Chain(tmp_path, params())
    one.backup(image)
    two = Chain(tmp_path, params(sha_block_size=2 * KiB), store=one.store, name="other")
    two.backup(image)
    two.layers.insert(0, one.layers[0])      # a chain mixing the two block sizes
    two.images.insert(0, image)
    with pytest.raises(IntegrityError, match="different sha block sizes"):
        two.restore()


def test_restore_with_the_wrong_size(tmp_path):
    chain = Chain(tmp_path, params())
    chain.backup(image_with_data(size=16 * KiB))
    chain.images[0] = chain.images[0] + bytes(2 * KiB)
    with pytest.raises(IntegrityError, match="records 16 blocks"):
        chain.restore()


def test_restore_can_be_cancelled(tmp_path):
    chain = Chain(tmp_path, params())
    chain.backup(image_with_data())
    with pytest.raises(Cancelled):
        chain.restore(cancelled=Counter(5))


class FailingCommitStore(PosixStore):
    """Data objects are written completely, then fail to commit (as a failing fsync would)."""

    @contextlib.contextmanager
    def open_writer(self, container, name):
        with super().open_writer(container, name) as writer:
            yield writer
            if name[-6:-5] == "-" and name[-5:].isdigit():
                raise OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize("size", [30 * KiB, 20 * 1024 * KiB])   # small, and streamed
def test_failure_committing_an_object_leaves_nothing(tmp_path, size):
    store = FailingCommitStore(str(tmp_path / "store"))
    chain = Chain(tmp_path, params("none", chunk_size=64 * 1024 * KiB, piece_size=1024 * KiB),
                  store=store)
    with pytest.raises(OSError, match="Input/output error"):
        chain.backup(image_with_data(size=size))
    assert chain.stored_names() == []
