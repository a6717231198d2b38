"""/v3[/{project_id}]/backups: Cinder's backup API.

Each handler validates, calls one use case in backupsvc.backups and renders
a view; the use cases authorize, check statuses and cast to the workers.
"""

from __future__ import annotations

import pecan

from backupsvc import backups, policy
from backupsvc.api import microversions as mv
from backupsvc.api import schemas, views
from backupsvc.api.controllers import v3 as common

LIST_SPEC = common.ListSpec(
    filters=frozenset({"name", "status", "volume_id"}),
    like_filters=frozenset({"name", "status", "volume_id"}),
    sort_keys=frozenset({"id", "created_at", "updated_at", "status", "size", "object_count",
                         "volume_id", "snapshot_id", "container", "availability_zone",
                         "data_timestamp", "user_id", "project_id",
                         # cinderclient sends the column name for "name"
                         "display_name"}),
    name_sort_since=mv.BACKUP_SORT_NAME,
)
ACTIONS = {
    "os-reset_status": schemas.backup_reset_status,
    "os-force_delete": None,     # any value, e.g. {} or null
}


def _view_context(backup=None):
    ctx = common.context()
    target = {"project_id": backup.project_id} if backup is not None else None
    return common.view_context(
        show_backup_owner=policy.check(ctx, "backup:backup_project_attribute", target))


def _list(detail: bool) -> dict:
    ctx = common.context()
    query = common.parse_list_query(LIST_SPEC)
    rows = backups.get_all(ctx, **query.use_case_args())
    count = None
    if query.with_count:
        count = backups.count(ctx, filters=query.filters, all_tenants=query.all_tenants)
    vc = _view_context() if detail else common.view_context()
    return views.backups(rows, vc, detail, common.next_href(query, rows), count)


class BackupController:
    """One backup: /backups/{id}[/restore|/export_record|/action]."""

    def __init__(self, backup_id: str):
        self.backup_id = backup_id

    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET", "PUT", "DELETE")

    @index.when(method="GET", template="json")
    def _show(self):
        backup = backups.get(common.context(), self.backup_id)
        return views.backup(backup, _view_context(backup), detail=True)

    @index.when(method="PUT", template="json")
    def _update(self):
        common.require_version(mv.BACKUP_UPDATE)
        body = common.read_body(schemas.backup_update(common.api_version()))
        fields = body["backup"] or {}
        changes = {key: schemas.clean_text(fields[key])
                   for key in ("name", "description") if key in fields}
        backup = backups.update(common.context(), self.backup_id,
                                metadata=fields.get("metadata"), **changes)
        return views.backup(backup, common.view_context())

    @index.when(method="DELETE", template="json")
    def _delete(self):
        backups.delete(common.context(), self.backup_id)
        return common.no_content()

    @pecan.expose("json", generic=True)
    def restore(self):
        common.not_allowed("POST")

    @restore.when(method="POST", template="json")
    def _restore(self):
        fields = common.read_body(schemas.backup_restore)["restore"] or {}
        result = backups.restore(common.context(), self.backup_id,
                                 volume_id=fields.get("volume_id"),
                                 name=schemas.clean_text(fields.get("name")))
        common.set_status(202)
        return views.restore(result)

    @pecan.expose("json", generic=True)
    def export_record(self):
        common.not_allowed("GET")

    @export_record.when(method="GET", template="json")
    def _export(self):
        return views.export_record(backups.export_record(common.context(), self.backup_id))

    @pecan.expose("json", generic=True)
    def action(self):
        common.not_allowed("POST")

    @action.when(method="POST", template="json")
    def _action(self):
        name, argument = common.read_action(ACTIONS)
        ctx = common.context()
        if name == "os-reset_status":
            backups.reset_status(ctx, self.backup_id, argument["status"])
        else:
            backups.delete(ctx, self.backup_id, force=True)
        return common.no_content()


class BackupsController:
    """The collection: /backups, /backups/detail, /backups/import_record."""

    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET", "POST")

    @index.when(method="GET", template="json")
    def _index(self):
        return _list(detail=False)

    @index.when(method="POST", template="json")
    def _create(self):
        body = common.read_body(schemas.backup_create(common.api_version()))
        fields = body["backup"]
        backup = backups.create(
            common.context(), fields["volume_id"],
            name=schemas.clean_text(fields.get("name")),
            description=schemas.clean_text(fields.get("description")),
            container=fields.get("container"),
            incremental=schemas.to_bool(fields.get("incremental", False)),
            force=schemas.to_bool(fields.get("force", False)),
            snapshot_id=fields.get("snapshot_id"),
            metadata=fields.get("metadata"),
            availability_zone=fields.get("availability_zone"))
        common.set_status(202)
        return views.backup(backup, common.view_context())

    @pecan.expose("json", generic=True)
    def detail(self):
        common.not_allowed("GET")

    @detail.when(method="GET", template="json")
    def _detail(self):
        return _list(detail=True)

    @pecan.expose("json", generic=True)
    def import_record(self):
        common.not_allowed("POST")

    @import_record.when(method="POST", template="json")
    def _import(self):
        record = common.read_body(schemas.backup_import)["backup-record"]
        backup = backups.import_record(common.context(), record["backup_service"],
                                       record["backup_url"])
        common.set_status(201)
        return views.backup(backup, common.view_context())

    @pecan.expose()
    def _lookup(self, backup_id, *remainder):
        return BackupController(backup_id), remainder
