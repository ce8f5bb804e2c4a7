"""The operator's pages: what serves and how well, the registered versions, the rollout with its actions,
the monitoring history, and the audit log with its verification.

Promotions and rollbacks go through the same use cases as ``deskpilot promote`` and ``deskpilot rollback``
(:mod:`deskpilot.workflows.rollout`), on the server's registry and audit log, audited under the signed-in
operator's name (``console:TENANT/KEY``) with the reason the form requires. A form is confirmed by a
required checkbox, so the confirmation works without JavaScript; ``console.js`` adds a ``confirm()``
prompt where scripts run. The console never forces a promotion past a failed gate: that stays a CLI act.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from deskpilot.console import operator_audit, operator_charts, operator_data
from deskpilot.console.auth import ConsoleUser, OperatorDep, form_of
from deskpilot.console.errors import ConsoleError
from deskpilot.console.health import HealthSampler
from deskpilot.console.rendering import render, render_fragment
from deskpilot.console.stack import StackDep
from deskpilot.errors import DeskPilotError, ModelNotFoundError
from deskpilot.workflows import rollout
from deskpilot.workflows.serving import ServingStack

PREFIX = "/console/ops"
REASON_MAX = 500
TARGETS = ("shadow", "canary", "champion")
DEFAULT_CANARY_PERCENT = 10.0
OVERVIEW_RUNS = 100  # stored windows the overview reads for the latest signals
DONE = {
    "promoted": "Promoted",
    "rolled-back": "Rolled back",
}
HEALTH_STATE = "console_health"

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def health_sampler(request: Request, stack: ServingStack) -> HealthSampler:
    """This app's sampler of its own metrics, made on first use (the overview reads it)."""
    sampler = getattr(request.app.state, HEALTH_STATE, None)
    if not isinstance(sampler, HealthSampler):
        sampler = HealthSampler(stack.metrics.render)
        setattr(request.app.state, HEALTH_STATE, sampler)
    return sampler


async def _health_context(request: Request, stack: ServingStack) -> dict[str, Any]:
    report = await asyncio.to_thread(health_sampler(request, stack).report)
    return {"health": report, "sparks": operator_charts.health_sparklines(report)}


@router.get("")
async def overview(request: Request, user: OperatorDep, stack: StackDep) -> HTMLResponse:
    name = stack.settings.model_name
    monitoring = await asyncio.to_thread(
        operator_data.monitoring_view, stack.store, name, limit=OVERVIEW_RUNS
    )
    context = {
        "serving": stack.service.serving(),
        "monitoring": monitoring,
        "reload_interval_s": stack.settings.reload_interval_s,
        **await _health_context(request, stack),
    }
    return render(request, "operator_overview.html.j2", context, user=user, section="ops")


@router.get("/health")
async def health_fragment(request: Request, user: OperatorDep, stack: StackDep) -> HTMLResponse:
    """The health tiles alone, for the overview's periodic refresh."""
    context = await _health_context(request, stack)
    return render_fragment(request, "operator_health.html.j2", context, user=user)


@router.get("/models")
async def models(request: Request, user: OperatorDep, stack: StackDep) -> HTMLResponse:
    name = stack.settings.model_name
    rows = await asyncio.to_thread(operator_data.model_rows, stack.registry, name)
    context = {"model_name": name, "rows": rows, "metrics": operator_data.HEADLINE_METRICS}
    return render(request, "operator_models.html.j2", context, user=user, section="models")


@router.get("/models/{version}")
async def model(request: Request, user: OperatorDep, stack: StackDep, version: str) -> HTMLResponse:
    name = stack.settings.model_name
    try:
        detail = await asyncio.to_thread(operator_data.model_detail, stack.registry, name, version)
    except ModelNotFoundError as error:
        raise ConsoleError(404, "Not found", error.message) from None
    context = {"model_name": name, "detail": detail}
    return render(request, "operator_model.html.j2", context, user=user, section="models")


@router.get("/rollout")
async def rollout_page(
    request: Request, user: OperatorDep, stack: StackDep, done: str = "", to: str = ""
) -> HTMLResponse:
    flash = ""
    if done in DONE:
        flash = DONE[done] + (f" to {to}" if done == "promoted" and to in TARGETS else "") + "."
    return await _rollout(request, user, stack, flash=flash)


async def _rollout(
    request: Request,
    user: ConsoleUser,
    stack: ServingStack,
    *,
    flash: str = "",
    error: str = "",
    form: dict[str, str] | None = None,
    action: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    settings, registry = stack.settings, stack.registry
    status = await asyncio.to_thread(operator_data.rollout_status, settings, registry)
    versions = await asyncio.to_thread(operator_data.model_rows, registry, settings.model_name)
    shadow = await asyncio.to_thread(operator_data.shadow_view, settings, status.view.state.challenger)
    chart = operator_charts.agreement_chart(shadow.report) if shadow.report is not None else None
    context = {
        "status": status,
        "state": status.view.state,
        "versions": versions,
        "serving": stack.service.serving(),
        "shadow": shadow,
        "agreement_chart": chart,
        "flash": flash,
        "error": error,
        "form": form or {},
        "action": action,
        "targets": TARGETS,
        "default_percent": DEFAULT_CANARY_PERCENT,
        "reason_max": REASON_MAX,
        "reload_interval_s": settings.reload_interval_s,
    }
    return render(
        request, "operator_rollout.html.j2", context, user=user, section="rollout", status_code=status_code
    )


class FormError(Exception):
    """A field of an action form is missing or wrong: the rollout page again, with the message."""


def _reason(form: dict[str, str]) -> str:
    reason = " ".join(form.get("reason", "").split())
    if not reason:
        raise FormError("Give a reason: it is kept in the audit log with your name.")
    if len(reason) > REASON_MAX:
        raise FormError(f"Keep the reason under {REASON_MAX} characters.")
    if form.get("confirm") not in ("yes", "on", "true"):
        raise FormError("Tick the confirmation box to go ahead.")
    return reason


def _promotion(form: dict[str, str]) -> tuple[str, str, float | None, str]:
    """(version, target, percent, reason) of a promote form, or :class:`FormError`."""
    version = form.get("version", "").strip()
    if not (version.isascii() and version.isdecimal()):
        raise FormError("Choose a registered version to promote.")
    to = form.get("to", "")
    if to not in TARGETS:
        raise FormError("Choose where to promote it: shadow, canary or champion.")
    percent: float | None = None
    if to == "canary":
        try:
            percent = float(form.get("percent", "").strip())
        except ValueError:
            raise FormError("Give the canary's share of traffic as a number of percent.") from None
        if not (math.isfinite(percent) and 0.0 < percent <= 100.0):
            raise FormError("The canary's share must be above 0 and at most 100 percent.")
    return version, to, percent, _reason(form)


@router.post("/promote")
async def promote(request: Request, user: OperatorDep, stack: StackDep) -> Response:
    form = await form_of(request, user)
    try:
        version, to, percent, reason = _promotion(form)
    except FormError as problem:
        return await _rollout(
            request, user, stack, error=str(problem), form=form, action="promote", status_code=400
        )
    uri = f"models:/{stack.settings.model_name}/{version}"
    audit = stack.audit_recorder(user.actor)
    try:
        await asyncio.to_thread(
            rollout.promote,
            stack.settings,
            uri,
            to=to,
            percent=percent,
            reason=reason,
            registry=stack.registry,
            audit=audit,
        )
    except DeskPilotError as error:
        return await _refused(request, user, stack, error, form, "promote")
    return RedirectResponse(f"{PREFIX}/rollout?done=promoted&to={to}", status_code=303)


@router.post("/rollback")
async def rollback(request: Request, user: OperatorDep, stack: StackDep) -> Response:
    form = await form_of(request, user)
    try:
        reason = _reason(form)
    except FormError as problem:
        return await _rollout(
            request, user, stack, error=str(problem), form=form, action="rollback", status_code=400
        )
    audit = stack.audit_recorder(user.actor)
    try:
        await asyncio.to_thread(
            rollout.rollback, stack.settings, reason=reason, registry=stack.registry, audit=audit
        )
    except DeskPilotError as error:
        return await _refused(request, user, stack, error, form, "rollback")
    return RedirectResponse(f"{PREFIX}/rollout?done=rolled-back", status_code=303)


async def _refused(
    request: Request,
    user: ConsoleUser,
    stack: ServingStack,
    error: DeskPilotError,
    form: dict[str, str],
    action: str,
) -> HTMLResponse:
    """A use case said no (gate failed, nothing to roll back, ...): its message on the rollout page. A
    server-side failure (store unreachable) is the console's error page instead."""
    if error.http_status >= 500:
        raise error
    message = f"Not done: {error.message}"
    return await _rollout(
        request, user, stack, error=message, form=form, action=action, status_code=error.http_status
    )


@router.get("/monitoring")
async def monitoring(request: Request, user: OperatorDep, stack: StackDep) -> HTMLResponse:
    name = stack.settings.model_name
    view = await asyncio.to_thread(operator_data.monitoring_view, stack.store, name)
    reference = await asyncio.to_thread(
        operator_data.reference_accuracy, stack.registry, name, view.latest_version
    )
    context = {
        "view": view,
        "reference": reference,
        "accuracy_chart": operator_charts.accuracy_chart(view.points, reference),
        "q_chart": operator_charts.q_value_chart(view.points, view.alpha),
        "statistic_charts": operator_charts.statistic_charts(view.points),
    }
    return render(request, "operator_monitoring.html.j2", context, user=user, section="monitoring")


@router.get("/audit")
async def audit(request: Request, user: OperatorDep, stack: StackDep, page: str = "1") -> HTMLResponse:
    number = int(page) if page.isascii() and page.isdecimal() and len(page) < 10 else 0
    if number < 1:
        raise ConsoleError(400, "Bad request", "There is no such page of the audit log.")
    entries = await asyncio.to_thread(operator_audit.audit_page, stack.settings, number)
    verification = await asyncio.to_thread(operator_audit.verify, stack.settings)
    context = {"log": entries, "verification": verification}
    return render(request, "operator_audit.html.j2", context, user=user, section="audit")
