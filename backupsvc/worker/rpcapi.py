"""Client side of the worker's RPC API.

Messages carry ids and small scalars only; the worker re-reads the rows.

Version history:
    1.0 - create_backup, restore_backup, delete_backup, import_record
"""

import oslo_messaging as messaging

from backupsvc import rpc


class BackupWorkerAPI:
    RPC_API_VERSION = "1.0"

    def __init__(self):
        target = messaging.Target(topic=rpc.BACKUP_TOPIC, version=self.RPC_API_VERSION)
        self.client = messaging.get_rpc_client(rpc.get_transport(), target,
                                               version_cap=self.RPC_API_VERSION,
                                               serializer=rpc.ContextSerializer())

    def _cast(self, context, host: str, method: str, **kwargs) -> None:
        cctxt = self.client.prepare(server=host, version="1.0")
        cctxt.cast(context, method, **kwargs)

    def create_backup(self, context, host: str, backup_id: str) -> None:
        self._cast(context, host, "create_backup", backup_id=backup_id)

    def restore_backup(self, context, host: str, backup_id: str, volume_id: str,
                       volume_is_new: bool) -> None:
        self._cast(context, host, "restore_backup", backup_id=backup_id,
                   volume_id=volume_id, volume_is_new=volume_is_new)

    def delete_backup(self, context, host: str, backup_id: str) -> None:
        self._cast(context, host, "delete_backup", backup_id=backup_id)

    def import_record(self, context, host: str, backup_id: str) -> None:
        self._cast(context, host, "import_record", backup_id=backup_id)
