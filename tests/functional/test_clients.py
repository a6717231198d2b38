"""The stock clients, run for real: ``cinder`` and ``openstack`` against backupsvc.

The CLIs come from a virtualenv of their own (``tools/install-clients.sh``,
default ``.venv-clients``; ``BACKUPSVC_CLIENTS_VENV`` points elsewhere) and
talk to the session's ``backupsvc-api`` + ``backupsvc-worker`` in noauth
mode, configured as users of the stock clients configure them:

* cinder: ``OS_AUTH_TYPE=noauth OS_USER_ID OS_PROJECT_ID CINDER_ENDPOINT``;
* openstack: ``--os-auth-type none --os-endpoint URL`` and no ``OS_*``
  variables at all in its environment.

Every test works in a fresh project and checks both what the client printed
and what the service then holds (over HTTP, and image bytes on disk).

Not exercised, because the clients themselves are broken (openstacksdk
4.22): ``openstack volume backup record import`` posts to
``backups/export_record`` with a bogus URL, and ``openstack volume backup
unset --property`` calls an endpoint Cinder does not have. ``cinder
backup-import`` covers import.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import KiB, MiB

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
CLIENTS_VENV = Path(os.environ.get("BACKUPSVC_CLIENTS_VENV", REPO / ".venv-clients"))
CLI_TIMEOUT = 120


# ------------------------------------------------------------------ the CLIs

def _bin(name: str) -> str:
    path = CLIENTS_VENV / "bin" / name
    if not path.is_file():
        pytest.fail("%s is missing: run tools/install-clients.sh %s (it installs "
                    "python-cinderclient and python-openstackclient there)"
                    % (path, CLIENTS_VENV), pytrace=False)
    return str(path)


def table(text: str) -> list[dict[str, str]]:
    """The rows of the first prettytable in ``text`` (cinder's output)."""
    header, rows = None, []
    for line in text.splitlines():
        if not line.startswith("|"):
            if header is not None and rows and not line.startswith("+"):
                break
            continue
        cells = [cell.strip() for cell in line.strip()[1:-1].split("|")]
        if header is None:
            header = cells
        else:
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def props(text: str) -> dict[str, str]:
    """cinder's Property / Value table as a dict."""
    return {row["Property"]: row["Value"] for row in table(text)}


class Clients:
    """Runs the CLIs for one project of one service."""

    def __init__(self, base_url: str, project: str, home: Path):
        self.base_url = base_url.rstrip("/")
        self.project = project
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def endpoint(self, project_in_url: bool) -> str:
        return "%s/v3/%s" % (self.base_url, self.project) if project_in_url else \
            "%s/v3" % self.base_url

    def _env(self) -> dict[str, str]:
        # Nothing of the caller's OS_* / CINDER_* environment leaks in.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                "LANG": "C.UTF-8", "PYTHONWARNINGS": "ignore"}

    def _run(self, argv: list[str], env: dict, check: bool) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, env=env, capture_output=True, text=True,
                                timeout=CLI_TIMEOUT, cwd=self.home)
        if check and result.returncode != 0:
            pytest.fail("%s\nexited with %d\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(argv), result.returncode, result.stdout, result.stderr[-4000:]),
                pytrace=False)
        return result

    def cinder(self, *args: str, project_in_url: bool = True, check: bool = True,
               version: str | None = None) -> subprocess.CompletedProcess:
        env = self._env()
        env.update({"OS_AUTH_TYPE": "noauth", "OS_USER_ID": "admin",
                    "OS_PROJECT_ID": self.project,
                    "CINDER_ENDPOINT": self.endpoint(project_in_url)})
        if version:
            env["OS_VOLUME_API_VERSION"] = version
        return self._run([_bin("cinder"), *args], env, check)

    def openstack(self, *args: str, project_in_url: bool = True,
                  check: bool = True) -> subprocess.CompletedProcess:
        argv = [_bin("openstack"), "--os-auth-type", "none",
                "--os-endpoint", self.endpoint(project_in_url), *args]
        return self._run(argv, self._env(), check)

    def openstack_json(self, *args: str, project_in_url: bool = True):
        out = self.openstack(*args, "-f", "json", project_in_url=project_in_url).stdout
        try:
            return json.loads(out)
        except ValueError:
            pytest.fail("openstack %s printed no JSON:\n%s" % (" ".join(args), out),
                        pytrace=False)


def cli_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, "the command succeeded:\n%s" % result.stdout
    return result.stderr + result.stdout


# ----------------------------------------------------------------- fixtures

@pytest.fixture
def clients(deployment, api, tmp_path) -> Clients:
    return Clients(deployment.base_url, api.project, tmp_path / "home")


def uniq(prefix: str) -> str:
    """Names are looked up across projects (cinder adds all_tenants=1): keep them unique."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def fill(deployment, volume_id: str, seed: int, count: int = 8) -> Path:
    path = fx.volume_file(deployment.volumes_dir, volume_id)
    assert path.is_file(), "volume %s has no file under %s" % (volume_id,
                                                              deployment.volumes_dir)
    fx.scattered_writes(path, random.Random(seed), count=count, min_len=4 * KiB,
                        max_len=1 * MiB)
    return path


def snapshot_image(deployment, volume_id: str, dest: Path) -> Path:
    return fx.sparse_copy(fx.volume_file(deployment.volumes_dir, volume_id), dest)


def assert_restored(deployment, volume_id: str, image: Path, what: str) -> None:
    fx.assert_same_image(fx.volume_file(deployment.volumes_dir, volume_id), image, what)


def backup_at(api, backup_id: str, version: str) -> dict:
    resp = api.get("backups/%s" % backup_id, headers={"OpenStack-API-Version":
                                                      "volume %s" % version})
    return api.expect(resp, 200).json()["backup"]


def create_snapshot(api, volume_id: str, name: str) -> dict:
    resp = api.post("snapshots", {"snapshot": {"volume_id": volume_id, "name": name}})
    snap = api.expect(resp, 202).json()["snapshot"]

    def ready():
        body = api.expect(api.get("snapshots/%s" % snap["id"]), 200).json()["snapshot"]
        return body["status"] == "available", body

    return fx.wait_until(ready, "snapshot %s to be available" % snap["id"])


def backup_ids(api, query: str = "backups/detail") -> list[str]:
    """What the service answers over HTTP: the oracle for the CLIs' lists.

    (MariaDB keeps created_at to the second, so backups made in the same
    second are ordered by id: the service's order, not creation order.)
    """
    return [b["id"] for b in api.expect(api.get(query), 200).json()["backups"]]


# ------------------------------------------------------------ cinder: create


def test_cinder_backup_create_variants(deployment, api, clients, tmp_path):
    vol_name = uniq("cvol")
    volume = api.create_volume(size=1, name=vol_name)
    fill(deployment, volume["id"], seed=1)
    container = uniq("cont")

    # Full, with every option, the volume named by its name.
    out = clients.cinder("backup-create", "--name", "full", "--description", "first full",
                         "--container", container, "--metadata", "k1=v1", "k2=v2",
                         "--availability-zone", "nova", vol_name).stdout
    shown = props(out)
    assert shown["name"] == "full" and shown["volume_id"] == volume["id"], out
    full = api.wait_backup(shown["id"], "available")
    full = backup_at(api, full["id"], "3.51")
    assert (full["container"], full["description"], full["availability_zone"],
            full["metadata"], full["is_incremental"]) == (
        container, "first full", "nova", {"k1": "v1", "k2": "v2"}, False), full
    files = fx.backup_files(deployment.backup_path, full["id"])
    assert files and all(p.parent == deployment.backup_path / container for p in files), files

    # Incremental: the full one becomes its parent.
    fill(deployment, volume["id"], seed=2, count=3)
    out = clients.cinder("backup-create", "--incremental", "--name", "inc",
                         volume["id"]).stdout
    inc = api.wait_backup(props(out)["id"], "available")
    assert inc["is_incremental"] is True
    assert api.backup(full["id"])["has_dependent_backups"] is True

    # An attached volume needs --force.
    api.attach(volume["id"])
    before = backup_ids(api)
    refused = clients.cinder("backup-create", "--name", "noforce", vol_name, check=False)
    assert "force" in cli_error(refused) and "HTTP 400" in cli_error(refused), refused
    assert backup_ids(api) == before
    out = clients.cinder("backup-create", "--force", "--name", "forced", vol_name).stdout
    forced = api.wait_backup(props(out)["id"], "available")
    assert api.volume(volume["id"])["status"] == "in-use"
    api.detach(volume["id"])

    # From a snapshot: the snapshot's bytes, not the volume's later ones.
    image = snapshot_image(deployment, volume["id"], tmp_path / "at-snapshot.img")
    snap = create_snapshot(api, volume["id"], uniq("snap"))
    fill(deployment, volume["id"], seed=3, count=3)
    out = clients.cinder("backup-create", "--snapshot-id", snap["id"], "--name", "fromsnap",
                         volume["id"]).stdout
    fromsnap = api.wait_backup(props(out)["id"], "available")
    assert fromsnap["snapshot_id"] == snap["id"]
    restored = api.restore_and_wait(fromsnap["id"], {})
    assert_restored(deployment, restored["volume_id"], image, "restore of the snapshot backup")

    names = {b["name"] for b in api.backups()}
    assert names == {"full", "inc", "forced", "fromsnap"}, names
    assert forced["volume_id"] == volume["id"]


# --------------------------------------------------------- openstack: create


def test_openstack_backup_create_variants(deployment, api, clients, tmp_path):
    vol_name = uniq("ovol")
    volume = api.create_volume(size=1, name=vol_name)
    fill(deployment, volume["id"], seed=11)
    container = uniq("ocont")

    out = clients.openstack_json("volume", "backup", "create", "--name", "full",
                                 "--description", "os full", "--container", container,
                                 "--property", "k1=v1", "--property", "k2=v2",
                                 "--availability-zone", "nova", vol_name)
    assert out["name"] == "full" and out["id"], out
    full = backup_at(api, api.wait_backup(out["id"], "available")["id"], "3.51")
    assert (full["container"], full["description"], full["availability_zone"],
            full["metadata"], full["volume_id"]) == (
        container, "os full", "nova", {"k1": "v1", "k2": "v2"}, volume["id"]), full

    fill(deployment, volume["id"], seed=12, count=3)
    out = clients.openstack_json("volume", "backup", "create", "--incremental", "--name",
                                 "inc", vol_name)
    assert api.wait_backup(out["id"], "available")["is_incremental"] is True
    assert api.backup(full["id"])["has_dependent_backups"] is True

    api.attach(volume["id"])
    refused = clients.openstack("volume", "backup", "create", "--name", "noforce", vol_name,
                                check=False)
    assert "force" in cli_error(refused), refused
    out = clients.openstack_json("volume", "backup", "create", "--force", "--name",
                                 "forced", vol_name)
    api.wait_backup(out["id"], "available")
    assert api.volume(volume["id"])["status"] == "in-use"
    api.detach(volume["id"])

    snap_name = uniq("osnap")
    image = snapshot_image(deployment, volume["id"], tmp_path / "at-snapshot.img")
    snap = create_snapshot(api, volume["id"], snap_name)
    fill(deployment, volume["id"], seed=13, count=3)
    out = clients.openstack_json("volume", "backup", "create", "--snapshot", snap_name,
                                 "--name", "fromsnap", vol_name)
    fromsnap = api.wait_backup(out["id"], "available")
    assert fromsnap["snapshot_id"] == snap["id"]
    restored = api.restore_and_wait(fromsnap["id"], {})
    assert_restored(deployment, restored["volume_id"], image, "restore of the snapshot backup")

    assert {b["name"] for b in api.backups()} == {"full", "inc", "forced", "fromsnap"}


# ------------------------------------------------------ list / show / update


@pytest.fixture
def three_backups(api):
    """b1, b2 on one volume and b3 on another (created in that order)."""
    vol1 = api.create_volume(size=1, name=uniq("lvol1"))
    vol2 = api.create_volume(size=1, name=uniq("lvol2"))
    names = {key: uniq(key) for key in ("b1", "b2", "b3")}
    backups = {"b1": api.create_backup(vol1["id"], name=names["b1"]),
               "b2": api.create_backup(vol1["id"], name=names["b2"]),
               "b3": api.create_backup(vol2["id"], name=names["b3"])}
    return vol1, vol2, backups


def test_cinder_backup_list_show_update(api, clients, three_backups):
    vol1, vol2, backups = three_backups
    ids = {key: b["id"] for key, b in backups.items()}
    api.expect(api.post("backups/%s/action" % ids["b2"],
                        {"os-reset_status": {"status": "error"}}), 202)
    api.wait_backup(ids["b2"], "error")
    newest_first = backup_ids(api)
    assert sorted(newest_first) == sorted(ids.values())

    def listed(*args, **kw) -> list[str]:
        return [r["ID"] for r in table(clients.cinder("backup-list", *args, **kw).stdout)]

    # Without --sort cinder prints the rows sorted by ID, whatever the order
    # the service sent: only --sort lists are compared in order.
    rows = table(clients.cinder("backup-list").stdout)
    assert [r["ID"] for r in rows] == sorted(newest_first), rows
    assert {r["Name"] for r in rows} == {b["name"] for b in backups.values()}
    assert {r["Volume ID"] for r in rows} == {vol1["id"], vol2["id"]}
    assert listed("--name", backups["b1"]["name"]) == [ids["b1"]]
    assert listed("--status", "error") == [ids["b2"]]
    available = [i for i in newest_first if i != ids["b2"]]
    assert listed("--status", "available") == sorted(available)
    assert listed("--volume-id", vol2["id"]) == [ids["b3"]]
    assert set(newest_first) <= set(listed("--all-tenants"))
    assert listed("--limit", "1") == newest_first[:1]
    assert listed("--limit", "2") == sorted(newest_first[:2])
    assert listed("--marker", newest_first[0]) == sorted(newest_first[1:])
    assert listed("--sort", "created_at:desc") == newest_first
    assert listed("--sort", "created_at:asc") == \
        backup_ids(api, "backups/detail?sort=created_at:asc")
    by_status = listed("--sort", "status:asc,created_at:desc")
    assert by_status == backup_ids(api, "backups/detail?sort=status:asc,created_at:desc")
    assert sorted(by_status[:2]) == sorted(available) and by_status[2] == ids["b2"]
    assert listed("--sort", "created_at:desc", "--limit", "2") == newest_first[:2]
    counted = clients.cinder("backup-list", "--with-count", "--filters",
                             "name=%s" % backups["b1"]["name"]).stdout
    assert [r["ID"] for r in table(counted)] == [ids["b1"]]
    assert "Backup in total: 1" in counted, counted

    # show, by id and by name; at 3.0 too (no header at all).
    by_id = props(clients.cinder("backup-show", ids["b1"]).stdout)
    assert by_id["name"] == backups["b1"]["name"] and by_id["status"] == "available"
    assert by_id["os-backup-project-attr:project_id"] == api.project
    by_name = props(clients.cinder("backup-show", backups["b3"]["name"]).stdout)
    assert by_name["id"] == ids["b3"] and by_name["volume_id"] == vol2["id"]
    old = props(clients.cinder("backup-show", ids["b1"], version="3.0").stdout)
    assert old["id"] == ids["b1"] and "metadata" not in old, old

    # update: name, description, metadata (which replaces the old metadata).
    api.expect(api.request("PUT", "backups/%s" % ids["b1"],
                           {"backup": {"metadata": {"old": "x"}}},
                           headers={"OpenStack-API-Version": "volume 3.43"}), 200)
    new_name = uniq("renamed")
    out = clients.cinder("backup-update", "--name", new_name, "--description", "new desc",
                         "--metadata", "a=1", "b=2", backups["b1"]["name"]).stdout
    assert "accepted" in out, out
    b1 = backup_at(api, ids["b1"], "3.43")
    assert (b1["name"], b1["description"], b1["metadata"]) == (
        new_name, "new desc", {"a": "1", "b": "2"}), b1
    # backup-update needs 3.9: below it the subcommand does not exist.
    too_old = clients.cinder("backup-update", "--name", "x", ids["b1"], version="3.8",
                             check=False)
    assert too_old.returncode != 0

    # Project-less endpoint (/v3, microversion 3.67+): same answers.
    assert listed("--sort", "created_at:desc", project_in_url=False) == newest_first
    shown = props(clients.cinder("backup-show", new_name, project_in_url=False).stdout)
    assert shown["id"] == ids["b1"], shown
    shown = props(clients.cinder("backup-show", ids["b3"], project_in_url=False).stdout)
    assert shown["name"] == backups["b3"]["name"], shown


def test_cinder_backup_list_sort_by_name(api, clients, three_backups):
    """cinderclient maps the sort key ``name`` to ``display_name`` (its
    SORT_KEY_MAPPINGS), a sort key real Cinder accepts (a model column)."""
    _, _, backups = three_backups
    ids = [backups[key]["id"] for key in ("b1", "b2", "b3")]
    for sort, expected in (("name:asc", ids), ("name:desc", ids[::-1])):
        rows = table(clients.cinder("backup-list", "--sort", sort).stdout)
        assert [r["ID"] for r in rows] == expected, (sort, rows)


def test_openstack_backup_list_show_set(api, clients, three_backups):
    vol1, vol2, backups = three_backups
    ids = {key: b["id"] for key, b in backups.items()}
    api.expect(api.post("backups/%s/action" % ids["b2"],
                        {"os-reset_status": {"status": "error"}}), 202)
    api.wait_backup(ids["b2"], "error")
    newest_first = backup_ids(api)
    assert sorted(newest_first) == sorted(ids.values())

    def listed(*args, **kw) -> list[str]:
        return [row["ID"] for row in clients.openstack_json("volume", "backup", "list",
                                                            *args, **kw)]

    assert listed() == newest_first
    assert listed("--name", backups["b2"]["name"]) == [ids["b2"]]
    assert listed("--status", "available") == [i for i in newest_first if i != ids["b2"]]
    assert listed("--volume", vol1["name"]) == [i for i in newest_first if i != ids["b3"]]
    assert set(newest_first) <= set(listed("--all-projects"))
    # The SDK keeps following markers, so --limit sets the page size only.
    assert listed("--limit", "1") == newest_first
    assert listed("--marker", newest_first[0]) == newest_first[1:]
    long_rows = clients.openstack_json("volume", "backup", "list", "--long")
    assert {row["ID"]: row["Volume"] for row in long_rows} == {
        ids["b1"]: vol1["id"], ids["b2"]: vol1["id"], ids["b3"]: vol2["id"]}, long_rows

    shown = clients.openstack_json("volume", "backup", "show", ids["b1"])
    assert (shown["name"], shown["status"], shown["volume_id"], shown["project_id"],
            shown["metadata"]) == (backups["b1"]["name"], "available", vol1["id"],
                                   api.project, {}), shown
    by_name = clients.openstack_json("volume", "backup", "show", backups["b3"]["name"])
    assert by_name["id"] == ids["b3"]

    # set: name, description, properties (merged into the existing metadata).
    new_name = uniq("renamed")
    clients.openstack("volume", "backup", "set", "--name", new_name, "--description",
                      "set desc", "--property", "p1=v1", backups["b1"]["name"])
    clients.openstack("volume", "backup", "set", "--property", "p2=v2", ids["b1"])
    b1 = backup_at(api, ids["b1"], "3.43")
    assert (b1["name"], b1["description"], b1["metadata"]) == (
        new_name, "set desc", {"p1": "v1", "p2": "v2"}), b1

    # Project-less endpoint: no token names a project, so only what needs none works.
    assert set(newest_first) <= set(listed("--all-projects", project_in_url=False))
    shown = clients.openstack_json("volume", "backup", "show", ids["b3"],
                                   project_in_url=False)
    assert shown["name"] == backups["b3"]["name"] and shown["project_id"] == api.project


# ----------------------------------------------------------------- restore


def test_cinder_backup_restore_paths(deployment, api, clients, tmp_path):
    volume = api.create_volume(size=1, name=uniq("rvol"))
    fill(deployment, volume["id"], seed=21)
    image1 = snapshot_image(deployment, volume["id"], tmp_path / "image1.img")
    full_name, inc_name = uniq("rfull"), uniq("rinc")
    full = api.wait_backup(props(clients.cinder(
        "backup-create", "--name", full_name, volume["id"]).stdout)["id"], "available")
    fill(deployment, volume["id"], seed=22, count=4)
    image2 = snapshot_image(deployment, volume["id"], tmp_path / "image2.img")
    inc = api.wait_backup(props(clients.cinder(
        "backup-create", "--incremental", "--name", inc_name, volume["id"]).stdout)["id"],
        "available")

    # To a new volume, by backup name.
    new_name = uniq("restored")
    out = props(clients.cinder("backup-restore", "--name", new_name, full_name).stdout)
    assert out["backup_id"] == full["id"] and out["volume_name"] == new_name, out
    api.wait_volume(out["volume_id"], "available")
    api.wait_backup(full["id"], "available")
    assert api.volume(out["volume_id"])["name"] == new_name
    assert_restored(deployment, out["volume_id"], image1, "cinder restore --name (full)")

    # The incremental chain, into an existing volume named by its name.
    target_name = uniq("target")
    target = api.create_volume(size=1, name=target_name)
    out = props(clients.cinder("backup-restore", "--volume", target_name, inc_name).stdout)
    assert (out["backup_id"], out["volume_id"]) == (inc["id"], target["id"]), out
    api.wait_volume(target["id"], "available")
    api.wait_backup(inc["id"], "available")
    assert_restored(deployment, target["id"], image2, "cinder restore --volume (incremental)")

    # --volume-type: no restore call, POST /volumes with backup_id (3.47).
    typed_name = uniq("typed")
    out = props(clients.cinder("backup-restore", "--volume-type", "__DEFAULT__", "--name",
                               typed_name, inc["id"]).stdout)
    assert out["backup_id"] == inc["id"] and out["volume_name"] == typed_name, out
    typed = api.wait_volume(out["volume_id"], "available")
    api.wait_backup(inc["id"], "available")
    assert (typed["name"], typed["size"]) == (typed_name, 1), typed
    assert_restored(deployment, typed["id"], image2, "cinder restore --volume-type")


def test_openstack_backup_restore_paths(deployment, api, clients, tmp_path):
    volume = api.create_volume(size=1, name=uniq("orvol"))
    fill(deployment, volume["id"], seed=31)
    image = snapshot_image(deployment, volume["id"], tmp_path / "image.img")
    backup_name = uniq("orfull")
    out = clients.openstack_json("volume", "backup", "create", "--name", backup_name,
                                 volume["id"])
    backup = api.wait_backup(out["id"], "available")

    new_name = uniq("orestored")
    out = clients.openstack_json("volume", "backup", "restore", backup_name, new_name)
    assert out["volume_name"] == new_name, out
    api.wait_volume(out["volume_id"], "available")
    api.wait_backup(backup["id"], "available")
    assert_restored(deployment, out["volume_id"], image, "openstack restore to a new volume")

    target_name = uniq("otarget")
    target = api.create_volume(size=1, name=target_name)
    refused = clients.openstack("volume", "backup", "restore", backup["id"], target_name,
                                check=False)
    assert refused.returncode != 0, "without --force the client refuses an existing volume"
    out = clients.openstack_json("volume", "backup", "restore", "--force", backup["id"],
                                 target_name)
    assert out["volume_id"] == target["id"], out
    api.wait_volume(target["id"], "available")
    api.wait_backup(backup["id"], "available")
    assert_restored(deployment, target["id"], image, "openstack restore --force")


# ------------------------------------------- delete / state / export / import


def test_cinder_backup_delete_reset_export_import(deployment, api, clients, tmp_path):
    volume = api.create_volume(size=1, name=uniq("dvol"))
    fill(deployment, volume["id"], seed=41)
    image = snapshot_image(deployment, volume["id"], tmp_path / "image.img")
    names = {key: uniq(key) for key in ("parent", "child", "other")}
    parent = api.create_backup(volume["id"], name=names["parent"])
    child = api.create_backup(volume["id"], name=names["child"], incremental=True)
    other = api.create_backup(volume["id"], name=names["other"])

    # reset-state, by name.
    out = clients.cinder("backup-reset-state", "--state", "error", names["other"]).stdout
    assert "accepted" in out, out
    assert api.wait_backup(other["id"], "error")["status"] == "error"
    bad = clients.cinder("backup-reset-state", "--state", "creating", other["id"],
                         check=False)
    assert "HTTP 400" in cli_error(bad), bad
    # delete: allowed from error.
    clients.cinder("backup-delete", names["other"])
    api.wait_backup_gone(other["id"])

    # A parent with children cannot go, not even with --force.
    refused = clients.cinder("backup-delete", names["parent"], check=False)
    assert "Incremental backups exist" in cli_error(refused), refused
    refused = clients.cinder("backup-delete", "--force", names["parent"], check=False)
    assert "HTTP 400" in cli_error(refused), refused
    assert api.backup(parent["id"])["status"] == "available"

    # export (by id only: cinder does not resolve names here) ...
    exported = props(clients.cinder("backup-export", parent["id"]).stdout)
    assert exported["backup_service"].startswith("cinder.backup.drivers."), exported
    record = json.loads(base64.b64decode(exported["backup_url"]))
    assert record["id"] == parent["id"], record
    # ... import of a backup that still exists: 400 ...
    dup = clients.cinder("backup-import", exported["backup_service"], exported["backup_url"],
                         check=False)
    assert "HTTP 400" in cli_error(dup), dup
    # ... and under a new id: a new backup of the same objects, which restores.
    record["id"] = new_id = str(uuid.uuid4())
    new_url = base64.b64encode(json.dumps(record).encode()).decode()
    out = props(clients.cinder("backup-import", exported["backup_service"], new_url).stdout)
    assert out["id"] == new_id, out
    imported = api.wait_backup(new_id, "available")
    assert imported["volume_id"] == volume["id"] and imported["size"] == 1
    restored = api.restore_and_wait(new_id, {"name": uniq("from-import")})
    assert_restored(deployment, restored["volume_id"], image, "restore of the imported backup")

    # --force deletes an available backup through os-force_delete.
    clients.cinder("backup-delete", "--force", names["child"])
    api.wait_backup_gone(child["id"])
    clients.cinder("backup-delete", new_id)
    api.wait_backup_gone(new_id)
    clients.cinder("backup-delete", parent["id"])
    api.wait_backup_gone(parent["id"])
    assert backup_ids(api) == []


def test_openstack_backup_delete_state_export(deployment, api, clients):
    volume = api.create_volume(size=1, name=uniq("odvol"))
    fill(deployment, volume["id"], seed=51)
    names = {key: uniq(key) for key in ("one", "two")}
    one = api.create_backup(volume["id"], name=names["one"])
    two = api.create_backup(volume["id"], name=names["two"])

    clients.openstack("volume", "backup", "set", "--state", "error", names["one"])
    assert api.wait_backup(one["id"], "error")["status"] == "error"
    clients.openstack("volume", "backup", "set", "--state", "available", one["id"])
    assert api.wait_backup(one["id"], "available")["status"] == "available"

    record = clients.openstack_json("volume", "backup", "record", "export", names["one"])
    assert record["backup_service"].startswith("cinder.backup.drivers."), record
    assert json.loads(base64.b64decode(record["backup_url"]))["id"] == one["id"]

    clients.openstack("volume", "backup", "delete", names["one"])
    api.wait_backup_gone(one["id"])
    clients.openstack("volume", "backup", "delete", "--force", two["id"])
    api.wait_backup_gone(two["id"])
    assert backup_ids(api) == []
    missing = clients.openstack("volume", "backup", "show", two["id"], check=False)
    assert missing.returncode != 0
