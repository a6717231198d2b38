"""Which live worker gets a job, on the real services table (SQLite)."""

import uuid

import pytest
from oslo_config import cfg

from backupsvc import exception, placement
from backupsvc.db import api as db

CONF = cfg.CONF
BINARY, TOPIC = "backupsvc-worker", "backupsvc-backup"


@pytest.fixture
def hosts(sqlite_db, admin_ctx):
    """Two live workers and one that was marked down, all of this test's own."""
    up = ["up-%s" % uuid.uuid4().hex[:8] for _ in range(2)]
    down = "down-%s" % uuid.uuid4().hex[:8]
    for host in [*up, down]:
        db.service_heartbeat(admin_ctx, host, BINARY, TOPIC, "nova")
    db.service_mark_down(admin_ctx, down, BINARY)
    yield up, down
    for host in up:
        db.service_mark_down(admin_ctx, host, BINARY)


class Backup:
    def __init__(self, host):
        self.host = host


def test_a_backups_own_host_is_chosen_while_it_is_up(hosts):
    up, _ = hosts
    for same_host in (False, True):
        CONF.set_override("backup_use_same_host", same_host)
        try:
            assert placement.worker_for_backup(Backup(up[1])) == up[1]
        finally:
            CONF.clear_override("backup_use_same_host")


def test_another_worker_serves_when_the_backups_host_is_down(hosts):
    up, down = hosts
    assert placement.worker_for_backup(Backup(down)) in placement.live_workers()
    assert placement.live_workers()                   # (ours are among them)
    assert set(up) <= set(placement.live_workers())


def test_with_backup_use_same_host_only_the_backups_host_will_do(hosts):
    _, down = hosts
    CONF.set_override("backup_use_same_host", True)
    try:
        with pytest.raises(exception.BackupHostDown, match=down):
            placement.worker_for_backup(Backup(down))
    finally:
        CONF.clear_override("backup_use_same_host")
    assert exception.BackupHostDown.code == 503
