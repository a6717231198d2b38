"""What every v3 controller shares: the caller, bodies, list queries, links.

Controllers parse the request with these helpers, call one use case and
render a view; nothing else happens in a controller.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlencode

import pecan
import webob
from oslo_config import cfg
from oslo_utils import strutils

from backupsvc.api import errors, schemas, views
from backupsvc.api import microversions as mv
from backupsvc.api.microversions import APIVersion
from backupsvc.context import RequestContext

CONF = cfg.CONF

# Set by the v3 router when the URL names a project (/v3/<project>/...).
ENV_URL_PROJECT = "backupsvc.url_project"
DB_MAX_INT = 2147483647
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number",
               float: "number", bool: "boolean", type(None): "null"}


# ------------------------------------------------------------- the request

def context() -> RequestContext:
    return pecan.request.context


def api_version() -> APIVersion:
    return pecan.request.api_version


def base_url() -> str:
    """``public_endpoint`` when set (proxies, TLS), else the request's own URL."""
    request = pecan.request
    if CONF.public_endpoint:
        return CONF.public_endpoint.rstrip("/") + request.script_name
    return request.application_url


def view_context(show_backup_owner: bool = False) -> views.ViewContext:
    return views.ViewContext(
        version=api_version(), is_admin=bool(context().is_admin), base_url=base_url(),
        url_project=pecan.request.environ.get(ENV_URL_PROJECT),
        show_backup_owner=show_backup_owner)


def not_allowed(*allowed: str) -> NoReturn:
    raise errors.method_not_allowed(pecan.request.method, allowed)


def require_version(minimum: APIVersion) -> None:
    """Below ``minimum`` the method does not exist: 404, as in Cinder."""
    if api_version() < minimum:
        raise errors.not_found(
            "API version %s is not supported on this method." % str(api_version()))


def set_status(code: int) -> None:
    pecan.response.status = code


def no_content(status: int = 202) -> webob.Response:
    return webob.Response(status=status)


# ------------------------------------------------------------------ bodies

def read_json() -> dict:
    """The body as a JSON object, or a 400 / 415 saying what is wrong with it."""
    request = pecan.request
    raw = request.body
    if not raw.strip():
        raise errors.bad_request("Malformed request body: the body is empty; send a "
                                 "JSON object.")
    content_type = request.content_type
    if content_type and content_type != "application/json" and not content_type.endswith(
            "+json"):
        raise errors.APIError(415, "Invalid content type %s: send the body as "
                                   "application/json." % content_type)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.bad_request("Malformed request body: %s" % exc) from None
    if not isinstance(body, dict):
        raise errors.bad_request("Malformed request body: expected a JSON object, got "
                                 "a JSON %s." % _JSON_TYPES.get(type(body), "value"))
    return body


def read_body(schema: dict) -> dict:
    body = read_json()
    schemas.validate(schema, body)
    return body


def read_action(actions: dict[str, dict | None]) -> tuple[str, Any]:
    """``{"<action>": {...}}``: the action's name and its validated argument."""
    body = read_json()
    if len(body) != 1:
        raise errors.bad_request(
            "Malformed request body: an action body has exactly one key, the action "
            "name (one of %s); got %s." % (", ".join(sorted(actions)),
                                          ", ".join(sorted(body)) or "none"))
    name = next(iter(body))
    if name not in actions:
        raise errors.bad_request("There is no such action: %s" % name)
    if actions[name] is not None:
        schemas.validate(actions[name], body)
    return name, body[name]


def bool_param(name: str, value: str) -> bool:
    try:
        return strutils.bool_from_string(value, strict=True)
    except ValueError:
        raise errors.bad_request("Value '%s' for '%s' is not a boolean." % (value, name)) \
            from None


# ------------------------------------------------------------- list queries

@dataclasses.dataclass(frozen=True)
class ListSpec:
    """What a collection may be filtered and sorted by."""

    filters: frozenset[str]
    like_filters: frozenset[str]
    sort_keys: frozenset[str]
    name_sort_since: APIVersion = mv.BASE_VERSION
    converters: dict[str, Callable[[str, str], Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ListQuery:
    filters: dict
    marker: str | None
    limit: int           # the page size actually used (capped by osapi_max_limit)
    offset: int | None
    sort_keys: list[str]
    sort_dirs: list[str]
    all_tenants: bool
    with_count: bool

    def use_case_args(self) -> dict:
        return {"filters": self.filters, "marker": self.marker, "limit": self.limit,
                "offset": self.offset, "sort_keys": self.sort_keys,
                "sort_dirs": self.sort_dirs, "all_tenants": self.all_tenants}


def _limit(raw: str | None) -> int:
    if raw is None:
        return CONF.osapi_max_limit
    try:
        limit = int(raw)
    except ValueError:
        raise errors.bad_request("limit param must be an integer") from None
    if limit < 0:
        raise errors.bad_request("limit param must be positive")
    return min(limit, CONF.osapi_max_limit)


def _offset(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return strutils.validate_integer(raw, "offset", 0, DB_MAX_INT)
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None


def _sort(params: dict, spec: ListSpec, version: APIVersion) -> tuple[list[str], list[str]]:
    sort = params.pop("sort", None)
    sort_key = params.pop("sort_key", None)
    sort_dir = params.pop("sort_dir", None)
    if sort and (sort_key or sort_dir):
        raise errors.bad_request("The 'sort_key' and 'sort_dir' parameters are deprecated "
                                 "and cannot be used with the 'sort' parameter.")
    if sort:
        pairs = [item.partition(":")[::2] for item in sort.split(",")]
    else:
        pairs = [(sort_key or "created_at", sort_dir or "desc")]
    allowed = set(spec.sort_keys)
    if version >= spec.name_sort_since:
        allowed.add("name")
    keys, dirs = [], []
    for key, direction in pairs:
        key, direction = key.strip(), (direction.strip() or "desc").lower()
        if key not in allowed:
            raise errors.bad_request("Invalid input received: Invalid sort key '%s'; valid "
                                     "keys: %s." % (key, ", ".join(sorted(allowed))))
        if direction not in ("asc", "desc"):
            raise errors.bad_request("Invalid input received: Unknown sort direction '%s', "
                                     "must be 'desc' or 'asc'." % direction)
        if key not in keys:
            keys.append(key)
            dirs.append(direction)
    # Tie-breakers make the order total, so marker paging never skips a row.
    for key in ("created_at", "id"):
        if key not in keys:
            keys.append(key)
            dirs.append(dirs[0])
    return keys, dirs


def _filters(params: dict, spec: ListSpec, version: APIVersion) -> dict:
    filters, invalid = {}, []
    for key, value in params.items():
        like = key.endswith("~")
        base = key[:-1] if like else key
        if like:
            known = base in spec.like_filters and version >= mv.LIKE_FILTER
        else:
            known = base in spec.filters
        if not known:
            invalid.append(key)
            continue
        convert = spec.converters.get(base)
        filters[key] = convert(base, value) if convert and not like else value
    if invalid and version >= mv.RESOURCE_FILTER:
        raise errors.bad_request("Invalid filters %s are found in query options."
                                 % ",".join(invalid))
    return filters   # below 3.31 unknown filters are dropped, as in Cinder


def parse_list_query(spec: ListSpec) -> ListQuery:
    params = dict(pecan.request.GET.items())   # a repeated parameter: the last wins
    version = api_version()
    limit = _limit(params.pop("limit", None))
    offset = _offset(params.pop("offset", None))
    marker = params.pop("marker", None) or None
    sort_keys, sort_dirs = _sort(params, spec, version)
    raw_count = params.pop("with_count", None)
    with_count = (version >= mv.SUPPORT_COUNT_INFO and raw_count is not None
                  and bool_param("with_count", raw_count))
    raw_all = params.pop("all_tenants", None)
    all_tenants = False
    if raw_all is not None and context().is_admin:   # silently ignored for others
        try:
            all_tenants = strutils.bool_from_string(raw_all, strict=True)
        except ValueError:
            raise errors.bad_request("all_tenants must be a boolean, got '%s'." % raw_all) \
                from None
    filters = _filters(params, spec, version)
    return ListQuery(filters=filters, marker=marker, limit=limit, offset=offset,
                     sort_keys=sort_keys, sort_dirs=sort_dirs, all_tenants=all_tenants,
                     with_count=with_count)


def next_href(query: ListQuery, rows: list) -> str | None:
    """An absolute link to the next page when this page came back full."""
    if not rows or len(rows) < query.limit:
        return None
    request = pecan.request
    # The marker replaces the offset: keeping both would skip rows.
    params = [(k, v) for k, v in request.GET.items() if k not in ("marker", "offset")]
    params.append(("marker", rows[-1].id))
    return "%s%s?%s" % (base_url(), request.path_info, urlencode(params))


def int_filter(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request("Invalid filter %s=%s: must be an integer." % (name, value)) \
            from None
