"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

* :class:`BodyGuard` refuses bodies over the limit (413) before reading them whole, non-JSON bodies (415) and
  bytes that are not UTF-8 (400), then replays the checked body to the app.
* :class:`RequestContext` gives every request an id (``X-Request-ID``, kept if the caller sent a sane one),
  times it into the latency histogram by route template and status, opens its trace span, and writes one
  structured log line without text or keys.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from opentelemetry.trace import Tracer

from deskpilot.api.errors import error_body
from deskpilot.errors import (
    DeskPilotError,
    InvalidEncodingError,
    PayloadTooLargeError,
    RequestError,
    UnsupportedMediaTypeError,
)
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.observability import span as span_of

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Any
Send = Any
ASGIApp = Any

_BODY_METHODS = frozenset({"POST"})  # the only method with a body here; others go to the router (405)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

access_log = logging.getLogger("deskpilot.access")


async def send_error(send: Send, error: DeskPilotError) -> None:
    body = json.dumps(error_body(error)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        refusal = self._check_headers(scope)
        if refusal is not None:
            await send_error(send, refusal)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            await send_error(send, InvalidEncodingError(f"the body is not valid UTF-8 (byte {exc.start})"))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                message: Message = await receive()
                return message
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _check_headers(self, scope: Scope) -> RequestError | None:
        """The error of a request refused on its headers alone, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media_type, _, params = headers.get("content-type", "").partition(";")
        if media_type.strip().lower() != "application/json":
            return UnsupportedMediaTypeError("send the body as application/json")
        charset = params.lower().replace(" ", "").partition("charset=")[2].strip('"')
        if charset and charset not in {"utf-8", "utf8"}:
            return InvalidEncodingError(f"only UTF-8 bodies are accepted, not {charset}")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return self._too_large_error()
        return None

    def _too_large_error(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the body is over the {self.max_body_bytes:,}-byte limit",
            details={"max_body_bytes": self.max_body_bytes},
        )

    async def _too_large(self, send: Send) -> None:
        await send_error(send, self._too_large_error())


class RequestContext:
    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, tracer: Tracer) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with span_of(self.tracer, f"{scope['method']} {scope['path']}") as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                elapsed = time.perf_counter() - started
                self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(elapsed)
                span.set_attribute("http.route", template)
                span.set_attribute("http.status_code", status)
                span.set_attribute("deskpilot.request_id", request_id)
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "tenant": state.get("tenant"),
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "latency_ms": round(elapsed * 1000.0, 3),
                    },
                )
