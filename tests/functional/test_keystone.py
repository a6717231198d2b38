"""auth_strategy = keystone against a real Keystone.

A real Keystone (SQLite, fernet, uWSGI; ``tests/keystoneserver.py``) and a
backupsvc API + worker of their own (the harness's Deployment, MariaDB and
RabbitMQ) with ``[keystone_authtoken]`` pointing at that Keystone. Users:

* alice: member of project A; bob: member of project B;
* rita: reader of project A; uma: member of A without a default project;
* admin: Keystone's bootstrap admin, working in the ``admin`` project.

Keystone and uWSGI are installed by ``tools/install-keystone.sh VENV``;
without them every test here fails and names that script.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
import requests
import webob
import webtest
from oslo_config import cfg

from backupsvc.api import auth
from tests import keystoneserver
from tests.functional import fixtures as fx

pytestmark = pytest.mark.functional

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
SERVICE_PASSWORD = "svc-" + uuid.uuid4().hex[:12]


class TokenApi(fx.Api):
    """The harness's client, authenticating with a Keystone token."""

    def __init__(self, base_url: str, project_id: str, token: str, user_id: str,
                 label: str):
        super().__init__(base_url, project=project_id, user=label)
        self.user_id = user_id
        self.token = token
        self.session.headers["X-Auth-Token"] = token

    def at(self, version: str) -> dict:
        return {"OpenStack-API-Version": "volume %s" % version}


class Stack:
    """Keystone, the backupsvc deployment behind it, and a client per user."""

    def __init__(self, keystone, deployment, project_ids: dict[str, str]):
        self.keystone = keystone
        self.deployment = deployment
        self.base_url = deployment.base_url
        self.project_ids = project_ids
        self.apis: dict[str, TokenApi] = {}

    def api(self, label: str, user: str, password: str, project: str) -> TokenApi:
        token, body = self.keystone.token(user, password, project)
        api = TokenApi(self.base_url, body["project"]["id"], token, body["user"]["id"], label)
        self.apis[label] = api
        return api


def _keystone_conf(dep: fx.Deployment, keystone) -> None:
    """Switch the harness's config to keystone and add [keystone_authtoken]."""
    text = dep.conf.read_text()
    assert "auth_strategy = noauth" in text, text
    section = fx.write_ini(dep.base / "keystone_authtoken.conf", {"keystone_authtoken": {
        "www_authenticate_uri": keystone.url,
        "auth_url": keystone.url,
        "auth_type": "password",
        "username": "backupsvc",
        "password": SERVICE_PASSWORD,
        "user_domain_id": "default",
        "project_name": "service",
        "project_domain_id": "default",
        "region_name": "RegionOne",
        "http_connect_timeout": 10,
    }})
    dep.conf.write_text(text.replace("auth_strategy = noauth", "auth_strategy = keystone")
                        + "\n" + section.read_text())


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    fx.require_commands("backupsvc-api", "backupsvc-worker", "backupsvc-manage")
    fx.require_rabbitmq()
    fx.mariadb_connect().close()
    base = tmp_path_factory.mktemp("keystone-auth")

    failed_before = request.session.testsfailed
    keystone = keystoneserver.start_keystone(base / "keystone")
    dep = None
    ok = False
    try:
        service_project = keystone.create_project("service")
        keystone.create_user("backupsvc", SERVICE_PASSWORD, service_project, "service")
        suffix = uuid.uuid4().hex[:6]
        names = {"A": "proj-a-" + suffix, "B": "proj-b-" + suffix}
        project_ids = {k: keystone.create_project(v) for k, v in names.items()}
        users = {"alice": ("A", "member"), "bob": ("B", "member"), "rita": ("A", "reader")}
        for user, (proj, role) in users.items():
            keystone.create_user(user, PASSWORD, project_ids[proj], role)
        # A member of A without a default project: unscoped tokens stay unscoped.
        keystone.create_user("uma", PASSWORD, project_ids["A"], "member",
                             default_project=False)

        dep = fx.Deployment(base / "backupsvc")
        _keystone_conf(dep, keystone)
        dep.create_database()
        dep.manage("db", "sync")
        dep.start_api()
        dep.start_worker()

        st = Stack(keystone, dep, project_ids)
        for user in users:
            proj = users[user][0]
            st.api(user, user, PASSWORD, names[proj])
        st.api("admin", "admin", keystoneserver.ADMIN_PASSWORD, "admin")
        yield st
        # Keep the logs and configs of a module with failures.
        ok = request.session.testsfailed == failed_before
    finally:
        if dep is not None:
            dep.shutdown()
            dep.drop_database()
        keystone.stop()
        if ok and not os.environ.get("BACKUPSVC_FUNC_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def alice_backup(stack):
    """Project A's volume and backup, made by alice (a member of A)."""
    alice = stack.apis["alice"]
    volume = alice.create_volume(size=1, name="alice-vol")
    backup = alice.create_backup(volume["id"], name="alice-backup")
    return volume, backup


@pytest.fixture(scope="module")
def bob_backup(stack):
    bob = stack.apis["bob"]
    volume = bob.create_volume(size=1, name="bob-vol")
    backup = bob.create_backup(volume["id"], name="bob-backup")
    return volume, backup


# ----------------------------------------------------------------- tokens


def test_version_discovery_needs_no_token(stack):
    root = requests.get(stack.base_url + "/", timeout=30)
    assert root.status_code == 300, fx.describe(root)
    assert root.json()["versions"][0]["version"].startswith("3.")
    for path in ("/v3", "/v3/"):
        resp = requests.get(stack.base_url + path, timeout=30)
        assert resp.status_code == 200, fx.describe(resp)
        assert resp.json()["versions"], fx.describe(resp)


@pytest.mark.parametrize("token", [None, "bogus-token", "admin:some-project",
                                   "gAAAAABnot-a-real-fernet-token"])
def test_missing_or_bad_token_is_401_in_cinder_shape(stack, token):
    project = stack.project_ids["A"]
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["X-Auth-Token"] = token
    # Forged identity headers change nothing without a valid token.
    headers.update({"X-User-Id": "admin", "X-Project-Id": project, "X-Roles": "admin"})
    for method, path in (("GET", "/v3/%s/backups" % project), ("GET", "/v3/backups/detail"),
                         ("POST", "/v3/%s/backups" % project)):
        resp = requests.request(method, stack.base_url + path, headers=headers, timeout=30,
                                json={"backup": {"volume_id": str(uuid.uuid4())}})
        message = fx.assert_fault(resp, 401, "unauthorized")
        assert "authentication" in message, message
        assert resp.headers.get("WWW-Authenticate") == \
            'Keystone uri="%s"' % stack.keystone.url, resp.headers
        assert resp.headers.get("X-OpenStack-Request-ID", "").startswith("req-"), resp.headers
        assert resp.headers.get("OpenStack-API-Version") == "volume 3.0", resp.headers


def test_a_valid_token_works_with_and_without_project_in_url(stack):
    alice = stack.apis["alice"]
    resp = alice.get("backups")
    assert resp.status_code == 200, fx.describe(resp)
    assert resp.headers["X-OpenStack-Request-ID"].startswith("req-")
    resp = requests.get(stack.base_url + "/v3/volumes/detail", timeout=30,
                        headers={"X-Auth-Token": alice.token})
    assert resp.status_code == 200, fx.describe(resp)


def test_url_project_must_be_the_tokens_project(stack):
    bob = stack.apis["bob"]
    resp = requests.get("%s/v3/%s/backups" % (stack.base_url, stack.project_ids["A"]),
                        headers={"X-Auth-Token": bob.token}, timeout=30)
    message = fx.assert_fault(resp, 400, "badRequest")
    assert stack.project_ids["B"] in message, message


def test_unscoped_token_is_refused(stack):
    token, body = stack.keystone.token("uma", PASSWORD, project=None)
    assert "project" not in body, body
    resp = requests.get("%s/v3/%s/backups" % (stack.base_url, stack.project_ids["A"]),
                        headers={"X-Auth-Token": token}, timeout=30)
    message = fx.assert_fault(resp, 403, "forbidden")
    assert "project-scoped" in message, message


# ---------------------------------------------------------- projects and roles


def test_member_creates_and_owns_volume_and_backup(stack, alice_backup):
    volume, backup = alice_backup
    alice, admin = stack.apis["alice"], stack.apis["admin"]
    assert backup["status"] == "available"
    assert [b["id"] for b in alice.backups()] == [backup["id"]]
    # Who made it, as Keystone knows them (admin view at 3.56).
    shown = admin.expect(admin.get("backups/%s" % backup["id"], headers=admin.at("3.56")),
                         200).json()["backup"]
    assert shown["user_id"] == alice.user_id
    assert shown["os-backup-project-attr:project_id"] == stack.project_ids["A"]
    # Members do not see the owner attributes.
    mine = alice.expect(alice.get("backups/%s" % backup["id"], headers=alice.at("3.56")),
                        200).json()["backup"]
    assert "user_id" not in mine and "os-backup-project-attr:project_id" not in mine, mine
    rows = stack.deployment.query("SELECT user_id, project_id FROM backups WHERE id=%s",
                                  (backup["id"],))
    assert rows == [{"user_id": alice.user_id, "project_id": stack.project_ids["A"]}]


def test_other_projects_member_gets_404_and_empty_lists(stack, alice_backup):
    volume, backup = alice_backup
    bob = stack.apis["bob"]
    for path in ("backups/%s" % backup["id"], "volumes/%s" % volume["id"]):
        fx.assert_fault(bob.get(path), 404, "itemNotFound")
    resp = bob.post("backups/%s/restore" % backup["id"], {"restore": {}})
    fx.assert_fault(resp, 404, "itemNotFound")
    resp = bob.delete("backups/%s" % backup["id"])
    fx.assert_fault(resp, 404, "itemNotFound")
    resp = bob.post("backups", {"backup": {"volume_id": volume["id"]}})
    fx.assert_fault(resp, 404, "itemNotFound")
    for query in ("backups", "backups/detail", "backups/detail?all_tenants=1",
                  "backups?name=alice-backup&all_tenants=True"):
        listed = bob.expect(bob.get(query), 200).json()["backups"]
        assert backup["id"] not in {b["id"] for b in listed}, (query, listed)
    volumes = bob.expect(bob.get("volumes/detail?all_tenants=1"), 200).json()["volumes"]
    assert volume["id"] not in {v["id"] for v in volumes}
    # The backup is untouched.
    assert stack.apis["alice"].backup(backup["id"])["status"] == "available"


def test_reader_can_list_and_show(stack, alice_backup):
    volume, backup = alice_backup
    rita = stack.apis["rita"]
    assert backup["id"] in {b["id"] for b in rita.backups()}
    assert rita.backup(backup["id"])["name"] == "alice-backup"
    assert rita.volume(volume["id"])["name"] == "alice-vol"


def test_reader_cannot_create_or_change(stack):
    """Cinder's defaults: reads need ``reader``, writes need ``member``."""
    alice, rita = stack.apis["alice"], stack.apis["rita"]
    volume = alice.create_volume(size=1, name="reader-test-vol")
    target = alice.create_volume(size=1, name="reader-test-target")
    backup = alice.create_backup(volume["id"], name="reader-test-backup")
    before = stack.deployment.backup_rows(stack.project_ids["A"])
    attempts = [
        ("POST backups", rita.post("backups", {"backup": {"volume_id": volume["id"]}})),
        ("POST volumes", rita.post("volumes", {"volume": {"size": 1}})),
        ("POST snapshots", rita.post("snapshots", {"snapshot": {"volume_id": volume["id"]}})),
        ("PUT backups/<id>", rita.request("PUT", "backups/%s" % backup["id"],
                                          {"backup": {"name": "renamed"}},
                                          headers=rita.at("3.9"))),
        ("POST restore", rita.post("backups/%s/restore" % backup["id"],
                                   {"restore": {"volume_id": target["id"]}})),
        ("DELETE backups/<id>", rita.delete("backups/%s" % backup["id"])),
        ("DELETE volumes/<id>", rita.delete("volumes/%s" % target["id"])),
    ]
    wrong = ["%s: %s" % (what, fx.describe(resp)) for what, resp in attempts
             if resp.status_code != 403]
    assert not wrong, ("a reader must get 403 on writes (backupsvc/policy.py gives "
                       "writes to any project role); got:\n%s" % "\n".join(wrong))
    for _, resp in attempts:
        fx.assert_fault(resp, 403, "forbidden")
    assert stack.deployment.backup_rows(stack.project_ids["A"]) == before
    assert alice.backup(backup["id"])["name"] == "reader-test-backup"
    assert alice.volume(target["id"])["status"] == "available"


def test_forged_role_headers_do_not_make_a_member_admin(stack, alice_backup):
    _, backup = alice_backup
    alice = stack.apis["alice"]
    forged = {"X-Roles": "admin", "X-Is-Admin-Project": "True",
              "X-Project-Id": stack.project_ids["B"], "X-User-Id": "admin"}
    resp = alice.post("backups/%s/action" % backup["id"],
                      {"os-reset_status": {"status": "error"}}, headers=forged)
    fx.assert_fault(resp, 403, "forbidden")
    assert alice.backup(backup["id"])["status"] == "available"


def test_admin_actions_are_admin_only(stack, alice_backup):
    _, backup = alice_backup
    alice, admin = stack.apis["alice"], stack.apis["admin"]
    path = "backups/%s/action" % backup["id"]

    fx.assert_fault(alice.post(path, {"os-reset_status": {"status": "error"}}), 403,
                    "forbidden")
    fx.assert_fault(alice.get("backups/%s/export_record" % backup["id"]), 403, "forbidden")
    fx.assert_fault(alice.post(path, {"os-force_delete": {}}), 403, "forbidden")
    fx.assert_fault(alice.post("backups/import_record", {"backup-record": {
        "backup_service": "cinder.backup.drivers.posix", "backup_url": "eyJ9"}}), 403,
        "forbidden")
    assert alice.backup(backup["id"])["status"] == "available"

    # The admin works from its own project and reaches A's backup by id.
    admin.expect(admin.post(path, {"os-reset_status": {"status": "error"}}), 202)
    assert alice.backup(backup["id"])["status"] == "error"
    admin.expect(admin.post(path, {"os-reset_status": {"status": "available"}}), 202)
    assert alice.wait_backup(backup["id"], "available")["status"] == "available"
    record = admin.expect(admin.get("backups/%s/export_record" % backup["id"]),
                          200).json()["backup-record"]
    assert record["backup_service"].startswith("cinder.backup.drivers.")
    assert record["backup_url"]


def test_all_tenants_is_for_admins_only(stack, alice_backup, bob_backup):
    a_id, b_id = alice_backup[1]["id"], bob_backup[1]["id"]
    admin, alice, bob = stack.apis["admin"], stack.apis["alice"], stack.apis["bob"]

    def ids(api, query):
        return {b["id"] for b in api.expect(api.get(query), 200).json()["backups"]}

    for query in ("backups/detail?all_tenants=1", "backups?all_tenants=true"):
        assert {a_id, b_id} <= ids(admin, query), query
    assert not {a_id, b_id} & ids(admin, "backups/detail"), \
        "without all_tenants an admin sees its own project only"
    # For members all_tenants is silently ignored: their own project only.
    for api, own, other in ((alice, a_id, b_id), (bob, b_id, a_id)):
        listed = ids(api, "backups/detail?all_tenants=1")
        assert own in listed and other not in listed, listed
        assert listed == ids(api, "backups/detail")
    # Project-less URLs (3.67) scope by the token the same way.
    resp = requests.get(stack.base_url + "/v3/backups/detail?all_tenants=1", timeout=30,
                        headers={"X-Auth-Token": admin.token})
    assert {a_id, b_id} <= {b["id"] for b in resp.json()["backups"]}, fx.describe(resp)
    resp = requests.get(stack.base_url + "/v3/backups/detail?all_tenants=1", timeout=30,
                        headers={"X-Auth-Token": bob.token})
    assert {b["id"] for b in resp.json()["backups"]} == ids(bob, "backups/detail"), \
        fx.describe(resp)


def test_member_restores_and_deletes_in_own_project(stack, bob_backup):
    volume, backup = bob_backup
    bob = stack.apis["bob"]
    result = bob.restore_and_wait(backup["id"], {"name": "bob-restored"})
    restored = bob.volume(result["volume_id"])
    assert restored["name"] == "bob-restored"
    rows = stack.deployment.query("SELECT project_id, user_id FROM volumes WHERE id=%s",
                                  (result["volume_id"],))
    assert rows == [{"project_id": stack.project_ids["B"], "user_id": bob.user_id}]


# --------------------------------------------- Keystone down (no processes)


def test_keystone_unreachable_is_503_in_cinder_shape(tmp_path):
    """auth_token's own 503 (identity unreachable) comes back as a Cinder fault."""
    dead = "http://127.0.0.1:%d/v3" % fx.free_port()
    conf_file = fx.write_ini(tmp_path / "auth.conf", {"keystone_authtoken": {
        "www_authenticate_uri": dead, "auth_url": dead, "auth_type": "password",
        "username": "backupsvc", "password": "x", "user_domain_id": "default",
        "project_name": "service", "project_domain_id": "default",
        "http_connect_timeout": 2, "http_request_max_retries": 0,
    }})
    conf = cfg.ConfigOpts()
    conf(["--config-file", str(conf_file)], project="backupsvc-test",
         default_config_files=[])
    reached = []

    @webob.dec.wsgify
    def inner(req):
        reached.append(req.headers.get("X-User-Id"))
        return webob.Response(json={"ok": True})

    app = webtest.TestApp(auth.keystone_pipeline(inner, conf))
    resp = app.get("/v3/p/backups", headers={"X-Auth-Token": "some-token"},
                   expect_errors=True)
    assert resp.status_int == 503, resp
    assert resp.json == {"serviceUnavailable": {
        "code": 503, "message": "The Keystone service is temporarily unavailable."}}
    resp = app.get("/v3/p/backups", expect_errors=True)
    assert resp.status_int == 401 and list(resp.json) == ["unauthorized"], resp
    assert resp.headers["WWW-Authenticate"] == 'Keystone uri="%s"' % dead
    assert reached == [], "nothing may reach the API without a valid token"
