"""Initial schema: backups, backup_metadata, volumes, volume_metadata,
snapshots, services.

Revision ID: 0001_initial
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Microsecond precision on MySQL/MariaDB (whole seconds otherwise).
DateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _soft_delete_columns():
    return [
        sa.Column("created_at", DateTime),
        sa.Column("updated_at", DateTime),
        sa.Column("deleted_at", DateTime),
        sa.Column("deleted", sa.Boolean(), nullable=False),
    ]


def _uuid(name, **kwargs):
    return sa.Column(name, sa.String(36), **kwargs)


def _str(name, length=255, **kwargs):
    return sa.Column(name, sa.String(length), **kwargs)


def upgrade() -> None:
    op.create_table(
        "backups",
        *_soft_delete_columns(),
        _uuid("id", primary_key=True),
        _str("user_id"), _str("project_id"),
        _uuid("volume_id", nullable=False),
        _str("host"), _str("availability_zone"),
        _str("display_name"), _str("display_description"),
        _str("container"),
        _uuid("parent_id"),
        _str("status"), _str("fail_reason"),
        _str("service_metadata"), _str("service"),
        sa.Column("size", sa.Integer()),
        sa.Column("object_count", sa.Integer()),
        _uuid("temp_volume_id"), _uuid("temp_snapshot_id"),
        sa.Column("num_dependent_backups", sa.Integer()),
        _uuid("snapshot_id"),
        sa.Column("data_timestamp", DateTime),
        _uuid("restore_volume_id"),
        _uuid("encryption_key_id"),
    )
    op.create_index("backups_deleted_project_id_idx", "backups", ["deleted", "project_id"])
    op.create_index("backups_volume_id_idx", "backups", ["volume_id"])
    op.create_index("backups_parent_id_idx", "backups", ["parent_id"])

    op.create_table(
        "backup_metadata",
        *_soft_delete_columns(),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _str("key", nullable=False), _str("value"),
        sa.Column("backup_id", sa.String(36), sa.ForeignKey("backups.id"), nullable=False),
    )
    op.create_index("ix_backup_metadata_backup_id", "backup_metadata", ["backup_id"])

    op.create_table(
        "volumes",
        *_soft_delete_columns(),
        _uuid("id", primary_key=True),
        _str("user_id"), _str("project_id"), _str("host"),
        sa.Column("size", sa.Integer()),
        _str("availability_zone"), _str("status"), _str("previous_status"),
        _str("attach_status"), _str("display_name"), _str("display_description"),
        _str("provider_location", 4096),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("bootable", sa.Boolean(), nullable=False),
        sa.Column("multiattach", sa.Boolean(), nullable=False),
        _uuid("snapshot_id"), _uuid("source_volid"), _uuid("volume_type_id"),
        _uuid("encryption_key_id"),
        sa.Column("launched_at", DateTime),
        _uuid("attachment_id"), _uuid("attached_instance_uuid"),
        _str("attached_host"), _str("attach_mountpoint"),
        sa.Column("attach_time", DateTime),
    )
    op.create_index("volumes_deleted_project_id_idx", "volumes", ["deleted", "project_id"])

    op.create_table(
        "volume_metadata",
        *_soft_delete_columns(),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _str("key", nullable=False), _str("value"),
        sa.Column("volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False),
    )
    op.create_index("ix_volume_metadata_volume_id", "volume_metadata", ["volume_id"])

    op.create_table(
        "snapshots",
        *_soft_delete_columns(),
        _uuid("id", primary_key=True),
        _str("user_id"), _str("project_id"),
        _uuid("volume_id", nullable=False),
        _str("status"), _str("progress"),
        sa.Column("volume_size", sa.Integer()),
        _str("display_name"), _str("display_description"),
        _str("provider_location", 4096),
        sa.Column("metadata_json", sa.Text()),
    )
    op.create_index("snapshots_deleted_project_id_idx", "snapshots", ["deleted", "project_id"])
    op.create_index("ix_snapshots_volume_id", "snapshots", ["volume_id"])

    op.create_table(
        "services",
        *_soft_delete_columns(),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _str("host", nullable=False), _str("binary", nullable=False), _str("topic"),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _str("availability_zone"),
        sa.Column("heartbeat_at", DateTime),
        sa.UniqueConstraint("host", "binary", "deleted",
                            name="uniq_services0host0binary0deleted"),
    )
