"""One place that maps DeskPilot's error codes to HTTP statuses and renders ``{"error": {...}}``.

The mapping is part of the public contract: a code keeps its status once shipped. Anything a caller can send
ends in a 4xx from here; a 500 means a bug, and its body never carries internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError as FastApiValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deskpilot.errors import DeskPilotError

logger = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "invalid_encoding": 400,
    "invalid_json": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "rate_limited": 429,
    "store_unavailable": 503,
    "store_error": 503,
    "model_unavailable": 503,
}
_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    code: str, message: str, details: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    status = STATUS_BY_CODE.get(code, 400 if code != "internal_error" else 500)
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    """Where and why, without echoing the caller's input back (it may hold PII)."""
    return [
        {
            "field": ".".join(str(part) for part in e.get("loc", ()) if part != "body"),
            "problem": e.get("msg", ""),
        }
        for e in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    async def on_deskpilot_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DeskPilotError)
        headers = None
        retry_after = exc.details.get("retry_after_s")
        if exc.code == "rate_limited" and retry_after is not None:
            headers = {"Retry-After": str(int(retry_after))}
        if exc.code == "unauthorized":
            headers = {"WWW-Authenticate": 'Bearer realm="deskpilot"'}
        return error_response(exc.code, exc.message, exc.details, headers=headers)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FastApiValidationError)
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response("invalid_json", "the request body is not valid JSON")
        return error_response(
            "validation_error",
            "the request body does not match the schema",
            {"errors": _validation_details(errors)},
        )

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STARLETTE_CODES.get(exc.status_code, "bad_request")
        headers = dict(exc.headers) if exc.headers else None  # a 405 carries its Allow header
        response = error_response(code, str(exc.detail), headers=headers)
        response.status_code = exc.status_code
        return response

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return error_response("internal_error", "internal error; it has been logged")

    app.add_exception_handler(DeskPilotError, on_deskpilot_error)
    app.add_exception_handler(FastApiValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
