"""The console's own routes (sign-in, sign-out, the landing redirect) and :func:`mount_console`.

The agent's pages live in :mod:`deskpilot.console.agent`, the operator's in
:mod:`deskpilot.console.operator`; both sit on the same serving stack as the API, so a verdict given in the
console is the same feedback row ``POST /v1/feedback`` writes.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from deskpilot.console import agent, operator
from deskpilot.console.auth import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    UserDep,
    check_sign_in_form,
    clear_cookie,
    form_of,
    read_form,
    safe_next,
    set_cookie,
    sign_in_token,
    start_session,
)
from deskpilot.console.errors import PREFIX, SIGN_IN_REASONS, ConsoleError
from deskpilot.console.health import HealthSampler
from deskpilot.console.operator import HEALTH_STATE
from deskpilot.console.rendering import STATIC_DIR, STATIC_URL, render
from deskpilot.console.stack import StackDep
from deskpilot.service.keys import bearer_token
from deskpilot.store.sessions import token_digest
from deskpilot.workflows.serving import ServingStack

logger = logging.getLogger("deskpilot.console")
SIGN_IN_TTL_S = 3600

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _home_of(role: str) -> str:
    return f"{PREFIX}/ops" if role == "operator" else f"{PREFIX}/queue"


@router.get("")
@router.get("/")
async def landing(user: UserDep) -> RedirectResponse:
    return RedirectResponse(_home_of(user.role), status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, stack: StackDep, next: str = "", why: str = "") -> Response:
    token = sign_in_token(request)
    reason = SIGN_IN_REASONS.get(why, "")
    context = {"next": safe_next(next, ""), "why": reason, "sign_in_token": token, "error": ""}
    response = render(request, "sign_in.html.j2", context, user=None, section="sign-in")
    set_cookie(response, stack, SIGN_IN_COOKIE, token, SIGN_IN_TTL_S)
    return response


@router.post("/sign-in")
async def sign_in(request: Request, stack: StackDep) -> Response:
    form = await read_form(request)
    check_sign_in_form(request, form)
    key = (form.get("key") or "").strip()
    tenant = stack.keys.authenticate(bearer_token(f"Bearer {key}") if key else None)
    if tenant is None:
        stack.metrics.auth_failures.inc()
        context = {
            "next": safe_next(form.get("next"), ""),
            "why": "",
            "sign_in_token": request.cookies.get(SIGN_IN_COOKIE, ""),
            "error": "That key is not valid (or it was revoked).",
        }
        return render(request, "sign_in.html.j2", context, user=None, section="sign-in", status_code=401)
    replaced = request.cookies.get(SESSION_COOKIE)
    if replaced and len(replaced) <= 128:  # signing in again ends the session this browser had
        await asyncio.to_thread(stack.sessions.delete_session, token_digest(replaced))
    token = await start_session(stack, tenant)
    logger.info(
        "console sign-in", extra={"tenant": tenant.name, "key_id": tenant.key_id, "role": tenant.role}
    )
    home = _home_of(tenant.role if stack.settings.may_operate(tenant.name) else "agent")
    response = RedirectResponse(safe_next(form.get("next"), home), status_code=303)
    set_cookie(response, stack, SESSION_COOKIE, token, stack.settings.console_session_ttl_s)
    clear_cookie(response, stack, SIGN_IN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, user: UserDep, stack: StackDep) -> Response:
    await form_of(request, user)
    await asyncio.to_thread(stack.sessions.delete_session, user.session_digest)
    logger.info("console sign-out", extra={"tenant": user.tenant, "key_id": user.key_id})
    response = RedirectResponse(f"{PREFIX}/sign-in?why=signed-out", status_code=303)
    clear_cookie(response, stack, SESSION_COOKIE)
    return response


def _not_found_router() -> APIRouter:
    """Any other /console path: an HTML 404 (registered last, after every page)."""
    tail = APIRouter(prefix=PREFIX, include_in_schema=False)

    @tail.get("/{rest:path}")
    async def not_found(rest: str) -> Response:
        raise ConsoleError(404, "Not found", "There is no such page.")

    return tail


def mount_console(app: FastAPI) -> None:
    """Serve the console under ``/console`` on ``app`` (whose ``state.parts`` is the serving stack)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(router)
    app.include_router(agent.router)
    app.include_router(operator.router)
    app.include_router(_not_found_router())


def start_console(app: FastAPI, stack: ServingStack) -> None:
    """Start what the console runs in the background: the sampler behind the health tiles' sparklines."""
    sampler = HealthSampler(stack.metrics.render)
    setattr(app.state, HEALTH_STATE, sampler)
    sampler.start()


async def stop_console(app: FastAPI) -> None:
    sampler = getattr(app.state, HEALTH_STATE, None)
    if isinstance(sampler, HealthSampler):
        await sampler.stop()
