"""Reading a backup's sha256 file (both formats) a part at a time.

The file grows with the volume: a 1 TiB volume has 33.5 million 32 KiB
blocks, whose Cinder (1.0.0) file is about 2.5 GB of JSON hex and whose
2.0.0 file up to 1 GiB of packed digests. Read whole and parsed with
``json.loads``, the JSON alone would take several times its size in memory.
Here the object is read from the store in parts of :data:`READ_SIZE` and
the digests go straight into a :class:`ShaList` (32 bytes per block, runs
of zero blocks as counts).

1.0.0 files are read by a small scanner: the top-level object's members are
decoded one by one with :class:`json.JSONDecoder`, except ``sha256s``, whose
items are split off in batches and must each be a string of 64 hex digits
(what Cinder writes; an escaped or otherwise odd item is refused).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import operator
import re
from collections.abc import Iterable, Iterator
from typing import Any

from backupsvc.chunking import deflate
from backupsvc.chunking.errors import FormatError, IntegrityError
from backupsvc.chunking.manifest import (
    CINDER_VERSION,
    COMPACT_VERSION,
    DIGEST_SIZE,
    SUPPORTED_VERSIONS,
    Sha256File,
    field_of,
    object_missing,
    sha256file_name,
)
from backupsvc.chunking.shalist import ShaList
from backupsvc.drivers.base import ObjectNotFound, ObjectReader, ObjectStore

READ_SIZE = 1 << 20
DIGEST_PART = 8192 * DIGEST_SIZE     # 2.0.0: digests inflated at a time
# Members other than sha256s are short; a value still undecodable with this
# much text after it is malformed, not cut by the end of a part.
MEMBER_LIMIT = 64 * 1024
JSON_SPACE = " \t\n\r"
_SPACE = re.compile("[%s]*" % JSON_SPACE)
_strip_space = operator.methodcaller("strip", JSON_SPACE)
_DECODER = json.JSONDecoder()


def load(store: ObjectStore, container: str, prefix: str) -> Sha256File:
    """The sha256 file of the backup at ``prefix``."""
    name = sha256file_name(prefix)
    try:
        with store.open_reader(container, name) as reader:
            return read(reader, name)
    except ObjectNotFound as exc:
        raise object_missing(container, name) from exc


def parse(data: bytes, what: str = "sha256file") -> Sha256File:
    """A sha256 file held in memory."""
    return read(io.BytesIO(data), what)


def read(reader: ObjectReader, what: str) -> Sha256File:
    first = _first_part(reader)
    head, newline, body = first.partition(b"\n")
    if newline and head.startswith(b"{\""):       # Cinder's JSON starts with "{\n"
        compact = _read_compact(head, body, reader, what)
        if compact is not None:
            return compact
    return _read_json(_Text(reader, first, what), what)


def load_block_size(store: ObjectStore, container: str, prefix: str) -> int:
    """The sha block size the backup at ``prefix`` records, read from the start of its
    sha256 file: a chain restore needs only the newest backup's digests, and an older
    backup's file may hold a gigabyte of them."""
    name = sha256file_name(prefix)
    try:
        with store.open_reader(container, name) as reader:
            first = _first_part(reader)
            head, newline, _ = first.partition(b"\n")
            if newline and head.startswith(b"{\""):
                doc = _compact_header(head)
                if doc is not None:
                    return _block_size(doc, name)
            found = _json_block_size(_Text(reader, first, name), name)
    except ObjectNotFound as exc:
        raise object_missing(container, name) from exc
    # (A JSON file with its digests before chunk_size, unlike Cinder's: read whole.)
    return found if found is not None else load(store, container, prefix).chunk_size


def _first_part(reader: ObjectReader) -> bytes:
    """The start of the file: at least its first line, if that is a 2.0.0 header."""
    first = reader.read(READ_SIZE)
    while b"\n" not in first and len(first) < MEMBER_LIMIT:
        if not (part := reader.read(READ_SIZE)):
            break
        first += part
    return first


# -- 2.0.0 ------------------------------------------------------------------------

def _read_compact(head: bytes, body: bytes, reader: ObjectReader,
                  what: str) -> Sha256File | None:
    """A 2.0.0 sha256 file (JSON header line, zlib of the digests), or None if not one."""
    doc = _compact_header(head)
    if doc is None:
        return None
    chunk_size = field_of(doc, "chunk_size", what, int)
    count = field_of(doc, "block_count", what, int)
    volume_size = field_of(doc, "volume_size", what, int)
    if chunk_size <= 0 or count != -(-volume_size // chunk_size):
        raise FormatError("%s: %d blocks of %d bytes do not make a %d-byte volume"
                          % (what, count, chunk_size, volume_size))
    if doc.get("encoding") != "zlib":
        raise FormatError("%s: unknown digest encoding %r" % (what, doc.get("encoding")))
    parts = _chain_parts(body, reader)
    shas = _inflate_digests(parts, count, chunk_size, doc.get("digests_sha256"), what)
    return Sha256File(
        backup_id=doc.get("backup_id"), volume_id=doc.get("volume_id"),
        backup_name=doc.get("backup_name"), backup_description=doc.get("backup_description"),
        created_at=doc.get("created_at"), chunk_size=chunk_size, sha256s=shas,
        version=COMPACT_VERSION, volume_size=volume_size)


def _compact_header(head: bytes) -> dict[str, Any] | None:
    """The header line of a 2.0.0 sha256 file, or None if ``head`` is not one."""
    try:
        doc = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != COMPACT_VERSION:
        return None
    return doc


def _chain_parts(first: bytes, reader: ObjectReader) -> Iterator[bytes]:
    if first:
        yield first
    while part := reader.read(READ_SIZE):
        yield part


def _inflated(parts: Iterable[bytes], inflater: Any) -> Iterator[bytes]:
    """The inflated stream, DIGEST_PART bytes at most at a time."""
    for body in parts:
        while body and not inflater.eof:
            out = inflater.decompress(body, DIGEST_PART)
            body = inflater.unconsumed_tail
            if out:
                yield out
        if inflater.eof:
            return
    while not inflater.eof and (out := inflater.decompress(b"", DIGEST_PART)):
        yield out


def _inflate_digests(parts: Iterator[bytes], count: int, block_size: int, checksum: Any,
                     what: str) -> ShaList:
    """The packed digests, checked; never one binary string of them all."""
    shas = ShaList(block_size)
    blob_sha = hashlib.sha256()
    inflater = deflate.decompressobj()
    expected, got, carry = count * DIGEST_SIZE, 0, b""
    try:
        for part in _inflated(parts, inflater):
            got += len(part)
            if got > expected:
                break
            blob_sha.update(part)
            part, carry = carry + part, b""
            whole = len(part) - len(part) % DIGEST_SIZE
            shas.append(part[:whole])
            carry = part[whole:]
    except deflate.ERRORS as exc:
        raise IntegrityError("%s: corrupt digest list: %s" % (what, exc)) from exc
    if not inflater.eof or got != expected or blob_sha.hexdigest() != checksum:
        raise IntegrityError("%s: the digest list fails its checksum" % what)
    # Read to the end (a store checks what it sent once all is read): nothing may follow.
    if inflater.unused_data or any(parts):
        raise IntegrityError("%s: bytes follow the digest list" % what)
    return shas


# -- 1.0.0 ------------------------------------------------------------------------

class _Text:
    """The object's text, decoded as the scanner needs it; ``buf[pos:]`` is unread."""

    def __init__(self, reader: ObjectReader, first: bytes, what: str) -> None:
        self.reader, self.what = reader, what
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.eof = False
        self.buf, self.pos = "", 0
        self._add(first)

    def _add(self, data: bytes) -> None:
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise FormatError("%s is not valid JSON: %s" % (self.what, exc)) from exc
        self.buf = self.buf[self.pos:] + text
        self.pos = 0

    def more(self) -> bool:
        """Read the next part; False once the object has ended."""
        if self.eof:
            return False
        data = self.reader.read(READ_SIZE)
        self.eof = not data
        self._add(data)
        return not self.eof

    def next_char(self) -> str:
        """The next character that is not white space ("" at the end), not consumed."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, char: str) -> None:
        if self.next_char() != char:
            raise self.error("expected %r" % char)
        self.pos += 1

    def value(self, limit: int | None = MEMBER_LIMIT) -> Any:
        """One JSON value (of at most ``limit`` characters, or any size)."""
        self.next_char()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if limit is None:       # any size: read the rest at once, decode once
                    while self.more():
                        pass
                    limit = len(self.buf) - self.pos
                    continue
                if len(self.buf) - self.pos < limit and self.more():
                    continue
                raise FormatError("%s is not valid JSON: %s" % (self.what, exc)) from exc
            if end == len(self.buf) and self.more():
                continue            # a number may go on in the next part
            self.pos = end
            return value

    def error(self, problem: str) -> FormatError:
        return FormatError("%s is not valid JSON: %s near %r"
                           % (self.what, problem, self.buf[self.pos:self.pos + 40]))


def _read_json(text: _Text, what: str) -> Sha256File:
    doc: dict[str, Any] = {}
    shas: ShaList | None = None
    text.expect("{")
    if text.next_char() == "}":
        text.pos += 1
    else:
        while True:
            key = text.value()
            if not isinstance(key, str):
                raise text.error("member names must be strings")
            text.expect(":")
            if key == "sha256s" and text.next_char() == "[" and "chunk_size" in doc:
                # As Cinder writes it (sorted keys): the block size is known.
                shas = _read_digests(text, _block_size(doc, what), what)
            else:
                doc[key] = text.value(None if key == "sha256s" else MEMBER_LIMIT)
            if text.next_char() == "}":
                text.pos += 1
                break
            text.expect(",")
    if text.next_char():
        raise text.error("text after the object")
    version = doc.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise FormatError("unsupported backup format version %s (in %s)" % (version, what))
    if version != CINDER_VERSION:
        raise FormatError("%s: a %s sha256 file must not be JSON" % (what, version))
    chunk_size = _block_size(doc, what)
    if shas is None:
        # Not where Cinder puts it (before chunk_size, or not a list): decoded whole.
        try:
            shas = ShaList.from_hex(field_of(doc, "sha256s", what, list), chunk_size)
        except ValueError as exc:
            raise FormatError("%s: sha256s: %s" % (what, exc)) from None
    return Sha256File(
        backup_id=doc.get("backup_id"), volume_id=doc.get("volume_id"),
        backup_name=doc.get("backup_name"), backup_description=doc.get("backup_description"),
        created_at=doc.get("created_at"), chunk_size=chunk_size, sha256s=shas,
        version=CINDER_VERSION)


def _json_block_size(text: _Text, what: str) -> int | None:
    """``chunk_size`` of a 1.0.0 (JSON) file, if it comes before ``sha256s``, as Cinder
    writes it (sorted keys); None otherwise."""
    text.expect("{")
    while text.next_char() != "}":
        key = text.value()
        if not isinstance(key, str):
            raise text.error("member names must be strings")
        text.expect(":")
        if key == "sha256s":
            return None
        value = text.value()
        if key == "chunk_size":
            return _block_size({key: value}, what)
        if text.next_char() != "}":
            text.expect(",")
    return _block_size({}, what)        # (it has none: FormatError)


def _block_size(doc: dict[str, Any], what: str) -> int:
    chunk_size = field_of(doc, "chunk_size", what, int)
    if chunk_size <= 0:
        raise FormatError("%s: chunk_size must be positive" % what)
    return chunk_size


def _read_digests(text: _Text, block_size: int, what: str) -> ShaList:
    """The items of the sha256s list, whose ``[`` is next."""
    text.expect("[")
    shas = ShaList(block_size)
    if text.next_char() == "]":
        text.pos += 1
        return shas
    while True:
        buf = text.buf
        close = buf.find("]", text.pos)
        # Items wholly in the text read so far: up to the list's end, else the last comma.
        stop = close if close >= 0 else buf.rfind(",", text.pos)
        if stop < 0:
            if not text.more():
                raise text.error("the sha256s list does not end")
            continue
        region = buf[text.pos:stop]
        text.pos = stop + 1
        try:
            shas.append_hex(_quoted_items(region))
        except ValueError as exc:
            raise FormatError("%s: sha256s: %s" % (what, exc)) from None
        if close >= 0:
            return shas


def _quoted_items(region: str) -> list[str]:
    """The strings of ``"..." , "..."`` when each is 64 characters long (their digits
    are checked by ShaList.append_hex); else ValueError, naming the first bad item.

    Split on the quotes (a hex digest holds none), the text alternates between
    separators and items: checked with C loops (map, set), no Python one per item.
    """
    parts = region.split('"')
    items, separators = parts[1::2], parts[2:-1:2]
    if (len(parts) % 2 and not _strip_space(parts[0]) and not _strip_space(parts[-1])
            and set(map(len, items)) == {2 * DIGEST_SIZE}
            and set(map(_strip_space, separators)) <= {","}):
        return items
    return [_digest(item) for item in region.split(",")]


def _digest(item: str) -> str:
    """The 64 hex digits of one list item (a quoted string), or ValueError."""
    item = _strip_space(item)
    if len(item) != 2 * DIGEST_SIZE + 2 or item[0] != '"' or item[-1] != '"':
        raise ValueError("%r is not a hex sha256 digest" % (item[:80],))
    return item[1:-1]
