"""/volumes, /snapshots and /os-volume-manage: tempest-exact views and actions."""

import uuid

import pytest
from oslo_config import cfg

CONF = cfg.CONF

# tempest's required (and, for POST, only allowed) volume fields.
TEMPEST_VOLUME = {"attachments", "links", "encrypted", "updated_at", "replication_status",
                  "id", "size", "user_id", "availability_zone", "metadata", "status",
                  "description", "multiattach", "consistencygroup_id", "name", "bootable",
                  "created_at", "volume_type", "snapshot_id", "source_volid"}
ADMIN_GET = {"os-vol-tenant-attr:tenant_id", "os-vol-host-attr:host",
             "os-vol-mig-status-attr:migstat", "os-vol-mig-status-attr:name_id",
             "migration_status"}
SNAPSHOT_BASIC = {"status", "description", "created_at", "updated_at", "name", "volume_id",
                  "metadata", "id", "size"}
SNAPSHOT_GET = SNAPSHOT_BASIC | {"os-extended-snapshot-attributes:progress",
                                 "os-extended-snapshot-attributes:project_id"}


# ----------------------------------------------------------------- volumes

def test_create_view_is_tempests_for_members_and_admins(member, admin):
    created = member.make_volume(size="2", name=" data ", metadata={"a": "b"})
    assert set(created) == TEMPEST_VOLUME
    assert (created["size"], created["name"], created["metadata"]) == (2, "data", {"a": "b"})
    assert created["bootable"] == "false" and created["volume_type"] == "__DEFAULT__"
    # The POST view never carries the tenant / host / migration attributes.
    assert set(admin.make_volume()) == TEMPEST_VOLUME | {"migration_status"}


def test_show_adds_admin_attributes_only_for_admins(admin, member, project):
    volume = admin.make_volume()
    shown = admin.get("volumes/%s" % volume["id"], status=200).json["volume"]
    assert set(shown) == TEMPEST_VOLUME | ADMIN_GET
    assert shown["os-vol-tenant-attr:tenant_id"] == project
    assert "@" in shown["os-vol-host-attr:host"] and "#" in shown["os-vol-host-attr:host"]
    assert set(member.get("volumes/%s" % volume["id"]).json["volume"]) == TEMPEST_VOLUME


def test_show_fields_by_microversion(admin, member):
    volume = admin.make_volume()
    path = "volumes/%s" % volume["id"]
    member_keys = set(member.get(path, version="3.71").json["volume"])
    assert member_keys == TEMPEST_VOLUME | {"group_id", "service_uuid", "shared_targets",
                                            "volume_type_id", "consumes_quota"}
    admin_keys = set(admin.get(path, version="3.71").json["volume"])
    assert admin_keys == member_keys | ADMIN_GET | {"provider_id", "cluster_name"}
    assert "group_id" not in member.get(path, version="3.12").json["volume"]
    assert "group_id" in member.get(path, version="3.13").json["volume"]


def test_lists_summary_and_detail(member):
    volume = member.make_volume(name="v1")
    assert member.get("volumes", status=200).json == {"volumes": [
        {"id": volume["id"], "name": "v1", "links": volume["links"]}]}
    detail = member.get("volumes/detail?name=v1", status=200).json["volumes"]
    assert [v["id"] for v in detail] == [volume["id"]] and set(detail[0]) == TEMPEST_VOLUME
    counted = member.get("volumes?with_count=1", version="3.45", status=200).json
    assert counted["count"] == 1
    assert len(member.get("volumes?size=1&bootable=false").json["volumes"]) == 1
    assert member.get("volumes?size=2").json["volumes"] == []
    assert "must be an integer" in member.get("volumes?size=big", status=400).text


def test_volume_paging_links(member, project):
    for _ in range(3):
        member.make_volume()
    response = member.get("volumes?limit=2", status=200).json
    assert response["volumes_links"][0]["href"].startswith(
        "http://localhost/v3/%s/volumes?limit=2&marker=" % project)


def test_cinderclient_create_body_with_nulls_is_accepted(member):
    body = {"volume": {"size": 1, "consistencygroup_id": None, "snapshot_id": None,
                       "name": "c", "description": None, "volume_type": None,
                       "availability_zone": None, "metadata": {}, "imageRef": None,
                       "source_volid": None, "backup_id": None, "group_id": None},
            "OS-SCH-HNT:scheduler_hints": None}
    member.post("volumes", body, version="3.71", status=202)


@pytest.mark.parametrize("field,value,message", [
    ("imageRef", "c8a3b7a2-2d3e-4c15-9bb2-70c8a7d3c1a0", "from an image is not supported"),
    ("multiattach", True, "Multiattach volumes are not supported"),
    ("consistencygroup_id", "c8a3b7a2-2d3e-4c15-9bb2-70c8a7d3c1a0",
     "Consistency groups are not supported"),
])
def test_unsupported_create_fields_are_refused(member, field, value, message):
    response = member.post("volumes", {"volume": {"size": 1, field: value}}, status=400)
    assert message in response.json["badRequest"]["message"]


def test_backup_id_needs_3_47_and_restores_into_the_new_volume(admin):
    backup = admin.make_backup()
    body = {"volume": {"size": 1, "backup_id": backup["id"]}}
    refused = admin.post("volumes", body, version="3.46", status=400)
    assert "'backup_id' was unexpected" in refused.json["badRequest"]["message"]
    volume = admin.post("volumes", body, version="3.47", status=202).json["volume"]
    assert volume["status"] == "restoring-backup"
    shown = admin.get("backups/%s" % backup["id"]).json["backup"]
    assert shown["status"] == "restoring"


def test_snapshot_and_source_volume_create_are_not_supported(member):
    source = member.make_volume()
    response = member.post("volumes", {"volume": {"size": 1, "source_volid": source["id"]}},
                           status=405)
    assert "not supported" in response.json["badMethod"]["message"]


def test_update_answers_the_post_view(admin):
    volume = admin.make_volume(name="a")
    updated = admin.put("volumes/%s" % volume["id"],
                        {"volume": {"name": "b", "metadata": {"k": "v"}}}, status=200)
    view = updated.json["volume"]
    assert (view["name"], view["metadata"]) == ("b", {"k": "v"})
    assert "os-vol-tenant-attr:tenant_id" not in view


def test_delete_and_cascade(member):
    volume = member.make_volume()
    member.delete("volumes/%s?cascade=perhaps" % volume["id"], status=400)
    assert member.delete("volumes/%s?cascade=true" % volume["id"], status=202).body == b""
    missing = member.get("volumes/%s" % volume["id"], status=404)
    assert missing.json["itemNotFound"]["message"] == (
        "Volume %s could not be found." % volume["id"])


def test_attach_detach_and_reset_status(admin, member):
    volume = member.make_volume()
    action = "volumes/%s/action" % volume["id"]
    server = str(uuid.uuid4())
    member.post(action, {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb"}},
                status=202)
    shown = member.get("volumes/%s" % volume["id"]).json["volume"]
    assert shown["status"] == "in-use"
    (attachment,) = shown["attachments"]
    assert set(attachment) == {"server_id", "attachment_id", "attached_at", "host_name",
                               "volume_id", "device", "id"}
    assert (attachment["server_id"], attachment["device"]) == (server, "/dev/vdb")
    member.post(action, {"os-detach": {"attachment_id": attachment["attachment_id"]}},
                status=202)
    assert member.get("volumes/%s" % volume["id"]).json["volume"]["attachments"] == []
    missing_target = member.post(action, {"os-attach": {"mountpoint": "/dev/vdb"}}, status=400)
    assert "instance_uuid or host_name" in missing_target.json["badRequest"]["message"]
    member.post(action, {"os-reset_status": {"status": "error"}}, status=403)
    admin.post(action, {"os-reset_status": {"status": "error"}}, status=202)
    assert member.get("volumes/%s" % volume["id"]).json["volume"]["status"] == "error"


# --------------------------------------------------------------- snapshots

def test_snapshot_views(member, admin, project):
    volume = member.make_volume()
    created = member.post("snapshots", {"snapshot": {"volume_id": volume["id"], "name": "s",
                                                     "metadata": {"m": "1"}}},
                          status=202).json["snapshot"]
    assert set(created) == SNAPSHOT_BASIC and created["metadata"] == {"m": "1"}
    shown = member.get("snapshots/%s" % created["id"], status=200).json["snapshot"]
    assert set(shown) == SNAPSHOT_GET
    assert shown["os-extended-snapshot-attributes:project_id"] == project
    late = member.get("snapshots/%s" % created["id"], version="3.65").json["snapshot"]
    assert set(late) == SNAPSHOT_GET | {"group_snapshot_id", "user_id", "consumes_quota"}
    assert [set(s) for s in member.get("snapshots").json["snapshots"]] == [SNAPSHOT_BASIC]
    assert [set(s) for s in member.get("snapshots/detail").json["snapshots"]] == [SNAPSHOT_GET]
    assert member.delete("snapshots/%s" % created["id"], status=202).body == b""
    member.get("snapshots/%s" % created["id"], status=404)


def test_snapshot_of_an_unknown_volume_is_404(member):
    missing = str(uuid.uuid4())
    response = member.post("snapshots", {"snapshot": {"volume_id": missing}}, status=404)
    assert response.json["itemNotFound"]["message"] == "Volume %s could not be found." % missing


def test_snapshot_put_is_405(member):
    response = member.put("snapshots/%s" % uuid.uuid4(), {"snapshot": {}}, status=405)
    assert response.headers["Allow"] == "GET, DELETE"


# ------------------------------------------------------------------ manage

def test_manage_is_admin_only_and_answers_a_volume(admin, member, tmp_path):
    managed = tmp_path / "adopt"
    managed.mkdir()
    disk = managed / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    CONF.set_override("file_volume_manage_dirs", [str(managed)])
    body = {"volume": {"host": "node1", "ref": {"source-name": str(disk)}, "name": "adopted",
                       "bootable": "true"}}
    denied = member.post("os-volume-manage", body, status=403)
    assert "volume_extension:volume_manage" in denied.json["forbidden"]["message"]
    volume = admin.post("os-volume-manage", body, status=202).json["volume"]
    assert set(volume) == TEMPEST_VOLUME | {"migration_status"}
    assert (volume["name"], volume["bootable"], volume["size"]) == ("adopted", "true", 1)
    outside = dict(body, volume=dict(body["volume"], ref={"source-name": "/etc/passwd"}))
    assert "Cannot manage" in admin.post("os-volume-manage", outside,
                                         status=400).json["badRequest"]["message"]
    assert admin.get("os-volume-manage", status=405).json["badMethod"]["code"] == 405


def test_snapshot_list_with_count(member):
    volume = member.make_volume()
    for name in ("a", "b", "c"):
        member.post("snapshots", {"snapshot": {"volume_id": volume["id"], "name": name}},
                    status=202)
    listed = member.get("snapshots/detail?with_count=true&limit=2&name=b",
                        version="3.45").json
    assert listed["count"] == 1 and [s["name"] for s in listed["snapshots"]] == ["b"]
    listed = member.get("snapshots?with_count=true&limit=2", version="3.45").json
    assert listed["count"] == 3 and len(listed["snapshots"]) == 2
