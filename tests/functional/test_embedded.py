"""backupsvc-all: the API and a worker in one process (SQLite, fake://, POSIX)."""

from __future__ import annotations

import random

import pytest
import requests

from tests.functional import fixtures as fx
from tests.functional.fixtures import KiB, MiB

pytestmark = pytest.mark.functional


@pytest.fixture
def embedded(tmp_path):
    fx.require_commands("backupsvc-all")
    state = tmp_path / "state"
    port = fx.free_port()
    conf = fx.write_ini(tmp_path / "all.conf", {"DEFAULT": {
        "state_path": state,
        "osapi_volume_listen_port": port,
        "backup_file_size": fx.CHUNK_SIZE,
        "backup_sha_block_size_bytes": fx.SHA_BLOCK,
        "debug": "true",
    }})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    log = tmp_path / "all.log"
    proc = fx.ServiceProcess("backupsvc-all", ["backupsvc-all", "--config-file", str(conf),
                                               "--log-file", str(log)],
                             log_path=log, out_path=tmp_path / "all.out", cwd=cwd).start()
    base_url = "http://127.0.0.1:%d" % port

    def ready():
        if not proc.alive():
            pytest.fail("backupsvc-all exited before it served HTTP: " + proc.where(),
                        pytrace=False)
        resp = requests.get(base_url + "/", timeout=5)
        return resp.status_code == 300, "GET / -> %d" % resp.status_code

    try:
        fx.wait_until(ready, "backupsvc-all to answer GET / with 300", timeout=60,
                      extra=proc.where)
        yield proc, fx.Api(base_url), state
    finally:
        rc = proc.stop(timeout=30)
    assert rc is not None, "backupsvc-all did not exit within 30 s of SIGTERM: " + proc.where()


def test_embedded_backup_and_restore(embedded, tmp_path):
    proc, api, state = embedded
    volume = api.create_volume(size=1)
    path = fx.volume_file(state / "volumes", volume["id"])
    assert path.is_file(), "the volume file is not under state_path/volumes"
    rng = random.Random()
    fx.scattered_writes(path, rng, count=12, min_len=4 * KiB, max_len=2 * MiB)
    fx.write_at(path, 1024 * MiB - 4 * KiB, rng.randbytes(4 * KiB))
    image = fx.sparse_copy(path, tmp_path / "image.img")

    backup = api.create_backup(volume["id"], name="embedded")
    assert backup["is_incremental"] is False
    fx.check_stored_backup(state / "backup", backup, image, parent_id=None)

    result = api.restore_and_wait(backup["id"], {})
    assert result["volume_name"] == "restore_backup_%s" % backup["id"]
    fx.assert_same_image(fx.volume_file(state / "volumes", result["volume_id"]), image,
                         "embedded restore")
