"""The Alembic migrations and the SQLAlchemy models agree on MariaDB and PostgreSQL.

tests/unit/db/test_migrations.py does the same on SQLite. Each run migrates a
freshly created database to head, compares it with the models (types
included), and drops the database again.
"""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from backupsvc.db import migration, models
from tests.functional import fixtures as fx

pytestmark = pytest.mark.functional


def schema_diff(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, models.Base.metadata)


def check_migrated(engine) -> None:
    # An empty database differs from the models: the comparison can fail.
    assert schema_diff(engine) != [], "an empty database already matches the models?"
    migration.upgrade(engine=engine)
    diff = schema_diff(engine)
    assert diff == [], "migrations and models disagree on %s:\n%s" % (
        engine.dialect.name, "\n".join(map(repr, diff)))
    assert migration.current_version(engine) == migration.head_version()
    tables = set(inspect(engine).get_table_names())
    assert set(models.Base.metadata.tables) <= tables, tables
    # Upgrading again is a no-op, not an error.
    migration.upgrade(engine=engine)
    assert schema_diff(engine) == []


@pytest.fixture
def mariadb_engine():
    name = "backupsvc_mig_%s" % uuid.uuid4().hex[:10]
    conn = fx.mariadb_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % name)
    engine = create_engine("mysql+pymysql://root@127.0.0.1:3306/%s?charset=utf8mb4" % name)
    try:
        yield engine
    finally:
        engine.dispose()
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS `%s`" % name)
        conn.close()


@pytest.fixture
def postgres_engine():
    name = "backupsvc_mig_%s" % uuid.uuid4().hex[:10]
    conn = fx.postgres_connect()
    with conn.cursor() as cur:
        cur.execute('CREATE DATABASE "%s"' % name)
    engine = create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/%s" % name)
    try:
        yield engine
    finally:
        engine.dispose()
        with conn.cursor() as cur:
            cur.execute('DROP DATABASE IF EXISTS "%s"' % name)
        conn.close()


def test_models_match_migrations_on_mariadb(mariadb_engine):
    check_migrated(mariadb_engine)


def test_models_match_migrations_on_postgresql(postgres_engine):
    check_migrated(postgres_engine)
