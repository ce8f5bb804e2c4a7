"""Console sign-in against a live server: role keys, the session cookie, CSRF, sign-out and revocation."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from deskpilot.errors import UsageError
from deskpilot.store.sessions import token_digest
from deskpilot.store.tables import console_sessions
from deskpilot.workflows import keys
from tests.integration.console.console_fixtures import ConsoleHome, console_server, sign_in, signed_in
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def server(console_home: ConsoleHome) -> Iterator[LiveServer]:
    with console_server(console_home) as live:
        yield live


def _engine(console_home: ConsoleHome) -> sa.Engine:
    return sa.create_engine(console_home.settings().resolved_database_url)


def test_an_agent_signs_in_with_a_strict_http_only_session_cookie(
    server: LiveServer, console_home: ConsoleHome
) -> None:
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/console/sign-in")
        assert page.status_code == 200
        assert "default-src 'self'; script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post("/console/sign-in", data={"csrf_token": token, "key": console_home.agent_key})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/queue"
        cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "dp_session=" in v)
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "max-age", "path"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert "path=/console" in cookie.lower()
        session_token = client.cookies.get("dp_session")
        assert session_token
    with _engine(console_home).connect() as conn:
        stored = conn.execute(sa.select(console_sessions.c.token_sha256)).scalars().all()
    assert token_digest(session_token) in stored
    assert session_token not in stored  # only the digest is kept


def test_a_wrong_key_is_refused_without_a_session(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/console/sign-in")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post("/console/sign-in", data={"csrf_token": token, "key": "dp_00000000_nope"})
        assert answer.status_code == 401
        assert "not valid" in answer.text
        assert "dp_session" not in client.cookies


def test_the_sign_in_form_needs_its_own_token(server: LiveServer, console_home: ConsoleHome) -> None:
    with httpx.Client(base_url=server.url) as client:  # no page visited: no double-submit cookie
        answer = client.post("/console/sign-in", data={"csrf_token": "x" * 40, "key": console_home.agent_key})
        assert answer.status_code == 403
        assert "dp_session" not in client.cookies


def test_pages_need_a_session_and_remember_where_to_go(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = client.get("/console/ops/audit?page=2")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/sign-in?next=/console/ops/audit")
        fragment = client.get("/console/queue", headers={"HX-Request": "true"})
        assert fragment.status_code == 401
        assert fragment.headers["hx-redirect"].startswith("/console/sign-in")


def test_sign_in_goes_back_to_a_console_page_only(server: LiveServer, console_home: ConsoleHome) -> None:
    for target, expected in (
        ("/console/ops/models", "/console/ops/models"),
        ("//evil.example/", "/console/ops"),
    ):
        with httpx.Client(base_url=server.url) as client:
            page = client.get("/console/sign-in", params={"next": target})
            token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            form = {"csrf_token": token, "key": console_home.operator_key, "next": target}
            answer = client.post("/console/sign-in", data=form)
            assert answer.headers["location"] == expected


def test_an_agent_cannot_open_operator_pages(server: LiveServer, console_home: ConsoleHome) -> None:
    with signed_in(server, console_home.agent_key) as browser:
        assert browser.get("/console/ops").status_code == 403
        assert browser.get("/console/queue").status_code == 200


def test_sign_out_ends_the_session_on_the_server(server: LiveServer, console_home: ConsoleHome) -> None:
    browser = sign_in(server, console_home.agent_key)
    token = browser.client.cookies.get("dp_session")
    assert token
    refused = browser.post("/console/sign-out", {"go": "1"}, csrf=False)
    assert refused.status_code == 403  # a form without the token changes nothing
    assert browser.get("/console/queue").status_code == 200
    answer = browser.post("/console/sign-out", {})
    assert answer.status_code == 303
    browser.close()
    with httpx.Client(base_url=server.url, cookies={"dp_session": token}) as replay:
        assert replay.get("/console/queue").status_code == 303  # the old cookie is worth nothing now


def test_an_expired_session_signs_out(server: LiveServer, console_home: ConsoleHome) -> None:
    with signed_in(server, console_home.agent_key) as browser:
        token = browser.client.cookies.get("dp_session")
        assert token
        past = datetime.now(UTC) - timedelta(seconds=1)
        with _engine(console_home).begin() as conn:
            conn.execute(
                sa.update(console_sessions)
                .where(console_sessions.c.token_sha256 == token_digest(token))
                .values(expires_at=past)
            )
        answer = browser.get("/console/queue")
        assert answer.status_code == 303
        assert "sign-in" in answer.headers["location"]


def test_revoking_the_key_ends_its_sessions(server: LiveServer, console_home: ConsoleHome) -> None:
    settings = console_home.settings()
    made = keys.create(settings, "acme", role="agent", label="to revoke", reason="console tests")
    time.sleep(1.2)  # the server re-reads the keys file at most once a second
    with signed_in(server, made.raw_key) as browser:
        assert browser.get("/console/queue").status_code == 200
        keys.revoke(settings, made.record.key_id, reason="console tests")
        for _ in range(50):  # the server re-reads the keys file at most once a second
            answer = browser.get("/console/queue")
            if answer.status_code == 303:
                break
            time.sleep(0.1)
        assert answer.status_code == 303
        assert "why=revoked" in answer.headers["location"]
        assert "no longer valid" in browser.get(answer.headers["location"]).text


def test_the_sign_in_page_shows_only_its_own_messages(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        crafted = client.get("/console/sign-in", params={"why": "Your key leaked: call +1 555 0100 now"})
        assert crafted.status_code == 200
        assert "555 0100" not in crafted.text  # a link cannot put its words on the page
        assert "You have signed out." in client.get("/console/sign-in?why=signed-out").text


def test_signing_in_again_ends_the_previous_session(server: LiveServer, console_home: ConsoleHome) -> None:
    with signed_in(server, console_home.agent_key) as browser:
        first = browser.client.cookies.get("dp_session")
        assert first
        page = browser.client.get("/console/sign-in")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match is not None
        again = browser.client.post(
            "/console/sign-in", data={"csrf_token": match.group(1), "key": console_home.agent_key}
        )
        assert again.status_code == 303
        second = browser.client.cookies.get("dp_session")
        assert second
        assert second != first
        with _engine(console_home).connect() as connection:
            stored = connection.execute(
                sa.select(console_sessions.c.token_sha256).where(
                    console_sessions.c.token_sha256.in_([token_digest(first), token_digest(second)])
                )
            ).scalars()
            assert set(stored) == {token_digest(second)}


def test_operator_keys_of_unlisted_tenants_work_as_agents(console_home: ConsoleHome) -> None:
    with (
        console_server(console_home, console_operator_tenants=["platform"]) as server,
        signed_in(server, console_home.operator_key) as browser,  # acme's operator key
    ):
        assert browser.get("/console/ops").status_code == 403
        assert browser.get("/console/queue").status_code == 200
    with pytest.raises(UsageError, match="may not hold operator keys"):
        keys.create(
            console_home.settings(console_operator_tenants=["platform"]), "acme", role="operator", reason="t"
        )


def test_unknown_console_paths_are_html_404s(server: LiveServer, console_home: ConsoleHome) -> None:
    with signed_in(server, console_home.agent_key) as browser:
        answer = browser.get("/console/nowhere")
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")
