"""/v3[/{project_id}]/os-volume-manage: adopt an existing file as a volume (admin)."""

from __future__ import annotations

import pecan

from backupsvc import volumes
from backupsvc.api import schemas, views
from backupsvc.api.controllers import v3 as common


class ManageController:
    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("POST")

    @index.when(method="POST", template="json")
    def _manage(self):
        fields = common.read_body(schemas.volume_manage)["volume"]
        volume = volumes.manage_existing(
            common.context(), host=fields.get("host"), ref=fields["ref"],
            name=schemas.clean_text(fields.get("name")),
            description=schemas.clean_text(fields.get("description")),
            metadata=fields.get("metadata"),
            availability_zone=fields.get("availability_zone"),
            bootable=schemas.to_bool(fields.get("bootable", False)))
        common.set_status(202)
        return views.volume(volume, common.view_context(), extended=False)
