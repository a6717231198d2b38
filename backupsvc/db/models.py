"""SQLAlchemy models. Backup columns are Cinder's (same names and sizes).

Rows are soft-deleted (deleted=True, deleted_at) as in Cinder, so an exported
record can revive a deleted backup with its original id.
"""

import datetime

from oslo_utils import timeutils
from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# MySQL/MariaDB DATETIME keeps whole seconds unless told otherwise; backups
# taken within one second must still order (incremental parent choice).
DateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class SoftDeleteMixin:
    created_at: Mapped[datetime.datetime | None] = mapped_column(
        DateTime, default=timeutils.utcnow)
    updated_at: Mapped[datetime.datetime | None] = mapped_column(
        DateTime, onupdate=timeutils.utcnow)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)


def _uuid_col(**kwargs):
    return mapped_column(String(36), **kwargs)


class Backup(SoftDeleteMixin, Base):
    __tablename__ = "backups"
    __table_args__ = (
        Index("backups_deleted_project_id_idx", "deleted", "project_id"),
        Index("backups_volume_id_idx", "volume_id"),
        Index("backups_parent_id_idx", "parent_id"),
    )

    id: Mapped[str] = _uuid_col(primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    volume_id: Mapped[str] = _uuid_col(nullable=False)
    host: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(String(255))
    container: Mapped[str | None] = mapped_column(String(255))
    parent_id: Mapped[str | None] = _uuid_col()
    status: Mapped[str | None] = mapped_column(String(255))
    fail_reason: Mapped[str | None] = mapped_column(String(255))
    service_metadata: Mapped[str | None] = mapped_column(String(255))
    service: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(Integer)
    object_count: Mapped[int | None] = mapped_column(Integer)
    temp_volume_id: Mapped[str | None] = _uuid_col()
    temp_snapshot_id: Mapped[str | None] = _uuid_col()
    num_dependent_backups: Mapped[int | None] = mapped_column(Integer, default=0)
    snapshot_id: Mapped[str | None] = _uuid_col()
    data_timestamp: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    restore_volume_id: Mapped[str | None] = _uuid_col()
    encryption_key_id: Mapped[str | None] = _uuid_col()

    backup_metadata: Mapped[list["BackupMetadata"]] = relationship(
        primaryjoin="and_(Backup.id == BackupMetadata.backup_id,"
                    " BackupMetadata.deleted == False)",  # noqa: E712
        lazy="selectin", viewonly=True)

    @property
    def metadata_dict(self) -> dict[str, str]:
        return {m.key: m.value for m in self.backup_metadata}


class BackupMetadata(SoftDeleteMixin, Base):
    __tablename__ = "backup_metadata"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    value: Mapped[str | None] = mapped_column(String(255))
    backup_id: Mapped[str] = mapped_column(String(36), ForeignKey("backups.id"),
                                           nullable=False, index=True)


class Volume(SoftDeleteMixin, Base):
    __tablename__ = "volumes"
    __table_args__ = (Index("volumes_deleted_project_id_idx", "deleted", "project_id"),)

    id: Mapped[str] = _uuid_col(primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(Integer)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(255))
    previous_status: Mapped[str | None] = mapped_column(String(255))
    attach_status: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(String(255))
    # Where the bytes live: the sparse file or block device path.
    provider_location: Mapped[str | None] = mapped_column(String(4096))
    managed: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    bootable: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    multiattach: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    snapshot_id: Mapped[str | None] = _uuid_col()
    source_volid: Mapped[str | None] = _uuid_col()
    volume_type_id: Mapped[str | None] = _uuid_col()
    encryption_key_id: Mapped[str | None] = _uuid_col()
    launched_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    # os-attach bookkeeping (one attachment; multiattach is out of scope).
    attachment_id: Mapped[str | None] = _uuid_col()
    attached_instance_uuid: Mapped[str | None] = _uuid_col()
    attached_host: Mapped[str | None] = mapped_column(String(255))
    attach_mountpoint: Mapped[str | None] = mapped_column(String(255))
    attach_time: Mapped[datetime.datetime | None] = mapped_column(DateTime)

    volume_metadata: Mapped[list["VolumeMetadata"]] = relationship(
        primaryjoin="and_(Volume.id == VolumeMetadata.volume_id,"
                    " VolumeMetadata.deleted == False)",  # noqa: E712
        lazy="selectin", viewonly=True)

    @property
    def metadata_dict(self) -> dict[str, str]:
        return {m.key: m.value for m in self.volume_metadata}


class VolumeMetadata(SoftDeleteMixin, Base):
    __tablename__ = "volume_metadata"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    value: Mapped[str | None] = mapped_column(String(255))
    volume_id: Mapped[str] = mapped_column(String(36), ForeignKey("volumes.id"),
                                           nullable=False, index=True)


class Snapshot(SoftDeleteMixin, Base):
    __tablename__ = "snapshots"
    __table_args__ = (Index("snapshots_deleted_project_id_idx", "deleted", "project_id"),)

    id: Mapped[str] = _uuid_col(primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    volume_id: Mapped[str] = _uuid_col(nullable=False, index=True)
    status: Mapped[str | None] = mapped_column(String(255))
    progress: Mapped[str | None] = mapped_column(String(255))
    volume_size: Mapped[int | None] = mapped_column(Integer)
    display_name: Mapped[str | None] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(String(255))
    provider_location: Mapped[str | None] = mapped_column(String(4096))
    metadata_json: Mapped[str | None] = mapped_column(Text)


class Service(SoftDeleteMixin, Base):
    """A worker's heartbeat row: up when updated_at is recent enough."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", "deleted",
                                       name="uniq_services0host0binary0deleted"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    binary: Mapped[str] = mapped_column(String(255), nullable=False)
    topic: Mapped[str | None] = mapped_column(String(255))
    report_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)


class QuotaUsage(Base):
    """What a project holds of a resource; changed only by conditional UPDATEs."""

    __tablename__ = "quota_usages"
    __table_args__ = (UniqueConstraint("project_id", "resource",
                                       name="uniq_quota_usages0project_id0resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(255), nullable=False)
    resource: Mapped[str] = mapped_column(String(255), nullable=False)
    in_use: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created_at: Mapped[datetime.datetime | None] = mapped_column(
        DateTime, default=timeutils.utcnow)
    updated_at: Mapped[datetime.datetime | None] = mapped_column(
        DateTime, onupdate=timeutils.utcnow)
