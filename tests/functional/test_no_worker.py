"""No live worker: the API refuses new backups with 503 and writes nothing."""

from __future__ import annotations

import random
import time

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import KiB

pytestmark = pytest.mark.functional


def service_state(deployment) -> str:
    """The State column of ``backupsvc-manage service list`` for our worker."""
    out = deployment.manage("service", "list").stdout
    lines = [line for line in out.splitlines() if deployment.host in line.split()]
    assert len(lines) == 1, "expected one line for %s in:\n%s" % (deployment.host, out)
    words = lines[0].split()
    states = [w for w in words if w in ("up", "down")]
    assert len(states) == 1, lines[0]
    return states[0]


def test_backup_refused_with_503_while_no_worker_is_alive(deployment, api, worker):
    volume = api.create_volume(size=1)
    fx.scattered_writes(fx.volume_file(deployment.volumes_dir, volume["id"]), random.Random(),
                        count=4, min_len=4 * KiB, max_len=64 * KiB)
    assert service_state(deployment) == "up"

    rc = deployment.stop_worker(timeout=30)
    assert rc is not None, "backupsvc-worker did not exit within 30 s of SIGTERM: " + \
        worker.where()
    time.sleep(fx.SERVICE_DOWN_TIME + 1.5)
    assert service_state(deployment) == "down"

    rows_before = deployment.backup_rows(api.project)
    body = {"backup": {"volume_id": volume["id"], "name": "while-down"}}
    fx.assert_fault(api.post("backups", body), 503, "serviceUnavailable")
    assert deployment.backup_rows(api.project) == rows_before, "a refused backup left a row"
    assert api.backups() == []
    assert api.volume(volume["id"])["status"] == "available"

    deployment.start_worker()
    assert service_state(deployment) == "up"
    resp = api.expect(api.post("backups", body), 202)
    backup = api.wait_backup(resp.json()["backup"]["id"], "available")
    assert backup["name"] == "while-down"
    assert [b["id"] for b in api.backups()] == [backup["id"]]
    assert api.volume(volume["id"])["status"] == "available"
