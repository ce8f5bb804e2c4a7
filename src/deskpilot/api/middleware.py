"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

* :class:`BodyGuard` (on ``POST``) first asks its :class:`TenantGate` who is calling: an unknown key is 401
  and a tenant out of tokens 429 before a byte of the body is read. It then refuses bodies over the limit
  (413) before reading them whole, bodies that take longer than ``body_timeout_s`` to arrive (408, and the
  connection closes), non-JSON bodies (415) and bytes that are not UTF-8 (400), and replays the checked body
  to the app. While the app works on it, a client that goes away cancels the request: its texts leave the
  model queue instead of being computed for nobody.
* :class:`RequestContext` gives every request a server-made id (``X-Request-ID`` in the response, the log's
  ``request_id``, each decision's ``http_request_id``); a caller's own ``X-Request-ID`` is only logged, as
  ``client_request_id``, when it is a plain token, with any PII in it redacted. It times the request into
  the latency histogram by route template and status (499 when the client left before an answer), opens its
  trace span, and writes one structured log line without text or keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.trace import Tracer
from starlette.requests import Request

from deskpilot.api.deps import TENANT_STATE, prepaid, rate_limited
from deskpilot.api.errors import error_body, error_headers
from deskpilot.errors import (
    AuthenticationError,
    DeskPilotError,
    InvalidEncodingError,
    PayloadTooLargeError,
    RequestError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from deskpilot.service.keys import Tenant, bearer_token
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.service.observability import span as span_of
from deskpilot.service.ratelimit import TokenBucketLimiter

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Any
Send = Any
ASGIApp = Any

_BODY_METHODS = frozenset({"POST"})  # the only method with a body here; others go to the router (405)
FORM_PREFIX = "/console/"  # the console's pages post HTML forms; everything else takes JSON
_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_FORM_STATE = ":deskpilot-form"  # a pseudo-header (no real header has a colon): the path takes a form
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection before the answer"
DISCONNECTED_STATE = "deskpilot.client_disconnected"

access_log = logging.getLogger("deskpilot.access")


async def send_error(send: Send, error: DeskPilotError, scope: Scope | None = None) -> None:
    """The error's JSON answer; a console page (``scope`` under /console/) gets it as an HTML page."""
    if scope is not None and str(scope.get("path", "")).startswith(FORM_PREFIX):
        from deskpilot.console.errors import page_for  # the console's pages, on use

        await page_for(Request(scope), error)(scope, _disconnected, send)
        return
    body = json.dumps(error_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error_headers(error).items()]
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


class TenantGate:
    """Authentication and the door fee of the routes under ``prefix``, from the headers alone.

    The fee is one token per ``bytes_per_token`` bytes of body (at least one, at most the tenant's burst),
    taken before the body is read and kept whatever becomes of the request: a tenant pays for the parsing it
    causes, valid or not. The route then charges only what its tickets cost beyond the fee
    (:func:`deskpilot.api.deps.charge`).
    """

    def __init__(
        self,
        *,
        authenticate: Callable[[str | None], Tenant | None],
        limiter: TokenBucketLimiter,
        metrics: ServiceMetrics,
        bytes_per_token: int,
        prefix: str = "/v1/",
    ) -> None:
        if bytes_per_token < 1:
            raise ValueError("bytes_per_token must be at least 1")
        self._authenticate = authenticate
        self._limiter = limiter
        self._metrics = metrics
        self.bytes_per_token = bytes_per_token
        self.prefix = prefix

    def applies(self, scope: Scope) -> bool:
        return str(scope.get("path", "")).startswith(self.prefix)

    def admit(self, scope: Scope, authorization: str | None) -> Tenant | RequestError:
        tenant = self._authenticate(bearer_token(authorization))
        if tenant is None:
            self._metrics.auth_failures.inc()
            return AuthenticationError("a valid API key is required: Authorization: Bearer <key>")
        state = scope.setdefault("state", {})
        state["tenant"] = tenant.name
        state[TENANT_STATE] = tenant
        return tenant

    def pay(self, tenant: Tenant, body_bytes: int) -> int | RequestError:
        """The tokens taken for a body of ``body_bytes``, or the 429 when the bucket cannot pay them."""
        rate, burst = self._limiter.limits_for(tenant.name)
        fee = max(1, math.ceil(body_bytes / self.bytes_per_token))
        if rate > 0:
            fee = min(fee, burst)
        decision = self._limiter.acquire(tenant.name, fee)
        if not decision.allowed:
            return rate_limited(self._metrics, tenant.name, decision.retry_after_s)
        return fee


class BodyGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        gate: TenantGate | None = None,
        body_timeout_s: float | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.gate = gate
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        headers[_FORM_STATE] = "1" if str(scope.get("path", "")).startswith(FORM_PREFIX) else ""
        gate = self.gate if self.gate is not None and self.gate.applies(scope) else None
        admitted = self._before_body(scope, headers, gate)
        if isinstance(admitted, RequestError):
            await send_error(send, admitted, scope)
            return
        tenant, paid = admitted
        body = await self._read(scope, receive, send)
        if body is None:
            return
        checked = self._after_body(body, gate, tenant, paid)
        if isinstance(checked, RequestError):
            await send_error(send, checked, scope)
            return
        with prepaid(checked):
            await self._serve(scope, receive, send, body)

    def _before_body(
        self, scope: Scope, headers: dict[str, str], gate: TenantGate | None
    ) -> tuple[Tenant | None, int] | RequestError:
        """Who calls and what they paid at the door (the fee of a declared length), or the refusal."""
        if gate is None:
            return self._check_headers(headers) or (None, 0)
        tenant = gate.admit(scope, headers.get("authorization"))
        if isinstance(tenant, RequestError):
            return tenant
        refusal = self._check_headers(headers)
        if refusal is not None:
            return refusal
        declared = headers.get("content-length", "")
        if not (declared.isascii() and declared.isdigit()):
            return tenant, 0  # chunked: it pays when the body has arrived
        fee = gate.pay(tenant, int(declared))
        return fee if isinstance(fee, RequestError) else (tenant, fee)

    def _after_body(
        self, body: bytes, gate: TenantGate | None, tenant: Tenant | None, paid: int
    ) -> int | RequestError:
        """The tokens paid in all, or the refusal of a body that is not UTF-8 or cannot be paid for."""
        if gate is not None and tenant is not None and paid == 0:
            fee = gate.pay(tenant, len(body))
            if isinstance(fee, RequestError):
                return fee
            paid = fee
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return InvalidEncodingError(f"the body is not valid UTF-8 (byte {exc.start})")
        return paid

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when the request was answered (too large, too slow) or abandoned."""
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = None if self.body_timeout_s is None else loop.time() + self.body_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                await send_error(
                    send,
                    RequestTimeoutError(f"the body did not arrive within {self.body_timeout_s:g}s"),
                    scope,
                )
                return None
            if message["type"] == "http.disconnect":
                scope.setdefault("state", {})[DISCONNECTED_STATE] = True
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_error(send, self._too_large_error(), scope)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        """Run the app on the checked body; cancel it if the client disconnects before the answer."""
        replayed = False
        answered = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                message: Message = await receive()
                return message
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send_tracked(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        task = asyncio.current_task()
        left = False

        async def watch() -> None:
            # the server answers receive() with a disconnect when the client goes, or once the response is
            # complete: only the first means nobody waits for this answer any more
            nonlocal left
            message = await receive()
            if message["type"] == "http.disconnect" and not answered and task is not None:
                left = True
                task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await self.app(scope, replay, send_tracked)
        except asyncio.CancelledError:
            if not left or task is None or task.uncancel() > 0:
                raise
            scope.setdefault("state", {})[DISCONNECTED_STATE] = True
        finally:
            watcher.cancel()

    def _check_headers(self, headers: dict[str, str]) -> RequestError | None:
        """The error of a request refused on its headers alone, else None."""
        media_type, _, params = headers.get("content-type", "").partition(";")
        expected = _FORM_MEDIA_TYPE if headers.get(_FORM_STATE) else "application/json"
        if media_type.strip().lower() != expected:
            return UnsupportedMediaTypeError(f"send the body as {expected}")
        charset = params.lower().replace(" ", "").partition("charset=")[2].strip('"')
        if charset and charset not in {"utf-8", "utf8"}:
            return InvalidEncodingError(f"only UTF-8 bodies are accepted, not {charset}")
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            return self._too_large_error()
        return None

    def _too_large_error(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the body is over the {self.max_body_bytes:,}-byte limit",
            details={"max_body_bytes": self.max_body_bytes},
        )


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServiceMetrics,
        tracer: Tracer,
        redact: Callable[[str], str] | None = None,
        known_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        self.redact = redact
        self.known_paths = known_paths

    def route_template(self, scope: Scope) -> str:
        """The route's path template; for a request refused before the router (401 at the gate, 413 or
        408 in the body guard) its path when that is one of the app's (none has path parameters)."""
        route = getattr(scope.get("route"), "path", None)
        if route is None and scope["path"] in self.known_paths:
            route = scope["path"]  # only known templates: a label per unknown path would grow without end
        return route or "unmatched"

    def client_request_id(self, scope: Scope) -> str | None:
        """The caller's ``X-Request-ID`` when it is a plain token, PII redacted; never used as an id here."""
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        if not _REQUEST_ID.match(incoming):
            return None
        return self.redact(incoming) if self.redact is not None else incoming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex  # ours: a caller cannot choose it, or reuse another request's
        client_id = self.client_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status: int | None = None
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
            except asyncio.CancelledError:
                state[DISCONNECTED_STATE] = True
                raise
            finally:
                if status is None:
                    status = CLIENT_CLOSED if state.get(DISCONNECTED_STATE) else 500
                template = self.route_template(scope)
                elapsed = time.perf_counter() - started
                self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(elapsed)
                span.set_attribute("http.route", template)
                span.set_attribute("http.status_code", status)
                span.set_attribute("deskpilot.request_id", request_id)
                if client_id is not None:
                    span.set_attribute("deskpilot.client_request_id", client_id)
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "client_request_id": client_id,
                        "tenant": state.get("tenant"),
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "latency_ms": round(elapsed * 1000.0, 3),
                    },
                )
