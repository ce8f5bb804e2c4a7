"""What the console suites share: a home with two trained versions, a knowledge index and role keys, a live
server on it, and a browser-like client that signs in through the real sign-in form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from deskpilot.config import Settings
from deskpilot.workflows import keys
from tests.integration.api_fixtures import running
from tests.integration.copilot.kb_fixtures import CopilotHome, build_copilot_home
from tests.live_server import LiveServer

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_BODY_CSRF = re.compile(r'<body data-csrf="([^"]*)"')


@dataclass(frozen=True)
class ConsoleHome:
    copilot: CopilotHome
    agent_key: str  # tenant acme, role agent
    operator_key: str  # tenant acme, role operator
    globex_agent_key: str  # tenant globex, role agent

    @property
    def home(self) -> Path:
        return self.copilot.home

    @property
    def versions(self) -> tuple[str, ...]:
        return self.copilot.trained.versions

    def settings(self, **values: object) -> Settings:
        return self.copilot.settings(**values)


def build_console_home(root: Path, encoder_cache: Path) -> ConsoleHome:
    """Two tfidf versions (the first is the champion), acme's and globex's knowledge, and three role keys."""
    copilot = build_copilot_home(root, encoder_cache, versions=2)
    settings = copilot.settings()
    made = {
        name: keys.create(settings, tenant, role=role, label=name, reason="console tests").raw_key
        for name, tenant, role in (
            ("agent", "acme", "agent"),
            ("operator", "acme", "operator"),
            ("globex", "globex", "agent"),
        )
    }
    return ConsoleHome(copilot, made["agent"], made["operator"], made["globex"])


@contextmanager
def console_server(home: ConsoleHome, **values: object) -> Iterator[LiveServer]:
    with running(home.settings(**values), registry=home.copilot.trained.registry) as server:
        yield server


@dataclass
class Browser:
    """An HTTP client holding a console session, as a browser would (cookies, the page's CSRF token)."""

    client: httpx.Client
    csrf: str

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
        form = {"csrf_token": self.csrf, **data} if csrf else dict(data)
        return self.client.post(path, data=form)

    def close(self) -> None:
        self.client.close()


def sign_in(server: LiveServer, key: str) -> Browser:
    """Sign in through the form (its double-submit token, then the session cookie) and read the page's
    CSRF token; raises when the sign-in fails."""
    client = httpx.Client(base_url=server.url, timeout=30.0, follow_redirects=False)
    page = client.get("/console/sign-in")
    page.raise_for_status()
    token = _CSRF.search(page.text)
    assert token is not None, "the sign-in page has no CSRF field"
    answer = client.post("/console/sign-in", data={"csrf_token": token.group(1), "key": key})
    if answer.status_code != 303:
        client.close()
        raise AssertionError(f"sign-in failed: HTTP {answer.status_code}")
    landing = client.get(answer.headers["location"])
    found = _BODY_CSRF.search(landing.text)
    assert found is not None, f"no CSRF token on {answer.headers['location']}"
    assert found.group(1), "an empty CSRF token"
    return Browser(client, found.group(1))


@contextmanager
def signed_in(server: LiveServer, key: str) -> Iterator[Browser]:
    browser = sign_in(server, key)
    try:
        yield browser
    finally:
        browser.close()
