"""backup_swift_service_auth: a per_user store sends the service user's Keystone
token (X-Service-Token) with every request, streamed PUTs included.

A real Keystone issues the service user's token; a real Swift receives the
requests and its access log records the header each came with (tempauth
ignores it: whether a Swift honours service tokens is its configuration).
"""

from __future__ import annotations

import urllib.parse
import uuid
from types import SimpleNamespace

import pytest
import requests
from oslo_config import cfg

from backupsvc.conf import backup as backup_opts
from backupsvc.conf import service as service_opts
from backupsvc.conf import swift as swift_opts
from backupsvc.drivers.swift import SwiftConfigError, SwiftStore
from tests.functional import fixtures as fx

pytestmark = pytest.mark.functional

PASSWORD = "svc-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def keystone(tmp_path_factory):
    from tests.keystoneserver import start_keystone

    server = start_keystone(tmp_path_factory.mktemp("keystone-service-auth"))
    project = server.create_project("service")
    server.create_user("backup-service", PASSWORD, project, "member")
    yield server
    server.stop()


def per_user_conf(swift_server, keystone, tmp_path, **service_user) -> cfg.ConfigOpts:
    """per_user auth against ``swift_server``, the service user in a config file."""
    section = {"send_service_user_token": "true", "auth_type": "password",
               "auth_url": keystone.url, "username": "backup-service",
               "password": PASSWORD, "user_domain_id": "default",
               "project_name": "service", "project_domain_id": "default"}
    section.update(service_user)
    ini = fx.write_ini(tmp_path / "backupsvc.conf",
                       {"service_user": {k: v for k, v in section.items() if v is not None}})
    conf = cfg.ConfigOpts()
    for module in (backup_opts, service_opts, swift_opts):
        module.register_opts(conf)
    conf(args=["--config-file", str(ini)], default_config_files=[], default_config_dirs=[])
    for name, value in dict(
            backup_swift_auth="per_user", backup_swift_service_auth=True,
            backup_swift_url=swift_server.storage_url.replace("AUTH_test", "AUTH_"),
            backup_swift_retry_backoff=1, storage_availability_zone="az1").items():
        conf.set_override(name, value)
    return conf


def service_tokens_sent(swift_server, container: str) -> list[str]:
    """The X-Service-Token of each request the client made on ``container``, from the
    proxy's access log ("-" for a request without one; the proxy's own subrequests,
    whose agent is "Swift", are left out)."""
    tokens = []
    for line in (swift_server.logs / "proxy.log").read_text(errors="replace").splitlines():
        if "/%s" % container not in line or " python-swiftclient" not in line:
            continue
        found = [urllib.parse.unquote(part)
                 for part in line.split() if "X-Service-Token" in urllib.parse.unquote(part)]
        tokens.append(found[0].split("X-Service-Token:", 1)[1].split("\n")[0].strip()
                      if found else "-")
    return tokens


def test_every_request_carries_the_service_users_token(swift_server, keystone, tmp_path):
    context = SimpleNamespace(auth_token=swift_server.token(), project_id="test")
    store = SwiftStore.from_conf(per_user_conf(swift_server, keystone, tmp_path), context)
    store.put_buffer_size = 64 * 1024
    container = "svc-%s" % uuid.uuid4().hex[:10]
    store.ensure_container(container)
    store.put(container, "small", b"s" * 1000)               # one buffered PUT
    big = bytes(range(256)) * 4096                            # 1 MiB: a streamed PUT
    store.put(container, "big", big)
    assert store.get(container, "big") == big
    assert store.list(container, "") == ["big", "small"]
    store.delete(container, "small")

    sent = service_tokens_sent(swift_server, container)
    assert len(sent) >= 7, sent                   # HEAD/PUT container, 2 PUTs, GET, list...
    assert set(sent) != {"-"} and "-" not in sent, sent
    # The token is the service user's, as Keystone says.
    resp = requests.get(keystone.url + "/auth/tokens", timeout=30,
                        headers={"X-Auth-Token": keystone.admin_token(),
                                 "X-Subject-Token": sent[0]})
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["token"]["user"]["name"] == "backup-service"


def test_service_auth_without_send_service_user_token_is_refused(swift_server, keystone,
                                                                 tmp_path):
    conf = per_user_conf(swift_server, keystone, tmp_path, send_service_user_token="false")
    with pytest.raises(SwiftConfigError, match="send_service_user_token"):
        SwiftStore.from_conf(conf)


def test_service_auth_without_credentials_is_refused(swift_server, keystone, tmp_path):
    conf = per_user_conf(swift_server, keystone, tmp_path, auth_type=None)
    with pytest.raises(SwiftConfigError, match=r"credentials in \[service_user\]"):
        SwiftStore.from_conf(conf)


def test_a_wrong_service_password_fails_the_request_clearly(swift_server, keystone,
                                                            tmp_path):
    conf = per_user_conf(swift_server, keystone, tmp_path, password="wrong")
    store = SwiftStore.from_conf(conf, SimpleNamespace(auth_token=swift_server.token(),
                                                       project_id="test"))
    with pytest.raises(Exception, match="service user's token"):
        store.list("any", "")
