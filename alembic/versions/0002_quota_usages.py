"""Per-project quota usage counters.

Revision ID: 0002_quota_usages
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

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
        sa.Column("created_at", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime()),
        sa.UniqueConstraint("project_id", "resource",
                            name="uniq_quota_usages0project_id0resource"),
    )
