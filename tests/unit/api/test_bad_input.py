"""Every POST and PUT refuses bad bodies with a 400 (or 415) that says what was wrong."""

import pytest

UUID = "c8a3b7a2-2d3e-4c15-9bb2-70c8a7d3c1a0"


@pytest.fixture
def ids(admin):
    volume = admin.make_volume()
    backup = admin.make_backup()
    return {"volume": volume["id"], "backup": backup["id"]}


# (method, path, version, top-level key, a valid inner body, a field and a wrongly typed value)
ENDPOINTS = [
    ("POST", "backups", None, "backup", {"volume_id": "{volume}"}, "incremental", "maybe"),
    ("PUT", "backups/{backup}", "3.9", "backup", {"name": "n"}, "name", 5),
    ("POST", "backups/{backup}/restore", None, "restore", {"name": "n"}, "volume_id", 7),
    ("POST", "backups/import_record", None, "backup-record",
     {"backup_service": "s", "backup_url": "u"}, "backup_url", ["u"]),
    ("POST", "volumes", None, "volume", {"size": 1}, "size", "big"),
    ("PUT", "volumes/{volume}", None, "volume", {"name": "n"}, "metadata", "k=v"),
    ("POST", "snapshots", None, "snapshot", {"volume_id": "{volume}"}, "force", "perhaps"),
    ("POST", "os-volume-manage", None, "volume", {"ref": {"source-name": "/x"}}, "ref", "x"),
    ("POST", "os-volume-manage", None, "volume", {"ref": {}}, "source-name", 5),
]
ACTIONS = [
    ("backups/{backup}/action", "os-reset_status", {"status": "error"}, "status", 1),
    ("volumes/{volume}/action", "os-attach", {"mountpoint": "/dev/vdb", "host_name": "h"},
     "instance_uuid", "not-a-uuid"),
    ("volumes/{volume}/action", "os-reset_status", {"status": "error"}, "attach_status",
     "glued"),
]
ALL_PATHS = [(m, p, v) for m, p, v, *_ in ENDPOINTS] + [
    ("POST", p, None) for p, *_ in ACTIONS]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _message(response, code=400):
    name = {400: "badRequest", 415: "badMediaType"}[code]
    assert set(response.json) == {name}, response.json
    assert response.json[name]["code"] == code
    return response.json[name]["message"]


@pytest.mark.parametrize("method,path,version", ALL_PATHS)
def test_invalid_json(admin, ids, method, path, version):
    response = admin.request(method, _fill(path, ids), raw=b'{"oops": ', version=version,
                             status=400)
    assert _message(response).startswith("Malformed request body: ")


@pytest.mark.parametrize("method,path,version", ALL_PATHS)
def test_body_that_is_not_an_object(admin, ids, method, path, version):
    response = admin.request(method, _fill(path, ids), raw=b"[1, 2]", version=version,
                             status=400)
    assert _message(response) == (
        "Malformed request body: expected a JSON object, got a JSON array.")


@pytest.mark.parametrize("method,path,version", ALL_PATHS)
def test_empty_body(admin, ids, method, path, version):
    response = admin.request(method, _fill(path, ids), raw=b"", version=version, status=400)
    assert "the body is empty" in _message(response)


@pytest.mark.parametrize("method,path,version", ALL_PATHS)
def test_non_json_content_type_is_415(admin, ids, method, path, version):
    response = admin.request(method, _fill(path, ids), raw=b"volume_id=1", version=version,
                             content_type="application/x-www-form-urlencoded", status=415)
    assert "Invalid content type application/x-www-form-urlencoded" in _message(response, 415)


@pytest.mark.parametrize("method,path,version,key,inner,field,wrong", ENDPOINTS)
def test_missing_top_level_key(admin, ids, method, path, version, key, inner, field, wrong):
    response = admin.request(method, _fill(path, ids), body={}, version=version, status=400)
    assert _message(response) == "'%s' is a required property" % key


@pytest.mark.parametrize("method,path,version,key,inner,field,wrong", ENDPOINTS)
def test_unknown_field(admin, ids, method, path, version, key, inner, field, wrong):
    body = {key: dict(_fill(inner, ids), foo=1)}
    response = admin.request(method, _fill(path, ids), body=body, version=version, status=400)
    message = _message(response)
    assert message.startswith("Invalid input for field/attribute %s. Value: " % key)
    assert message.endswith("Additional properties are not allowed ('foo' was unexpected)")


@pytest.mark.parametrize("method,path,version,key,inner,field,wrong", ENDPOINTS)
def test_unknown_top_level_key(admin, ids, method, path, version, key, inner, field, wrong):
    body = {key: _fill(inner, ids), "extra": {}}
    response = admin.request(method, _fill(path, ids), body=body, version=version, status=400)
    assert _message(response) == "Additional properties are not allowed ('extra' was unexpected)"


@pytest.mark.parametrize("method,path,version,key,inner,field,wrong", ENDPOINTS)
def test_wrong_type(admin, ids, method, path, version, key, inner, field, wrong):
    inner = _fill(inner, ids)
    if field == "source-name":
        body = {key: dict(inner, ref={field: wrong})}
    else:
        body = {key: dict(inner, **{field: wrong})}
    response = admin.request(method, _fill(path, ids), body=body, version=version, status=400)
    assert _message(response).startswith(
        "Invalid input for field/attribute %s. Value: %s. " % (field, wrong))


@pytest.mark.parametrize("path,action,args,field,wrong", ACTIONS)
def test_action_arguments_are_validated(admin, ids, path, action, args, field, wrong):
    url = _fill(path, ids)
    unknown = admin.post(url, {action: dict(args, foo=1)}, status=400)
    assert "('foo' was unexpected)" in _message(unknown)
    typed = admin.post(url, {action: dict(args, **{field: wrong})}, status=400)
    assert _message(typed).startswith("Invalid input for field/attribute %s. Value: %s. "
                                      % (field, wrong))
    assert _message(admin.post(url, {"os-nothing": {}}, status=400)) == (
        "There is no such action: os-nothing")


def test_non_uuid_volume_id(admin):
    response = admin.post("backups", {"backup": {"volume_id": "my-volume"}}, status=400)
    assert _message(response) == ("Invalid input for field/attribute volume_id. Value: "
                                  "my-volume. 'my-volume' is not a 'uuid'")


def test_hyphenless_uuid_is_accepted_like_cinder(admin):
    # Cinder's uuid format accepts any form uuid.UUID() parses; the id is then unknown.
    response = admin.post("backups", {"backup": {"volume_id": UUID.replace("-", "")}},
                          status=404)
    assert "could not be found" in response.json["itemNotFound"]["message"]


@pytest.mark.parametrize("field", ["name", "description", "container"])
def test_strings_too_long(admin, ids, field):
    body = {"backup": {"volume_id": ids["volume"], field: "x" * 256}}
    message = _message(admin.post("backups", body, status=400))
    assert message.startswith("Invalid input for field/attribute %s." % field)
    assert message.endswith("is too long")


@pytest.mark.parametrize("metadata,fragment", [
    ({"k": 1}, "1 is not of type 'string'"),
    ({"bad key!": "v"}, "'bad key!' does not match any of the regexes"),
    ({"k": "v" * 256}, "is too long"),
    ("k=v", "'k=v' is not of type 'object', 'null'"),
])
def test_bad_metadata(admin, ids, metadata, fragment):
    body = {"backup": {"volume_id": ids["volume"], "metadata": metadata}}
    response = admin.post("backups", body, version="3.43", status=400)
    assert fragment in _message(response)


@pytest.mark.parametrize("field,version", [("metadata", "3.42"),
                                           ("availability_zone", "3.50")])
def test_fields_below_their_microversion_are_unexpected(admin, ids, field, version):
    body = {"backup": {"volume_id": ids["volume"], field: {} if field == "metadata" else "az"}}
    response = admin.post("backups", body, version=version, status=400)
    assert "('%s' was unexpected)" % field in _message(response)


@pytest.mark.parametrize("value", [True, "True", "yes", "y", "t", "1", "on"])
def test_cinders_boolean_spellings(admin, value):
    volume = admin.make_volume()
    admin.post("volumes/%s/action" % volume["id"],
               {"os-attach": {"host_name": "h", "mountpoint": "/dev/vdb"}}, status=202)
    # An in-use volume needs force; every spelling of "true" is force.
    body = {"backup": {"volume_id": volume["id"], "force": value}}
    admin.post("backups", body, status=202)


def test_in_use_volume_without_force_is_400(admin):
    volume = admin.make_volume()
    admin.post("volumes/%s/action" % volume["id"],
               {"os-attach": {"host_name": "h", "mountpoint": "/dev/vdb"}}, status=202)
    response = admin.post("backups", {"backup": {"volume_id": volume["id"], "force": "no"}},
                          status=400)
    assert _message(response) == (
        "Invalid volume: Backing up an in-use volume must use the force flag.")
