"""Response bodies: the only place the API's JSON shapes are written down.

Shapes follow Cinder's v3 views field for field, per microversion, because
tempest's response schemas reject both missing and extra keys.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from backupsvc.api import microversions as mv
from backupsvc.api.microversions import APIVersion

# Cinder hides the legacy fixed key manager's key id.
FIXED_KEY_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_VOLUME_TYPE = "__DEFAULT__"
VERSION_UPDATED = "2023-08-31T00:00:00Z"


@dataclasses.dataclass(frozen=True)
class ViewContext:
    """What a view needs to know about the request it answers."""

    version: APIVersion
    is_admin: bool
    base_url: str               # scheme://host[:port][/prefix], no trailing slash
    url_project: str | None     # the project segment of the request URL, if any
    show_backup_owner: bool = False   # policy backup:backup_project_attribute

    def links(self, collection: str, item_id: str) -> list[dict]:
        # Links keep the URL style of the request: with a project or without.
        path = "%s/%s" % (collection, item_id)
        if self.url_project:
            path = "%s/%s" % (self.url_project, path)
        return [{"href": "%s/v3/%s" % (self.base_url, path), "rel": "self"},
                {"href": "%s/%s" % (self.base_url, path), "rel": "bookmark"}]

    def at_least(self, version: APIVersion) -> bool:
        return self.version >= version


def isotime(value: datetime.datetime | None) -> str | None:
    """Cinder's form: ISO 8601, UTC, microseconds, no timezone suffix."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def collection(key: str, items: list[dict], next_href: str | None = None,
               count: int | None = None) -> dict:
    body: dict[str, Any] = {key: items}
    if next_href:
        body[key + "_links"] = [{"href": next_href, "rel": "next"}]
    if count is not None:
        body["count"] = count
    return body


# ----------------------------------------------------------------- versions

def versions(base_url: str) -> dict:
    return {"versions": [{
        "id": "v3.0",
        "status": "CURRENT",
        "version": str(mv.MAX_VERSION),
        "min_version": str(mv.MIN_VERSION),
        "updated": VERSION_UPDATED,
        "links": [
            {"href": "https://docs.openstack.org/", "rel": "describedby",
             "type": "text/html"},
            {"href": "%s/v3/" % base_url, "rel": "self"},
        ],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.volume+json;version=3"}],
    }]}


# ------------------------------------------------------------------ backups

def backup_summary(backup, vc: ViewContext) -> dict:
    return {"id": backup.id, "name": backup.display_name,
            "links": vc.links("backups", backup.id)}


def backup_detail(backup, vc: ViewContext) -> dict:
    view = {
        "availability_zone": backup.availability_zone,
        "container": backup.container,
        "created_at": isotime(backup.created_at),
        "data_timestamp": isotime(backup.data_timestamp),
        "description": backup.display_description,
        "fail_reason": backup.fail_reason,
        "has_dependent_backups": bool(backup.num_dependent_backups),
        "id": backup.id,
        "is_incremental": bool(backup.parent_id),
        "links": vc.links("backups", backup.id),
        "name": backup.display_name,
        "object_count": backup.object_count or 0,
        "size": backup.size,
        "snapshot_id": backup.snapshot_id,
        "status": backup.status,
        "updated_at": isotime(backup.updated_at),
        "volume_id": backup.volume_id,
    }
    if vc.at_least(mv.BACKUP_METADATA):
        view["metadata"] = backup.metadata_dict
    if vc.show_backup_owner and vc.at_least(mv.BACKUP_PROJECT):
        view["os-backup-project-attr:project_id"] = backup.project_id
    if vc.show_backup_owner and vc.at_least(mv.BACKUP_PROJECT_USER_ID):
        view["user_id"] = backup.user_id
    if vc.at_least(mv.ENCRYPTION_KEY_ID_IN_DETAILS) and backup.encryption_key_id not in (
            None, FIXED_KEY_ID):
        view["encryption_key_id"] = backup.encryption_key_id
    return view


def backup(row, vc: ViewContext, detail: bool = False) -> dict:
    return {"backup": backup_detail(row, vc) if detail else backup_summary(row, vc)}


def backups(rows, vc: ViewContext, detail: bool, next_href: str | None = None,
            count: int | None = None) -> dict:
    render = backup_detail if detail else backup_summary
    return collection("backups", [render(row, vc) for row in rows], next_href, count)


def restore(result: dict) -> dict:
    return {"restore": {"backup_id": result["backup_id"], "volume_id": result["volume_id"],
                        "volume_name": result["volume_name"]}}


def export_record(result: dict) -> dict:
    return {"backup-record": {"backup_service": result["backup_service"],
                              "backup_url": result["backup_url"]}}


# ------------------------------------------------------------------ volumes

def _attachments(volume) -> list[dict]:
    if volume.attach_status != "attached":
        return []
    return [{
        "server_id": volume.attached_instance_uuid,
        "attachment_id": volume.attachment_id,
        "attached_at": isotime(volume.attach_time),
        "host_name": volume.attached_host,
        "volume_id": volume.id,
        "device": volume.attach_mountpoint,
        "id": volume.id,   # Cinder uses the volume id as the attachment's "id"
    }]


def _backend_host(host: str | None) -> str | None:
    # Cinder hosts read host@backend#pool (tempest checks the pattern).
    if host is None or "@" in host:
        return host
    return "%s@file#file" % host


def volume_summary(volume, vc: ViewContext) -> dict:
    return {"id": volume.id, "name": volume.display_name,
            "links": vc.links("volumes", volume.id)}


def volume_detail(volume, vc: ViewContext, extended: bool = True) -> dict:
    """``extended`` adds the admin attributes of GET; POST/PUT views lack them."""
    view = {
        "attachments": _attachments(volume),
        "availability_zone": volume.availability_zone,
        "bootable": str(bool(volume.bootable)).lower(),
        "consistencygroup_id": None,
        "created_at": isotime(volume.created_at),
        "description": volume.display_description,
        "encrypted": bool(volume.encryption_key_id),
        "id": volume.id,
        "links": vc.links("volumes", volume.id),
        "metadata": volume.metadata_dict,
        "multiattach": bool(volume.multiattach),
        "name": volume.display_name,
        "replication_status": "disabled",
        "size": volume.size,
        "snapshot_id": volume.snapshot_id,
        "source_volid": volume.source_volid,
        "status": volume.status,
        "updated_at": isotime(volume.updated_at),
        "user_id": volume.user_id,
        "volume_type": DEFAULT_VOLUME_TYPE,
    }
    if vc.is_admin:
        view["migration_status"] = None
        if extended:
            view["os-vol-tenant-attr:tenant_id"] = volume.project_id
            view["os-vol-host-attr:host"] = _backend_host(volume.host)
            view["os-vol-mig-status-attr:migstat"] = None
            view["os-vol-mig-status-attr:name_id"] = None
    if vc.at_least(mv.GROUP_VOLUME):
        view["group_id"] = None
    if vc.is_admin and vc.at_least(mv.VOLUME_DETAIL_PROVIDER_ID):
        view["provider_id"] = None
    if vc.at_least(mv.VOLUME_SHARED_TARGETS_AND_SERVICE_FIELDS):
        view["service_uuid"] = None
        view["shared_targets"] = False   # file volumes never share a target
    if vc.is_admin and vc.at_least(mv.VOLUME_CLUSTER_NAME):
        view["cluster_name"] = None
    if vc.at_least(mv.VOLUME_TYPE_ID_IN_VOLUME_DETAIL):
        view["volume_type_id"] = volume.volume_type_id
    if vc.at_least(mv.ENCRYPTION_KEY_ID_IN_DETAILS) and volume.encryption_key_id not in (
            None, FIXED_KEY_ID):
        view["encryption_key_id"] = volume.encryption_key_id
    if vc.at_least(mv.USE_QUOTA):
        view["consumes_quota"] = True
    return view


def volume(row, vc: ViewContext, extended: bool = True) -> dict:
    return {"volume": volume_detail(row, vc, extended)}


def volumes(rows, vc: ViewContext, detail: bool, next_href: str | None = None,
            count: int | None = None) -> dict:
    items = [volume_detail(row, vc) if detail else volume_summary(row, vc) for row in rows]
    return collection("volumes", items, next_href, count)


# ---------------------------------------------------------------- snapshots

def _snapshot_metadata(snapshot) -> dict:
    try:
        value = json.loads(snapshot.metadata_json) if snapshot.metadata_json else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def snapshot_summary(snapshot) -> dict:
    return {
        "created_at": isotime(snapshot.created_at),
        "description": snapshot.display_description,
        "id": snapshot.id,
        "metadata": _snapshot_metadata(snapshot),
        "name": snapshot.display_name,
        "size": snapshot.volume_size,
        "status": snapshot.status,
        "updated_at": isotime(snapshot.updated_at),
        "volume_id": snapshot.volume_id,
    }


def snapshot_detail(snapshot, vc: ViewContext, extended: bool = True) -> dict:
    """``extended`` adds the os-extended-snapshot-attributes of GET views."""
    view = snapshot_summary(snapshot)
    if extended:
        view["os-extended-snapshot-attributes:progress"] = snapshot.progress or "0%"
        view["os-extended-snapshot-attributes:project_id"] = snapshot.project_id
    if vc.at_least(mv.GROUP_SNAPSHOTS):
        view["group_snapshot_id"] = None
    if vc.at_least(mv.SNAPSHOT_LIST_USER_ID):
        view["user_id"] = snapshot.user_id
    if vc.at_least(mv.USE_QUOTA):
        view["consumes_quota"] = True
    return view


def snapshot(row, vc: ViewContext, extended: bool = True) -> dict:
    return {"snapshot": snapshot_detail(row, vc, extended)}


def snapshots(rows, vc: ViewContext, detail: bool, next_href: str | None = None,
              count: int | None = None) -> dict:
    items = [snapshot_detail(row, vc) if detail else snapshot_summary(row) for row in rows]
    return collection("snapshots", items, next_href, count)
