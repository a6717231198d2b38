"""Per-project quota usage counters.

Revision ID: 0002_quota_usages
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Microsecond precision on MySQL/MariaDB (whole seconds otherwise).
DateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0002_quota_usages"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_usages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("in_use", sa.Integer(), nullable=False),
        sa.Column("created_at", DateTime),
        sa.Column("updated_at", DateTime),
        sa.UniqueConstraint("project_id", "resource",
                            name="uniq_quota_usages0project_id0resource"),
    )
