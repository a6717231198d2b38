"""Keystone authentication (``auth_strategy = keystone``).

The stack :func:`keystone_pipeline` builds, outermost first:

1. :class:`AuthFaults`: what keystonemiddleware itself answers (401 for a
   missing or bad token, 503 when Keystone cannot be reached) is re-rendered
   in Cinder's fault shape, ``{"unauthorized": {"code": 401, "message": ...}}``;
   its ``WWW-Authenticate: Keystone uri=...`` header is kept.
2. ``keystonemiddleware.auth_token``: validates ``X-Auth-Token`` with Keystone
   and replaces whatever identity headers the client sent by the token's
   (``X-User-Id``, ``X-Project-Id``, ``X-Roles``, ``X-Service-Catalog``,
   ``X-Is-Admin-Project``...). Its options live in ``[keystone_authtoken]``
   of the service's own configuration (the files given with
   ``--config-file``).
3. :class:`ProjectScope`: every backupsvc resource belongs to a project, so
   a token without one (unscoped or domain-scoped) is refused with 403
   instead of letting the URL name the project.

:class:`KeystoneContextHook` then builds the request context from what
auth_token left in the environment, token and service catalog included.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import webob
import webob.dec
from oslo_config import cfg
from oslo_log import log as logging
from oslo_middleware import request_id as request_id_mw

from backupsvc.api import errors, hooks
from backupsvc.context import RequestContext

LOG = logging.getLogger(__name__)

WSGIApp = Callable

# Set once a request got past auth_token: a 401/403 after that is the API's own.
ENV_AUTHENTICATED = "backupsvc.authenticated"

# The catalog entries worth carrying in a context (what Cinder keeps too).
CATALOG_TYPES = frozenset({"compute", "volume", "volumev3", "block-storage",
                           "object-store", "key-manager", "identity"})

AUTH_MESSAGES = {
    401: "The request you have made requires authentication.",
    503: "The Keystone service is temporarily unavailable.",
}


class AuthFaults:
    """Render keystonemiddleware's own refusals as Cinder faults."""

    def __init__(self, app: WSGIApp):
        self.app = app

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> webob.Response:
        response = req.get_response(self.app)
        if req.environ.get(ENV_AUTHENTICATED) or response.status_int < 400:
            return response
        message = _message(response)
        kept = {name: value for name, value in response.headers.items()
                if name.lower() == "www-authenticate"}
        return errors.fault_response(response.status_int, message, kept)


def _message(response: webob.Response) -> str:
    default = AUTH_MESSAGES.get(response.status_int, response.status)
    try:
        body = json.loads(response.body or b"null")
    except ValueError:
        return default
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str) and message:
            return message
    return default


class ProjectScope:
    """Past auth_token: insist on a project-scoped token."""

    def __init__(self, app: WSGIApp):
        self.app = app

    def __call__(self, environ, start_response):
        environ[ENV_AUTHENTICATED] = True
        if not environ.get("HTTP_X_PROJECT_ID"):
            return errors.fault_response(
                403, "backupsvc needs a project-scoped token: every volume and backup "
                     "belongs to a project.")(environ, start_response)
        return self.app(environ, start_response)


def keystone_pipeline(app: WSGIApp, conf: cfg.ConfigOpts) -> WSGIApp:
    """auth_token (configured from ``conf``'s ``[keystone_authtoken]``) around ``app``."""
    try:
        from keystonemiddleware import auth_token
    except ImportError as exc:
        raise RuntimeError(
            "auth_strategy = keystone needs the keystonemiddleware package; "
            "install it or set auth_strategy = noauth") from exc
    # oslo_config_config: the middleware registers its options on our own
    # ConfigOpts, so [keystone_authtoken] is read from the --config-file the
    # service was started with (oslo_config_project would look only in
    # /etc/backupsvc and ~/.backupsvc).
    protected = auth_token.AuthProtocol(ProjectScope(app), {"oslo_config_config": conf})
    return AuthFaults(protected)


def service_catalog(environ) -> list[dict]:
    """The useful part of ``X-Service-Catalog`` (a JSON list), or []."""
    raw = environ.get("HTTP_X_SERVICE_CATALOG")
    if not raw:
        return []
    try:
        catalog = json.loads(raw)
    except ValueError:
        LOG.warning("Ignoring an X-Service-Catalog header that is not JSON")
        return []
    if not isinstance(catalog, list):
        return []
    return [entry for entry in catalog
            if isinstance(entry, dict) and entry.get("type") in CATALOG_TYPES]


def context_from_environ(environ) -> RequestContext:
    """The caller as auth_token describes it (``oslo_context`` reads the headers)."""
    ctx = RequestContext.from_environ(
        environ,
        request_id=environ.get(request_id_mw.ENV_REQUEST_ID),
        global_request_id=environ.get(request_id_mw.GLOBAL_REQ_ID))
    ctx.service_catalog = service_catalog(environ)
    return ctx


class KeystoneContextHook(hooks.ContextHook):
    """ContextHook for keystone mode: the whole identity, token included."""

    def on_route(self, state) -> None:
        state.request.context = context_from_environ(state.request.environ)
        # JSON only, as in the noauth hook (no Accept negotiation, no 406).
        state.request.pecan["content_type"] = "application/json"
