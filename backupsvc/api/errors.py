"""Cinder-shaped fault bodies: ``{"badRequest": {"code": 400, "message": ...}}``.

Every error the API returns goes through :func:`fault_response`, so clients
(which print ``message``) and tempest see one shape whatever failed: a use
case, routing, validation or an unexpected exception.
"""

from __future__ import annotations

import json

import webob
import webob.exc
from oslo_log import log as logging

from backupsvc import exception

LOG = logging.getLogger(__name__)

# Cinder's fault names by status; any other status is a "computeFault".
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}
GENERIC_500 = ("The server has either erred or is incapable of performing the requested "
               "operation.")


class APIError(exception.BackupsvcError):
    """An error found by the HTTP edge itself (bad body, bad URL, bad version)."""

    def __init__(self, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.headers = headers or {}


def bad_request(message: str) -> APIError:
    return APIError(400, message)


def not_found(message: str = "The resource could not be found.") -> APIError:
    return APIError(404, message)


def method_not_allowed(method: str, allowed: list[str] | tuple[str, ...]) -> APIError:
    return APIError(405, "The method %s is not allowed for this resource; allowed: %s."
                    % (method, ", ".join(allowed)), headers={"Allow": ", ".join(allowed)})


def fault_response(code: int, message: str, headers: dict | None = None) -> webob.Response:
    name = FAULT_NAMES.get(code, "computeFault")
    fault = {"code": code, "message": message}
    response = webob.Response(status=code, content_type="application/json", charset="UTF-8")
    if code == 413:
        # Quota and size errors are not worth retrying later: say so the way
        # Cinder does, so clients do not sleep and retry.
        response.headers["Retry-After"] = "0"
        fault["retryAfter"] = "0"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    response.text = json.dumps({name: fault})
    return response


def exception_response(exc: BaseException, request_id: str | None = None) -> webob.Response:
    """Render any exception; unexpected ones are logged and hidden."""
    if isinstance(exc, APIError):
        return fault_response(exc.code, exc.msg, exc.headers)
    if isinstance(exc, exception.BackupsvcError):
        if exc.code >= 500:
            LOG.error("Request %s failed: %s", request_id, exc.msg)
        return fault_response(exc.code, exc.msg)
    if isinstance(exc, webob.exc.HTTPException):
        return fault_response(exc.code, _http_message(exc))
    LOG.exception("Unexpected error in request %s", request_id)
    return fault_response(500, GENERIC_500)


def _http_message(exc: webob.exc.HTTPException) -> str:
    # Routing errors raised by pecan carry webob's generic texts.
    if exc.code == 404:
        return "The resource could not be found."
    if exc.code == 405:
        return "The method is not allowed for this resource."
    return exc.detail or exc.explanation or exc.title
