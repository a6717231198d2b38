"""/backups: views per microversion, list parameters, actions and errors."""

import base64
import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from oslo_config import cfg

from backupsvc import rpc
from backupsvc.context import get_admin_context
from tests.unit.api.conftest import WORKER_HOST, Client

CONF = cfg.CONF

BASE_DETAIL = {"availability_zone", "container", "created_at", "data_timestamp",
               "description", "fail_reason", "has_dependent_backups", "id",
               "is_incremental", "links", "name", "object_count", "size", "snapshot_id",
               "status", "updated_at", "volume_id"}
PROJECT_ATTR = "os-backup-project-attr:project_id"
KEY_ID = "5a1b0b7e-0d44-4a53-a8b4-0c2f3c2e6c1d"


def _show(client, backup_id, version=None):
    return client.get("backups/%s" % backup_id, version=version, status=200).json["backup"]


# -------------------------------------------------------------------- views

def test_create_answers_202_with_the_summary_only(admin, project):
    volume = admin.make_volume()
    response = admin.post("backups", {"backup": {"volume_id": volume["id"],
                                                 "name": "  nightly  "}}, status=202)
    backup = response.json["backup"]
    assert set(backup) == {"id", "links", "name"}
    assert backup["name"] == "nightly"
    assert backup["links"] == [
        {"href": "http://localhost/v3/%s/backups/%s" % (project, backup["id"]), "rel": "self"},
        {"href": "http://localhost/%s/backups/%s" % (project, backup["id"]),
         "rel": "bookmark"}]


def test_detail_at_3_0_is_exactly_cinders(admin):
    backup = admin.make_backup(status=None, name="b")
    shown = _show(admin, backup["id"])
    assert set(shown) == BASE_DETAIL
    assert shown["status"] == "creating" and shown["object_count"] == 0
    assert shown["is_incremental"] is False and shown["has_dependent_backups"] is False
    # ISO 8601 without a timezone, always with microseconds.
    assert len(shown["created_at"]) == 26 and shown["created_at"][10] == "T"


def test_project_attribute_at_3_18_is_for_admins(admin, member, project):
    backup = admin.make_backup()
    assert _show(admin, backup["id"], "3.17").keys() == BASE_DETAIL
    assert _show(admin, backup["id"], "3.18")[PROJECT_ATTR] == project
    assert set(_show(member, backup["id"], "3.18")) == BASE_DETAIL


def test_metadata_from_3_43(admin, member):
    volume = admin.make_volume()
    plain = admin.make_backup(volume["id"])
    assert _show(member, plain["id"], "3.43")["metadata"] == {}
    tagged = admin.post("backups", {"backup": {"volume_id": admin.make_volume()["id"],
                                               "metadata": {"k": "v"}}},
                        version="3.43", status=202).json["backup"]
    assert set(tagged) == {"id", "links", "name"}
    shown = _show(member, tagged["id"], "3.43")
    assert shown["metadata"] == {"k": "v"} and set(shown) == BASE_DETAIL | {"metadata"}
    assert "metadata" not in _show(member, tagged["id"], "3.42")


def test_user_id_from_3_56_for_admins(admin, member):
    backup = admin.make_backup()
    assert set(_show(admin, backup["id"], "3.56")) == BASE_DETAIL | {
        "metadata", PROJECT_ATTR, "user_id"}
    assert _show(admin, backup["id"], "3.56")["user_id"] == "tester"
    assert set(_show(member, backup["id"], "3.56")) == BASE_DETAIL | {"metadata"}


@pytest.mark.parametrize("key,version,shown", [
    (KEY_ID, "3.64", True), (KEY_ID, "3.63", False), (None, "3.64", False),
    ("00000000-0000-0000-0000-000000000000", "3.64", False)])
def test_encryption_key_id_from_3_64_when_real(admin, sqlite_db, key, version, shown):
    backup = admin.make_backup()
    sqlite_db.backup_update(get_admin_context(), backup["id"], {"encryption_key_id": key})
    view = _show(admin, backup["id"], version)
    assert ("encryption_key_id" in view) is shown
    if shown:
        assert view["encryption_key_id"] == key


def test_incremental_and_dependents_flags(admin, sqlite_db):
    volume = admin.make_volume()
    parent = admin.make_backup(volume["id"])
    admin.post("volumes/%s/action" % volume["id"],
               {"os-reset_status": {"status": "available"}}, status=202)
    child = admin.post("backups", {"backup": {"volume_id": volume["id"],
                                              "incremental": "yes"}},
                       status=202).json["backup"]
    sqlite_db.backup_adjust_dependents(get_admin_context(), parent["id"], 1)
    assert _show(admin, child["id"])["is_incremental"] is True
    assert _show(admin, parent["id"])["has_dependent_backups"] is True


def test_incremental_without_a_parent_is_400(admin):
    volume = admin.make_volume()
    response = admin.post("backups", {"backup": {"volume_id": volume["id"],
                                                 "incremental": True}}, status=400)
    assert "No backups available to do an incremental backup" in (
        response.json["badRequest"]["message"])


# ------------------------------------------------------------ list queries

def _ids(response, key="backups"):
    return [item["id"] for item in response.json[key]]


def test_summary_list_items_and_detail_list(admin):
    backup = admin.make_backup(name="one")
    summary = admin.get("backups", status=200).json
    assert summary == {"backups": [{"id": backup["id"], "name": "one",
                                    "links": backup["links"]}]}
    detail = admin.get("backups/detail", status=200).json["backups"]
    assert set(detail[0]) == BASE_DETAIL


def test_default_order_is_newest_first_and_limit_marker_offset(admin):
    made = [admin.make_backup(name="b%d" % i)["id"] for i in range(4)]
    newest_first = list(reversed(made))
    assert _ids(admin.get("backups", status=200)) == newest_first
    first = admin.get("backups?limit=2", status=200)
    assert _ids(first) == newest_first[:2]
    after = admin.get("backups?marker=%s" % newest_first[1], status=200)
    assert _ids(after) == newest_first[2:]
    assert _ids(admin.get("backups?offset=3", status=200)) == newest_first[3:]


def test_next_link_is_absolute_and_walks_every_backup_once(admin, project):
    made = {admin.make_backup()["id"] for _ in range(5)}
    seen = []
    url = admin.url("backups/detail") + "?limit=2&sort=created_at:desc"
    while url:
        path = url.replace("http://localhost", "")
        response = admin.app.get(path, headers=admin.headers(), status=200)
        seen += _ids(response)
        links = response.json.get("backups_links")
        if links:
            assert links[0]["rel"] == "next"
            href = links[0]["href"]
            assert href.startswith("http://localhost/v3/%s/backups/detail?" % project)
            query = parse_qs(urlsplit(href).query)
            assert query["marker"] == [seen[-1]] and query["limit"] == ["2"]
        url = links[0]["href"] if links else None
    assert sorted(seen) == sorted(made) and len(seen) == len(made)


def test_no_next_link_when_the_page_is_not_full(admin):
    admin.make_backup()
    assert "backups_links" not in admin.get("backups?limit=5", status=200).json


def test_next_link_when_osapi_max_limit_cuts_the_page(admin):
    for _ in range(3):
        admin.make_backup()
    CONF.set_override("osapi_max_limit", 2)
    response = admin.get("backups", status=200)
    assert len(response.json["backups"]) == 2
    assert "marker=" in response.json["backups_links"][0]["href"]
    # A larger limit is capped too.
    assert len(admin.get("backups?limit=50", status=200).json["backups"]) == 2


def test_sort_keys_and_directions(admin):
    small = admin.make_backup(admin.make_volume(size=1)["id"], name="zz")["id"]
    large = admin.make_backup(admin.make_volume(size=3)["id"], name="aa")["id"]
    assert _ids(admin.get("backups?sort=size:asc", status=200)) == [small, large]
    assert _ids(admin.get("backups?sort_key=size&sort_dir=desc", status=200)) == [large, small]
    assert _ids(admin.get("backups?sort=name:asc", version="3.37", status=200)) == [large, small]


@pytest.mark.parametrize("query,version,message", [
    ("sort=name", "3.36", "Invalid sort key 'name'"),
    ("sort=bogus:asc", None, "Invalid sort key 'bogus'"),
    ("sort=size:sideways", None, "Unknown sort direction 'sideways'"),
    ("sort=size&sort_key=size", None, "cannot be used with the 'sort' parameter"),
    ("limit=abc", None, "limit param must be an integer"),
    ("limit=-1", None, "limit param must be positive"),
    ("offset=x", None, "offset must be an integer"),
    ("offset=-1", None, "offset must be >= 0"),
    ("with_count=perhaps", "3.45", "Value 'perhaps' for 'with_count' is not a boolean."),
])
def test_bad_list_parameters_are_400(admin, query, version, message):
    response = admin.get("backups?" + query, version=version, status=400)
    assert message in response.json["badRequest"]["message"]


def test_unknown_marker_is_404(admin):
    response = admin.get("backups?marker=%s" % uuid.uuid4(), status=404)
    assert "could not be found" in response.json["itemNotFound"]["message"]


def test_filters_and_like_filters(admin):
    volume = admin.make_volume()
    target = admin.make_backup(volume["id"], name="daily-1")["id"]
    admin.make_backup(name="weekly")
    assert _ids(admin.get("backups?name=daily-1", status=200)) == [target]
    assert _ids(admin.get("backups?volume_id=%s" % volume["id"], status=200)) == [target]
    assert _ids(admin.get("backups?name~=daily", version="3.34", status=200)) == [target]
    assert len(_ids(admin.get("backups?status=available", status=200))) == 2


def test_unknown_filters_400_from_3_31_and_dropped_before(member, admin):
    admin.make_backup()
    response = member.get("backups?colour=red&name~=x", version="3.31", status=400)
    assert response.json["badRequest"]["message"] == (
        "Invalid filters colour,name~ are found in query options.")
    assert len(_ids(member.get("backups?colour=red", version="3.30", status=200))) == 1


def test_all_tenants_is_for_admins_only(admin, member, testapp):
    mine = member.make_backup()["id"]
    other_project = Client(testapp, uuid.uuid4().hex)
    theirs = other_project.make_backup()["id"]
    assert _ids(member.get("backups?all_tenants=1", status=200)) == [mine]
    everyone = _ids(admin.get("backups?all_tenants=True&limit=1000", status=200))
    assert {mine, theirs} <= set(everyone)
    assert _ids(admin.get("backups?all_tenants=False", status=200)) == [mine]
    response = admin.get("backups?all_tenants=maybe", status=400)
    assert response.json["badRequest"]["message"] == "all_tenants must be a boolean, got 'maybe'."


def test_with_count_from_3_45(admin):
    for _ in range(3):
        admin.make_backup()
    counted = admin.get("backups/detail?limit=1&with_count=true", version="3.45", status=200)
    assert counted.json["count"] == 3 and len(counted.json["backups"]) == 1
    assert "count" not in admin.get("backups?with_count=true", version="3.44", status=200).json


# ------------------------------------------------------------ other routes

def test_unknown_and_non_uuid_ids_are_clean_404s(admin, member):
    missing = str(uuid.uuid4())
    response = admin.get("backups/%s" % missing, status=404)
    assert response.json == {"itemNotFound": {
        "code": 404, "message": "Backup %s could not be found." % missing}}
    assert "itemNotFound" in admin.get("backups/my-backup-name", status=404).json
    for path in ("backups/nope/restore", "backups/nope/export_record"):
        method = admin.post if path.endswith("restore") else admin.get
        kwargs = {"body": {"restore": {}}} if path.endswith("restore") else {}
        assert method(path, status=404, **kwargs).json["itemNotFound"]["code"] == 404
    # Another project's backup does not exist for this member.
    other = Client(admin.app, uuid.uuid4().hex).make_backup()
    member.get("backups/%s" % other["id"], status=404)


def test_update_needs_3_9(admin):
    backup = admin.make_backup(name="old")
    response = admin.put("backups/%s" % backup["id"], {"backup": {"name": "new"}}, status=404)
    assert response.json["itemNotFound"]["message"] == (
        "API version 3.0 is not supported on this method.")
    updated = admin.put("backups/%s" % backup["id"],
                        {"backup": {"name": " new ", "description": "d"}},
                        version="3.9", status=200).json["backup"]
    assert set(updated) == {"id", "links", "name"} and updated["name"] == "new"
    assert _show(admin, backup["id"])["description"] == "d"
    admin.put("backups/%s" % backup["id"], {"backup": None}, version="3.9", status=200)


def test_update_metadata_replaces_from_3_43(admin):
    backup = admin.make_backup()
    path = "backups/%s" % backup["id"]
    admin.put(path, {"backup": {"metadata": {"a": "1", "b": "2"}}}, version="3.43", status=200)
    admin.put(path, {"backup": {"metadata": {"b": "3"}}}, version="3.43", status=200)
    assert _show(admin, backup["id"], "3.43")["metadata"] == {"b": "3"}
    admin.put(path, {"backup": {"metadata": {"x": "y"}}}, version="3.42", status=400)


def test_delete_is_202_without_a_body(admin, sqlite_db):
    backup = admin.make_backup()
    response = admin.delete("backups/%s" % backup["id"], status=202)
    assert response.body == b""
    assert _show(admin, backup["id"])["status"] == "deleting"


def test_delete_refuses_a_creating_backup(admin):
    backup = admin.make_backup(status=None)
    response = admin.delete("backups/%s" % backup["id"], status=400)
    assert response.json["badRequest"]["message"] == (
        "Invalid backup: Backup status must be available or error")


def test_restore_to_a_new_volume(admin):
    backup = admin.make_backup()
    response = admin.post("backups/%s/restore" % backup["id"], {"restore": {"name": "r1"}},
                          status=202)
    restore = response.json["restore"]
    assert set(restore) == {"backup_id", "volume_id", "volume_name"}
    assert restore["backup_id"] == backup["id"] and restore["volume_name"] == "r1"
    assert _show(admin, backup["id"])["status"] == "restoring"


def test_restore_with_null_body_uses_the_default_name(admin):
    backup = admin.make_backup()
    restore = admin.post("backups/%s/restore" % backup["id"], {"restore": None},
                         status=202).json["restore"]
    assert restore["volume_name"] == "restore_backup_%s" % backup["id"]


def test_export_then_import(admin, member, sqlite_db):
    backup = admin.make_backup()
    # What the worker records when the backup's data is written.
    sqlite_db.backup_update(get_admin_context(), backup["id"],
                            {"service_metadata": "volume_x/backup_y", "container": "c"})
    member.get("backups/%s/export_record" % backup["id"], status=403)
    exported = admin.get("backups/%s/export_record" % backup["id"], status=200).json
    record = exported["backup-record"]
    assert set(exported) == {"backup-record"}
    assert set(record) == {"backup_service", "backup_url"}
    assert record["backup_service"].startswith("cinder.backup.drivers.")
    again = admin.post("backups/import_record", {"backup-record": record}, status=400)
    assert "already exists" in again.json["badRequest"]["message"]
    decoded = json.loads(base64.b64decode(record["backup_url"]))
    decoded["id"] = str(uuid.uuid4())
    url = base64.b64encode(json.dumps(decoded).encode()).decode()
    imported = admin.post("backups/import_record",
                          {"backup-record": {"backup_service": record["backup_service"],
                                             "backup_url": url}}, status=201).json["backup"]
    assert set(imported) == {"id", "links", "name"} and imported["id"] == decoded["id"]


def test_import_of_garbage_is_400(admin):
    response = admin.post("backups/import_record", {"backup-record": {
        "backup_service": "cinder.backup.drivers.posix", "backup_url": "!!!"}}, status=400)
    assert response.json["badRequest"]["message"] == "Can't decode backup record."


def test_admin_actions(admin, member):
    backup = admin.make_backup(status=None)
    path = "backups/%s/action" % backup["id"]
    denied = member.post(path, {"os-reset_status": {"status": "error"}}, status=403)
    assert denied.json == {"forbidden": {"code": 403, "message": (
        "Policy doesn't allow volume_extension:backup_admin_actions:reset_status to be "
        "performed.")}}
    assert "forbidden" in member.post(path, {"os-force_delete": {}}, status=403).json
    assert admin.post(path, {"os-reset_status": {"status": "ERROR"}}, status=202).body == b""
    assert _show(admin, backup["id"])["status"] == "error"
    bad = admin.post(path, {"os-reset_status": {"status": "creating"}}, status=400)
    assert bad.json["badRequest"]["message"] == (
        "Backup status: creating is invalid, valid statuses are: available, error.")
    admin.post(path, {"os-force_delete": None}, status=202)
    assert _show(admin, backup["id"])["status"] == "deleting"


@pytest.mark.parametrize("body,message", [
    ({"os-teleport": {}}, "There is no such action: os-teleport"),
    ({"os-force_delete": {}, "os-reset_status": {"status": "error"}}, "exactly one key"),
    ({}, "exactly one key"),
    ({"os-reset_status": {}}, "'status' is a required property"),
    ({"os-reset_status": {"status": 1}}, "1 is not of type 'string'"),
])
def test_bad_actions_are_400(admin, body, message):
    backup = admin.make_backup()
    response = admin.post("backups/%s/action" % backup["id"], body, status=400)
    assert message in response.json["badRequest"]["message"]


def test_member_can_run_the_backup_lifecycle(member):
    volume = member.make_volume()
    backup = member.post("backups", {"backup": {"volume_id": volume["id"]}},
                         status=202).json["backup"]
    assert _show(member, backup["id"])["volume_id"] == volume["id"]


def test_over_quota_is_413_overlimit(admin):
    volume = admin.make_volume()
    CONF.set_override("quota_backups", 0)
    try:
        response = admin.post("backups", {"backup": {"volume_id": volume["id"]}}, status=413)
    finally:
        CONF.clear_override("quota_backups")
    assert response.json == {"overLimit": {
        "code": 413, "message": "Maximum number of backups allowed (0) exceeded",
        "retryAfter": "0"}}
    assert response.headers["Retry-After"] == "0"


def test_quota_taken_meanwhile_is_413_and_the_volume_stays_available(admin, sqlite_db,
                                                                     project):
    """The early check passes (no backup rows yet) but another request took the
    last backup of the quota meanwhile (its counter says so): the status change
    and the insert are one transaction, so the refusal leaves the volume as it was."""
    from backupsvc.db import models
    from backupsvc.db.session import main_context_manager

    volume = admin.make_volume()
    ctx = get_admin_context()
    sqlite_db.seed_usage(ctx, project)
    with main_context_manager.writer.using(ctx) as session:
        session.query(models.QuotaUsage).filter_by(
            project_id=project, resource="backups").update({"in_use": 1})
    CONF.set_override("quota_backups", 1)
    try:
        response = admin.post("backups", {"backup": {"volume_id": volume["id"]}}, status=413)
    finally:
        CONF.clear_override("quota_backups")
    assert "Maximum number of backups allowed (1) exceeded" in response.text
    assert admin.get("volumes/%s" % volume["id"]).json["volume"]["status"] == "available"
    assert admin.get("backups", status=200).json["backups"] == []
    assert sqlite_db.quota_usage(ctx, project)["backups"] == 1


def test_no_live_worker_is_503_and_changes_nothing(admin, sqlite_db):
    volume = admin.make_volume()
    sqlite_db.service_mark_down(get_admin_context(), WORKER_HOST, rpc.WORKER_BINARY)
    response = admin.post("backups", {"backup": {"volume_id": volume["id"]}}, status=503)
    assert "No backup worker is up" in response.json["serviceUnavailable"]["message"]
    assert admin.get("backups", status=200).json["backups"] == []
    assert admin.get("volumes/%s" % volume["id"]).json["volume"]["status"] == "available"


def test_a_projects_first_backup_creates_its_quota_counters(admin, sqlite_db, project):
    volume = admin.make_volume(size=3)
    ctx = get_admin_context()
    assert sqlite_db.quota_usage(ctx, project) == {}
    admin.post("backups", {"backup": {"volume_id": volume["id"]}}, status=202)
    assert sqlite_db.quota_usage(ctx, project) == {"backups": 1, "backup_gigabytes": 3}
    second = admin.make_volume(size=2)
    admin.post("backups", {"backup": {"volume_id": second["id"]}}, status=202)
    assert sqlite_db.quota_usage(ctx, project) == {"backups": 2, "backup_gigabytes": 5}


def test_a_refused_cast_fails_the_backup_and_gives_the_volume_back_as_it_was(
        admin, monkeypatch):
    """The broker refusing a cast between the insert and the cast cannot be timed
    for real in a unit test, so the cast alone is replaced by one that raises."""
    from backupsvc import backups

    class RefusingBroker:
        def create_backup(self, *args):
            raise ConnectionError("broker refused")

    volume = admin.make_volume()
    admin.post("volumes/%s/action" % volume["id"],
               {"os-reset_status": {"status": "in-use"}}, status=202)
    monkeypatch.setattr(backups, "_rpc", RefusingBroker)
    response = admin.post("backups", {"backup": {"volume_id": volume["id"], "force": True}},
                          status=503)
    assert "message bus" in response.json["serviceUnavailable"]["message"]
    assert admin.get("volumes/%s" % volume["id"]).json["volume"]["status"] == "in-use"
    (backup,) = admin.get("backups/detail", status=200).json["backups"]
    assert backup["status"] == "error"
    assert "broker refused" in backup["fail_reason"]
