"""Statuses of backups, volumes and snapshots, and the allowed transitions.

Every status change in the database is a compare-and-swap from one of the
"from" states listed here; db.api refuses a change this table does not allow.
"""


class BackupStatus:
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    DELETED = "deleted"
    RESTORING = "restoring"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"

    ALL = (CREATING, AVAILABLE, DELETING, DELETED, RESTORING, ERROR, ERROR_DELETING)
    # What os-reset_status may set (Cinder allows only these two).
    RESETTABLE = (AVAILABLE, ERROR)


class VolumeStatus:
    CREATING = "creating"
    AVAILABLE = "available"
    IN_USE = "in-use"
    BACKING_UP = "backing-up"
    RESTORING_BACKUP = "restoring-backup"
    ERROR = "error"
    ERROR_RESTORING = "error_restoring"
    DELETING = "deleting"
    ERROR_DELETING = "error_deleting"
    MAINTENANCE = "maintenance"

    ALL = (CREATING, AVAILABLE, IN_USE, BACKING_UP, RESTORING_BACKUP, ERROR,
           ERROR_RESTORING, DELETING, ERROR_DELETING, MAINTENANCE)
    RESETTABLE = (CREATING, AVAILABLE, IN_USE, ERROR, ERROR_RESTORING,
                  ERROR_DELETING, MAINTENANCE)


class SnapshotStatus:
    CREATING = "creating"
    AVAILABLE = "available"
    BACKING_UP = "backing-up"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"

    ALL = (CREATING, AVAILABLE, BACKING_UP, DELETING, ERROR, ERROR_DELETING)


B, V, S = BackupStatus, VolumeStatus, SnapshotStatus

# to-state -> the states it may be entered from. None means "any state"
# (admin reset-status and force-delete are deliberately unrestricted).
BACKUP_TRANSITIONS: dict[str, tuple[str, ...] | None] = {
    B.CREATING: (),                       # only by insert (or import revival)
    B.AVAILABLE: (B.CREATING, B.RESTORING),
    B.RESTORING: (B.AVAILABLE,),
    B.DELETING: (B.AVAILABLE, B.ERROR),   # force delete passes its own set
    B.DELETED: (B.DELETING,),
    B.ERROR: (B.CREATING, B.DELETING, B.RESTORING),
    B.ERROR_DELETING: (B.DELETING,),
}

VOLUME_TRANSITIONS: dict[str, tuple[str, ...]] = {
    V.CREATING: (),                       # only by insert, or an admin reset
    V.MAINTENANCE: (),                    # only by an admin reset
    V.AVAILABLE: (V.CREATING, V.IN_USE, V.BACKING_UP, V.RESTORING_BACKUP),
    V.IN_USE: (V.AVAILABLE, V.BACKING_UP),
    V.BACKING_UP: (V.AVAILABLE, V.IN_USE),
    V.RESTORING_BACKUP: (V.AVAILABLE, V.CREATING),
    V.ERROR: (V.CREATING, V.RESTORING_BACKUP, V.BACKING_UP, V.DELETING),
    V.ERROR_RESTORING: (V.RESTORING_BACKUP,),
    V.DELETING: (V.AVAILABLE, V.ERROR, V.ERROR_RESTORING, V.ERROR_DELETING),
    V.ERROR_DELETING: (V.DELETING,),
}

SNAPSHOT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.AVAILABLE: (S.CREATING, S.BACKING_UP),
    S.BACKING_UP: (S.AVAILABLE,),
    S.DELETING: (S.AVAILABLE, S.ERROR),
    S.ERROR: (S.CREATING, S.DELETING),
}


def allowed_from(table: dict, to_status: str) -> tuple[str, ...] | None:
    if to_status not in table:
        raise ValueError("unknown target status %r" % to_status)
    return table[to_status]
