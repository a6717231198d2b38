"""Version discovery and the v3 router.

``GET /`` answers 300 with the versions document (what python-cinderclient
fetches first); ``GET /v3`` and ``GET /v3/`` answer 200 with the same list
(what keystoneauth / openstackclient fetch). Under ``/v3`` the first segment
is either a collection (project-less URLs, Cinder 3.67+) or a project id.
"""

from __future__ import annotations

import pecan

from backupsvc.api import errors, views
from backupsvc.api.controllers import v3 as common
from backupsvc.api.controllers.v3 import backups, manage, snapshots, volumes

MISMATCH = ("Malformed request URL: URL's project_id '%s' doesn't match Context's "
            "project_id '%s'")


class ProjectController:
    """The collections, reached as /v3/<collection> or /v3/<project>/<collection>."""

    backups = backups.BackupsController()
    volumes = volumes.VolumesController()
    snapshots = snapshots.SnapshotsController()

    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET")

    @index.when(method="GET", template="json")
    def _get(self):
        # openstackclient falls back to GET /v3/<project> for discovery.
        return views.versions(common.base_url())


pecan.route(ProjectController, "os-volume-manage", manage.ManageController())

COLLECTIONS = frozenset({"backups", "volumes", "snapshots", "os-volume-manage"})
_PROJECT_ROOT = ProjectController()


class V3Controller:
    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET")

    @index.when(method="GET", template="json")
    def _get(self):
        return views.versions(common.base_url())

    @pecan.expose()
    def _lookup(self, segment, *remainder):
        if segment in COLLECTIONS:
            return _PROJECT_ROOT, (segment, *remainder)
        _adopt_url_project(segment)
        return _PROJECT_ROOT, remainder


def _adopt_url_project(project_id: str) -> None:
    ctx = common.context()
    if ctx.project_id is None:
        # noauth with a token that names no project (openstackclient's
        # "notused"): the URL says which project the caller works in.
        ctx.project_id = project_id
    elif ctx.project_id != project_id:
        raise errors.bad_request(MISMATCH % (project_id, ctx.project_id))
    pecan.request.environ[common.ENV_URL_PROJECT] = project_id


class RootController:
    v3 = V3Controller()

    @pecan.expose("json", generic=True)
    def index(self):
        common.not_allowed("GET")

    @index.when(method="GET", template="json")
    def _get(self):
        # Cinder answers 300 Multiple Choices here; tempest's schema wants it.
        common.set_status(300)
        return views.versions(common.base_url())
