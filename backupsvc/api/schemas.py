"""JSON schemas of request bodies, one per resource, action and microversion.

Schemas grow by copy-and-extend at the microversion that adds a field, so
a field sent below its version is refused as an unexpected property (what
Cinder does). Error messages follow Cinder's form:
``Invalid input for field/attribute <name>. Value: <value>. <reason>``.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from jsonschema import exceptions as js_exc
from oslo_utils import strutils, uuidutils

from backupsvc.api import errors
from backupsvc.api import microversions as mv
from backupsvc.api.microversions import APIVersion

# ------------------------------------------------------------------- types

# The spellings Cinder accepts for booleans in bodies.
_TRUE = [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"]
_FALSE = [False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no",
          "n", "f"]
boolean = {"type": ["boolean", "string"], "enum": _TRUE + _FALSE}
uuid = {"type": "string", "format": "uuid"}
optional_uuid = {"type": ["string", "null"], "format": "uuid"}
nullable_string = {"type": ["string", "null"], "minLength": 0, "maxLength": 255}
name = nullable_string
description = nullable_string
metadata = {
    "type": ["object", "null"],
    "patternProperties": {"^[a-zA-Z0-9_:. /-]{1,255}$": {"type": "string", "maxLength": 255}},
    "additionalProperties": False,
}


def _body(key: str, properties: dict, required: tuple[str, ...] = (),
          nullable: bool = False, extra_top: dict | None = None) -> dict:
    inner: dict[str, Any] = {
        "type": ["object", "null"] if nullable else "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        inner["required"] = list(required)
    return {
        "type": "object",
        "properties": {key: inner, **(extra_top or {})},
        "required": [key],
        "additionalProperties": False,
    }


def _extend(schema: dict, key: str, **properties) -> dict:
    extended = copy.deepcopy(schema)
    extended["properties"][key]["properties"].update(properties)
    return extended


# ----------------------------------------------------------------- backups

_backup_create = _body("backup", {
    "volume_id": uuid, "container": nullable_string, "description": description,
    "incremental": boolean, "force": boolean, "name": name, "snapshot_id": optional_uuid,
}, required=("volume_id",))
_backup_create_v343 = _extend(_backup_create, "backup", metadata=metadata)
_backup_create_v351 = _extend(_backup_create_v343, "backup",
                              availability_zone=nullable_string)

_backup_update = _body("backup", {"name": name, "description": description}, nullable=True)
_backup_update_v343 = _extend(_backup_update, "backup", metadata=metadata)

backup_restore = _body("restore", {"name": name, "volume_id": optional_uuid}, nullable=True)
backup_import = _body("backup-record", {
    "backup_service": {"type": "string", "minLength": 0, "maxLength": 255},
    "backup_url": {"type": "string", "minLength": 1},
}, required=("backup_service", "backup_url"))
backup_reset_status = _body("os-reset_status", {"status": {"type": "string"}},
                            required=("status",))


def backup_create(version: APIVersion) -> dict:
    if version >= mv.BACKUP_AZ:
        return _backup_create_v351
    if version >= mv.BACKUP_METADATA:
        return _backup_create_v343
    return _backup_create


def backup_update(version: APIVersion) -> dict:
    return _backup_update_v343 if version >= mv.BACKUP_METADATA else _backup_update


# ----------------------------------------------------------------- volumes

_size = {"type": ["integer", "string", "null"], "pattern": "^[0-9]+$",
         "minimum": 1, "maximum": 2147483647}
_volume_create = _body("volume", {
    "name": name, "description": description,
    "display_name": name, "display_description": description,
    "size": _size, "availability_zone": nullable_string,
    "volume_type": nullable_string, "metadata": metadata,
    "snapshot_id": optional_uuid, "source_volid": optional_uuid,
    # Accepted so stock clients' bodies validate; refused when set (see controller).
    "imageRef": {"type": ["string", "null"]}, "multiattach": boolean,
    "consistencygroup_id": optional_uuid,
}, extra_top={"OS-SCH-HNT:scheduler_hints": {"type": ["object", "null"]}})
_volume_create_v313 = _extend(_volume_create, "volume", group_id=optional_uuid)
_volume_create_v347 = _extend(_volume_create_v313, "volume", backup_id=optional_uuid)

volume_update = _body("volume", {
    "name": name, "description": description,
    "display_name": name, "display_description": description, "metadata": metadata,
})
volume_attach = _body("os-attach", {
    "instance_uuid": uuid, "mountpoint": {"type": "string", "maxLength": 255},
    "host_name": {"type": "string", "minLength": 0, "maxLength": 255},
    "mode": {"type": "string", "enum": ["rw", "ro"]},
}, required=("mountpoint",))
volume_detach = _body("os-detach", {"attachment_id": optional_uuid}, nullable=True)
volume_reset_status = _body("os-reset_status", {
    "status": {"type": "string", "minLength": 1, "maxLength": 255},
    "attach_status": {"type": ["string", "null"], "enum": ["attached", "detached", None]},
    "migration_status": nullable_string,
}, required=("status",))

volume_manage = _body("volume", {
    "host": {"type": ["string", "null"], "minLength": 0, "maxLength": 255},
    "cluster": nullable_string,
    # Driver-specific in Cinder; the file source reads "source-name" (a path).
    "ref": {"type": "object",
            "properties": {"source-name": {"type": "string", "minLength": 1,
                                           "maxLength": 4096}}},
    "name": name, "description": description,
    "volume_type": nullable_string, "availability_zone": nullable_string,
    "bootable": boolean, "metadata": metadata,
}, required=("ref",))


def volume_create(version: APIVersion) -> dict:
    if version >= mv.VOLUME_CREATE_FROM_BACKUP:
        return _volume_create_v347
    if version >= mv.GROUP_VOLUME:
        return _volume_create_v313
    return _volume_create


# --------------------------------------------------------------- snapshots

snapshot_create = _body("snapshot", {
    "volume_id": uuid, "name": name, "description": description,
    "display_name": name, "display_description": description,
    "force": boolean, "metadata": metadata,
}, required=("volume_id",))


# -------------------------------------------------------------- validation

_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("uuid")
def _is_uuid(instance: object) -> bool:
    # Cinder's rule: anything uuid.UUID() parses, hyphens optional.
    return not isinstance(instance, str) or uuidutils.is_uuid_like(instance)


def validate(schema: dict, body: Any) -> None:
    """Raise a 400 that names the field, the value and what is wrong with it."""
    validator = jsonschema.Draft4Validator(schema, format_checker=_FORMATS)
    error = js_exc.best_match(validator.iter_errors(body))
    if error is None:
        return
    if error.path:
        raise errors.bad_request(
            "Invalid input for field/attribute %s. Value: %s. %s"
            % (error.path[-1], error.instance, error.message))
    raise errors.bad_request(error.message)


# ----------------------------------------------------------------- values

def to_bool(value: Any) -> bool:
    """A schema-validated boolean (True or one of Cinder's strings) as a bool."""
    if isinstance(value, bool):
        return value
    return strutils.bool_from_string(value, strict=True)


def clean_text(value: Any) -> Any:
    """Names and descriptions lose surrounding whitespace, as in Cinder."""
    return value.strip() if isinstance(value, str) else value
