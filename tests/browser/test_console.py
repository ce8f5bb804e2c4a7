"""The console in headless Chromium against a real ``deskpilot serve``: sign-in, tenant isolation, the agent's
verdicts, the operator's canary and rollback, escaping, CSRF, console errors, keyboard-only work, axe-core.

One server process serves the whole module, on a home with two trained versions, a knowledge index and
three role keys (``tests/integration/console``); tickets are sent through the API first, as a client would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from deskpilot.store.sql import SqlStore
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.helpers import REPO_ROOT
from tests.integration.api_fixtures import GLOBEX_KEY
from tests.integration.console.console_fixtures import ConsoleHome, build_console_home
from tests.integration.test_cli_serve import serve_process

pytestmark = [needs_chromium, pytest.mark.slow]

AXE = REPO_ROOT / "console-assets" / "node_modules" / "axe-core" / "axe.min.js"
HOSTILE = '<script>window.__pwned = 1</script><b id="injected">bold</b> my card was charged twice'
SERIOUS = {"serious", "critical"}
UNSURE = [  # messages the small test model cannot place: routed to a person, so the queue has work
    "hello, quick question about something",
    "zorblax quantum marmalade",
    "is anyone there? please answer",
    "thanks for nothing",
    "I want to talk to a person",
    "lorem ipsum dolor sit amet",
    "what are your opening hours on sundays",
    "the weather is nice today",
]


@dataclass(frozen=True)
class Site:
    url: str
    home: ConsoleHome
    acme_tickets: dict[str, str]  # request id -> text of the tickets sent for acme (the hostile one aside)
    hostile_id: str
    globex_id: str

    def store(self) -> SqlStore:
        return SqlStore(self.home.settings().resolved_database_url)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, encoder_cache: Path) -> ConsoleHome:
    return build_console_home(tmp_path_factory.mktemp("console-browser"), encoder_cache)


def _send(url: str, key: str, items: list[dict[str, str]]) -> list[dict[str, Any]]:
    answer = httpx.post(
        f"{url}/v1/triage/batch",
        json={"items": items},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    answer.raise_for_status()
    results: list[dict[str, Any]] = answer.json()["items"]
    return results


@pytest.fixture(scope="module")
def site(home: ConsoleHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    logs = tmp_path_factory.mktemp("console-logs") / "serve.log"
    extra = {
        "DESKPILOT_RELOAD_INTERVAL_S": "0.2",
        "DESKPILOT_KB_RELOAD_INTERVAL_S": "0",
        "HF_HUB_OFFLINE": "1",
    }
    extra["DESKPILOT_API_KEYS"] = f"globex:{GLOBEX_KEY}"
    with serve_process(home.home, logs, env_extra=extra) as (_process, url):
        texts = [str(t) for t in home.copilot.acme_tickets["text"].tolist()[:6]] + UNSURE
        items = [{"text": text, "channel": "email" if i % 2 else "chat"} for i, text in enumerate(texts)]
        answers = _send(url, home.agent_key, [*items, {"text": HOSTILE, "channel": "web"}])
        routed = {a["request_id"]: item["text"] for a, item in zip(answers, items, strict=False)}
        globex = _send(url, home.globex_agent_key, [{"text": "GLOBEX-ONLY my gizmo is broken again"}])
        store = SqlStore(home.settings().resolved_database_url)
        try:
            deadline = time.monotonic() + 30
            while len(store.decisions("acme", limit=100)) < len(answers) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            store.close()
        yield Site(url, home, routed, answers[-1]["request_id"], globex[0]["request_id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@dataclass
class Watched:
    page: Page
    errors: list[str]
    foreign: list[str]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    yield made
    made.close()


def open_page(context: BrowserContext, site: Site) -> Watched:
    """A page whose console errors, uncaught exceptions and off-site requests are collected."""
    page = context.new_page()
    watched = Watched(page, [], [])
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    page.on(
        "request",
        lambda r: None if r.url.startswith((site.url, "data:")) else watched.foreign.append(r.url),
    )
    page.on("dialog", lambda dialog: dialog.accept())  # the operator's confirm() prompts
    return watched


def sign_in(page: Page, site: Site, key: str) -> None:
    page.goto(f"{site.url}/console")
    assert "/console/sign-in" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")
    assert "/console/sign-in" not in page.url


def test_sign_in_and_sign_out(context: BrowserContext, site: Site) -> None:
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.agent_key)
    assert page.url.endswith("/console/queue")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["dp_session"]["httpOnly"]
    assert cookies["dp_session"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # nothing a script could read
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state("load")
    assert "/console/sign-in" in page.url
    page.goto(f"{site.url}/console/queue")
    assert "/console/sign-in" in page.url
    assert not watched.errors
    assert not watched.foreign


def test_a_tenant_cannot_open_another_tenants_ticket(context: BrowserContext, site: Site) -> None:
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.globex_agent_key)
    acme_id, acme_text = next(iter(site.acme_tickets.items()))
    answer = page.goto(f"{site.url}/console/tickets/{acme_id}")
    assert answer is not None
    assert answer.status == 404
    assert acme_text[:30] not in page.content()
    own = page.goto(f"{site.url}/console/tickets/{site.globex_id}")
    assert own is not None
    assert own.status == 200


def _verdict(site: Site, request_id: str) -> str | None:
    store = site.store()
    try:
        found = [f for f in store.feedback("acme") if f.request_id == request_id]
    finally:
        store.close()
    return found[-1].correct_intent if found else None


def test_correcting_an_intent_writes_a_feedback_row(context: BrowserContext, site: Site) -> None:
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.agent_key)
    request_id = list(site.acme_tickets)[1]
    page.goto(f"{site.url}/console/tickets/{request_id}")
    shown = page.locator("#h-triage ~ dl strong").first.inner_text()
    other = next(label for label in site.home.copilot.labels if label != shown)
    page.get_by_label("Correct intent").select_option(other)
    page.get_by_role("button", name="Save correction").click()
    page.wait_for_load_state("load")
    assert _verdict(site, request_id) == other
    assert not watched.errors


def _serving(site: Site) -> dict[str, Any]:
    answer = httpx.get(
        f"{site.url}/v1/models", headers={"Authorization": f"Bearer {site.home.agent_key}"}, timeout=30
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _wait_for(site: Site, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        served = _serving(site)
        if check(served):
            return served
        assert time.monotonic() < deadline, f"/v1/models never showed {what}: {served}"
        time.sleep(0.2)


def _audit_reasons(site: Site) -> list[tuple[str, str, str]]:
    from deskpilot.store.audit_sql import SqlAuditLog

    log = SqlAuditLog(site.home.settings().resolved_database_url)
    try:
        return [(e.action, e.actor, e.reason) for e in log.entries()]
    finally:
        log.close()


def test_an_operator_runs_a_canary_and_rolls_it_back(context: BrowserContext, site: Site) -> None:
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.operator_key)
    challenger = site.home.versions[1]
    page.goto(f"{site.url}/console/ops/rollout")
    page.locator("#promote-version").select_option(challenger)
    page.locator("input[name=to][value=canary]").check()
    page.get_by_label("Canary share, percent of requests").fill("20")
    page.locator("#promote-reason").fill("browser test: canary of the second version")
    page.get_by_label("I confirm this promotion").check()
    page.get_by_role("button", name="Promote").click()
    page.wait_for_load_state("load")
    served = _wait_for(site, lambda m: (m.get("challenger") or {}).get("version") == challenger, "the canary")
    assert served["rollout"]["stage"] == "canary"
    assert served["rollout"]["percent"] == pytest.approx(20.0)
    page.locator("#rollback-reason").fill("browser test: enough canary")
    page.get_by_label("I confirm this rollback").check()
    page.get_by_role("button", name="Roll back").click()
    page.wait_for_load_state("load")
    _wait_for(site, lambda m: m.get("challenger") is None, "the rollback")
    entries = _audit_reasons(site)
    actor = next(actor for action, actor, reason in entries if reason.startswith("browser test: canary"))
    assert actor.startswith("console:acme/")
    assert any(
        action == "rollback" and reason == "browser test: enough canary" for action, _, reason in entries
    )
    assert not watched.errors


def test_ticket_text_with_html_renders_as_text(context: BrowserContext, site: Site) -> None:
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.agent_key)
    answer = page.goto(f"{site.url}/console/tickets/{site.hostile_id}")
    assert answer is not None
    assert answer.status == 200
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#injected").count() == 0
    assert "<script>window.__pwned = 1</script>" in (page.locator(".message").text_content() or "")
    page.goto(f"{site.url}/console/queue?state=all")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#injected").count() == 0
    assert not watched.errors


def test_forms_without_a_csrf_token_are_refused(context: BrowserContext, site: Site) -> None:
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.agent_key)
    request_id = list(site.acme_tickets)[2]
    before = _verdict(site, request_id)
    page.goto(f"{site.url}/console/tickets/{request_id}")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_label("Correct intent").select_option(site.home.copilot.labels[0])
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Save correction").click()
    assert posted.value.status == 403
    assert _verdict(site, request_id) == before


def test_the_agent_finishes_a_ticket_with_the_keyboard_alone(context: BrowserContext, site: Site) -> None:
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.agent_key)
    page.goto(f"{site.url}/console/queue")
    first = page.locator("#queue-live tbody tr").first
    request_id = first.get_attribute("data-id")
    assert request_id
    assert _verdict(site, request_id) is None
    page.keyboard.press("j")  # select the first ticket
    page.keyboard.press("Enter")  # open it
    page.wait_for_url(f"**/console/tickets/{request_id}*")
    intent = page.locator("#h-triage ~ dl strong").first.inner_text()
    page.keyboard.press("c")  # confirm the model's intent
    page.wait_for_load_state("load")
    deadline = time.monotonic() + 10
    while _verdict(site, request_id) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _verdict(site, request_id) == intent
    assert not watched.errors


PAGES = (
    "/console/queue",
    "/console/queue?state=all&kind=human",
    "/console/ops",
    "/console/ops/models",
    "/console/ops/rollout",
    "/console/ops/monitoring",
    "/console/ops/audit",
)


WIDEST = """() => Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(-3).map(e => e.tagName + '.' + e.className + '#' + e.id)"""


def _axe_violations(page: Page) -> list[dict[str, Any]]:
    page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated by the driver: the page's CSP still holds
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [v for v in result["violations"] if v.get("impact") in SERIOUS]


def test_every_page_is_clean_and_accessible(context: BrowserContext, site: Site) -> None:
    assert AXE.is_file(), "axe-core is missing: run `make console-assets`"
    watched = open_page(context, site)
    page = watched.page
    page.goto(f"{site.url}/console/sign-in")
    problems = {"/console/sign-in": _axe_violations(page)}
    sign_in(page, site, site.home.operator_key)
    tickets = [f"/console/tickets/{rid}" for rid in list(site.acme_tickets)[3:5]]
    versions = [f"/console/ops/models/{v}" for v in site.home.versions]
    for path in (*PAGES, *tickets, *versions):
        answer = page.goto(f"{site.url}{path}")
        assert answer is not None
        assert answer.status == 200, path
        page.wait_for_load_state("networkidle")
        problems[path] = _axe_violations(page)
    sideways = {}
    for width in (390, 1280):  # a narrow window, then a laptop: wide tables scroll inside their box
        page.set_viewport_size({"width": width, "height": 900})
        for path in (*PAGES, tickets[0], versions[0]):
            page.goto(f"{site.url}{path}")
            page.wait_for_load_state("networkidle")
            if page.evaluate("document.documentElement.scrollWidth - window.innerWidth") > 1:
                sideways[f"{path} at {width}px"] = page.evaluate(WIDEST)
    assert not sideways
    serious = {path: [(v["id"], v["help"]) for v in found] for path, found in problems.items() if found}
    assert not serious
    assert not watched.errors
    assert not watched.foreign


def test_screenshots_of_both_views(context: BrowserContext, site: Site, tmp_path: Path) -> None:
    """Screenshots for the README (written to DESKPILOT_SCREENSHOTS when set; a temp folder otherwise)."""
    out = Path(os.environ.get("DESKPILOT_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    watched = open_page(context, site)
    page = watched.page
    sign_in(page, site, site.home.operator_key)
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(f"{site.url}/console/queue")
    queued = page.locator("#queue-live tbody tr").first.get_attribute("data-id")
    assert queued
    page.goto(f"{site.url}/console/tickets/{queued}")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / "console-agent.png"), full_page=False)
    page.goto(f"{site.url}/console/ops")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / "console-operator.png"), full_page=False)
    for name in ("console-agent.png", "console-operator.png"):
        assert (out / name).stat().st_size > 20_000
    assert not watched.errors
