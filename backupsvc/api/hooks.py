"""Pecan hooks: build the request context, serve the microversion, render faults.

The auth middleware (noauth or keystonemiddleware) leaves the caller's
identity in the ``X-User-Id`` / ``X-Project-Id`` / ``X-Roles`` headers; the
ContextHook turns them into the RequestContext every use case receives.
"""

from __future__ import annotations

from oslo_log import log as logging
from oslo_middleware import request_id as request_id_mw
from pecan import hooks

from backupsvc.api import errors, microversions
from backupsvc.context import RequestContext

LOG = logging.getLogger(__name__)

ENV_VERSION = "backupsvc.api_version"


def roles_from_header(value: str | None) -> list[str]:
    return [role.strip() for role in (value or "").split(",") if role.strip()]


class ContextHook(hooks.PecanHook):
    """Attach ``pecan.request.context`` (a backupsvc RequestContext)."""

    priority = 10

    def on_route(self, state) -> None:
        headers = state.request.headers
        environ = state.request.environ
        roles = roles_from_header(headers.get("X-Roles"))
        state.request.context = RequestContext(
            user_id=headers.get("X-User-Id") or None,
            project_id=headers.get("X-Project-Id") or None,
            roles=roles,
            is_admin="admin" in roles,
            request_id=environ.get(request_id_mw.ENV_REQUEST_ID),
            global_request_id=environ.get(request_id_mw.GLOBAL_REQ_ID),
        )
        # The API speaks JSON only: skip pecan's Accept negotiation, which
        # would answer 406 to a client sending, say, "Accept: text/plain".
        state.request.pecan["content_type"] = "application/json"


class MicroversionHook(hooks.PecanHook):
    """Parse ``OpenStack-API-Version`` and echo it on every response."""

    priority = 20

    def on_route(self, state) -> None:
        # Until parsing succeeds, errors are reported at the base version.
        state.request.api_version = microversions.BASE_VERSION
        try:
            version = microversions.parse(state.request.headers.get(microversions.HEADER))
        except microversions.MalformedVersion as exc:
            raise errors.bad_request(str(exc)) from None
        except microversions.UnsupportedVersion as exc:
            raise errors.APIError(406, str(exc)) from None
        state.request.api_version = version
        state.request.environ[ENV_VERSION] = version

    def after(self, state) -> None:
        version = getattr(state.request, "api_version", microversions.BASE_VERSION)
        for name, value in microversions.response_headers(version):
            state.response.headers[name] = value


class FaultHook(hooks.PecanHook):
    """Render every exception as a Cinder fault body."""

    priority = 30

    def on_error(self, state, exc):
        return errors.exception_response(
            exc, state.request.environ.get(request_id_mw.ENV_REQUEST_ID))
