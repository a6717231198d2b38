"""Cinder's chunked-backup on-store format, version 1.0.0 (see doc/on-store-format.rst).

One backup is a set of objects in a container, all named ``<prefix>...``:
data objects ``<prefix>-00001`` ..., ``<prefix>_sha256file`` and, written last,
``<prefix>_metadata``. Both JSON files are ``json.dumps(obj, sort_keys=True,
indent=2)`` in UTF-8, byte for byte what Cinder writes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from backupsvc.chunking.compression import normalize_compression
from backupsvc.chunking.errors import FormatError, IntegrityError
from backupsvc.drivers.base import ObjectNotFound, ObjectStore

FORMAT_VERSION = "1.0.0"
SUPPORTED_VERSIONS = frozenset({FORMAT_VERSION})


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
    md5: str             # hex md5 of the uncompressed data
    compression: str     # zlib, bz2, zstd or none (normalised)

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass
class Sha256File:
    backup_id: str
    volume_id: str
    backup_name: str | None
    backup_description: str | None
    created_at: Any
    chunk_size: int                      # the sha block size, despite the name
    sha256s: list[str] = field(default_factory=list)
    version: str = FORMAT_VERSION

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
        doc["sha256s"] = self.sha256s
        return json.dumps(doc, sort_keys=True, indent=2).encode("utf-8")

    def iter_json(self, batch: int = 8192) -> Iterator[bytes]:
        """The same bytes as :meth:`to_json`, without building one huge string."""
        if not self.sha256s:
            yield self.to_json()
            return
        doc = self._header()
        marker = "placeholder-" + secrets.token_hex(16)
        doc["sha256s"] = [marker]
        head, tail = json.dumps(doc, sort_keys=True, indent=2).split('"%s"' % marker)
        sep = ",\n" + head[head.rfind("\n") + 1:]
        yield head.encode("utf-8")
        for i in range(0, len(self.sha256s), batch):
            text = sep.join('"%s"' % h for h in self.sha256s[i:i + batch])
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

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "backup_description": self.backup_description,
            "backup_id": self.backup_id,
            "backup_name": self.backup_name,
            "created_at": self.created_at,
            "objects": [{o.name: {"compression": o.compression, "length": o.length,
                                  "md5": o.md5, "offset": o.offset}}
                        for o in self.objects],
            "parent_id": self.parent_id,
            "version": self.version,
            "volume_id": self.volume_id,
            "volume_meta": self.volume_meta,
        }
        if self.extra_metadata is not None:
            doc["extra_metadata"] = self.extra_metadata
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


def _field(doc: dict[str, Any], key: str, what: str, kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise FormatError("%s has no %r field" % (what, key))
    value = doc[key]
    # bool is an int subclass; a true/false length is still wrong.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise FormatError("%s: field %r has the wrong type" % (what, key))
    return value


def parse_sha256file(data: bytes, what: str = "sha256file") -> Sha256File:
    doc = _load(data, what)
    chunk_size = _field(doc, "chunk_size", what, int)
    if chunk_size <= 0:
        raise FormatError("%s: chunk_size must be positive" % what)
    shas = _field(doc, "sha256s", what, list)
    if not all(isinstance(h, str) for h in shas):
        raise FormatError("%s: sha256s must be strings" % what)
    return Sha256File(
        backup_id=doc.get("backup_id"), volume_id=doc.get("volume_id"),
        backup_name=doc.get("backup_name"), backup_description=doc.get("backup_description"),
        created_at=doc.get("created_at"), chunk_size=chunk_size, sha256s=shas,
        version=doc["version"])


def _parse_object(item: Any, what: str) -> ObjectEntry:
    if not isinstance(item, dict) or len(item) != 1:
        raise FormatError("%s: each objects entry must map one name to its record" % what)
    ((name, rec),) = item.items()
    where = "%s, object %s" % (what, name)
    if not isinstance(rec, dict):
        raise FormatError("%s: record is not an object" % where)
    offset = _field(rec, "offset", where, int)
    length = _field(rec, "length", where, int)
    if offset < 0 or length < 0:
        raise FormatError("%s: negative offset or length" % where)
    try:
        compression = normalize_compression(rec.get("compression"))
    except ValueError as exc:
        raise FormatError("%s: %s" % (where, exc)) from exc
    return ObjectEntry(name=name, offset=offset, length=length,
                       md5=_field(rec, "md5", where, str), compression=compression)


def parse_metadata(data: bytes, what: str = "metadata") -> Metadata:
    doc = _load(data, what)
    objects = [_parse_object(item, what) for item in _field(doc, "objects", what, list)]
    return Metadata(
        backup_id=doc.get("backup_id"), volume_id=doc.get("volume_id"),
        backup_name=doc.get("backup_name"), backup_description=doc.get("backup_description"),
        created_at=doc.get("created_at"), parent_id=doc.get("parent_id"), objects=objects,
        volume_meta=doc.get("volume_meta"), extra_metadata=doc.get("extra_metadata"),
        version=doc["version"])


# -- store helpers --------------------------------------------------------------

def _get(store: ObjectStore, container: str, name: str) -> bytes:
    try:
        return store.get(container, name)
    except ObjectNotFound as exc:
        raise IntegrityError("backup object %s is missing from container %s"
                             % (name, container)) from exc


def load_sha256file(store: ObjectStore, container: str, prefix: str) -> Sha256File:
    name = sha256file_name(prefix)
    return parse_sha256file(_get(store, container, name), name)


def load_metadata(store: ObjectStore, container: str, prefix: str) -> Metadata:
    name = metadata_name(prefix)
    return parse_metadata(_get(store, container, name), name)


def write_sha256file(store: ObjectStore, container: str, prefix: str, sha: Sha256File) -> None:
    with store.open_writer(container, sha256file_name(prefix)) as w:
        for part in sha.iter_json():
            w.write(part)


def write_metadata(store: ObjectStore, container: str, prefix: str, meta: Metadata) -> None:
    store.put(container, metadata_name(prefix), meta.to_json())
