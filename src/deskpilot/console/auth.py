"""Console sign-in: an API key with a role buys a server-side session, held by an HttpOnly cookie.

* Sign-in takes a key (``deskpilot keys create --tenant T --role agent|operator``), checks it like the API
  does, and stores a new session (only the SHA-256 of its random token); the browser gets the token in an
  ``HttpOnly; SameSite=Strict; Path=/console`` cookie that expires with the session.
* Every request re-reads the session and re-checks its key: a revoked key ends its sessions at once, and a
  changed role applies on the next page.
* Every form carries a CSRF token derived from the session token (HMAC), checked on every POST; the sign-in
  form, before any session, uses a double-submit cookie instead. SameSite=Strict already keeps other sites'
  forms from sending the cookie; the token also covers a same-site attacker.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.responses import Response

from deskpilot.console.errors import ConsoleError, SignInRequired
from deskpilot.service.keys import AGENT, OPERATOR, Tenant
from deskpilot.store.sessions import ConsoleSession, token_digest
from deskpilot.workflows.serving import ServingStack

SESSION_COOKIE = "dp_session"
SIGN_IN_COOKIE = "dp_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/console"
MAX_FORM_FIELDS = 50
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class ConsoleUser:
    """Who a console request acts for: a tenant, through one of its keys, in a role."""

    tenant: str
    key_id: str
    role: str
    csrf_token: str
    session_digest: str

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def actor(self) -> str:
        """How the audit log names this user."""
        return f"console:{self.tenant}/{self.key_id}"


def csrf_for(session_token: str) -> str:
    """The CSRF token of a session: unguessable without the session token, stable for its life."""
    return hmac.new(session_token.encode(), b"deskpilot-console-csrf", hashlib.sha256).hexdigest()


def _stack(request: Request) -> ServingStack:
    stack: ServingStack = request.app.state.parts
    return stack


def _next_path(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(value: str | None, default: str) -> str:
    """A redirect target after sign-in: a console path only (never another site, never ``//host``)."""
    if not value or "\\" in value or any(ord(c) < 32 for c in value):
        return default
    if value.startswith("/console/") and not value.startswith("/console/sign-"):
        return value
    return default


async def current_user(request: Request) -> ConsoleUser:
    """The signed-in user of this request, or :class:`SignInRequired`."""
    cached = getattr(request.state, "console_user", None)
    if isinstance(cached, ConsoleUser):
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 128:
        raise SignInRequired(_next_path(request))
    stack = _stack(request)
    digest = token_digest(token)
    session = await asyncio.to_thread(stack.sessions.get_session, digest, datetime.now(UTC))
    if session is None:
        raise SignInRequired(_next_path(request), "ended")
    tenant = stack.keys.active(session.key_id, session.tenant)
    if tenant is None:
        await asyncio.to_thread(stack.sessions.delete_session, digest)
        raise SignInRequired(_next_path(request), "revoked")
    # an operator key of a tenant the deployment does not let operate (DESKPILOT_CONSOLE_OPERATOR_TENANTS)
    # works the agent view only: operators steer models every tenant shares
    role = tenant.role if tenant.role != OPERATOR or stack.settings.may_operate(tenant.name) else AGENT
    user = ConsoleUser(tenant.name, tenant.key_id, role, csrf_for(token), digest)
    request.state.console_user = user
    request.state.tenant = user.tenant  # the access log's tenant field, as for the API
    return user


async def current_operator(request: Request) -> ConsoleUser:
    user = await current_user(request)
    if not user.is_operator:
        raise ConsoleError(403, "Operators only", "This page needs a key with the operator role.")
    return user


UserDep = Annotated[ConsoleUser, Depends(current_user)]
OperatorDep = Annotated[ConsoleUser, Depends(current_operator)]


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded POST body (the last of a repeated name wins); 400 for anything else."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise ConsoleError(415, "Unsupported form", "Forms are sent as application/x-www-form-urlencoded.")
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConsoleError(400, "Bad form", "The form could not be read.") from exc
    return dict(pairs)


async def form_of(request: Request, user: ConsoleUser) -> dict[str, str]:
    """The checked fields of a console form: refused with 403 unless it carries the session's CSRF token."""
    form = await read_form(request)
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if not given or not hmac.compare_digest(given.encode(), user.csrf_token.encode()):
        raise ConsoleError(
            403, "Form refused", "The form's security token is missing or stale; reload the page."
        )
    return form


def sign_in_token(request: Request) -> str:
    """The double-submit token of the sign-in form: the browser's, or a new one (set by the page)."""
    token = request.cookies.get(SIGN_IN_COOKIE, "")
    return token if 20 <= len(token) <= 128 else secrets.token_urlsafe(32)


def check_sign_in_form(request: Request, form: dict[str, str]) -> None:
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    given = form.get(CSRF_FIELD, "")
    if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise ConsoleError(
            403, "Form refused", "The sign-in form is stale or was not sent by this page; reload it."
        )


async def start_session(stack: ServingStack, tenant: Tenant) -> str:
    """A new session for ``tenant``'s key; returns the token for the cookie (stored only as a digest)."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session = ConsoleSession(
        token_sha256=token_digest(token),
        tenant=tenant.name,
        key_id=tenant.key_id,
        role=tenant.role,
        created_at=now,
        expires_at=now + timedelta(seconds=stack.settings.console_session_ttl_s),
    )
    await asyncio.to_thread(stack.sessions.delete_expired, now)
    await asyncio.to_thread(stack.sessions.add_session, session)
    return token


def set_cookie(response: Response, stack: ServingStack, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=stack.settings.console_secure_cookie,
    )


def clear_cookie(response: Response, stack: ServingStack, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=stack.settings.console_secure_cookie
    )
