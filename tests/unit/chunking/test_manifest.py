"""The JSON files: exact bytes, streaming writer, Cinder-written input."""

import json

import pytest

from backupsvc.chunking import manifest, shafile
from backupsvc.chunking.errors import FormatError


def sha_file(n: int, **kw) -> manifest.Sha256File:
    base = dict(backup_id="b1", volume_id="v1", backup_name="näme \"quoted\"",
                backup_description=None, created_at="2024-01-01 00:00:00", chunk_size=32768,
                sha256s=["%064x" % i for i in range(n)])
    base.update(kw)
    return manifest.Sha256File(**base)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 20001])
def test_streamed_sha_file_matches_json_dumps(n):
    sha = sha_file(n)
    expected = json.dumps({
        "backup_description": None, "backup_id": "b1", "backup_name": "näme \"quoted\"",
        "chunk_size": 32768, "created_at": "2024-01-01 00:00:00",
        "sha256s": list(sha.sha256s), "version": "1.0.0", "volume_id": "v1",
    }, sort_keys=True, indent=2).encode("utf-8")
    assert sha.to_json() == expected
    assert b"".join(sha.iter_json(batch=7)) == expected
    assert shafile.parse(expected) == sha


def test_metadata_round_trip_and_extra_metadata():
    meta = manifest.Metadata(
        backup_id="b2", volume_id="v1", backup_name=None, backup_description="d",
        created_at="2024-01-01", parent_id="b1", volume_meta='{"k": 1}',
        objects=[manifest.ObjectEntry("p-00001", 0, 10, "ab" * 16, "zlib")])
    doc = json.loads(meta.to_json())
    assert "extra_metadata" not in doc
    assert doc["objects"] == [{"p-00001": {"compression": "zlib", "length": 10,
                                           "md5": "ab" * 16, "offset": 0}}]
    assert meta.to_json() == json.dumps(doc, sort_keys=True, indent=2).encode()
    assert manifest.parse_metadata(meta.to_json()) == meta
    meta.extra_metadata = {"x": "y"}
    assert json.loads(meta.to_json())["extra_metadata"] == {"x": "y"}


def test_names():
    assert manifest.data_object_name("pre", 7) == "pre-00007"
    assert manifest.data_object_name("pre", 123456) == "pre-123456"
    assert manifest.sha256file_name("pre") == "pre_sha256file"
    assert manifest.metadata_name("pre") == "pre_metadata"


def cinder_metadata(**kw) -> bytes:
    doc = {"backup_description": None, "backup_id": "b", "backup_name": "n",
           "created_at": "2023-01-01 00:00:00+00:00", "parent_id": None, "version": "1.0.0",
           "volume_id": "v", "volume_meta": None, "objects": [
               {"p-00001": {"compression": "zlib", "length": 4, "md5": "m", "offset": 0}},
               {"p-00002": {"compression": None, "length": 4, "md5": "m", "offset": 4}},
               {"p-00003": {"compression": "BZIP2", "length": 4, "md5": "m", "offset": 8}},
               {"p-00004": {"compression": "No", "length": 4, "md5": "m", "offset": 12}}]}
    doc.update(kw)
    return json.dumps(doc, sort_keys=True, indent=2).encode()


def test_parse_cinder_metadata_compression_names():
    meta = manifest.parse_metadata(cinder_metadata())
    assert [o.compression for o in meta.objects] == ["zlib", "none", "bz2", "none"]


@pytest.mark.parametrize("version", ["3.0.0", None, "1.0"])
def test_unsupported_version(version):
    with pytest.raises(FormatError, match="unsupported backup format version %s" % version):
        manifest.parse_metadata(cinder_metadata(version=version), "p_metadata")


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", cinder_metadata(objects=[{"a": {"offset": 0}}]),
    cinder_metadata(objects=[{"a": {"offset": -1, "length": 1, "md5": "m"}}]),
    cinder_metadata(objects=[{"a": {"offset": 0, "length": True, "md5": "m"}}]),
    cinder_metadata(objects=[{"a": {"offset": 0, "length": 1, "md5": "m",
                                    "compression": "lzma"}}]),
])
def test_malformed_metadata(bad):
    with pytest.raises(FormatError, match="p_metadata"):
        manifest.parse_metadata(bad, "p_metadata")
