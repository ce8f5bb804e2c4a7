"""The console's sign-in helpers: redirect targets, CSRF tokens, the form reader."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from deskpilot.console.auth import ConsoleUser, csrf_for, form_of, read_form, safe_next
from deskpilot.console.errors import ConsoleError


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/ops/models", "/console/ops/models"),
        ("/console/queue?intent=card_arrival", "/console/queue?intent=card_arrival"),
        ("//evil.example/console/", "/home"),
        ("https://evil.example/", "/home"),
        ("/console/sign-in", "/home"),
        ("/console/sign-out", "/home"),
        ("/console\\evil", "/home"),
        ("/console/\nSet-Cookie: x", "/home"),
        ("/v1/models", "/home"),
        ("", "/home"),
        (None, "/home"),
    ],
)
def test_sign_in_only_returns_to_console_pages(target: str | None, expected: str) -> None:
    assert safe_next(target, "/home") == expected


def test_csrf_tokens_are_per_session_and_stable() -> None:
    assert csrf_for("token-a") == csrf_for("token-a")
    assert csrf_for("token-a") != csrf_for("token-b")
    assert "token-a" not in csrf_for("token-a")


def _request(body: bytes, content_type: str = "application/x-www-form-urlencoded", **headers: str) -> Request:
    raw = [(b"content-type", content_type.encode())] + [
        (k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()
    ]
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/console/x", "headers": raw, "query_string": b""}
    return Request(scope, receive)


USER = ConsoleUser("acme", "1a2b3c4d", "agent", csrf_for("session"), "digest")


def test_a_form_with_the_session_token_is_read() -> None:
    body = f"csrf_token={USER.csrf_token}&intent=card_arrival&reason=a+b%26c".encode()
    form = asyncio.run(form_of(_request(body), USER))
    assert form["intent"] == "card_arrival"
    assert form["reason"] == "a b&c"


def test_the_token_may_come_as_a_header_htmx_sends() -> None:
    form = asyncio.run(form_of(_request(b"intent=x", x_csrf_token=USER.csrf_token), USER))
    assert form["intent"] == "x"


@pytest.mark.parametrize("body", [b"intent=x", b"csrf_token=&intent=x", b"csrf_token=" + b"0" * 64])
def test_a_form_without_the_right_token_is_refused(body: bytes) -> None:
    with pytest.raises(ConsoleError) as refused:
        asyncio.run(form_of(_request(body), USER))
    assert refused.value.status_code == 403


def test_only_urlencoded_forms_are_read() -> None:
    with pytest.raises(ConsoleError) as refused:
        asyncio.run(read_form(_request(b"{}", "application/json")))
    assert refused.value.status_code == 415


def test_a_form_with_too_many_fields_is_refused() -> None:
    body = "&".join(f"f{i}=1" for i in range(500)).encode()
    with pytest.raises(ConsoleError) as refused:
        asyncio.run(read_form(_request(body)))
    assert refused.value.status_code == 400


def test_the_audit_names_the_key_not_the_secret() -> None:
    assert USER.actor == "console:acme/1a2b3c4d"
    assert not USER.is_operator
