"""Discovery, microversion negotiation, request ids, auth and URL forms."""

import io
import logging
import re
import subprocess
import sys
import textwrap

import pytest
import webtest

from backupsvc import backups
from backupsvc.api import app as api_app
from backupsvc.api import microversions as mv

REQ_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VERSION_KEYS = {"id", "status", "version", "min_version", "updated", "links", "media-types"}


# ---------------------------------------------------------------- discovery

def test_root_is_300_with_the_seven_keys(testapp):
    response = testapp.get("/", status=300)
    (entry,) = response.json["versions"]
    assert set(entry) == VERSION_KEYS
    assert (entry["id"], entry["status"]) == ("v3.0", "CURRENT")
    assert (entry["min_version"], entry["version"]) == ("3.0", "3.71")
    assert {"href": "http://localhost/v3/", "rel": "self"} in entry["links"]
    assert response.content_type == "application/json"


@pytest.mark.parametrize("path", ["/v3", "/v3/"])
def test_v3_is_200_with_the_same_list(testapp, path):
    response = testapp.get(path, status=200)
    assert response.json == testapp.get("/", status=300).json


def test_discovery_needs_no_credentials_and_project_root_answers(admin):
    assert admin.get("", status=200).json["versions"][0]["id"] == "v3.0"


def test_public_endpoint_rewrites_links(testapp, admin):
    api_app.CONF.set_override("public_endpoint", "https://api.example.com:8776/")
    entry = testapp.get("/", status=300).json["versions"][0]
    assert {"href": "https://api.example.com:8776/v3/", "rel": "self"} in entry["links"]
    volume = admin.make_volume()
    assert volume["links"][0]["href"].startswith("https://api.example.com:8776/v3/")


def test_wrong_method_on_discovery_is_405_badmethod(testapp):
    response = testapp.post("/", status=405)
    assert response.json["badMethod"]["code"] == 405
    assert response.headers["Allow"] == "GET"


# ------------------------------------------------------------ microversions

def test_missing_header_means_3_0_and_is_echoed(admin):
    response = admin.get("backups", status=200)
    assert response.headers["OpenStack-API-Version"] == "volume 3.0"
    assert response.headers["Vary"] == "OpenStack-API-Version"


@pytest.mark.parametrize("sent,echoed", [("3.9", "3.9"), ("3.71", "3.71"),
                                         ("latest", "3.71"), ("3.0", "3.0")])
def test_requested_version_is_echoed(admin, sent, echoed):
    response = admin.get("backups", version=sent, status=200)
    assert response.headers["OpenStack-API-Version"] == "volume " + echoed


def test_other_services_in_the_header_are_ignored(admin):
    response = admin.get("backups", headers={"OpenStack-API-Version":
                                             "compute 2.1, volume 3.43"}, status=200)
    assert response.headers["OpenStack-API-Version"] == "volume 3.43"


@pytest.mark.parametrize("bad", ["3", "3.x", "v3.1", "3.01", "three"])
def test_malformed_version_is_400_with_headers(admin, bad):
    response = admin.get("backups", version=bad, status=400)
    assert "is of invalid format" in response.json["badRequest"]["message"]
    assert response.headers["Vary"] == "OpenStack-API-Version"
    assert response.headers["OpenStack-API-Version"] == "volume 3.0"
    assert REQ_ID.match(response.headers["X-OpenStack-Request-ID"])


@pytest.mark.parametrize("bad", ["3.72", "2.0", "4.0"])
def test_out_of_range_version_is_406(admin, bad):
    response = admin.get("backups", version=bad, status=406)
    fault = response.json["computeFault"]
    assert fault["code"] == 406 and "Minimum is 3.0 and maximum is 3.71" in fault["message"]
    assert response.headers["Vary"] == "OpenStack-API-Version"


def test_errors_echo_the_requested_version(admin):
    response = admin.get("backups/%s" % ("0" * 32), version="3.43", status=404)
    assert response.headers["OpenStack-API-Version"] == "volume 3.43"
    assert response.headers["Vary"] == "OpenStack-API-Version"


def test_version_parsing_helpers():
    assert mv.parse(None) == mv.BASE_VERSION
    assert mv.parse("volume 3.10") > mv.parse("volume 3.9")
    assert str(mv.parse("VOLUME 3.64")) == "3.64"
    assert mv.at_least(mv.parse("volume 3.43"), mv.BACKUP_METADATA)
    assert not mv.at_least(mv.parse("volume 3.42"), mv.BACKUP_METADATA)
    with pytest.raises(mv.MalformedVersion):
        mv.parse("volume 3.")
    with pytest.raises(mv.UnsupportedVersion):
        mv.parse("volume 3.99")


# -------------------------------------------------------------- request ids

def test_request_id_on_success_and_on_routing_errors(testapp):
    ok = testapp.get("/v3", status=200)
    missing = testapp.get("/v3/b/nowhere/at/all", status=404, headers={"X-Auth-Token": "a:b"})
    assert REQ_ID.match(ok.headers["X-OpenStack-Request-ID"])
    assert REQ_ID.match(missing.headers["X-OpenStack-Request-ID"])
    assert ok.headers["X-OpenStack-Request-ID"] != missing.headers["X-OpenStack-Request-ID"]
    assert missing.json == {"itemNotFound": {"code": 404,
                                             "message": "The resource could not be found."}}


def test_unexpected_exception_is_a_logged_500(admin, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(backups, "get_all", explode)
    with caplog.at_level(logging.ERROR):
        response = admin.get("backups", status=500)
    fault = response.json["computeFault"]
    assert fault["code"] == 500 and "secret" not in fault["message"]
    request_id = response.headers["X-OpenStack-Request-ID"]
    assert any(request_id in record.getMessage() for record in caplog.records)
    assert response.headers["OpenStack-API-Version"] == "volume 3.0"


def test_body_over_the_limit_is_413_overlimit(admin):
    api_app.CONF.set_override("osapi_max_request_body_size", 64)
    response = admin.post("backups", raw=b"{" + b" " * 100 + b"}", status=413)
    fault = response.json["overLimit"]
    assert fault["code"] == 413 and fault["retryAfter"] == "0"
    assert "limit is 64 bytes" in fault["message"]
    assert response.headers["Retry-After"] == "0"
    assert response.headers["Vary"] == "OpenStack-API-Version"
    assert REQ_ID.match(response.headers["X-OpenStack-Request-ID"])


def test_chunked_body_over_the_limit_is_413(testapp, admin):
    api_app.CONF.set_override("osapi_max_request_body_size", 64)
    environ = {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_TYPE": "application/json",
               "wsgi.input": io.BytesIO(b"{" + b" " * 100 + b"}")}
    request = webtest.TestRequest.blank(admin.url("backups"), environ, method="POST",
                                        headers=admin.headers())
    request.environ.pop("CONTENT_LENGTH", None)
    response = testapp.do_request(request, status=413)
    assert response.json["overLimit"]["code"] == 413


# ------------------------------------------------------------ auth and URLs

def test_token_user_project(admin, project):
    volume = admin.make_volume()
    assert volume["user_id"] == "tester"
    shown = admin.get("volumes/%s" % volume["id"], status=200).json["volume"]
    assert shown["os-vol-tenant-attr:tenant_id"] == project


def test_user_and_project_headers(testapp, project):
    headers = {"x-user-id": "hdr-user", "x-project-id": project}
    body = {"volume": {"size": 1}}
    response = testapp.post_json("/v3/volumes", body, headers=headers, status=202)
    assert response.json["volume"]["user_id"] == "hdr-user"
    listed = testapp.get("/v3/%s/volumes" % project, headers=headers, status=200)
    assert [v["id"] for v in listed.json["volumes"]] == [response.json["volume"]["id"]]


def test_opaque_token_takes_the_project_from_the_url(testapp, project):
    headers = {"X-Auth-Token": "notused"}
    created = testapp.post_json("/v3/%s/volumes" % project, {"volume": {"size": 1}},
                                headers=headers, status=202).json["volume"]
    assert created["user_id"] == "notused"
    shown = testapp.get("/v3/%s/volumes/%s" % (project, created["id"]), headers=headers)
    assert shown.json["volume"]["os-vol-tenant-attr:tenant_id"] == project


def test_url_project_must_match_the_token(admin, project):
    response = admin.clone(project="other").get(
        "backups", headers={"X-Auth-Token": "tester:%s" % project}, status=400)
    assert response.json["badRequest"]["message"] == (
        "Malformed request URL: URL's project_id 'other' doesn't match Context's "
        "project_id '%s'" % project)


def test_project_less_urls_and_their_links(admin, project):
    flat = admin.clone(project_in_url=False)
    volume = flat.make_volume()
    assert volume["links"] == [
        {"href": "http://localhost/v3/volumes/%s" % volume["id"], "rel": "self"},
        {"href": "http://localhost/volumes/%s" % volume["id"], "rel": "bookmark"}]
    # The same row through the project URL links with the project.
    shown = admin.get("volumes/%s" % volume["id"], status=200).json["volume"]
    assert shown["links"][0]["href"] == (
        "http://localhost/v3/%s/volumes/%s" % (project, volume["id"]))
    assert [v["id"] for v in flat.get("volumes", status=200).json["volumes"]] == [volume["id"]]


def test_roles_header_makes_a_member(admin, member):
    volume = admin.make_volume()
    shown = member.get("volumes/%s" % volume["id"], status=200).json["volume"]
    assert "os-vol-tenant-attr:tenant_id" not in shown


def test_wsgi_module_builds_the_application(tmp_path):
    conf = tmp_path / "backupsvc.conf"
    conf.write_text("[DEFAULT]\nauth_strategy = noauth\nosapi_max_limit = 7\n")
    script = textwrap.dedent("""
        from backupsvc.wsgi import api
        from oslo_config import cfg
        assert callable(api.application)
        assert cfg.CONF.osapi_max_limit == 7, cfg.CONF.osapi_max_limit
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"BACKUPSVC_CONFIG_FILE": str(conf), "PATH": "/usr/bin"},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok"
