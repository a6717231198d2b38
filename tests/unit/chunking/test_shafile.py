"""Reading sha256 files a part at a time: same result as a whole read, bounded memory."""

import gc
import hashlib
import json
import random
import tracemalloc

import pytest

from backupsvc.chunking import manifest, shafile
from backupsvc.chunking.blocks import zero_digest
from backupsvc.chunking.errors import FormatError, IntegrityError
from backupsvc.drivers.posix import PosixStore

BLOCK = 32768


class Trickle:
    """A store reader that hands out at most ``step`` bytes per read (as a
    network stream may): every token of the file gets cut somewhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def read(self, size: int = -1) -> bytes:
        n = self.step if size < 0 else min(size, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def hexes(n: int, seed: int = 1, zero_every: int = 3) -> list[str]:
    """Digests with runs of zero blocks among them (long runs too)."""
    rng, zero = random.Random(seed), zero_digest(BLOCK).hex()
    out = []
    for i in range(n):
        if i % zero_every == 0 or 200 <= i % 1000 < 400:
            out.append(zero)
        else:
            out.append(hashlib.sha256(rng.randbytes(8)).hexdigest())
    return out


def sha_file(version: str, digests: list[str]) -> manifest.Sha256File:
    return manifest.Sha256File(
        backup_id="b1", volume_id="v1", backup_name="n", backup_description=None,
        created_at="2024-01-01 00:00:00", chunk_size=BLOCK, sha256s=digests,
        version=version, volume_size=len(digests) * BLOCK)


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
@pytest.mark.parametrize("step", [1, 7, 64, 4099, 1 << 20])
def test_any_cut_of_the_stream_reads_the_same_list(version, step):
    digests = hexes(2500)
    data = b"".join(sha_file(version, digests).iter_bytes())
    got = shafile.read(Trickle(data, step), "f")
    assert list(got.sha256s) == digests
    assert got.chunk_size == BLOCK and got.version == version and got.backup_id == "b1"


@pytest.mark.parametrize("dump", [
    lambda doc: json.dumps(doc),                                  # one line, no spaces
    lambda doc: json.dumps(doc, indent="\t", separators=(" , ", " : ")),
    lambda doc: json.dumps(doc, sort_keys=True, indent=2),        # Cinder's own
])
def test_json_written_other_ways_reads_the_same(dump):
    digests = hexes(300, seed=2)
    doc = {"backup_id": "b", "chunk_size": BLOCK, "created_at": "x",
           "sha256s": digests, "version": "1.0.0", "volume_id": "v", "extra": [1, {"a": 2}]}
    for step in (3, 1 << 20):
        got = shafile.read(Trickle(dump(doc).encode(), step), "f")
        assert list(got.sha256s) == digests


def test_the_list_before_the_block_size_and_an_empty_list():
    digests = hexes(50, seed=3)
    doc = '{"sha256s": %s, "chunk_size": %d, "version": "1.0.0"}' % (
        json.dumps(digests), BLOCK)
    assert list(shafile.parse(doc.encode()).sha256s) == digests
    for text in ('{"chunk_size": 4, "sha256s": [], "version": "1.0.0"}',
                 '{"chunk_size": 4, "sha256s": [ ], "version": "1.0.0"}'):
        assert list(shafile.parse(text.encode()).sha256s) == []


GOOD = "a" * 64


@pytest.mark.parametrize("text, message", [
    ('{"chunk_size": 4, "sha256s": ["%s", "xyz"], "version": "1.0.0"}' % GOOD,
     "is not a hex sha256 digest"),
    ('{"chunk_size": 4, "sha256s": ["%s",], "version": "1.0.0"}' % GOOD,
     "is not a hex sha256 digest"),
    ('{"chunk_size": 4, "sha256s": ["%s" "%s"], "version": "1.0.0"}' % (GOOD, GOOD),
     "is not a hex sha256 digest"),
    ('{"chunk_size": 4, "sha256s": ["%s"], "version": "1.0.0"}' % ("a" * 30 + "  " + "a" * 32),
     "is not a hex sha256 digest"),
    ('{"chunk_size": 4, "sha256s": ["\\u0061%s"], "version": "1.0.0"}' % ("a" * 63),
     "is not a hex sha256 digest"),
    ('{"chunk_size": 4, "sha256s": ["%s", "%s"' % (GOOD, GOOD), "does not end"),
    ('{"chunk_size": 4, "sha256s": [], "version": "1.0.0"} {}', "text after the object"),
    ('{"chunk_size": 4 "sha256s": []}', "expected ','"),
    ('{"chunk_size": 4, "sha256s": [], "version": "9.9.9"}', "unsupported backup format"),
    ('{"sha256s": [], "version": "1.0.0"}', "no 'chunk_size' field"),
    ('{"chunk_size": 0, "sha256s": [], "version": "1.0.0"}', "must be positive"),
    ('{"chunk_size": 4, "version": "1.0.0"}', "no 'sha256s' field"),
    ('[1, 2]', "expected '{'"),
    ('{"chunk_size": 4, "sha256s": [], "version": "1.0.0"', "expected ','"),
    ('', "expected '{'"),
])
def test_malformed_json_files_are_refused_with_the_reason(text, message):
    for step in (1, 5, 1 << 20):
        with pytest.raises(FormatError, match=message):
            shafile.read(Trickle(text.encode(), step), "f")


def test_invalid_utf8_is_refused():
    with pytest.raises(FormatError, match="not valid JSON"):
        shafile.parse(b'{"chunk_size": 4, "x": "\xff\xfe", "sha256s": []}')


def test_a_truncated_compact_file_fails_its_check():
    data = b"".join(sha_file("2.0.0", hexes(3000, seed=4)).iter_bytes())
    with pytest.raises(IntegrityError, match="checksum"):
        shafile.read(Trickle(data[:-50], 1000), "f")


def test_bytes_after_a_compact_digest_list_are_refused():
    data = b"".join(sha_file("2.0.0", hexes(3000, seed=4)).iter_bytes())
    for step in (1000, 1 << 20):
        assert len(shafile.read(Trickle(data, step), "f").sha256s) == 3000
        with pytest.raises(IntegrityError, match="bytes follow"):
            shafile.read(Trickle(data + b"x", step), "f")


def test_a_large_cinder_sha_file_is_read_in_bounded_memory(tmp_path):
    """A 64 GiB volume's Cinder sha256 file (2M blocks, 144 MB of JSON, mostly
    zero blocks) read from a POSIX store: read whole and decoded with
    json.loads it took over 350 MB; the list it yields is under 1 MiB."""
    zero = zero_digest(BLOCK).hex()
    rng = random.Random(5)
    digests = [hashlib.sha256(rng.randbytes(8)).hexdigest() if i % 128 == 0 else zero
               for i in range(2 << 20)]
    store = PosixStore(str(tmp_path))
    store.ensure_container("c")
    manifest.write_sha256file(store, "c", "p", sha_file("1.0.0", digests))
    del digests
    gc.collect()
    tracemalloc.start()
    try:
        got = shafile.load(store, "c", "p")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got.sha256s) == 2 << 20 and got.sha256s.nbytes < 1 << 20
    assert got.sha256s[128] != zero and got.sha256s[129] == zero
    assert peak < 24 << 20, "reading the file peaked at %d MiB" % (peak >> 20)


def test_a_missing_sha_file_is_an_integrity_error(tmp_path):
    store = PosixStore(str(tmp_path))
    store.ensure_container("c")
    with pytest.raises(IntegrityError, match="missing"):
        shafile.load(store, "c", "nothing")


def store_file(tmp_path, data: bytes) -> PosixStore:
    store = PosixStore(str(tmp_path))
    store.ensure_container("c")
    store.put("c", manifest.sha256file_name("p"), data)
    return store


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_the_block_size_is_read_from_the_start_of_the_file(tmp_path, version):
    """A chain restore reads only the block size of the older backups' files: their
    start, not the megabytes of digests after it (here damaged, unseen)."""
    digests = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(70_000)]
    data = bytearray(b"".join(sha_file(version, digests).iter_bytes()))
    assert len(data) > 2 * shafile.READ_SIZE
    data[-shafile.READ_SIZE // 2] ^= 0xFF
    store = store_file(tmp_path, bytes(data))
    assert shafile.load_block_size(store, "c", "p") == BLOCK
    with pytest.raises((FormatError, IntegrityError)):
        shafile.load(store, "c", "p")                       # the whole file is damaged


def test_the_block_size_after_the_list_reads_the_whole_file(tmp_path):
    doc = '{"sha256s": %s, "chunk_size": 4096, "version": "1.0.0"}' % json.dumps(hexes(50))
    assert shafile.load_block_size(store_file(tmp_path, doc.encode()), "c", "p") == 4096


@pytest.mark.parametrize("text, message", [
    (b'{"version": "1.0.0", "sha256s": []}', "no 'chunk_size' field"),
    (b'{"version": "1.0.0"}', "no 'chunk_size' field"),
    (b'{"chunk_size": 0, "sha256s": []}', "chunk_size must be positive"),
    (b'{"chunk_size": "big", "sha256s": []}', "chunk_size"),
])
def test_a_missing_or_bad_block_size_is_refused(tmp_path, text, message):
    with pytest.raises(FormatError, match=message):
        shafile.load_block_size(store_file(tmp_path, text), "c", "p")


def test_the_block_size_of_a_missing_file_is_an_integrity_error(tmp_path):
    store = PosixStore(str(tmp_path))
    store.ensure_container("c")
    with pytest.raises(IntegrityError, match="missing"):
        shafile.load_block_size(store, "c", "nothing")
