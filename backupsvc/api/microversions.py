"""API microversions: the supported range, named constants, parsing.

A request asks for a version with ``OpenStack-API-Version: volume 3.X``;
no header (or no ``volume`` entry in it) means the base version 3.0, which is
what python-cinderclient sends when told ``--os-volume-api-version 3.0``.
Responses echo the version they were served at, plus
``Vary: OpenStack-API-Version``, so caches keep versions apart.
"""

from __future__ import annotations

import re
from typing import NamedTuple

HEADER = "OpenStack-API-Version"
SERVICE = "volume"


class APIVersion(NamedTuple):
    """A microversion; tuples compare the way versions do (3.9 < 3.10)."""

    major: int
    minor: int

    def __str__(self) -> str:
        return "%d.%d" % (self.major, self.minor)

    @classmethod
    def from_string(cls, text: str) -> APIVersion:
        match = _VERSION_RE.match(text.strip())
        if match is None:
            raise ValueError(text)
        return cls(int(match.group(1)), int(match.group(2)))


# Leading zeros are refused ("3.01"), as Cinder does.
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def _v(text: str) -> APIVersion:
    return APIVersion.from_string(text)


MIN_VERSION = _v("3.0")
MAX_VERSION = _v("3.71")

# Cinder's names for the versions that change what this service returns.
BASE_VERSION = MIN_VERSION
BACKUP_UPDATE = _v("3.9")
GROUP_VOLUME = _v("3.13")
GROUP_SNAPSHOTS = _v("3.14")
BACKUP_PROJECT = _v("3.18")
VOLUME_DETAIL_PROVIDER_ID = _v("3.21")
RESOURCE_FILTER = _v("3.31")
LIKE_FILTER = _v("3.34")
BACKUP_SORT_NAME = _v("3.37")
SNAPSHOT_LIST_USER_ID = _v("3.41")
BACKUP_METADATA = _v("3.43")
SUPPORT_COUNT_INFO = _v("3.45")
VOLUME_CREATE_FROM_BACKUP = _v("3.47")
VOLUME_SHARED_TARGETS_AND_SERVICE_FIELDS = _v("3.48")
BACKUP_AZ = _v("3.51")
BACKUP_PROJECT_USER_ID = _v("3.56")
VOLUME_CLUSTER_NAME = _v("3.61")
VOLUME_TYPE_ID_IN_VOLUME_DETAIL = _v("3.63")
ENCRYPTION_KEY_ID_IN_DETAILS = _v("3.64")
USE_QUOTA = _v("3.65")
PROJECT_ID_OPTIONAL_IN_URL = _v("3.67")
SHARED_TARGETS_TRISTATE = _v("3.69")


class MalformedVersion(ValueError):
    """The header names a volume version that is not MAJOR.MINOR (400)."""


class UnsupportedVersion(ValueError):
    """The version is well-formed but outside [MIN_VERSION, MAX_VERSION] (406)."""


def requested_text(header_value: str | None) -> str | None:
    """The version text the header asks for the volume service, or None."""
    for entry in (header_value or "").split(","):
        service, _, version = entry.strip().partition(" ")
        if service.lower() == SERVICE:
            return version.strip()
    return None


def parse(header_value: str | None) -> APIVersion:
    """The version a request is served at; raises Malformed/UnsupportedVersion."""
    text = requested_text(header_value)
    if text is None:
        return BASE_VERSION
    if text.lower() == "latest":
        return MAX_VERSION
    try:
        version = APIVersion.from_string(text)
    except ValueError:
        raise MalformedVersion(
            "API Version String %s is of invalid format. Must be of format "
            "MajorNum.MinorNum." % text) from None
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise UnsupportedVersion(
            "Version %s is not supported by the API. Minimum is %s and maximum is %s."
            % (version, MIN_VERSION, MAX_VERSION))
    return version


def at_least(version: APIVersion, minimum: APIVersion) -> bool:
    return version >= minimum


def response_headers(version: APIVersion) -> list[tuple[str, str]]:
    return [(HEADER, "%s %s" % (SERVICE, version)), ("Vary", HEADER)]
