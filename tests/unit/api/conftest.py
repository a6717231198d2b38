"""The real WSGI app over SQLite, with a live (fake) worker and fake:// messaging.

Casts go nowhere, so backups stay in the status the API left them in; tests
move them on with the admin os-reset_status action.
"""

import uuid

import pytest
import webtest
from oslo_config import cfg

from backupsvc import rpc
from backupsvc.api import app as api_app
from backupsvc.context import get_admin_context

CONF = cfg.CONF
WORKER_HOST = "api-test-worker"


class Client:
    """webtest with noauth headers; paths are relative to /v3/<project>."""

    def __init__(self, testapp: webtest.TestApp, project: str, user: str = "tester",
                 roles: str | None = None, version: str | None = None,
                 project_in_url: bool = True):
        self.app = testapp
        self.project = project
        self.user = user
        self.roles = roles
        self.version = version
        self.project_in_url = project_in_url

    def as_member(self, **kwargs) -> "Client":
        return self.clone(roles="member", **kwargs)

    def clone(self, **kwargs) -> "Client":
        values = dict(project=self.project, user=self.user, roles=self.roles,
                      version=self.version, project_in_url=self.project_in_url)
        values.update(kwargs)
        return Client(self.app, **values)

    def url(self, path: str) -> str:
        prefix = "/v3/%s" % self.project if self.project_in_url else "/v3"
        return prefix + ("/" + path.lstrip("/") if path else "")

    def headers(self, version=None, extra=None) -> dict:
        headers = {"X-Auth-Token": "%s:%s" % (self.user, self.project),
                   "Accept": "application/json"}
        version = version or self.version
        if version:
            headers["OpenStack-API-Version"] = "volume %s" % version
        if self.roles:
            headers["X-Roles"] = self.roles
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, body=None, status=None, version=None,
                headers=None, raw: bytes | None = None, content_type=None):
        kwargs = {"headers": self.headers(version, headers), "expect_errors": True}
        if raw is not None or body is not None:
            kwargs["body"] = raw if raw is not None else webtest.app.json.dumps(body).encode()
            kwargs["content_type"] = content_type or "application/json"
        response = self.app.request(self.url(path), method=method, **kwargs)
        if status is not None:
            assert response.status_int == status, (response.status, response.text)
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self.request("PUT", path, body=body, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    # --- fixtures built through the API itself

    def make_volume(self, size: int = 1, **fields) -> dict:
        body = {"volume": {"size": size, **fields}}
        return self.post("volumes", body, status=202).json["volume"]

    def make_backup(self, volume_id: str | None = None, status: str | None = "available",
                    **fields) -> dict:
        if volume_id is None:
            volume_id = self.make_volume()["id"]
        body = {"backup": {"volume_id": volume_id, **fields}}
        backup = self.post("backups", body, status=202).json["backup"]
        if status:
            self.reset_backup(backup["id"], status)
        return backup

    def reset_backup(self, backup_id: str, status: str) -> None:
        self.clone(roles=None).post("backups/%s/action" % backup_id,
                                    {"os-reset_status": {"status": status}}, status=202)


@pytest.fixture
def testapp(sqlite_db, tmp_path):
    CONF.set_override("transport_url", "fake://")
    CONF.set_override("auth_strategy", "noauth")
    CONF.set_override("state_path", str(tmp_path))
    rpc.cleanup()
    sqlite_db.service_heartbeat(get_admin_context(), WORKER_HOST, rpc.WORKER_BINARY,
                                rpc.BACKUP_TOPIC, "nova")
    yield webtest.TestApp(api_app.setup_app())
    # The database is shared with other test packages: leave no live worker.
    sqlite_db.service_mark_down(get_admin_context(), WORKER_HOST, rpc.WORKER_BINARY)
    rpc.cleanup()
    for name in ("transport_url", "auth_strategy", "state_path", "public_endpoint",
                 "osapi_max_limit", "osapi_max_request_body_size", "file_volume_manage_dirs"):
        CONF.clear_override(name)


@pytest.fixture
def project() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def admin(testapp, project) -> Client:
    """An admin working in a fresh project (noauth default roles)."""
    return Client(testapp, project)


@pytest.fixture
def member(testapp, project) -> Client:
    """A plain member of the same project."""
    return Client(testapp, project, user="member-user", roles="member")
