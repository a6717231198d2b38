"""The on-store format's two files per backup (see doc/on-store-format.rst).

One backup is a set of objects in a container, all named ``<prefix>...``:
data objects ``<prefix>-00001`` ..., ``<prefix>_sha256file`` and, written last,
``<prefix>_metadata``.

Version 1.0.0 is Cinder's: both files are ``json.dumps(obj, sort_keys=True,
indent=2)`` in UTF-8, byte for byte what Cinder writes. Version 2.0.0 keeps
the metadata JSON (objects gain ``stored_length`` and ``frames_sha256``, a
checksum of their stored bytes, instead of an ``md5``, and ``extents`` when
they pack several runs of blocks; ``zero_extents`` lists the volume's
all-zero ranges) and makes the sha256 file compact: one JSON header line,
then the zlib-compressed binary digests.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from backupsvc.chunking import deflate
from backupsvc.chunking.compression import normalize_compression
from backupsvc.chunking.errors import FormatError, IntegrityError
from backupsvc.chunking.shalist import ShaList
from backupsvc.drivers.base import ObjectNotFound, ObjectStore

CINDER_VERSION = "1.0.0"
COMPACT_VERSION = "2.0.0"
FORMAT_VERSION = CINDER_VERSION          # the default of the dataclasses below
SUPPORTED_VERSIONS = frozenset({CINDER_VERSION, COMPACT_VERSION})
DIGEST_SIZE = 32

# The digests themselves do not compress; runs of zero-block digests do, and
# level 1 finds them: 5 % larger than level 6, in less than half the time
# (this file is written after the data, so its time adds to the backup's).
SHA_FILE_LEVEL = 1


def data_object_name(prefix: str, number: int) -> str:
    return "%s-%05d" % (prefix, number)


def sha256file_name(prefix: str) -> str:
    return prefix + "_sha256file"


def metadata_name(prefix: str) -> str:
    return prefix + "_metadata"


@dataclass(frozen=True)
class ObjectEntry:
    name: str
    offset: int          # where the data goes in the volume
    length: int          # uncompressed length
    md5: str | None      # hex md5 of the uncompressed data (1.0.0)
    compression: str     # zlib, bz2, zstd or none (normalised)
    stored_length: int | None = None    # 2.0.0: the object's size in the store...
    frames_sha256: str | None = None    # ...and the hex SHA-256 of its frame headers
    # 2.0.0, an object packing several runs of blocks: (offset, length) of each,
    # in volume order; their data follow each other in the object. None: one run.
    extents: tuple[tuple[int, int], ...] | None = None

    def spans(self) -> tuple[tuple[int, int], ...]:
        """(volume offset, length) of each run of data the object holds, in order."""
        return self.extents or ((self.offset, self.length),)

    @property
    def framed(self) -> bool:
        """A format 2.0.0 object: frames (backupsvc.chunking.frames), not one stream."""
        return self.frames_sha256 is not None

    @property
    def end(self) -> int:
        offset, length = self.spans()[-1]
        return offset + length


@dataclass
class Sha256File:
    backup_id: str
    volume_id: str
    backup_name: str | None
    backup_description: str | None
    created_at: Any
    chunk_size: int                      # the sha block size, despite the name
    # A list of hex digests is taken too (and checked: ValueError).
    sha256s: ShaList = field(default_factory=list)  # type: ignore[arg-type]
    version: str = FORMAT_VERSION
    volume_size: int | None = None       # 2.0.0 records it
    # 2.0.0: the SHA-256 of the concatenated digests, when the writer hashed them
    # as the list grew (otherwise it takes a pass over the list of its own).
    digests_sha256: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sha256s, ShaList):
            self.sha256s = ShaList.from_hex(self.sha256s, self.chunk_size)

    def _header(self) -> dict[str, Any]:
        return {
            "backup_description": self.backup_description,
            "backup_id": self.backup_id,
            "backup_name": self.backup_name,
            "chunk_size": self.chunk_size,
            "created_at": self.created_at,
            "version": self.version,
            "volume_id": self.volume_id,
        }

    def to_json(self) -> bytes:
        doc = self._header()
        doc["sha256s"] = list(self.sha256s)
        return json.dumps(doc, sort_keys=True, indent=2).encode("utf-8")

    def iter_bytes(self) -> Iterator[bytes]:
        """The file's content, in pieces (never one huge string)."""
        if self.version == COMPACT_VERSION:
            return self._iter_compact()
        return self.iter_json()

    def _iter_compact(self) -> Iterator[bytes]:
        # The header's checksum covers all the digests: one pass for it (unless
        # the writer hashed them already), one to write them (never the whole
        # binary list at once).
        checksum = self.digests_sha256
        if checksum is None:
            blob_sha = hashlib.sha256()
            self.sha256s.hash_into(blob_sha)
            checksum = blob_sha.hexdigest()
        doc = self._header()
        doc.update(block_count=len(self.sha256s), volume_size=self.volume_size,
                   encoding="zlib", digests_sha256=checksum)
        yield json.dumps(doc, sort_keys=True).encode("utf-8") + b"\n"
        packer = deflate.compressobj(SHA_FILE_LEVEL)
        for part in self.sha256s.binary_parts():
            yield packer.compress(part)
        yield packer.flush()

    def iter_json(self, batch: int = 8192) -> Iterator[bytes]:
        """The same bytes as :meth:`to_json`, without building one huge string."""
        if not len(self.sha256s):
            yield self.to_json()
            return
        doc = self._header()
        marker = "placeholder-" + secrets.token_hex(16)
        doc["sha256s"] = [marker]
        head, tail = json.dumps(doc, sort_keys=True, indent=2).split('"%s"' % marker)
        sep = ",\n" + head[head.rfind("\n") + 1:]
        yield head.encode("utf-8")
        for i, hexes in enumerate(self.sha256s.hex_batches(batch)):
            text = sep.join('"%s"' % h for h in hexes)
            yield ((sep if i else "") + text).encode("ascii")
        yield tail.encode("utf-8")


@dataclass
class Metadata:
    backup_id: str
    volume_id: str
    backup_name: str | None
    backup_description: str | None
    created_at: Any
    parent_id: str | None
    objects: list[ObjectEntry] = field(default_factory=list)
    volume_meta: str | None = None
    extra_metadata: Any = None           # written only when not None
    version: str = FORMAT_VERSION
    # 2.0.0: the (offset, length) ranges of the volume that are all zeros
    zero_extents: list[tuple[int, int]] | None = None

    def _object(self, o: ObjectEntry) -> dict[str, Any]:
        rec: dict[str, Any] = {"compression": o.compression, "length": o.length,
                               "offset": o.offset}
        if self.version == COMPACT_VERSION:
            rec.update(stored_length=o.stored_length, frames_sha256=o.frames_sha256)
            if o.extents is not None:
                rec["extents"] = [list(e) for e in o.extents]
        else:
            rec["md5"] = o.md5
        return rec

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "backup_description": self.backup_description,
            "backup_id": self.backup_id,
            "backup_name": self.backup_name,
            "created_at": self.created_at,
            "objects": [{o.name: self._object(o)} for o in self.objects],
            "parent_id": self.parent_id,
            "version": self.version,
            "volume_id": self.volume_id,
            "volume_meta": self.volume_meta,
        }
        if self.extra_metadata is not None:
            doc["extra_metadata"] = self.extra_metadata
        if self.version == COMPACT_VERSION:
            doc["zero_extents"] = [list(z) for z in self.zero_extents or []]
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2).encode("utf-8")


# -- parsing ------------------------------------------------------------------

def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError("%s is not valid JSON: %s" % (what, exc)) from exc
    if not isinstance(doc, dict):
        raise FormatError("%s is not a JSON object" % what)
    version = doc.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise FormatError("unsupported backup format version %s (in %s)" % (version, what))
    return doc


def field_of(doc: dict[str, Any], key: str, what: str, kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise FormatError("%s has no %r field" % (what, key))
    value = doc[key]
    # bool is an int subclass; a true/false length is still wrong.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise FormatError("%s: field %r has the wrong type" % (what, key))
    return value


def _parse_object(item: Any, what: str, version: str) -> ObjectEntry:
    if not isinstance(item, dict) or len(item) != 1:
        raise FormatError("%s: each objects entry must map one name to its record" % what)
    ((name, rec),) = item.items()
    where = "%s, object %s" % (what, name)
    if not isinstance(rec, dict):
        raise FormatError("%s: record is not an object" % where)
    offset = field_of(rec, "offset", where, int)
    length = field_of(rec, "length", where, int)
    if offset < 0 or length < 0:
        raise FormatError("%s: negative offset or length" % where)
    try:
        compression = normalize_compression(rec.get("compression"))
    except ValueError as exc:
        raise FormatError("%s: %s" % (where, exc)) from exc
    if version == COMPACT_VERSION:
        stored = field_of(rec, "stored_length", where, int)
        digest = field_of(rec, "frames_sha256", where, str)
        if stored < 0 or len(digest) != 2 * DIGEST_SIZE:
            raise FormatError("%s: bad stored_length or frames_sha256" % where)
        return ObjectEntry(name=name, offset=offset, length=length, md5=None,
                           compression=compression, stored_length=stored,
                           frames_sha256=digest,
                           extents=_parse_extents(rec, where, offset, length))
    return ObjectEntry(name=name, offset=offset, length=length,
                       md5=field_of(rec, "md5", where, str), compression=compression)


def _parse_extents(rec: dict[str, Any], where: str, offset: int,
                   length: int) -> tuple[tuple[int, int], ...] | None:
    """A packed object's runs: in increasing order, apart, starting at ``offset``,
    adding up to ``length``."""
    if "extents" not in rec:
        return None
    items = field_of(rec, "extents", where, list)
    if not all(isinstance(i, list) and len(i) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in i) for i in items):
        raise FormatError("%s: extents must be [offset, length] pairs" % where)
    extents = tuple((a, n) for a, n in items)
    ordered = all(n > 0 for _, n in extents) and all(
        a + n < b for (a, n), (b, _) in zip(extents, extents[1:], strict=False))
    if len(extents) < 2 or not ordered or extents[0][0] != offset \
            or sum(n for _, n in extents) != length:
        raise FormatError("%s: extents must be two or more non-empty, separate runs in "
                          "increasing order, from the object's offset and adding up to "
                          "its length" % where)
    return extents


def _parse_zero_extents(doc: dict[str, Any], what: str) -> list[tuple[int, int]] | None:
    if doc["version"] != COMPACT_VERSION:
        return None
    extents = []
    for item in field_of(doc, "zero_extents", what, list):
        if not (isinstance(item, list) and len(item) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                        for v in item)):
            raise FormatError("%s: zero_extents must be [offset, length] pairs" % what)
        extents.append((item[0], item[1]))
    return extents


def parse_metadata(data: bytes, what: str = "metadata") -> Metadata:
    doc = _load(data, what)
    objects = [_parse_object(item, what, doc["version"])
               for item in field_of(doc, "objects", what, list)]
    return Metadata(
        backup_id=doc.get("backup_id"), volume_id=doc.get("volume_id"),
        backup_name=doc.get("backup_name"), backup_description=doc.get("backup_description"),
        created_at=doc.get("created_at"), parent_id=doc.get("parent_id"), objects=objects,
        volume_meta=doc.get("volume_meta"), extra_metadata=doc.get("extra_metadata"),
        version=doc["version"], zero_extents=_parse_zero_extents(doc, what))


# -- store helpers --------------------------------------------------------------

def object_missing(container: str, name: str) -> IntegrityError:
    """The error of a backup whose file ``name`` is not in the store."""
    return IntegrityError("backup object %s is missing from container %s" % (name, container))


def _get(store: ObjectStore, container: str, name: str) -> bytes:
    try:
        return store.get(container, name)
    except ObjectNotFound as exc:
        raise object_missing(container, name) from exc


def load_metadata(store: ObjectStore, container: str, prefix: str) -> Metadata:
    name = metadata_name(prefix)
    return parse_metadata(_get(store, container, name), name)


def write_sha256file(store: ObjectStore, container: str, prefix: str, sha: Sha256File) -> None:
    with store.open_writer(container, sha256file_name(prefix)) as w:
        for part in sha.iter_bytes():
            w.write(part)


def write_metadata(store: ObjectStore, container: str, prefix: str, meta: Metadata) -> None:
    store.put(container, metadata_name(prefix), meta.to_json())
