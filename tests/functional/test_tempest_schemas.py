"""Real responses against tempest's published response schemas.

Tempest (``tempest.lib``, a test extra) validates every volume API response
it gets with JSON schemas that forbid unknown keys, picks the schema module
by microversion, and checks that ``OpenStack-API-Version`` echoes the
version it asked for. This module does the same over plain HTTP against the
session's backupsvc (API + worker, noauth), using tempest's own pieces:

* the schemas in ``tempest.lib.api_schema.response.volume.*``,
* each v3 client's ``schema_versions_info`` and ``BaseClient.get_schema``
  (which schema module serves which microversion),
* ``RestClient.validate_response`` (status code, body, tempest's format
  checkers) and ``api_version_utils.assert_version_header_matches_request``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import uuid
import warnings

import pytest
import requests

from tests.functional import fixtures as fx

pytestmark = pytest.mark.functional

try:
    with warnings.catch_warnings():   # the package also imports its deprecated v2 clients
        warnings.simplefilter("ignore", DeprecationWarning)
        from tempest.lib.api_schema.response.volume import versions as versions_schema
        from tempest.lib.common import api_version_utils, rest_client
        from tempest.lib.services.volume import base_client
        from tempest.lib.services.volume.v3 import (
            backups_client,
            snapshots_client,
            volumes_client,
        )
except ImportError as exc:  # a clear failure, never a skip
    pytest.fail("tempest is not installed (%s): install the test extras, "
                "pip install '.[test]' (tools/run-tests.sh does)" % exc, pytrace=False,
                allow_module_level=True)

HEADER = "OpenStack-API-Version"
# None: no header at all, which tempest sends when no microversion is set.
BACKUP_VERSIONS = [None, "3.0", "3.9", "3.18", "3.43", "3.45", "3.56", "3.63", "3.64", "3.71"]
VOLUME_VERSIONS = [None, "3.0", "3.47", "3.61", "3.63", "3.64", "3.65", "3.69", "3.71"]
ENCRYPTION_KEY_ID = "d5b2a0a4-1f5e-4c5b-8d1c-2c6f1f4b9a77"
# tempest has one unversioned snapshot schema (what its tests, which send no
# microversion, get); Cinder's snapshot view adds exactly these fields later.
SNAPSHOT_FIELDS_BY_VERSION = [
    ("3.14", "group_snapshot_id", {"type": ["string", "null"]}),
    ("3.41", "user_id", {"type": "string"}),
    ("3.65", "consumes_quota", {"type": "boolean"}),
]


class Response(dict):
    """What tempest's validators expect: lower-case headers plus ``.status``."""

    def __init__(self, resp: requests.Response):
        super().__init__({k.lower(): v for k, v in resp.headers.items()})
        self.status = resp.status_code


def _ge(version: str | None, minimum: str) -> bool:
    major, minor = (version or "3.0").split(".")
    want_major, want_minor = minimum.split(".")
    return (int(major), int(minor)) >= (int(want_major), int(want_minor))


@contextlib.contextmanager
def _microversion(version: str | None):
    saved = base_client.VOLUME_MICROVERSION
    base_client.VOLUME_MICROVERSION = version
    try:
        yield
    finally:
        base_client.VOLUME_MICROVERSION = saved


class Checker:
    """Requests at one microversion, each response validated the tempest way."""

    def __init__(self, api: fx.Api, version: str | None):
        self.api = api
        self.version = version
        self.checked: list[str] = []

    def schemas(self, client_cls):
        """The schema module tempest's client would use at this microversion."""
        with _microversion(self.version):
            return base_client.BaseClient.get_schema(None, client_cls.schema_versions_info)

    def call(self, method: str, path: str, schema: dict, body=None,
             what: str = "") -> dict:
        headers = {HEADER: "volume %s" % self.version} if self.version else {}
        resp = self.api.request(method, path, body, headers=headers)
        label = "%s %s at %s" % (method, path, self.version or "no header")
        try:
            parsed = resp.json() if resp.content else ""
        except ValueError:
            pytest.fail("%s: response is not JSON: %s" % (label, fx.describe(resp)),
                        pytrace=False)
        try:
            rest_client.RestClient.validate_response(schema, Response(resp), parsed)
            if self.version:
                api_version_utils.assert_version_header_matches_request(
                    base_client.BaseClient.api_microversion_header_name,
                    "volume %s" % self.version, Response(resp))
            else:
                # No header: Cinder serves (and names) the base version.
                assert resp.headers.get(HEADER) == "volume 3.0", resp.headers
        except Exception as exc:
            pytest.fail("%s (%s) fails tempest's checks: %s\n%s" % (
                label, what or "response", exc, fx.describe(resp)), pytrace=False)
        self.checked.append(what or label)
        return parsed


def snapshot_schemas(version: str | None) -> dict:
    """tempest's snapshot schemas plus the fields Cinder adds at ``version``."""
    extra = {name: spec for since, name, spec in SNAPSHOT_FIELDS_BY_VERSION
             if _ge(version, since)}
    out = {}
    for name in ("create_snapshot", "show_snapshot", "list_snapshots_no_detail",
                 "list_snapshots_with_detail", "delete_snapshot"):
        schema = copy.deepcopy(getattr(snapshots_client.schema, name))
        body = schema.get("response_body", {}).get("properties", {})
        for key in ("snapshot", "snapshots"):
            if key in body:
                item = body[key]["items"] if key == "snapshots" else body[key]
                if name != "list_snapshots_no_detail":
                    item["properties"].update(copy.deepcopy(extra))
        out[name] = schema
    return out


def without_count(schema: dict) -> dict:
    """tempest puts ``count`` inside the items; Cinder (3.45) puts it next to them."""
    schema = copy.deepcopy(schema)
    schema["response_body"]["properties"]["count"] = {"type": "integer"}
    schema["response_body"]["required"] = schema["response_body"]["required"] + ["count"]
    return schema


# ------------------------------------------------------------------ versions


def test_version_documents(deployment):
    resp = requests.get(deployment.base_url + "/", timeout=30)
    rest_client.RestClient.validate_response(versions_schema.list_versions, Response(resp),
                                              resp.json())
    for path in ("/v3/", "/v3"):
        resp = requests.get(deployment.base_url + path, timeout=30)
        rest_client.RestClient.validate_response(
            versions_schema.volume_api_version_details, Response(resp), resp.json())
    versions = resp.json()["versions"]
    assert versions[0]["min_version"] == "3.0" and _ge(versions[0]["version"], "3.71")


# ------------------------------------------------------------------- backups


@pytest.mark.parametrize("version", BACKUP_VERSIONS, ids=lambda v: v or "no-header")
def test_backup_responses_match_tempest_schemas(api, version):
    check = Checker(api, version)
    schema = check.schemas(backups_client.BackupsClient)
    base = backups_client.schema     # what tempest uses for the unversioned calls
    volume = api.create_volume(size=1)

    request = {"volume_id": volume["id"], "name": "schema-%s" % (version or "none"),
               "description": "tempest schema check"}
    if _ge(version, "3.43"):
        request["metadata"] = {"purpose": "schemas"}
    created = check.call("POST", "backups", base.create_backup, {"backup": request},
                         "create")["backup"]
    backup = api.wait_backup(created["id"], "available")
    assert backup["name"] == request["name"]

    shown = check.call("GET", "backups/%s" % created["id"], schema.show_backup,
                       what="show")["backup"]
    check.call("GET", "backups", schema.list_backups_no_detail, what="list")
    listed = check.call("GET", "backups/detail", schema.list_backups_with_detail,
                        what="list detail")["backups"]
    assert [b["id"] for b in listed] == [created["id"]]
    # Who may see what, by microversion (the noauth caller is an admin).
    assert ("metadata" in shown) == _ge(version, "3.43"), shown
    assert ("os-backup-project-attr:project_id" in shown) == _ge(version, "3.18"), shown
    assert ("user_id" in shown) == _ge(version, "3.56"), shown
    assert "encryption_key_id" not in shown, "set only for encrypted volumes"
    if _ge(version, "3.45"):
        counted = check.call("GET", "backups/detail?with_count=true",
                             without_count(schema.list_backups_with_detail),
                             what="list detail+count")
        assert counted["count"] == 1, counted
        check.call("GET", "backups?with_count=true",
                   without_count(schema.list_backups_no_detail), what="list+count")
    if _ge(version, "3.9"):
        update = {"name": "renamed", "description": "updated"}
        if _ge(version, "3.43"):
            update["metadata"] = {"purpose": "updated"}
        check.call("PUT", "backups/%s" % created["id"], base.update_backup,
                   {"backup": update}, "update")

    restored = check.call("POST", "backups/%s/restore" % created["id"], base.restore_backup,
                          {"restore": {"name": "restored-%s" % (version or "none")}},
                          "restore")["restore"]
    api.wait_volume(restored["volume_id"], "available")
    api.wait_backup(created["id"], "available")

    record = check.call("GET", "backups/%s/export_record" % created["id"],
                        base.export_backup, what="export")["backup-record"]
    decoded = json.loads(base64.b64decode(record["backup_url"]))
    decoded["id"] = new_id = str(uuid.uuid4())
    new_url = base64.b64encode(json.dumps(decoded).encode()).decode()
    imported = check.call("POST", "backups/import_record", base.import_backup,
                          {"backup-record": {"backup_service": record["backup_service"],
                                             "backup_url": new_url}}, "import")["backup"]
    assert imported["id"] == new_id

    check.call("POST", "backups/%s/action" % created["id"], base.reset_backup_status,
               {"os-reset_status": {"status": "error"}}, "reset status")
    shown = check.call("GET", "backups/%s" % created["id"], schema.show_backup,
                       what="show after reset")["backup"]
    assert shown["status"] == "error"
    check.call("DELETE", "backups/%s" % created["id"], base.delete_backup, what="delete")
    api.wait_backup_gone(created["id"])


def test_encryption_key_id_appears_from_3_64_only(deployment, api):
    volume = api.create_volume(size=1)
    backup = api.create_backup(volume["id"], name="encrypted")
    # The file volumes here are never encrypted: give the row a key as an
    # encrypted volume's backup would have one.
    deployment.query("UPDATE backups SET encryption_key_id=%s WHERE id=%s",
                     (ENCRYPTION_KEY_ID, backup["id"]))
    for version in ("3.63", "3.64", "3.71"):
        check = Checker(api, version)
        schema = check.schemas(backups_client.BackupsClient)
        shown = check.call("GET", "backups/%s" % backup["id"], schema.show_backup,
                           what="show")["backup"]
        listed = check.call("GET", "backups/detail", schema.list_backups_with_detail,
                            what="list detail")["backups"]
        for body in (shown, listed[0]):
            if _ge(version, "3.64"):
                assert body.get("encryption_key_id") == ENCRYPTION_KEY_ID, body
            else:
                assert "encryption_key_id" not in body, body


def test_tempest_export_import_scenario(api):
    """tempest's test_volume_backup_export_import: import under a new id, then restore.

    The imported record points at the original backup's objects; tempest
    waits for the import to become ``available`` and deletes both backups.
    """
    volume = api.create_volume(size=1)
    backup = api.create_backup(volume["id"], name="export-import")
    record = api.expect(api.get("backups/%s/export_record" % backup["id"]),
                        200).json()["backup-record"]
    decoded = json.loads(base64.b64decode(record["backup_url"]))
    decoded["id"] = new_id = str(uuid.uuid4())
    resp = api.post("backups/import_record", {"backup-record": {
        "backup_service": record["backup_service"],
        "backup_url": base64.b64encode(json.dumps(decoded).encode()).decode()}})
    assert api.expect(resp, 201).json()["backup"]["id"] == new_id
    api.wait_backup(new_id, "available")
    assert new_id in [b["id"] for b in api.backups()]
    restored = api.restore_and_wait(backup["id"], {})
    assert restored["backup_id"] == backup["id"]
    api.delete_backup(new_id)
    api.delete_backup(backup["id"])


# ------------------------------------------------------- volumes / snapshots


@pytest.mark.parametrize("version", VOLUME_VERSIONS, ids=lambda v: v or "no-header")
def test_volume_and_snapshot_responses_match_tempest_schemas(api, version):
    check = Checker(api, version)
    vschema = check.schemas(volumes_client.VolumesClient)
    sschema = snapshot_schemas(version)

    created = check.call("POST", "volumes", vschema.create_volume,
                         {"volume": {"size": 1, "name": "v-%s" % (version or "none"),
                                     "metadata": {"k": "v"}}}, "create volume")["volume"]
    api.wait_volume(created["id"], "available")
    check.call("GET", "volumes/%s" % created["id"], vschema.show_volume, what="show volume")
    check.call("GET", "volumes", vschema.list_volumes_no_detail, what="list volumes")
    check.call("GET", "volumes/detail", vschema.list_volumes_with_detail,
               what="list volumes detail")

    snap = check.call("POST", "snapshots", sschema["create_snapshot"],
                      {"snapshot": {"volume_id": created["id"], "name": "s",
                                    "description": "d"}}, "create snapshot")["snapshot"]
    fx.wait_until(lambda: (api.expect(api.get("snapshots/%s" % snap["id"]), 200)
                           .json()["snapshot"]["status"] == "available", None),
                  "snapshot %s to be available" % snap["id"])
    check.call("GET", "snapshots/%s" % snap["id"], sschema["show_snapshot"],
               what="show snapshot")
    check.call("GET", "snapshots", sschema["list_snapshots_no_detail"], what="list snapshots")
    check.call("GET", "snapshots/detail", sschema["list_snapshots_with_detail"],
               what="list snapshots detail")
    check.call("DELETE", "snapshots/%s" % snap["id"], sschema["delete_snapshot"],
               what="delete snapshot")

    if _ge(version, "3.47"):
        backup = api.create_backup(created["id"])
        from_backup = check.call("POST", "volumes", vschema.create_volume,
                                 {"volume": {"size": 1, "backup_id": backup["id"]}},
                                 "create volume from backup")["volume"]
        api.wait_volume(from_backup["id"], "available")
        api.wait_backup(backup["id"], "available")
