"""A real Keystone for the auth tests: SQLite, fernet tokens, served by uWSGI.

:class:`KeystoneServer` writes a ``keystone.conf`` under a directory of its
own, runs ``keystone-manage db_sync / fernet_setup / credential_setup /
bootstrap`` and serves ``keystone.wsgi.api:application`` with uWSGI on a free
loopback port. Its small identity client (plain ``requests`` against the v3
API, with the bootstrap admin's token) creates projects, users and role
assignments, and issues project-scoped tokens.

keystone and uwsgi are test-only; ``tools/install-keystone.sh VENV`` installs
them. When they are missing the test fails and names that script.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.functional import fixtures as fx

INSTALL_HINT = ("Keystone is not installed: run tools/install-keystone.sh %s "
                "(it installs keystone and uwsgi into the test venv)" % sys.prefix)

ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex[:12]


def find_command(name: str) -> str:
    """A console script of the venv running the tests, else one on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail("%s not found. %s" % (name, INSTALL_HINT), pytrace=False)
    return found


class KeystoneServer:
    def __init__(self, base: Path):
        self.base = base
        self.port = fx.free_port()
        self.url = "http://127.0.0.1:%d/v3" % self.port
        self.logs = base / "logs"
        for sub in ("fernet", "credential", "logs"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.conf = fx.write_ini(base / "keystone.conf", {
            "DEFAULT": {"log_file": self.logs / "keystone.log", "debug": "false"},
            "database": {"connection": "sqlite:///%s" % (base / "keystone.sqlite")},
            "token": {"provider": "fernet", "expiration": 7200},
            "fernet_tokens": {"key_repository": base / "fernet"},
            "fernet_receipts": {"key_repository": base / "fernet"},
            "credential": {"key_repository": base / "credential"},
        })
        self.proc: fx.ServiceProcess | None = None
        self._admin_token: str | None = None
        self.roles: dict[str, str] = {}
        self.startup_seconds = 0.0

    # --------------------------------------------------------------- life cycle
    def _manage(self, *args: str) -> None:
        argv = [find_command("keystone-manage"), "--config-file", str(self.conf), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            pytest.fail("%s exited with %d\nstdout:\n%s\nstderr:\n%s\nlog:\n%s" % (
                " ".join(argv), result.returncode, result.stdout[-3000:],
                result.stderr[-3000:], fx.tail(self.logs / "keystone.log")), pytrace=False)

    def setup(self) -> None:
        """Schema, keys and the bootstrap admin (db_sync and key setup run in parallel)."""
        user = ["--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
                "--keystone-group", grp.getgrgid(os.getgid()).gr_name]
        with ThreadPoolExecutor(3) as pool:
            jobs = [pool.submit(self._manage, "db_sync"),
                    pool.submit(self._manage, "fernet_setup", *user),
                    pool.submit(self._manage, "credential_setup", *user)]
            for job in jobs:
                job.result()
        self._manage("bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                     "--bootstrap-admin-url", self.url,
                     "--bootstrap-public-url", self.url,
                     "--bootstrap-internal-url", self.url,
                     "--bootstrap-region-id", "RegionOne")

    def start(self) -> KeystoneServer:
        argv = [find_command("uwsgi"), "--http-socket", "127.0.0.1:%d" % self.port,
                "--module", "keystone.wsgi.api:application",
                "--env", "OS_KEYSTONE_CONFIG_FILES=%s" % self.conf,
                "--virtualenv", sys.prefix,
                "--master", "--processes", "1", "--threads", "4",
                "--need-app", "--die-on-term", "--disable-logging",
                # uWSGI's http-socket closes every connection after one
                # response but answers HTTP/1.1 without saying so: a client
                # reusing the connection (keystonemiddleware does) then gets
                # "connection reset" and auth_token answers 503.
                "--add-header", "Connection: close"]
        self.proc = fx.ServiceProcess("keystone (uwsgi)", argv,
                                      log_path=self.logs / "keystone.log",
                                      out_path=self.logs / "uwsgi.out", cwd=self.base).start()

        def ready():
            if not self.proc.alive():
                pytest.fail("uwsgi serving Keystone exited\n" + self.proc.logs(),
                            pytrace=False)
            resp = requests.get(self.url, timeout=5)
            return resp.status_code == 200, "GET %s -> %d" % (self.url, resp.status_code)

        fx.wait_until(ready, "Keystone to answer GET %s" % self.url, timeout=60,
                      interval=0.2, extra=self.proc.logs)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=20)

    # --------------------------------------------------------------- identity API
    def token(self, user: str, password: str, project: str | None = None) -> tuple[str, dict]:
        """(token id, token body) for a user of the default domain, scoped to ``project``."""
        auth = {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}}}
        if project is not None:
            auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        resp = requests.post(self.url + "/auth/tokens", json={"auth": auth}, timeout=60)
        assert resp.status_code == 201, "token for %s: %d %s" % (user, resp.status_code,
                                                                 resp.text[:500])
        return resp.headers["X-Subject-Token"], resp.json()["token"]

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.token("admin", ADMIN_PASSWORD, "admin")[0]
        return self._admin_token

    def _call(self, method: str, path: str, body: dict | None = None,
              expect: int = 201) -> dict:
        resp = requests.request(method, self.url + path, json=body, timeout=60,
                                headers={"X-Auth-Token": self.admin_token()})
        assert resp.status_code == expect, "%s %s: %d %s" % (method, path, resp.status_code,
                                                             resp.text[:500])
        return resp.json() if resp.content else {}

    def role_id(self, name: str) -> str:
        if not self.roles:
            for role in self._call("GET", "/roles", expect=200)["roles"]:
                self.roles[role["name"]] = role["id"]
        return self.roles[name]

    def create_project(self, name: str) -> str:
        body = {"project": {"name": name, "domain_id": "default", "enabled": True}}
        return self._call("POST", "/projects", body)["project"]["id"]

    def create_user(self, name: str, password: str, project_id: str, role: str,
                    default_project: bool = True) -> str:
        """A user of the default domain with ``role`` on ``project_id``.

        Without a default project, a token asked for without a scope is unscoped.
        """
        body = {"user": {"name": name, "password": password, "domain_id": "default",
                         "enabled": True}}
        if default_project:
            body["user"]["default_project_id"] = project_id
        user_id = self._call("POST", "/users", body)["user"]["id"]
        self._call("PUT", "/projects/%s/users/%s/roles/%s"
                   % (project_id, user_id, self.role_id(role)), expect=204)
        return user_id

    def project_id(self, name: str) -> str:
        projects = self._call("GET", "/projects?name=%s" % name, expect=200)["projects"]
        assert len(projects) == 1, projects
        return projects[0]["id"]


def start_keystone(base: Path) -> KeystoneServer:
    find_command("keystone-manage")
    find_command("uwsgi")
    server = KeystoneServer(base)
    started = time.monotonic()
    server.setup()
    server.start()
    server.startup_seconds = time.monotonic() - started
    return server
