"""Usage notifications on the real RabbitMQ, heard as a Cinder consumer would hear them.

The deployment's config has ``[oslo_messaging_notifications] driver =
messagingv2`` (topic ``notifications``, exchange = its ``control_exchange``),
progress every object (``backup_object_number_per_notification = 1``) and every
second (``backup_timer_interval = 1``), and ``backup_compression_algorithm =
None`` (the seed config's spelling). The test process listens with an
oslo.messaging notification listener on the same transport URL and exchange,
in a queue (listener pool) of its own, from before the first request.

Checked (reference §5.5, §7.6): the create / createprogress / restore / delete
sequence, the payloads (Cinder's usage keys, status, size, ids), the publisher
``backup.<host>``, a progress percentage rising strictly to 100, ``.error``
events with a ``fail_reason`` at ERROR priority for a backup whose volume
file is gone and a restore of a backup whose stored object was corrupted, and
that none of this leaks into the API's backup views.
"""

from __future__ import annotations

import os
import random
import threading
import uuid

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import KiB, MiB

pytestmark = pytest.mark.functional

# The keys of Cinder's backup usage payload (notify_about_backup_usage).
USAGE_KEYS = {"tenant_id", "user_id", "availability_zone", "backup_id", "host",
              "display_name", "created_at", "status", "volume_id", "size",
              "service_metadata", "service", "fail_reason", "parent_id",
              "num_dependent_backups", "snapshot_id"}
# Cinder's backup detail view at the base microversion (3.0): exactly these.
VIEW_KEYS_3_0 = {"availability_zone", "container", "created_at", "data_timestamp",
                 "description", "fail_reason", "has_dependent_backups", "id",
                 "is_incremental", "links", "name", "object_count", "size", "snapshot_id",
                 "status", "updated_at", "volume_id"}
# What later microversions may add (3.43 metadata; 3.18 / 3.56 owner, for admins;
# 3.64 encryption_key_id, for encrypted volumes only).
VIEW_KEYS_LATER = {"metadata", "os-backup-project-attr:project_id", "user_id",
                   "encryption_key_id"}
POSIX_SERVICE = "cinder.backup.drivers.posix.PosixBackupDriver"
LIFECYCLE = ["backup.create.start", "backup.create.end", "backup.restore.start",
             "backup.restore.end", "backup.delete.start", "backup.delete.end"]


class Recorder:
    """The endpoint of the listener: every notification, with its priority."""

    def __init__(self):
        self.events: list[dict] = []
        self.lock = threading.Lock()

    def _record(self, priority, ctxt, publisher_id, event_type, payload, metadata):
        with self.lock:
            self.events.append({"priority": priority, "publisher_id": publisher_id,
                                "event_type": event_type, "payload": payload,
                                "timestamp": metadata.get("timestamp", ""),
                                "arrived": len(self.events)})

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record("INFO", ctxt, publisher_id, event_type, payload, metadata)

    def warn(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record("WARN", ctxt, publisher_id, event_type, payload, metadata)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record("ERROR", ctxt, publisher_id, event_type, payload, metadata)

    def of(self, backup_id: str) -> list[dict]:
        """Events about one backup, in the order they were sent."""
        with self.lock:
            found = [e for e in self.events
                     if isinstance(e["payload"], dict) and e["payload"].get("backup_id")
                     == backup_id]
        return sorted(found, key=lambda e: (e["timestamp"], e["arrived"]))

    def wait_for(self, backup_id: str, event_type: str, timeout: float = 30) -> list[dict]:
        def arrived():
            events = self.of(backup_id)
            return any(e["event_type"] == event_type for e in events), [
                e["event_type"] for e in events]

        fx.wait_until(arrived, "notification %s for backup %s" % (event_type, backup_id),
                      timeout, interval=0.1)
        return self.of(backup_id)


def _delete_queues(exchange: str, queues: list[str], if_unused: bool) -> None:
    import kombu

    try:
        with kombu.Connection(fx.TRANSPORT_URL.replace("rabbit://", "amqp://") + "/",
                              connect_timeout=5) as conn:
            for queue in queues:
                try:
                    conn.channel().queue_delete(queue, if_unused=if_unused)
                except Exception:
                    pass
    except Exception:
        pass


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    import oslo_messaging as messaging
    from oslo_config import cfg

    base = tmp_path_factory.mktemp("notifications")
    failed_before = request.session.testsfailed
    dep = fx.start_deployment(base, {
        "DEFAULT": {"backup_compression_algorithm": "None",
                    "backup_timer_interval": 1,
                    "backup_object_number_per_notification": 1},
        "oslo_messaging_notifications": {"driver": "messagingv2"},
    })
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[], default_config_dirs=[])
    transport = messaging.get_notification_transport(conf, url=fx.TRANSPORT_URL)
    conf.set_override("control_exchange", dep.exchange)
    pool = "backupsvc-func-notify-%s" % dep.suffix
    recorder = Recorder()
    listener = messaging.get_notification_listener(
        transport, [messaging.Target(topic="notifications", exchange=dep.exchange)],
        [recorder], executor="threading", pool=pool)
    listener.start()
    try:
        yield dep, recorder
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
        fx.stop_deployment(dep, remove=request.session.testsfailed == failed_before)
        _delete_queues(dep.exchange, [pool], if_unused=False)
        # The queues the notifier declares for consumers yet to come: only ours
        # were routed there, and nobody consumes them.
        _delete_queues(dep.exchange, ["notifications.info", "notifications.error"],
                       if_unused=True)


def fill(path, rng) -> None:
    """~30 MiB of random data spread over the volume: dozens of objects."""
    size = os.path.getsize(path)
    fx.write_at(path, 0, rng.randbytes(256 * KiB))
    for i in range(1, 25):
        fx.write_at(path, i * (size // 25), rng.randbytes(MiB + 4 * KiB * i))
    fx.write_at(path, size - MiB, rng.randbytes(MiB))


def check_common(events: list[dict], dep) -> None:
    for e in events:
        assert e["publisher_id"] == "backup.%s" % dep.host, e
        missing = USAGE_KEYS - set(e["payload"])
        assert not missing, "%s lacks %s: %s" % (e["event_type"], sorted(missing),
                                                 e["payload"])


def test_lifecycle_notifications(stack, tmp_path):
    dep, recorder = stack
    api = fx.Api(dep.base_url)
    volume = api.create_volume(size=1, name="notified")
    path = fx.volume_file(dep.volumes_dir, volume["id"])
    fill(path, random.Random())
    image = fx.sparse_copy(path, tmp_path / "image.img")

    backup = api.create_backup(volume["id"], name="notified-backup")
    backup_id = backup["id"]
    result = api.restore_and_wait(backup_id, {})
    fx.assert_same_image(fx.volume_file(dep.volumes_dir, result["volume_id"]), image)
    view_keys(api, backup_id)
    api.delete_backup(backup_id)
    events = recorder.wait_for(backup_id, "backup.delete.end")
    check_common(events, dep)
    names = [e["event_type"] for e in events]

    # The order: start, progress..., end; restore start, end; delete start, end.
    lifecycle = [n for n in names if n != "backup.createprogress"]
    assert lifecycle == LIFECYCLE, names
    start, end = names.index("backup.create.start"), names.index("backup.create.end")
    progress = [e for e in events if e["event_type"] == "backup.createprogress"]
    assert all(start < i < end for i, n in enumerate(names)
               if n == "backup.createprogress"), names
    assert all(e["priority"] == "INFO" for e in events), [
        (e["event_type"], e["priority"]) for e in events]

    # Progress: a real percentage, rising strictly from above 0 to 100.
    percents = [e["payload"]["backup_percent"] for e in progress]
    assert len(percents) >= 2, percents
    assert all(isinstance(p, (int, float)) for p in percents), percents
    assert 0 < percents[0] < 100, percents
    assert all(a < b for a, b in zip(percents, percents[1:], strict=False)), percents
    assert percents[-1] == 100, percents

    payload = {e["event_type"]: e["payload"] for e in events}
    created = payload["backup.create.start"]
    assert created["status"] == "creating" and created["backup_id"] == backup_id
    done = payload["backup.create.end"]
    assert done["status"] == "available", done
    assert done["size"] == 1 and done["backup_id"] == backup_id, done
    assert done["tenant_id"] == api.project and done["user_id"] == api.user, done
    assert done["volume_id"] == volume["id"] and done["display_name"] == "notified-backup"
    assert done["host"] == dep.host and done["service"] == POSIX_SERVICE, done
    assert done["service_metadata"] and backup_id in done["service_metadata"], done
    assert done["fail_reason"] is None and done["parent_id"] is None, done
    assert payload["backup.restore.start"]["status"] == "restoring"
    assert payload["backup.restore.end"]["status"] == "available"
    assert payload["backup.restore.end"]["volume_id"] == volume["id"]
    assert payload["backup.delete.start"]["status"] == "deleting"
    assert payload["backup.delete.end"]["status"] == "deleted"


def view_keys(api: fx.Api, backup_id: str) -> None:
    """Notifications and progress add nothing to the API's views."""
    shown = api.backup(backup_id)
    assert set(shown) == VIEW_KEYS_3_0, (sorted(set(shown) - VIEW_KEYS_3_0),
                                         sorted(VIEW_KEYS_3_0 - set(shown)))
    listed = [b for b in api.backups() if b["id"] == backup_id]
    assert len(listed) == 1 and set(listed[0]) == VIEW_KEYS_3_0, listed
    latest = api.expect(api.get("backups/%s" % backup_id,
                                headers={"OpenStack-API-Version": "volume 3.71"}), 200)
    keys = set(latest.json()["backup"])
    assert VIEW_KEYS_3_0 | {"metadata"} <= keys <= VIEW_KEYS_3_0 | VIEW_KEYS_LATER, sorted(
        keys - VIEW_KEYS_3_0)


def test_error_notifications(stack):
    dep, recorder = stack
    api = fx.Api(dep.base_url)
    rng = random.Random()

    # A backup whose volume file vanished behind the service's back: create.error.
    lost = api.create_volume(size=1, name="lost")
    lost_path = fx.volume_file(dep.volumes_dir, lost["id"])
    fx.write_at(lost_path, 0, rng.randbytes(64 * KiB))
    lost_path.unlink()
    summary = api.start_backup(lost["id"], name="of-a-lost-volume")
    failed = api.wait_backup(summary["id"], "error")
    events = recorder.wait_for(summary["id"], "backup.create.error")
    check_common(events, dep)
    names = [e["event_type"] for e in events]
    assert names == ["backup.create.start", "backup.create.error"], names
    error = events[-1]
    assert error["priority"] == "ERROR", error
    assert error["payload"]["status"] == "error", error
    assert error["payload"]["fail_reason"], error
    assert error["payload"]["fail_reason"] == failed["fail_reason"], (error, failed)
    api.delete_backup(summary["id"])

    # A restore of a backup whose stored object was corrupted: restore.error.
    backup, events = restore_corrupted(api, dep, recorder, rng)
    names = [e["event_type"] for e in events]
    assert names[-2:] == ["backup.restore.start", "backup.restore.error"], names
    assert "backup.restore.end" not in names, names
    error = events[-1]
    assert error["priority"] == "ERROR", error
    assert error["payload"]["fail_reason"], error
    assert error["payload"]["backup_id"] == backup["id"]
    assert error["payload"]["status"] == "available", error   # usable again
    api.delete_backup(backup["id"])
    recorder.wait_for(backup["id"], "backup.delete.end")


def restore_corrupted(api: fx.Api, dep, recorder: Recorder, rng) -> tuple[dict, list]:
    """Back up 3 MiB, flip one byte of a stored object, restore: it must fail."""
    volume = api.create_volume(size=1, name="to-corrupt")
    path = fx.volume_file(dep.volumes_dir, volume["id"])
    fx.write_at(path, 0, rng.randbytes(3 * MiB))
    backup = api.create_backup(volume["id"], name="corrupted")
    meta, _, container_dir = fx.load_backup_manifest(dep.backup_path, backup["id"])
    ((name, rec),) = meta["objects"][1].items()
    # Stored raw (1.0.0: the object; 2.0.0: its frames): flip one byte.
    assert meta["version"] == "2.0.0" or rec["compression"] in (None, "none"), rec
    victim = container_dir / name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    result = api.restore(backup["id"], {})
    api.wait_volume(result["volume_id"], "error_restoring")
    api.wait_backup(backup["id"], "available")
    events = recorder.wait_for(backup["id"], "backup.restore.error")
    check_common(events, dep)
    return backup, events


def test_restore_error_says_what_went_wrong(stack):
    dep, recorder = stack
    api = fx.Api(dep.base_url)
    backup, events = restore_corrupted(api, dep, recorder, random.Random())
    reason = events[-1]["payload"]["fail_reason"]
    api.delete_backup(backup["id"])
    # The checksums recorded with the backup caught it: the reason must say so.
    assert any(word in reason for word in ("md5", "sha256", "checksum")), reason


def test_restore_events_name_the_backed_up_volume(stack):
    dep, recorder = stack
    api = fx.Api(dep.base_url)
    volume = api.create_volume(size=1, name="source-" + uuid.uuid4().hex[:6])
    fx.write_at(fx.volume_file(dep.volumes_dir, volume["id"]), 0, random.randbytes(64 * KiB))
    backup = api.create_backup(volume["id"])
    result = api.restore_and_wait(backup["id"], {})
    events = recorder.wait_for(backup["id"], "backup.restore.end")
    by_type = {e["event_type"]: e["payload"] for e in events}
    api.delete_backup(backup["id"])
    assert by_type["backup.restore.end"]["volume_id"] == volume["id"]
    assert by_type["backup.restore.start"]["volume_id"] == volume["id"], (
        "restore.start names volume %s (the restore target %s), restore.end %s"
        % (by_type["backup.restore.start"]["volume_id"], result["volume_id"],
           by_type["backup.restore.end"]["volume_id"]))
