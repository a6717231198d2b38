"""The models and the Alembic migrations describe the same schema (SQLite).

The same check runs against MariaDB and PostgreSQL in tests/functional.
"""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from backupsvc.db import migration, models


def schema_diff(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, models.Base.metadata)


def test_models_match_migrations_on_sqlite(tmp_path):
    engine = create_engine("sqlite:///%s" % (tmp_path / "m.sqlite"))
    migration.upgrade(engine=engine)
    assert schema_diff(engine) == []
    assert migration.current_version(engine) == migration.head_version()


def test_migrations_are_found_outside_the_source_tree():
    assert migration.script_location().endswith("alembic")
