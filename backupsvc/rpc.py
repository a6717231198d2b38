"""oslo.messaging transport, RPC client/server targets and the notifier."""

import oslo_messaging as messaging
from oslo_config import cfg

CONF = cfg.CONF

BACKUP_TOPIC = "backupsvc-backup"
WORKER_BINARY = "backupsvc-worker"

_TRANSPORT = None
_NOTIFICATION_TRANSPORT = None


def init(conf: cfg.ConfigOpts = CONF) -> None:
    global _TRANSPORT, _NOTIFICATION_TRANSPORT
    if _TRANSPORT is None:
        _TRANSPORT = messaging.get_rpc_transport(conf)
    if _NOTIFICATION_TRANSPORT is None:
        _NOTIFICATION_TRANSPORT = messaging.get_notification_transport(conf)


def get_transport():
    init()
    return _TRANSPORT


def get_notifier(publisher_id: str) -> messaging.Notifier:
    init()
    return messaging.Notifier(_NOTIFICATION_TRANSPORT, publisher_id=publisher_id)


def cleanup() -> None:
    global _TRANSPORT, _NOTIFICATION_TRANSPORT
    for transport in (_TRANSPORT, _NOTIFICATION_TRANSPORT):
        if transport is not None:
            transport.cleanup()
    _TRANSPORT = _NOTIFICATION_TRANSPORT = None


class ContextSerializer(messaging.NoOpSerializer):
    """Carry our RequestContext across RPC as a plain dict."""

    def serialize_context(self, context):
        return context.to_dict()

    def deserialize_context(self, context):
        from backupsvc.context import RequestContext

        return RequestContext.from_dict(context)
