"""/v3[/{project_id}]/volumes: the minimal volume API backups need.

Volumes are the files this service backs up and restores into; the API is
Cinder's shape so that cinderclient, openstackclient and tempest can create,
find, attach and delete them.
"""

from __future__ import annotations

import pecan

from backupsvc import volumes
from backupsvc.api import errors, schemas, views
from backupsvc.api.controllers import v3 as common

LIST_SPEC = common.ListSpec(
    filters=frozenset({"name", "status", "availability_zone", "bootable", "size"}),
    like_filters=frozenset({"name", "status", "availability_zone"}),
    sort_keys=frozenset({"id", "created_at", "updated_at", "status", "size",
                         "availability_zone", "bootable", "user_id", "project_id", "display_name"}),
    converters={"bootable": common.bool_param, "size": common.int_filter},
)
ACTIONS = {
    "os-attach": schemas.volume_attach,
    "os-detach": schemas.volume_detach,
    "os-reset_status": schemas.volume_reset_status,
}
# Fields stock clients send (as null) that this service cannot honour when set.
_UNSUPPORTED = {
    "imageRef": "creating a volume from an image is not supported by this service",
    "consistencygroup_id": "consistency groups are not supported by this service",
    "group_id": "generic volume groups are not supported by this service",
}


def _text(fields: dict, key: str, legacy: str):
    # v2 clients may still say display_name / display_description.
    return schemas.clean_text(fields.get(key, fields.get(legacy)))


def _size(value):
    return int(value) if isinstance(value, str) else value


def _list(detail: bool) -> dict:
    ctx = common.context()
    query = common.parse_list_query(LIST_SPEC)
    rows = volumes.get_all_volumes(ctx, **query.use_case_args())
    count = None
    if query.with_count:
        count = volumes.count_volumes(ctx, filters=query.filters,
                                      all_tenants=query.all_tenants)
    return views.volumes(rows, common.view_context(), detail,
                         common.next_href(query, rows), count)


class VolumeController:
    def __init__(self, volume_id: str):
        self.volume_id = volume_id

    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET", "PUT", "DELETE")

    @index.when(method="GET", template="json")
    def _show(self):
        volume = volumes.get_volume(common.context(), self.volume_id)
        return views.volume(volume, common.view_context())

    @index.when(method="PUT", template="json")
    def _update(self):
        fields = common.read_body(schemas.volume_update)["volume"]
        changes = {}
        for key, legacy in (("name", "display_name"), ("description", "display_description")):
            if key in fields or legacy in fields:
                changes[key] = _text(fields, key, legacy)
        volume = volumes.update_volume(common.context(), self.volume_id,
                                       metadata=fields.get("metadata"), **changes)
        return views.volume(volume, common.view_context(), extended=False)

    @index.when(method="DELETE", template="json")
    def _delete(self):
        raw = pecan.request.GET.get("cascade")
        cascade = common.bool_param("cascade", raw) if raw is not None else False
        volumes.delete_volume(common.context(), self.volume_id, cascade=cascade)
        return common.no_content()

    @pecan.expose("json", generic=True)
    def action(self):
        common.not_allowed("POST")

    @action.when(method="POST", template="json")
    def _action(self):
        name, args = common.read_action(ACTIONS)
        ctx = common.context()
        if name == "os-attach":
            if not args.get("instance_uuid") and not args.get("host_name"):
                raise errors.bad_request(
                    "Invalid input for field/attribute os-attach. Value: %s. One of "
                    "instance_uuid or host_name is required." % args)
            volumes.attach(ctx, self.volume_id, instance_uuid=args.get("instance_uuid"),
                           mountpoint=args["mountpoint"], host_name=args.get("host_name"))
        elif name == "os-detach":
            volumes.detach(ctx, self.volume_id,
                           attachment_id=(args or {}).get("attachment_id"))
        else:
            volumes.reset_volume_status(ctx, self.volume_id, status=args["status"],
                                        attach_status=args.get("attach_status"))
        return common.no_content()


class VolumesController:
    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET", "POST")

    @index.when(method="GET", template="json")
    def _index(self):
        return _list(detail=False)

    @index.when(method="POST", template="json")
    def _create(self):
        fields = common.read_body(schemas.volume_create(common.api_version()))["volume"]
        for key, reason in _UNSUPPORTED.items():
            if fields.get(key):
                raise errors.bad_request("Invalid input for field/attribute %s. Value: %s. "
                                         "%s." % (key, fields[key], reason.capitalize()))
        if schemas.to_bool(fields.get("multiattach", False)):
            raise errors.bad_request("Invalid input for field/attribute multiattach. Value: "
                                     "%s. Multiattach volumes are not supported by this "
                                     "service." % fields["multiattach"])
        volume = volumes.create_volume(
            common.context(), _size(fields.get("size")),
            name=_text(fields, "name", "display_name"),
            description=_text(fields, "description", "display_description"),
            metadata=fields.get("metadata"),
            availability_zone=fields.get("availability_zone"),
            snapshot_id=fields.get("snapshot_id"),
            source_volid=fields.get("source_volid"),
            backup_id=fields.get("backup_id"),
            volume_type=fields.get("volume_type"))
        common.set_status(202)
        return views.volume(volume, common.view_context(), extended=False)

    @pecan.expose("json", generic=True)
    def detail(self):
        common.not_allowed("GET")

    @detail.when(method="GET", template="json")
    def _detail(self):
        return _list(detail=True)

    @pecan.expose()
    def _lookup(self, volume_id, *remainder):
        return VolumeController(volume_id), remainder
