"""The agent's console on a live server: the queue and its filters and pages, a ticket and its verdicts, the
reply suggestion and its verdicts, tenant isolation, escaping and the CSRF check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from deskpilot.domain import Route
from deskpilot.store.records import DecisionRecord
from deskpilot.workflows.serving import ServingStack
from tests.integration.api_fixtures import ACME_KEY
from tests.integration.console.console_fixtures import Browser, ConsoleHome, console_server, sign_in
from tests.live_server import LiveServer

XSS = "<script>alert('owned')</script><img src=x onerror=alert(2)> my card never came"
ACTIVATE = "How do I activate my new card?"
ROW = re.compile(r'<tr data-id="([^"]+)"')


@pytest.fixture(scope="module")
def server(console_home: ConsoleHome) -> Iterator[LiveServer]:
    with console_server(console_home) as live:
        live.app.state.console_home = console_home  # what the tests' own sign-ins need
        seed(live)
        yield live


@pytest.fixture
def agent(server: LiveServer, console_home: ConsoleHome) -> Iterator[Browser]:
    browser = sign_in(server, console_home.agent_key)
    yield browser
    browser.close()


@pytest.fixture
def globex(server: LiveServer, console_home: ConsoleHome) -> Iterator[Browser]:
    browser = sign_in(server, console_home.globex_agent_key)
    yield browser
    browser.close()


def parts_home(server: LiveServer) -> ConsoleHome:
    home: ConsoleHome = server.app.state.console_home
    return home


def parts(server: LiveServer) -> ServingStack:
    stack: ServingStack = server.app.state.parts
    return stack


def intents(server: LiveServer) -> list[str]:
    champion = parts(server).service.models.champion
    assert champion is not None
    return sorted(champion.model.classes)


def seed(server: LiveServer) -> None:
    """acme: 70 tickets for a person (two intents, four channels, confidences 0..0.69, one a minute apart
    but every tenth two hours older), 5 auto routes (not queued), 5 sampled auto routes, one with HTML
    (three days old); globex: 5 of its own."""
    stack = parts(server)
    now = datetime.now(UTC)
    champion = stack.service.models.champion
    assert champion is not None
    classes = intents(server)

    def decision(i: int, tenant: str = "acme", **changes: Any) -> DecisionRecord:
        values: dict[str, Any] = {
            "tenant": tenant,
            "request_id": f"{tenant}-{i:03d}",
            "model_name": champion.name,
            "model_version": champion.version,
            "intent": classes[i % 2],
            "confidence": (i % 70) / 100,
            "route": Route.HUMAN,
            "alternatives": ((classes[2], 0.1),),
            "latency_ms": 1.5,
            "text": f"ticket number {i} from {tenant}",
            "channel": ("email", "chat", "phone", None)[i % 4],
            "created_at": now - timedelta(minutes=i, hours=2 if i % 10 == 9 else 0),
        }
        values.update(changes)
        return DecisionRecord(**values)

    records = [decision(i) for i in range(70) if i != 30]
    records += [decision(30, text=ACTIVATE, intent="activate_my_card")]  # the knowledge answers this one
    records += [decision(i, route=Route.AUTO, confidence=0.95) for i in range(70, 75)]
    records += [decision(i, route=Route.AUTO, confidence=0.96, review_sample=True) for i in range(75, 80)]
    records += [decision(80, text=XSS, created_at=now - timedelta(days=3))]
    records += [decision(i, "globex", intent=classes[3]) for i in range(5)]
    stack.store.write_decisions(records)


def rows(page: str) -> list[str]:
    return ROW.findall(page)


def query_of(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


def test_the_queue_pages_through_the_tenants_queue_newest_first(agent: Browser) -> None:
    first = agent.get("/console/queue")
    assert first.status_code == 200
    assert "Server-Timing" in first.headers
    found = rows(first.text)
    assert len(found) == 50
    assert found[:3] == ["acme-000", "acme-001", "acme-002"]
    assert 'hx-trigger="every 15s"' in first.text
    assert 'aria-live="polite"' in first.text
    assert "76</strong> tickets" in first.text  # 70 for a person, 5 sampled, one with HTML
    following = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert following is not None
    second = agent.get(following.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    rest = rows(second.text)
    assert len(rest) == 26
    assert not set(found) & set(rest)
    assert 'rel="next"' not in second.text
    assert 'hx-trigger="every 15s"' not in second.text  # only the first page refreshes itself
    assert all(rid.startswith("acme-") for rid in found + rest)
    assert not {f"acme-{i:03d}" for i in range(70, 75)} & set(found + rest)  # auto routes are not queued


QUEUED = [*range(70), *range(75, 81)]


def acme(numbers: Any) -> set[str]:
    return {f"acme-{i:03d}" for i in numbers}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"channel": "chat"}, acme(i for i in QUEUED if i % 4 == 1)),
        ({"min_conf": "10", "max_conf": "12"}, acme([10, 11, 12, 80])),
        ({"kind": "sampled"}, acme(range(75, 80))),
        ({"age": "30m", "kind": "human"}, acme(i for i in range(30) if i % 10 != 9)),
    ],
)
def test_each_filter_narrows_the_queue(agent: Browser, params: dict[str, str], expected: set[str]) -> None:
    page = agent.get("/console/queue", params={**params, "state": "all"})
    assert page.status_code == 200
    assert set(rows(page.text)) == expected


def test_the_intent_filter_and_a_filter_matching_nothing(agent: Browser, server: LiveServer) -> None:
    first = intents(server)[0]
    page = agent.get("/console/queue", params={"intent": first, "state": "all"})
    found = rows(page.text)
    assert found
    assert all(int(rid[-3:]) % 2 == 0 for rid in found)
    empty = agent.get("/console/queue", params={"intent": "no_such_intent"})
    assert empty.status_code == 200
    assert rows(empty.text) == []
    assert "No tickets match these filters" in empty.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_conf": "abc"}, "min_conf"),
        ({"max_conf": "200"}, "max_conf"),
        ({"age": "forever"}, "age"),
        ({"state": "closed"}, "state"),
        ({"kind": "robots"}, "kind"),
        ({"channel": "<b>"}, "channel"),
        ({"cursor": "garbage!"}, "cursor"),
    ],
)
def test_a_bad_filter_is_a_400_page_naming_it(agent: Browser, params: dict[str, str], field: str) -> None:
    page = agent.get("/console/queue", params=params)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert f"<code>{field}</code>" in page.text or f"`{field}`" in page.text


def test_the_live_fragment_is_the_table_alone(agent: Browser) -> None:
    fragment = agent.get("/console/queue/rows", params={"channel": "email"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert 'id="queue-live"' in fragment.text
    assert rows(fragment.text)


def test_ticket_text_is_shown_as_text_never_as_markup(agent: Browser) -> None:
    page = agent.get("/console/tickets/acme-080")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page.text
    queue = agent.get("/console/queue", params={"age": "all"})
    assert "<script>alert" not in queue.text


def test_a_ticket_shows_its_triage_and_why_it_is_here(agent: Browser, server: LiveServer) -> None:
    page = agent.get("/console/tickets/acme-005")
    assert page.status_code == 200
    text = page.text
    assert "ticket number 5 from acme" in text
    assert "Below threshold" in text
    assert intents(server)[2] in text  # the alternative
    assert "5%" in text
    assert 'data-shortcut="c"' in text
    assert 'value="__other__">None of these</option>' in text
    assert all(f'<option value="{intent}">' in text for intent in intents(server))
    assert 'hx-trigger="load"' in text
    assert "assist=1" in text  # the link that works without JavaScript
    sampled = agent.get("/console/tickets/acme-077").text
    assert "Audit sample" in sampled


def test_another_tenants_ticket_is_a_404_like_a_missing_one(globex: Browser, agent: Browser) -> None:
    theirs = globex.get("/console/tickets/acme-003")
    missing = globex.get("/console/tickets/acme-999")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text == missing.text
    assert "ticket number 3" not in theirs.text
    assert globex.get("/console/tickets/acme-003/assist").status_code == 404
    refused = globex.post("/console/tickets/acme-003/verdict", {"intent": "__other__"})
    assert refused.status_code == 404
    assert set(rows(globex.get("/console/queue").text)) == {f"globex-{i:03d}" for i in range(5)}
    assert agent.get("/console/tickets/globex-001").status_code == 404


def test_a_verdict_writes_feedback_and_opens_the_next_ticket(agent: Browser, server: LiveServer) -> None:
    store = parts(server).store
    opened = agent.get("/console/queue", params={"channel": "phone"})
    listed = rows(opened.text)
    link = re.search(r'href="(/console/tickets/' + listed[0] + r'[^"]*)"', opened.text)
    assert link is not None
    context = query_of(link.group(1).replace("&amp;", "&"))
    assert context["channel"] == "phone"
    queue = urlsplit(link.group(1).replace("&amp;", "&")).query
    answer = agent.post(
        f"/console/tickets/{listed[0]}/verdict", {"intent": intents(server)[3], "queue": queue}
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert urlsplit(location).path == f"/console/tickets/{listed[1]}"
    assert query_of(location)["prev"] == listed[0]
    assert query_of(location)["channel"] == "phone"
    verdict = store.verdict("acme", listed[0])
    assert verdict is not None
    assert verdict.correct_intent == intents(server)[3]
    after = agent.get(location)
    assert "Your verdict is saved" in after.text
    assert listed[0] not in rows(agent.get("/console/queue", params={"channel": "phone"}).text)
    done = agent.get("/console/queue", params={"channel": "phone", "state": "done"})
    assert rows(done.text) == [listed[0]]
    assert intents(server)[3] in done.text

    confirmed = agent.post(f"/console/tickets/{listed[1]}/verdict", {"intent": "__other__"})
    assert confirmed.status_code == 303
    stored = store.verdict("acme", listed[1])
    assert stored is not None
    assert stored.correct_intent == "__other__"


def test_next_ticket_follows_the_list_and_ends_on_the_queue(agent: Browser) -> None:
    page = agent.get("/console/tickets/acme-004", params={"channel": "email", "state": "all"})
    following = re.search(r'href="(/console/queue/next[^"]+)" data-shortcut="n"', page.text)
    assert following is not None
    answer = agent.get(following.group(1).replace("&amp;", "&"))
    assert answer.status_code == 303
    assert urlsplit(answer.headers["location"]).path == "/console/tickets/acme-008"
    assert query_of(answer.headers["location"])["channel"] == "email"
    end = agent.get(
        "/console/queue/next",
        params={"intent": "no_such_intent", "pos": query_of(following.group(1).replace("&amp;", "&"))["pos"]},
    )
    assert end.status_code == 303
    assert end.headers["location"] == "/console/queue?intent=no_such_intent&end=1"
    assert "No more tickets in this list" in agent.get(end.headers["location"]).text


def test_a_verdict_made_since_the_page_was_shown_is_not_overwritten(
    agent: Browser, server: LiveServer
) -> None:
    classes = intents(server)
    page = agent.get("/console/tickets/acme-022")
    shown = re.search(r'name="replaces" value="([^"]+)"', page.text)
    assert shown is not None
    assert shown.group(1) == "none"
    first = agent.post("/console/tickets/acme-022/verdict", {"intent": classes[5], "replaces": "none"})
    assert first.status_code == 303
    stale = agent.post("/console/tickets/acme-022/verdict", {"intent": classes[4], "replaces": "none"})
    assert stale.status_code == 409
    assert "Reload the ticket" in stale.text
    verdict = parts(server).store.verdict("acme", "acme-022")
    assert verdict is not None
    assert verdict.correct_intent == classes[5]
    fresh = re.search(r'name="replaces" value="([^"]+)"', agent.get("/console/tickets/acme-022").text)
    assert fresh is not None
    again = agent.post(
        "/console/tickets/acme-022/verdict", {"intent": classes[4], "replaces": fresh.group(1)}
    )
    assert again.status_code == 303
    replaced = parts(server).store.verdict("acme", "acme-022")
    assert replaced is not None
    assert replaced.correct_intent == classes[4]


def test_a_ticket_opened_by_its_url_continues_after_its_own_place(agent: Browser, server: LiveServer) -> None:
    stack = parts(server)
    champion = stack.service.models.champion
    assert champion is not None
    same_time = datetime.now(UTC) - timedelta(days=20)
    stack.store.write_decisions(  # one batch, one timestamp: only the row id orders them
        [
            DecisionRecord(
                tenant="acme",
                request_id=f"acme-tie-{i}",
                model_name=champion.name,
                model_version=champion.version,
                intent=intents(server)[0],
                confidence=0.2,
                route=Route.HUMAN,
                latency_ms=1.0,
                text=f"tied ticket {i}",
                channel="fax",
                created_at=same_time,
            )
            for i in range(3)
        ]
    )
    page = agent.get("/console/tickets/acme-tie-2", params={"channel": "fax"})
    following = re.search(r'href="(/console/queue/next[^"]+)" data-shortcut="n"', page.text)
    assert following is not None
    answer = agent.get(following.group(1).replace("&amp;", "&"))
    assert urlsplit(answer.headers["location"]).path == "/console/tickets/acme-tie-1"


def test_a_ticket_link_with_a_bad_list_says_so(agent: Browser) -> None:
    page = agent.get("/console/tickets/acme-023", params={"min_conf": "lots"})
    assert page.status_code == 200
    assert "was not understood" in page.text


def test_an_oversized_form_is_refused_with_a_page(agent: Browser) -> None:
    answer = agent.post("/console/tickets/acme-024/verdict", {"intent": "x" * 3_000_000})
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert "<html" in answer.text


def test_an_unknown_intent_is_a_400_and_writes_nothing(agent: Browser, server: LiveServer) -> None:
    answer = agent.post("/console/tickets/acme-020/verdict", {"intent": "not_an_intent"})
    assert answer.status_code == 400
    assert "Unknown intent" in answer.text
    assert parts(server).store.verdict("acme", "acme-020") is None


def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing(
    agent: Browser, server: LiveServer
) -> None:
    stack = parts(server)
    answer = agent.post("/console/tickets/acme-021/verdict", {"intent": intents(server)[1]}, csrf=False)
    assert answer.status_code == 403
    forged = agent.client.post(
        "/console/tickets/acme-021/verdict", data={"intent": intents(server)[1], "csrf_token": "forged"}
    )
    assert forged.status_code == 403
    assert stack.store.verdict("acme", "acme-021") is None
    draft = agent.post(
        "/console/tickets/acme-021/draft", {"suggestion_id": "x", "verdict": "accepted"}, csrf=False
    )
    assert draft.status_code == 403


def test_the_reply_suggestion_and_its_verdicts(agent: Browser, server: LiveServer) -> None:
    knowledge = parts(server).knowledge
    panel = agent.get("/console/tickets/acme-030/assist", headers={"HX-Request": "true"})
    assert panel.status_code == 200
    assert "<html" not in panel.text
    found = re.search(r'name="suggestion_id" value="([^"]+)"', panel.text)
    assert found is not None, panel.text
    suggestion_id = found.group(1)
    assert 'id="source-1"' in panel.text
    latest = knowledge.latest_suggestion("acme", "acme-030")
    assert latest is not None
    assert latest.record.suggestion_id == suggestion_id
    assert latest.record.draft is not None

    again = agent.get("/console/tickets/acme-030?assist=1")  # no JavaScript: the panel inside the page
    assert f'value="{suggestion_id}"' in again.text  # shown again from the store, not drafted anew

    accepted = agent.post(
        "/console/tickets/acme-030/draft",
        {"suggestion_id": suggestion_id, "verdict": "accepted", "text": latest.record.draft},
    )
    assert accepted.status_code == 303
    assert query_of(accepted.headers["location"])["saved"] == "draft-accepted"
    stored = knowledge.latest_suggestion("acme", "acme-030")
    assert stored is not None
    assert stored.verdict == "accepted"

    edited = agent.post(
        "/console/tickets/acme-030/draft",
        {"suggestion_id": suggestion_id, "verdict": "accepted", "text": "Hello, it is on its way."},
    )
    assert query_of(edited.headers["location"])["saved"] == "draft-edited"
    stored = knowledge.latest_suggestion("acme", "acme-030")
    assert stored is not None
    assert stored.verdict == "edited"

    rejected = agent.post(
        "/console/tickets/acme-030/draft", {"suggestion_id": suggestion_id, "verdict": "rejected"}
    )
    assert rejected.status_code == 303
    wrong = agent.post(
        "/console/tickets/acme-031/draft", {"suggestion_id": suggestion_id, "verdict": "rejected"}
    )
    assert wrong.status_code == 404  # another ticket's suggestion
    globex = sign_in(server, parts_home(server).globex_agent_key)
    try:
        theirs = globex.post(
            "/console/tickets/globex-001/draft", {"suggestion_id": suggestion_id, "verdict": "rejected"}
        )
        assert theirs.status_code == 404  # another tenant's suggestion reads like a missing one
    finally:
        globex.close()
    stored = knowledge.latest_suggestion("acme", "acme-030")
    assert stored is not None
    assert stored.verdict == "rejected"
    bad = agent.post("/console/tickets/acme-030/draft", {"suggestion_id": suggestion_id, "verdict": "maybe"})
    assert bad.status_code == 400


def test_without_a_knowledge_index_the_page_shows_triage_only(agent: Browser, server: LiveServer) -> None:
    holder = parts(server).copilot.holder
    loaded = holder._loaded
    holder._loaded = None
    try:
        panel = agent.get("/console/tickets/acme-040/assist")
        page = agent.get("/console/tickets/acme-040")
    finally:
        holder._loaded = loaded
    assert panel.status_code == 200
    assert "not available" in panel.text
    assert page.status_code == 200
    assert "Below threshold" in page.text


def test_the_channel_travels_from_the_api_to_the_queue(agent: Browser, server: LiveServer) -> None:
    stack = parts(server)
    with server.client(ACME_KEY) as api:
        answer = api.post("/v1/triage", json={"text": "my card has not arrived yet", "channel": "web-form"})
        refused = api.post("/v1/triage", json={"text": "hello", "channel": "Not A Channel"})
    assert answer.status_code == 200, answer.text
    assert refused.status_code == 422
    writer = stack.service.writer
    assert writer is not None
    writer.flush(5.0)
    record = stack.store.get_decision("acme", answer.json()["request_id"])
    assert record is not None
    assert record.channel == "web-form"


def test_signing_in_is_required(server: LiveServer) -> None:
    import httpx

    with httpx.Client(base_url=server.url, follow_redirects=False) as anonymous:
        answer = anonymous.get("/console/queue")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/sign-in")
        posted = anonymous.post("/console/tickets/acme-001/verdict", data={"intent": "x"})
        assert posted.status_code == 303
