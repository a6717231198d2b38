"""Worker liveness: each worker's row in ``services`` and its heartbeat.

The API chooses among the workers whose heartbeat is recent (service_down_time);
a worker that stops cleanly marks itself down so it is not chosen meanwhile.
"""

from oslo_db import exception as db_exc
from sqlalchemy import bindparam, select, update

from backupsvc.db import models
from backupsvc.db.session import main_context_manager
from backupsvc.db.session import now as _now


def service_heartbeat(context, host: str, binary: str, topic: str,
                      availability_zone: str) -> None:
    """Insert or refresh this worker's row; its heartbeat_at says it is alive."""
    now = _now()
    with main_context_manager.writer.using(context) as session:
        result = session.execute(
            update(models.Service)
            .where(models.Service.host == host, models.Service.binary == binary,
                   models.Service.deleted == False)  # noqa: E712
            .values(heartbeat_at=now, updated_at=now, topic=topic,
                    availability_zone=availability_zone,
                    report_count=models.Service.report_count + 1))
        if result.rowcount:
            return
    try:
        with main_context_manager.writer.using(context) as session:
            session.add(models.Service(host=host, binary=binary, topic=topic,
                                       availability_zone=availability_zone,
                                       heartbeat_at=now, report_count=1))
    except db_exc.DBDuplicateEntry:
        pass  # another thread of the same worker inserted it first


_SERVICES = (select(models.Service).where(models.Service.deleted == False)  # noqa: E712
             .order_by(models.Service.host))
_SERVICES_OF_BINARY = _SERVICES.where(models.Service.binary == bindparam("binary"))


def service_get_all(context, binary: str | None = None) -> list[models.Service]:
    with main_context_manager.reader.using(context) as session:
        if binary:
            return list(session.scalars(_SERVICES_OF_BINARY, {"binary": binary}))
        return list(session.scalars(_SERVICES))


def service_is_up(service: models.Service, down_time: int) -> bool:
    if service.disabled or service.heartbeat_at is None:
        return False
    age = (_now() - service.heartbeat_at).total_seconds()
    return age <= down_time


def service_get_all_up(context, binary: str, down_time: int) -> list[models.Service]:
    return [s for s in service_get_all(context, binary) if service_is_up(s, down_time)]


def service_mark_down(context, host: str, binary: str) -> None:
    """A worker stopping cleanly says so, so the API stops choosing it at once."""
    with main_context_manager.writer.using(context) as session:
        session.execute(update(models.Service)
                        .where(models.Service.host == host, models.Service.binary == binary)
                        .values(heartbeat_at=None))
