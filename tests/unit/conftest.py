"""Unit-test fixtures: one SQLite database for the session, migrated by Alembic."""

import uuid

import pytest
from oslo_config import cfg

from backupsvc import conf  # noqa: F401  (registers options)
from backupsvc.context import RequestContext


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory):
    from backupsvc.db import api as db_api
    from backupsvc.db import migration

    path = tmp_path_factory.mktemp("db") / "unit.sqlite"
    cfg.CONF([], project="backupsvc", default_config_files=[], default_config_dirs=[])
    cfg.CONF.set_override("connection", "sqlite:///%s" % path, group="database")
    db_api.configure()
    migration.upgrade()
    return db_api


@pytest.fixture
def project_ctx():
    """A member of a fresh project, so tests never see each other's rows."""
    return RequestContext(user_id="user-" + uuid.uuid4().hex[:8],
                          project_id=uuid.uuid4().hex, roles=["member"])


@pytest.fixture
def admin_ctx():
    return RequestContext(user_id="admin", project_id="admin-project", roles=["admin"])
