"""One place that renders DeskPilot's errors as HTTP: ``{"error": {...}}`` with the status of its class.

The statuses live on the classes in :mod:`deskpilot.errors`, so a code keeps its status wherever it is raised.
Anything a caller can send ends in a 4xx from here; a 500 means a bug, and its body never carries internals.
Neither does a 503 from the store: an error whose details name the database (the store's errors do) goes
out with a generic message and no details, and the whole of it goes to the log. A schema error lists at most
:data:`MAX_LISTED_ERRORS` problems and counts the rest.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError as FastApiValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from deskpilot.console import errors as console_errors
from deskpilot.errors import (
    AuthenticationError,
    DeskPilotError,
    InvalidJsonError,
    MethodNotAllowedError,
    NotFoundError,
    RateLimitedError,
    RequestError,
    RequestTimeoutError,
    RequestValidationError,
)

logger = logging.getLogger(__name__)

_STARLETTE_ERRORS: dict[int, type[RequestError]] = {404: NotFoundError, 405: MethodNotAllowedError}
MAX_LISTED_ERRORS = 20
_INTERNAL_DETAILS = frozenset({"database"})  # details that name infrastructure (the store's errors set it)
_KEPT_DETAILS = frozenset({"retry_after_s"})


def error_body(error: DeskPilotError) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"}}``, without the database's address, file path or driver
    message: an error whose details name the database gets a generic message (the original is logged)."""
    if not _INTERNAL_DETAILS & error.details.keys():
        return {"error": error.to_dict()}
    logger.warning(
        "%s: %s", error.code, error.message, extra={"code": error.code, "details": dict(error.details)}
    )
    kept = {k: v for k, v in error.details.items() if k in _KEPT_DETAILS}
    return {
        "error": {"code": error.code, "message": "the service's store failed; retry later", "details": kept}
    }


def error_headers(error: DeskPilotError) -> dict[str, str]:
    """The headers an error's class calls for: when to retry, how to authenticate, that the connection
    closes (a body that did not arrive in time leaves the stream in an unknown state)."""
    if isinstance(error, RateLimitedError) or error.http_status == 503:
        # every 503 is "retry later": say when, by default after about one store retry
        retry_after = error.details.get("retry_after_s", None if error.http_status != 503 else 1)
        return {} if retry_after is None else {"Retry-After": str(max(1, int(retry_after)))}
    if isinstance(error, AuthenticationError):
        return {"WWW-Authenticate": 'Bearer realm="deskpilot"'}
    if isinstance(error, RequestTimeoutError):
        return {"Connection": "close"}
    return {}


def error_response(error: DeskPilotError, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """The response for ``error``: its class's status, plus the headers its class calls for."""
    merged = {**(headers or {}), **error_headers(error)}
    return JSONResponse(error_body(error), status_code=error.http_status, headers=merged or None)


def validation_details(errors: list[Any]) -> dict[str, Any]:
    """Where and why, without echoing the caller's input back (it may hold PII): the first
    :data:`MAX_LISTED_ERRORS` problems and how many there were in all."""
    listed = [
        {
            "field": ".".join(str(part) for part in e.get("loc", ()) if part != "body"),
            "problem": e.get("msg", ""),
        }
        for e in errors[:MAX_LISTED_ERRORS]
    ]
    return {"errors": listed, "error_count": len(errors)}


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors for the API; an error on a console page is rendered as a page by the console."""

    async def on_console_error(request: Request, exc: Exception) -> Response:
        return console_errors.page_for(request, exc)

    async def on_deskpilot_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DeskPilotError)
        if console_errors.is_console(request):
            return console_errors.page_for(request, exc)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FastApiValidationError)
        if console_errors.is_console(request):
            return console_errors.page_for(request, exc)
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(InvalidJsonError("the request body is not valid JSON"))
        return error_response(
            RequestValidationError(
                "the request body does not match the schema", details=validation_details(errors)
            )
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if console_errors.is_console(request):
            return console_errors.page_for(request, exc)
        error = _STARLETTE_ERRORS.get(exc.status_code, RequestError)(str(exc.detail))
        headers = dict(exc.headers) if exc.headers else None  # a 405 carries its Allow header
        response = error_response(error, headers=headers)
        # the framework's other refusals (a 400 for a body it cannot parse, say) keep their own status
        response.status_code = exc.status_code
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if console_errors.is_console(request):
            return console_errors.page_for(request, exc)
        logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return error_response(DeskPilotError("internal error; it has been logged"))

    app.add_exception_handler(console_errors.ConsoleError, on_console_error)
    app.add_exception_handler(console_errors.SignInRequired, on_console_error)
    app.add_exception_handler(DeskPilotError, on_deskpilot_error)
    app.add_exception_handler(FastApiValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
