"""Statements built once and run with parameters: reads by id and status CAS.

Building a SQLAlchemy statement costs about a millisecond of Python per call
(construction and cache key), as much as the database round trip; one built
once is compiled once and then only takes new parameters. The UPDATEs here do
not touch rows already loaded in the caller's session.
"""

import functools

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import joinedload, raiseload


def built_once(builder):
    """Build each variant of a statement once. Building one costs about a
    millisecond of Python per call (construction and cache key), as much as
    the round trip; a statement built once is compiled once and then only
    takes new parameters."""
    return functools.cache(builder)


@built_once
def _by_id(model, *, read_deleted: bool, project_only: bool, metadata, with_metadata: bool):
    """SELECT one ``model`` row by :id (and :project_id). Its ``metadata``
    relationship is joined (one round trip, where the relationship's own
    loading takes two) or, ``with_metadata=False``, not loaded: touching it raises."""
    query = select(model).where(model.id == bindparam("id"))
    if not read_deleted:
        query = query.where(model.deleted == False)  # noqa: E712
    if project_only:
        query = query.where(model.project_id == bindparam("project_id"))
    if metadata is not None:
        query = query.options(joinedload(metadata) if with_metadata else raiseload(metadata))
    return query.limit(1)


def get_by_id(session, model, row_id: str, context, *, project_only: bool,
               read_deleted: bool = False, metadata=None, with_metadata: bool = True):
    query = _by_id(model, read_deleted=read_deleted, project_only=project_only,
                   metadata=metadata, with_metadata=with_metadata)
    params = {"id": row_id}
    if project_only:
        params["project_id"] = context.project_id
    return session.execute(query, params).unique().scalar_one_or_none()


@built_once
def _cas_update(model, columns: tuple[str, ...]):
    """UPDATE ``model`` SET ``columns`` (from :new_<column>) WHERE id = :row_id AND NOT
    deleted AND status IN :expected."""
    return (update(model)
            .where(model.id == bindparam("row_id"), model.deleted == False,  # noqa: E712
                   model.status.in_(bindparam("expected", expanding=True)))
            .values({column: bindparam("new_" + column) for column in columns})
            .execution_options(synchronize_session=False))


def cas(session, model, row_id: str, expected, values: dict) -> int:
    """Run :func:`_cas_update`; the number of rows it changed (0 or 1)."""
    columns = tuple(sorted(values))
    params = {"new_" + column: values[column] for column in columns}
    params.update(row_id=row_id, expected=list(expected))
    return session.execute(_cas_update(model, columns), params).rowcount
