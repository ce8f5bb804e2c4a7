"""The agent's console: the queue, a ticket with its triage and reply suggestion, and the agent's verdicts.

Pages are plain HTML forms and links that work without JavaScript; htmx (when vendored) only refreshes the
queue every 15 s and loads the reply suggestion after the ticket page, which stays a few indexed reads.
Every read and write names the signed-in user's tenant: another tenant's ticket is a 404 like a missing
one. A verdict is the same feedback row ``POST /v1/feedback`` writes, a draft's verdict the same as
``POST /v1/suggest/feedback``; each POST checks the session's CSRF token first and answers 303 (see other).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from deskpilot.console.agent_filters import AGES, QueueFilters, cursor_of, ticket_url
from deskpilot.console.agent_view import (
    OTHER_LABEL,
    AssistView,
    Serving,
    assist_from_record,
    assist_from_suggestion,
    excerpt,
    intent_label,
    items_by_id,
    short_reason,
    why_routed,
)
from deskpilot.console.auth import ConsoleUser, UserDep, form_of
from deskpilot.console.errors import ConsoleError
from deskpilot.console.rendering import render, render_fragment
from deskpilot.console.stack import StackDep
from deskpilot.errors import (
    DeskPilotError,
    KnowledgeIndexUnavailableError,
    StoreNotFoundError,
    UnknownIntentError,
)
from deskpilot.store.base import OTHER_INTENT
from deskpilot.store.knowledge import VERDICTS, Verdict
from deskpilot.store.queue import COUNT_CAP, Cursor, QueueRow
from deskpilot.store.records import DecisionRecord, FeedbackRecord
from deskpilot.workflows.serving import ServingStack

logger = logging.getLogger("deskpilot.console")
router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50
MAX_ID = 128
MAX_DRAFT = 20_000
CHANNELS = ("email", "chat", "phone", "web")
NOTICES = {
    "verdict": "Your verdict is saved.",
    "draft-accepted": "Draft accepted.",
    "draft-edited": "Your edit of the draft is saved.",
    "draft-rejected": "Draft rejected.",
}


@dataclass(frozen=True)
class RowView:
    record: DecisionRecord
    url: str
    why: Any
    excerpt: str
    verdict: str | None


def _timed(response: Response, started: float) -> Response:
    """The handler's own time (store reads and rendering), for the browser's devtools and the benchmark."""
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000.0:.1f}"
    return response


def _count_text(count: int) -> str:
    return f"{COUNT_CAP:,}+" if count > COUNT_CAP else f"{count:,}"


async def _queue_context(
    stack: ServingStack, user: ConsoleUser, filters: QueueFilters, cursor: Cursor | None
) -> dict[str, Any]:
    now = datetime.now(UTC)
    query = filters.query(now, after=cursor)
    store = stack.store
    page, count = await asyncio.gather(
        asyncio.to_thread(store.queue_page, user.tenant, query, limit=PAGE),
        asyncio.to_thread(store.queue_count, user.tenant, query),
    )
    rows = [_row(row, filters) for row in page.rows]
    next_cursor = page.next_cursor.encode() if page.next_cursor is not None else ""
    return {
        "filters": filters,
        "rows": rows,
        "count": count,
        "count_text": _count_text(count),
        "live": cursor is None,
        "rows_url": f"/console/queue/rows{filters.qs()}",
        "next_url": f"/console/queue{filters.qs(cursor=next_cursor)}" if next_cursor else "",
        "first_url": f"/console/queue{filters.qs()}" if cursor is not None else "",
        "updated": now,
    }


def _row(row: QueueRow, filters: QueueFilters) -> RowView:
    record = row.decision
    return RowView(
        record=record,
        url=ticket_url(record.request_id, filters, row.cursor),
        why=short_reason(record),
        excerpt=excerpt(record.text),
        verdict=None if row.verdict is None else intent_label(row.verdict),
    )


@router.get("/queue")
async def queue(request: Request, user: UserDep, stack: StackDep) -> Response:
    started = time.perf_counter()
    params = request.query_params
    filters = QueueFilters.parse(params)
    context = await _queue_context(stack, user, filters, cursor_of(params.get("cursor")))
    context.update(
        intents=Serving.of(stack.service.models).intents,
        ages=AGES,
        channels=CHANNELS,
        notice="No more tickets in this list." if params.get("end") else "",
    )
    page = render(request, "queue.html.j2", context, user=user, section="queue")
    return _timed(page, started)


@router.get("/queue/rows")
async def queue_rows(request: Request, user: UserDep, stack: StackDep) -> Response:
    """The live part of the first page (the table and its time), which htmx swaps in every 15 s."""
    started = time.perf_counter()
    context = await _queue_context(stack, user, QueueFilters.parse(request.query_params), None)
    return _timed(render_fragment(request, "queue_rows.html.j2", context, user=user), started)


async def _next_url(
    stack: ServingStack, tenant: str, filters: QueueFilters, position: Cursor, **extra: str
) -> str | None:
    """The ticket after ``position`` in the list ``filters`` make, or None at its end."""
    query = filters.query(datetime.now(UTC), after=position)
    page = await asyncio.to_thread(stack.store.queue_page, tenant, query, limit=1)
    if not page.rows:
        return None
    row = page.rows[0]
    return ticket_url(row.decision.request_id, filters, row.cursor, **extra)


@router.get("/queue/next")
async def next_ticket(request: Request, user: UserDep, stack: StackDep) -> Response:
    """Open the ticket after ``pos`` in the filtered list (the "next ticket" link and its ``n`` key)."""
    filters = QueueFilters.parse(request.query_params)
    position = cursor_of(request.query_params.get("pos"), "pos")
    found = None if position is None else await _next_url(stack, user.tenant, filters, position)
    return RedirectResponse(found or f"/console/queue{filters.qs(end='1')}", status_code=303)


async def _decision(stack: ServingStack, user: ConsoleUser, request_id: str) -> DecisionRecord:
    record = None
    if 0 < len(request_id) <= MAX_ID:
        record = await asyncio.to_thread(stack.store.get_decision, user.tenant, request_id)
    if record is None:  # another tenant's ticket reads exactly like a missing one
        raise ConsoleError(404, "No such ticket", "There is no ticket with this id.")
    return record


async def _context_of(
    stack: ServingStack, user: ConsoleUser, values: Mapping[str, str], record: DecisionRecord, *, strict: bool
) -> tuple[QueueFilters, Cursor, str]:
    """The list a ticket was opened from, its place in it, and a notice when the page's list was not
    understood; a ticket opened by its URL alone continues with the open queue, after its own place.
    ``strict``: a bad value is a 400 (forms), else the open queue with a notice. Forms carry it as one
    field, ``queue`` (the query string), apart from their own fields."""
    notice = ""
    try:
        filters = QueueFilters.parse(values)
        position = cursor_of(values.get("pos"), "pos")
    except ConsoleError as exc:
        if strict:
            raise
        filters, position = QueueFilters(), None
        notice = f"The list this link came from was not understood ({exc.message}); showing the open queue."
    if position is None:
        own = await asyncio.to_thread(stack.store.queue_position, user.tenant, record.request_id)
        position = own or Cursor(record.created_at, 0)
    return filters, position, notice


def _path(record: DecisionRecord) -> str:
    return f"/console/tickets/{quote(record.request_id, safe='')}"


@dataclass(frozen=True)
class AssistPanel:
    view: AssistView | None
    problem: str = ""


async def _assist(stack: ServingStack, user: ConsoleUser, record: DecisionRecord) -> AssistPanel:
    """The suggestion already made for this decision, or a new one; a panel saying why when there is none."""
    copilot = stack.copilot
    try:
        latest = await asyncio.to_thread(stack.knowledge.latest_suggestion, user.tenant, record.request_id)
        if latest is not None:
            loaded = copilot.holder.loaded
            cited = {str(source.get("id", "")) for source in latest.record.sources}
            found = [loaded.index.item(user.tenant, id_) for id_ in cited] if loaded is not None else []
            items = items_by_id(item for item in found if item is not None)
            return AssistPanel(assist_from_record(latest, items))
        outcome = await copilot.suggest(user.tenant, request_id=record.request_id)
    except KnowledgeIndexUnavailableError:
        return AssistPanel(None, "The reply assistant is not available: no knowledge index is loaded.")
    except DeskPilotError as exc:
        if exc.http_status < 500:
            raise
        logger.warning("no suggestion for the console: %s", exc.message)
        return AssistPanel(None, "The reply assistant cannot draft a reply just now; try again shortly.")
    return AssistPanel(assist_from_suggestion(outcome.suggestion))


def verdict_token(verdict: FeedbackRecord | None) -> str:
    """What identifies the verdict a page showed: a post carrying another one was made on stale ground."""
    return "none" if verdict is None else f"{verdict.correct_intent}@{verdict.created_at.isoformat()}"


@router.get("/tickets/{request_id}")
async def ticket(request: Request, request_id: str, user: UserDep, stack: StackDep) -> Response:
    started = time.perf_counter()
    record, verdict = await asyncio.gather(
        _decision(stack, user, request_id),
        asyncio.to_thread(stack.store.verdict, user.tenant, request_id[:MAX_ID]),
    )
    params = request.query_params
    filters, position, problem = await _context_of(stack, user, params, record, strict=False)
    serving = Serving.of(stack.service.models)
    previous = params.get("prev", "")
    context = {
        "record": record,
        "verdict": verdict,
        "verdict_token": verdict_token(verdict),
        "verdict_label": None if verdict is None else intent_label(verdict.correct_intent),
        "reasons": why_routed(record, serving),
        "intents": serving.intents,
        "other_intent": OTHER_INTENT,
        "other_label": OTHER_LABEL,
        "filters": filters,
        "pos": position.encode(),
        "queue_url": f"/console/queue{filters.qs()}",
        "next_url": f"/console/queue/next{filters.qs(pos=position.encode())}",
        "assist_url": ticket_url(record.request_id, filters, position, assist="1") + "#assist",
        "assist_fragment": f"{_path(record)}/assist{filters.qs(pos=position.encode())}",
        "ticket_path": _path(record),
        "panel": await _assist(stack, user, record) if params.get("assist") else None,
        "notice": NOTICES.get(params.get("saved", ""), "") or problem,
        "previous_url": f"/console/tickets/{quote(previous, safe='')}" if 0 < len(previous) <= MAX_ID else "",
    }
    page = render(request, "ticket.html.j2", context, user=user, section="queue")
    return _timed(page, started)


@router.get("/tickets/{request_id}/assist")
async def ticket_assist(request: Request, request_id: str, user: UserDep, stack: StackDep) -> Response:
    """The reply-suggestion panel alone, which the ticket page loads after it is shown."""
    record = await _decision(stack, user, request_id)
    filters, position, _ = await _context_of(stack, user, request.query_params, record, strict=False)
    context = {
        "record": record,
        "ticket_path": _path(record),
        "panel": await _assist(stack, user, record),
        "filters": filters,
        "pos": position.encode(),
    }
    return render_fragment(request, "ticket_assist.html.j2", context, user=user)


@router.post("/tickets/{request_id}/verdict")
async def post_verdict(request: Request, request_id: str, user: UserDep, stack: StackDep) -> Response:
    """Confirm or correct the intent (a feedback row), then go on to the next ticket of the list."""
    form = await form_of(request, user)
    record = await _decision(stack, user, request_id)
    filters, position, _ = await _context_of(
        stack, user, dict(parse_qsl(form.get("queue", ""))), record, strict=True
    )
    intent = (form.get("intent") or "").strip()
    if intent != OTHER_INTENT and intent not in Serving.of(stack.service.models).intents:
        raise ConsoleError(400, "Unknown intent", "The intent must be one the models know, or None of these.")
    shown = form.get("replaces")
    if shown is not None:  # the page said which verdict it showed: refuse to overwrite one made since
        current = await asyncio.to_thread(stack.store.verdict, user.tenant, record.request_id)
        if shown != verdict_token(current) and (current is None or current.correct_intent != intent):
            raise ConsoleError(
                409,
                "The verdict changed",
                "Someone recorded a verdict on this ticket after you opened it. Reload the ticket to see "
                "it before you replace it.",
            )
    try:
        await stack.service.feedback(user.tenant, record.request_id, intent)
    except UnknownIntentError as exc:  # the models changed between the page and the post
        raise ConsoleError(400, "Unknown intent", "The models serving now do not know this intent.") from exc
    except StoreNotFoundError as exc:
        raise ConsoleError(404, "No such ticket", "There is no ticket with this id.") from exc
    logger.info("console verdict", extra={"tenant": user.tenant, "key_id": user.key_id})
    found = await _next_url(stack, user.tenant, filters, position, prev=record.request_id, saved="verdict")
    target = found or ticket_url(record.request_id, filters, position, saved="verdict")
    return RedirectResponse(target, status_code=303)


@router.post("/tickets/{request_id}/draft")
async def post_draft(request: Request, request_id: str, user: UserDep, stack: StackDep) -> Response:
    """Accept, edit or reject the reply draft. Accepting a draft whose text was changed counts as an edit,
    and saving an edit that changed nothing as an acceptance: the verdict says what was sent."""
    form = await form_of(request, user)
    record = await _decision(stack, user, request_id)
    filters, position, _ = await _context_of(
        stack, user, dict(parse_qsl(form.get("queue", ""))), record, strict=True
    )
    verdict = form.get("verdict", "")
    if verdict not in VERDICTS:
        raise ConsoleError(400, "Bad form", "The draft's verdict must be accepted, edited or rejected.")
    suggestion_id = (form.get("suggestion_id") or "").strip()
    found = None
    if 0 < len(suggestion_id) <= MAX_ID:
        found = await asyncio.to_thread(stack.knowledge.get_suggestion, user.tenant, suggestion_id)
    if found is None or found.request_id != record.request_id:
        raise ConsoleError(404, "No such suggestion", "This ticket has no such reply suggestion.")
    final: str | None = None
    text = form.get("text")
    if verdict != "rejected" and text is not None:
        if len(text) > MAX_DRAFT:
            raise ConsoleError(400, "Reply too long", f"A reply holds at most {MAX_DRAFT:,} characters.")
        sent = text.replace("\r\n", "\n").strip()
        changed = sent != (found.draft or "").replace("\r\n", "\n").strip()
        verdict = "edited" if changed else "accepted"
        final = sent if changed else None
    await stack.copilot.feedback(user.tenant, suggestion_id, cast(Verdict, verdict), final_text=final)
    target = ticket_url(record.request_id, filters, position, saved=f"draft-{verdict}") + "#assist"
    return RedirectResponse(target, status_code=303)
