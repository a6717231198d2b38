"""The WSGI application: a pecan app inside a small middleware stack.

Outermost first:

1. ``RequestId`` (oslo.middleware): ``X-OpenStack-Request-ID: req-<uuid>``
   on every response, errors included.
2. ``EdgeMiddleware``: last-resort fault rendering plus the microversion
   headers on responses that never reached pecan (e.g. a 413 below).
3. ``BodySizeLimit``: refuses bodies above ``osapi_max_request_body_size``.
4. Authentication, chosen by ``auth_strategy``: ``NoAuthMiddleware`` or
   keystonemiddleware's ``auth_token`` (see ``backupsvc.api.auth``). Either
   leaves the caller's identity in the ``X-User-Id`` / ``X-Project-Id`` /
   ``X-Roles`` headers (auth_token adds the token, the service catalog,
   ``X-Is-Admin-Project``...). Version discovery stays public in both modes.
5. pecan, with the Context, Microversion and Fault hooks (in keystone mode
   the context hook is ``auth.KeystoneContextHook``, which builds the context
   with ``RequestContext.from_environ``).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pecan
import webob
import webob.dec
from oslo_config import cfg
from oslo_log import log as logging
from oslo_middleware import request_id

from backupsvc import conf as _conf  # noqa: F401  (registers options)
from backupsvc.api import auth, errors, hooks, microversions
from backupsvc.api.controllers import root

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

WSGIApp = Callable

# Version discovery must answer before any credentials exist (keystoneauth
# and cinderclient fetch it first).
DISCOVERY_PATHS = ("", "/", "/v3", "/v3/")


class EdgeMiddleware:
    """Never let an exception or a header-less error escape."""

    def __init__(self, app: WSGIApp):
        self.app = app

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> webob.Response:
        try:
            response = req.get_response(self.app)
        except Exception as exc:  # the last line of defence: render, never re-raise
            response = errors.exception_response(
                exc, req.environ.get(request_id.ENV_REQUEST_ID))
        if microversions.HEADER not in response.headers:
            version = req.environ.get(hooks.ENV_VERSION)
            if version is None:
                try:
                    version = microversions.parse(req.headers.get(microversions.HEADER))
                except ValueError:
                    version = microversions.BASE_VERSION
            for name, value in microversions.response_headers(version):
                response.headers[name] = value
        return response


class BodySizeLimit:
    """413 for bodies larger than ``osapi_max_request_body_size``."""

    def __init__(self, app: WSGIApp, conf: cfg.ConfigOpts):
        self.app = app
        self.conf = conf

    def __call__(self, environ, start_response):
        max_size = self.conf.osapi_max_request_body_size
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                size = int(length)
            except ValueError:
                return errors.fault_response(
                    400, "Invalid Content-Length header %r." % length)(environ, start_response)
            if size > max_size:
                return self._too_large("%d bytes" % size, max_size)(environ, start_response)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = _read_at_most(environ["wsgi.input"], max_size + 1)
            if len(body) > max_size:
                return self._too_large("more than %d bytes" % max_size, max_size)(
                    environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)

    @staticmethod
    def _too_large(what: str, max_size: int) -> webob.Response:
        return errors.fault_response(
            413, "Request is too large: the body has %s and the limit is %d bytes "
                 "(osapi_max_request_body_size)." % (what, max_size))


def _read_at_most(stream, limit: int) -> bytes:
    """Read a body of unknown length, stopping one byte past the limit."""
    chunks, total = [], 0
    while total < limit:
        chunk = stream.read(min(65536, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


class NoAuthMiddleware:
    """Trust the caller's word for who it is (``auth_strategy = noauth``).

    * ``X-Auth-Token: user:project`` (python-cinderclient's noauth plugin);
    * else the ``X-User-Id`` / ``X-Project-Id`` headers;
    * else any other token (openstackclient sends ``notused``) is the user,
      and the project comes from the URL (see the v3 controller).

    Roles are ``admin`` unless an ``X-Roles`` header lists others, which is
    how tests and operators act as plain project members.
    """

    def __init__(self, app: WSGIApp):
        self.app = app

    def __call__(self, environ, start_response):
        token = environ.get("HTTP_X_AUTH_TOKEN", "")
        user = environ.get("HTTP_X_USER_ID") or None
        project = environ.get("HTTP_X_PROJECT_ID") or None
        if ":" in token:
            token_user, _, token_project = token.partition(":")
            user, project = token_user or user, token_project or project
        elif token and not user:
            user = token
        for key, value in (("HTTP_X_USER_ID", user), ("HTTP_X_PROJECT_ID", project)):
            if value:
                environ[key] = value
            else:
                environ.pop(key, None)
        if not hooks.roles_from_header(environ.get("HTTP_X_ROLES")):
            environ["HTTP_X_ROLES"] = "admin"
        environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
        return self.app(environ, start_response)


class PublicDiscovery:
    """Send discovery requests around the auth middleware."""

    def __init__(self, protected: WSGIApp, public: WSGIApp):
        self.protected = protected
        self.public = public

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") in DISCOVERY_PATHS:
            return self.public(environ, start_response)
        return self.protected(environ, start_response)


def _authenticated(app: WSGIApp, conf: cfg.ConfigOpts) -> WSGIApp:
    """The seam for authentication: add strategies here."""
    if conf.auth_strategy == "noauth":
        return NoAuthMiddleware(app)
    if conf.auth_strategy == "keystone":
        # auth_token validates the token and sets X-User-Id / X-Project-Id /
        # X-Roles / X-Service-Catalog... (removing any the client sent);
        # refusals are rendered as Cinder faults (backupsvc.api.auth).
        return auth.keystone_pipeline(app, conf)
    raise RuntimeError("unknown auth_strategy %r" % conf.auth_strategy)


def _context_hook(conf: cfg.ConfigOpts) -> hooks.ContextHook:
    if conf.auth_strategy == "keystone":
        return auth.KeystoneContextHook()
    return hooks.ContextHook()


def setup_pecan_app(conf: cfg.ConfigOpts = CONF) -> pecan.Pecan:
    return pecan.Pecan(
        root.RootController(),
        hooks=[_context_hook(conf), hooks.MicroversionHook(), hooks.FaultHook()],
        default_renderer="json",
        force_canonical=False,               # /v3 and /v3/ both answer, no redirect
        guess_content_type_from_ext=False,   # ids are never file names
    )


def setup_app(conf: cfg.ConfigOpts = CONF) -> WSGIApp:
    """Build the API's WSGI application from the loaded configuration."""
    app = setup_pecan_app(conf)
    app = PublicDiscovery(_authenticated(app, conf), app)
    app = BodySizeLimit(app, conf)
    app = EdgeMiddleware(app)
    app = request_id.RequestId(app)
    LOG.info("backupsvc API ready (auth_strategy=%s)", conf.auth_strategy)
    return app
