"""The operator's console against a live server: every page, promotion and rollback through the forms (audited
under the operator's name, seen by ``/v1/models``), the forms' required reason, confirmation and CSRF token,
refusals shown as pages, and hostile text escaped.

The home is shared with the other console suites: every test leaves the rollout as it found it (v1 champion,
no challenger).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from deskpilot.domain import ModelRef
from deskpilot.rollout.actions import read_state
from deskpilot.rollout.state import RolloutState
from deskpilot.store.audit import AuditEntry
from deskpilot.workflows.audit import read_entries
from tests.integration.api_fixtures import ACME_KEY, MODEL
from tests.integration.console.console_fixtures import Browser, ConsoleHome, console_server, signed_in
from tests.live_server import LiveServer

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="alert(1)"> canary for the dashboard'
PAGES = ("", "/models", "/rollout", "/monitoring", "/audit", "/health")


@pytest.fixture(scope="module")
def server(console_home: ConsoleHome) -> Iterator[LiveServer]:
    with console_server(console_home) as live:
        yield live


@pytest.fixture
def operator(server: LiveServer, console_home: ConsoleHome) -> Iterator[Browser]:
    with signed_in(server, console_home.operator_key) as browser:
        yield browser
    state = _state(console_home)
    assert state.challenger is None, "a test left a challenger behind"
    assert state.champion == console_home.versions[0]


def _state(home: ConsoleHome) -> RolloutState:
    return read_state(home.copilot.trained.registry, MODEL)


def _entries(home: ConsoleHome) -> list[AuditEntry]:
    return read_entries(home.settings(), limit=500)


def _models(server: LiveServer) -> dict[str, object]:
    answer = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {ACME_KEY}"}, timeout=10)
    answer.raise_for_status()
    body: dict[str, object] = answer.json()
    return body


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the server never saw the change"
        time.sleep(0.1)


def _promote_form(version: str, /, **changes: str) -> dict[str, str]:
    return {
        "version": version,
        "to": "canary",
        "percent": "30",
        "reason": "try v2",
        "confirm": "yes",
        **changes,
    }


def test_every_operator_page_answers(operator: Browser, console_home: ConsoleHome) -> None:
    for path in PAGES:
        page = operator.get(f"/console/ops{path}")
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # the layout's scripts all have a src
    overview = operator.get("/console/ops").text
    assert "What serves now" in overview
    assert "Service health" in overview
    assert f"models:/{MODEL}/{console_home.versions[0]}" in overview
    models = operator.get("/console/ops/models").text
    for version in console_home.versions:
        assert f'href="/console/ops/models/{version}"' in models
    assert "gate passed" in models


def test_a_model_page_shows_metrics_gate_card_and_report(
    operator: Browser, console_home: ConsoleHome
) -> None:
    page = operator.get(f"/console/ops/models/{console_home.versions[1]}")
    assert page.status_code == 200
    text = page.text
    assert "val_accuracy" in text
    assert "Gate decision" in text
    assert "Model card" in text
    assert "Evaluation report" in text
    assert '<table class="doc-table">' in text  # the stored Markdown, rendered as tables
    assert re.search(r"<h[1-6][^>]*>.*<script", text) is None
    for missing in ("999", "abc"):
        answer = operator.get(f"/console/ops/models/{missing}")
        assert answer.status_code == 404
        assert "text/html" in answer.headers["content-type"]


def test_an_agent_gets_403_on_every_operator_page_and_action(
    server: LiveServer, console_home: ConsoleHome
) -> None:
    before = _state(console_home).revision
    with signed_in(server, console_home.agent_key) as agent:
        for path in (*PAGES, "/models/1"):
            assert agent.get(f"/console/ops{path}").status_code == 403, path
        assert agent.post("/console/ops/promote", _promote_form(console_home.versions[1])).status_code == 403
        assert agent.post("/console/ops/rollback", {"reason": "no", "confirm": "yes"}).status_code == 403
    assert _state(console_home).revision == before


def test_signed_out_visitors_are_sent_to_sign_in(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = client.get("/console/ops/rollout")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/sign-in?next=/console/ops/rollout")
        assert client.post("/console/ops/rollback", data={"reason": "x", "confirm": "yes"}).status_code == 303


def test_promote_to_canary_and_roll_back_are_audited_and_served(
    operator: Browser, server: LiveServer, console_home: ConsoleHome
) -> None:
    v1, v2 = console_home.versions[:2]
    challenger_uri = ModelRef(MODEL, version=v2).uri
    answer = operator.post("/console/ops/promote", _promote_form(v2, reason=HOSTILE))
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/ops/rollout?done=promoted&to=canary"
    promoted = _entries(console_home)[-1]
    assert (promoted.action, promoted.target, promoted.reason) == ("promote", challenger_uri, HOSTILE)
    assert re.fullmatch(r"console:acme/[0-9a-f]{8}", promoted.actor)  # the key's id, never the key
    assert console_home.operator_key not in repr(promoted)
    assert promoted.payload["percent"] == 30.0
    _wait_for(
        lambda: _models(server)["shares"] == {ModelRef(MODEL, version=v1).uri: 0.7, challenger_uri: 0.3}
    )

    rollout = operator.get(answer.headers["location"])
    assert rollout.status_code == 200
    assert "Promoted to canary." in rollout.text
    for path in ("/rollout", "/audit", ""):
        text = operator.get(f"/console/ops{path}").text
        assert "<script>window.__pwned" not in text
        assert "<img src=x" not in text
    assert "&lt;script&gt;window.__pwned" in rollout.text  # the reason is shown, escaped
    audit = operator.get("/console/ops/audit").text
    assert "&lt;script&gt;window.__pwned" in audit
    assert "Chain intact" in audit

    answer = operator.post("/console/ops/rollback", {"reason": "canary looked worse", "confirm": "yes"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/ops/rollout?done=rolled-back"
    rolled = _entries(console_home)[-1]
    assert (rolled.action, rolled.target, rolled.reason) == (
        "rollback",
        challenger_uri,
        "canary looked worse",
    )
    assert rolled.actor == promoted.actor
    _wait_for(lambda: _models(server)["shares"] == {ModelRef(MODEL, version=v1).uri: 1.0})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reason": ""}, "Give a reason"),
        ({"reason": "   \n "}, "Give a reason"),
        ({"reason": "x" * 501}, "under 500 characters"),
        ({"confirm": ""}, "Tick the confirmation box"),
        ({"to": "production"}, "shadow, canary or champion"),
        ({"percent": "0"}, "above 0"),
        ({"percent": "nan"}, "above 0"),
        ({"percent": "ten"}, "as a number"),
        ({"version": "../1"}, "Choose a registered version"),
        ({"version": "\u00b2"}, "Choose a registered version"),
    ],
)
def test_a_promotion_without_a_valid_field_changes_nothing(
    operator: Browser, console_home: ConsoleHome, changes: dict[str, str], message: str
) -> None:
    before, audited = _state(console_home).revision, len(_entries(console_home))
    answer = operator.post("/console/ops/promote", _promote_form(console_home.versions[1], **changes))
    assert answer.status_code == 400
    assert message in answer.text
    assert 'role="alert"' in answer.text
    assert (_state(console_home).revision, len(_entries(console_home))) == (before, audited)


def test_a_rollback_needs_a_reason_and_a_confirmation(operator: Browser, console_home: ConsoleHome) -> None:
    before = _state(console_home).revision
    for form in ({"reason": "", "confirm": "yes"}, {"reason": "why not"}):
        answer = operator.post("/console/ops/rollback", form)
        assert answer.status_code == 400
    assert _state(console_home).revision == before


def test_forms_without_the_csrf_token_are_refused(operator: Browser, console_home: ConsoleHome) -> None:
    before, audited = _state(console_home).revision, len(_entries(console_home))
    form = _promote_form(console_home.versions[1])
    assert operator.post("/console/ops/promote", form, csrf=False).status_code == 403
    assert (
        operator.post("/console/ops/promote", {**form, "csrf_token": "0" * 64}, csrf=False).status_code == 403
    )
    answer = operator.post("/console/ops/rollback", {"reason": "r", "confirm": "yes"}, csrf=False)
    assert answer.status_code == 403
    assert (_state(console_home).revision, len(_entries(console_home))) == (before, audited)


def test_a_refused_action_shows_the_use_cases_reason(operator: Browser, console_home: ConsoleHome) -> None:
    champion = console_home.versions[0]
    answer = operator.post("/console/ops/promote", _promote_form(champion))
    assert answer.status_code == 400
    assert "is the champion" in answer.text
    answer = operator.post("/console/ops/promote", _promote_form("999"))
    assert answer.status_code == 400
    assert "Not done" in answer.text


def test_the_audit_log_pages_newest_first(operator: Browser) -> None:
    first = operator.get("/console/ops/audit")
    seqs = [int(s) for s in re.findall(r'<td class="num">(\d+)</td>', first.text)]
    assert len(seqs) > 1
    assert seqs == sorted(seqs, reverse=True)
    assert operator.get("/console/ops/audit?page=999").status_code == 200  # the last page
    assert operator.get("/console/ops/audit?page=0").status_code == 400
    assert operator.get("/console/ops/audit?page=x").status_code == 400
    assert operator.get("/console/ops/audit?page=\u00b2").status_code == 400  # a digit int() refuses
    assert operator.get("/console/ops/models/\u00b2").status_code == 404
