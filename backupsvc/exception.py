"""Errors the use cases raise. Each carries the HTTP code the API maps it to.

Messages say what was wrong and, where it helps, what to do; they are shown to
users verbatim in Cinder's fault body.
"""


class BackupsvcError(Exception):
    code = 500
    message = "An unknown error occurred."

    def __init__(self, message: str | None = None, **kwargs):
        if message is None:
            message = self.message % kwargs if kwargs else self.message
        self.msg = message
        super().__init__(message)


class Invalid(BackupsvcError):
    code = 400
    message = "Invalid input received: %(reason)s"


class InvalidBackup(Invalid):
    message = "Invalid backup: %(reason)s"


class InvalidVolume(Invalid):
    message = "Invalid volume: %(reason)s"


class InvalidSnapshot(Invalid):
    message = "Invalid snapshot: %(reason)s"


class NotAuthorized(BackupsvcError):
    code = 403
    message = "Not authorized."


class PolicyNotAuthorized(NotAuthorized):
    message = "Policy doesn't allow %(action)s to be performed."


class NotFound(BackupsvcError):
    code = 404
    message = "Resource could not be found."


class BackupNotFound(NotFound):
    message = "Backup %(backup_id)s could not be found."


class VolumeNotFound(NotFound):
    message = "Volume %(volume_id)s could not be found."


class SnapshotNotFound(NotFound):
    message = "Snapshot %(snapshot_id)s could not be found."


class NotSupported(BackupsvcError):
    code = 405
    message = "Operation not supported: %(operation)s."


class Conflict(BackupsvcError):
    code = 409
    message = "Conflict: %(reason)s"


class OverQuota(BackupsvcError):
    code = 413
    message = "Quota exceeded: %(reason)s"


class BackupLimitExceeded(OverQuota):
    message = "Maximum number of backups allowed (%(allowed)d) exceeded"


class BackupGigabytesExceeded(OverQuota):
    message = ("Requested backup exceeds allowed Backup gigabytes quota. "
               "Requested %(requested)sG, quota is %(quota)sG and %(consumed)sG "
               "has been consumed.")


class ServiceUnavailable(BackupsvcError):
    code = 503
    message = "Service is unavailable at this time."


class BackupHostDown(ServiceUnavailable):
    message = ("The backup worker of host %(host)s, which holds this backup "
               "(backup_use_same_host), is not up: start it and retry.")


class NoWorkerAlive(ServiceUnavailable):
    message = ("No backup worker is up: start backupsvc-worker (or check its "
               "heartbeats with 'backupsvc-manage service list') and retry.")
