"""Schema migrations with Alembic.

The migration scripts live in the project's top-level ``alembic/`` folder. A
source checkout (or editable install) finds them next to the package; a
regular ``pip install`` ships them as data under ``<prefix>/share/backupsvc``.
"""

import os
import sys
import sysconfig

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from backupsvc.db import api as db_api


def script_location() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(here, "..", "..", "alembic"),
        os.path.join(sys.prefix, "share", "backupsvc", "alembic"),
        os.path.join(sysconfig.get_path("data"), "share", "backupsvc", "alembic"),
    ]
    for path in candidates:
        # versions/ tells our folder from the alembic library's own package.
        if (os.path.isfile(os.path.join(path, "env.py"))
                and os.path.isdir(os.path.join(path, "versions"))):
            return os.path.normpath(path)
    raise RuntimeError("backupsvc migrations not found; looked in %s" % ", ".join(candidates))


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
    config.attributes["connection"] = connection
    return config


def upgrade(revision: str = "head", engine=None) -> None:
    engine = engine or db_api.get_engine()
    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def current_version(engine=None) -> str | None:
    engine = engine or db_api.get_engine()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_version() -> str:
    return ScriptDirectory(script_location()).get_current_head()
