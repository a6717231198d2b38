"""/v3[/{project_id}]/snapshots: create, list, show and delete snapshots."""

from __future__ import annotations

import pecan

from backupsvc import volumes
from backupsvc.api import schemas, views
from backupsvc.api.controllers import v3 as common

LIST_SPEC = common.ListSpec(
    filters=frozenset({"name", "status", "volume_id"}),
    like_filters=frozenset({"name", "status", "volume_id"}),
    sort_keys=frozenset({"id", "created_at", "updated_at", "status", "volume_id",
                         "volume_size", "user_id", "project_id", "display_name"}),
)


def _list(detail: bool) -> dict:
    ctx = common.context()
    query = common.parse_list_query(LIST_SPEC)
    rows = volumes.get_all_snapshots(ctx, **query.use_case_args())
    count = None
    if query.with_count:
        count = volumes.count_snapshots(ctx, filters=query.filters,
                                        all_tenants=query.all_tenants)
    return views.snapshots(rows, common.view_context(), detail,
                           common.next_href(query, rows), count)


class SnapshotController:
    def __init__(self, snapshot_id: str):
        self.snapshot_id = snapshot_id

    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET", "DELETE")

    @index.when(method="GET", template="json")
    def _show(self):
        snapshot = volumes.get_snapshot(common.context(), self.snapshot_id)
        return views.snapshot(snapshot, common.view_context())

    @index.when(method="DELETE", template="json")
    def _delete(self):
        volumes.delete_snapshot(common.context(), self.snapshot_id)
        return common.no_content()


class SnapshotsController:
    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET", "POST")

    @index.when(method="GET", template="json")
    def _index(self):
        return _list(detail=False)

    @index.when(method="POST", template="json")
    def _create(self):
        fields = common.read_body(schemas.snapshot_create)["snapshot"]
        snapshot = volumes.create_snapshot(
            common.context(), fields["volume_id"],
            name=schemas.clean_text(fields.get("name", fields.get("display_name"))),
            description=schemas.clean_text(
                fields.get("description", fields.get("display_description"))),
            force=schemas.to_bool(fields.get("force", False)),
            metadata=fields.get("metadata"))
        common.set_status(202)
        return views.snapshot(snapshot, common.view_context(), extended=False)

    @pecan.expose("json", generic=True)
    def detail(self):
        common.not_allowed("GET")

    @detail.when(method="GET", template="json")
    def _detail(self):
        return _list(detail=True)

    @pecan.expose()
    def _lookup(self, snapshot_id, *remainder):
        return SnapshotController(snapshot_id), remainder
