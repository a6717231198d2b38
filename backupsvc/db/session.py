"""The database session factory (oslo.db enginefacade), bound to CONF.database."""

import datetime

from oslo_config import cfg
from oslo_db.sqlalchemy import enginefacade
from oslo_utils import timeutils

CONF = cfg.CONF

main_context_manager = enginefacade.transaction_context()
_configured = False


def configure() -> None:
    """Bind the enginefacade to CONF.database (call once, after config load)."""
    global _configured
    if not _configured:
        main_context_manager.configure(**dict(CONF.database.items()))
        _configured = True


def get_engine():
    configure()
    return main_context_manager.writer.get_engine()


def now() -> datetime.datetime:
    return timeutils.utcnow()
