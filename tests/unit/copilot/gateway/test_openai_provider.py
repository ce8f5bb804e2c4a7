"""The OpenAI-compatible provider against httpx's MockTransport: what it sends, how it reads, how it fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from deskpilot.copilot.gateway.base import ChatMessage, ChatRequest, Completion, FailureKind, ProviderError
from deskpilot.copilot.gateway.config import ProviderConfig
from deskpilot.copilot.gateway.openai import OpenAICompatibleProvider
from deskpilot.copilot.gateway.secrets import Secret

KEY = "sk-unit-7f3a9c"
REQUEST = ChatRequest(
    (ChatMessage("system", "Be brief."), ChatMessage("user", "Where is my card?")),
    tenant="acme",
    max_tokens=64,
    temperature=0.2,
)
Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


def config(**overrides: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "name": "primary",
        "base_url": "https://llm.example/v1/",
        "model": "gpt-test",
        "prompt_price_per_1k": 2.0,
        "completion_price_per_1k": 4.0,
    }
    return ProviderConfig(**{**values, **overrides})


def call(handler: Handler, **overrides: Any) -> Completion:
    async def scenario() -> Completion:
        provider = OpenAICompatibleProvider(
            config(**overrides), api_key=Secret(KEY), transport=httpx.MockTransport(handler)
        )
        try:
            return await provider.complete(REQUEST)
        finally:
            await provider.aclose()

    return asyncio.run(scenario())


def failure(handler: Handler, **overrides: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call(handler, **overrides)
    assert KEY not in str(info.value)
    return info.value


def body(content: Any = "Your card ships today.", finish: Any = "stop", usage: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    if finish is not None:
        out["choices"][0]["finish_reason"] = finish
    if usage is not None:
        out["usage"] = usage
    return out


def answer(payload: Any, status: int = 200, **headers: str) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload, headers=headers)

    return handler


def sse(*events: Any, done: bool = True) -> Handler:
    lines = [": keep-alive\n\n"] + [f"data: {json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content="".join(lines).encode(), headers={"content-type": "text/event-stream"}
        )

    return handler


def delta(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    d = {} if text is None else {"content": text}
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def test_sends_an_openai_chat_request_with_the_bearer_key() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body(usage={"prompt_tokens": 30, "completion_tokens": 10}))

    completion = call(handler)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://llm.example/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is my card?"},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
        "stream": False,
    }
    assert completion == Completion(
        "Your card ships today.", "primary", "gpt-test", 30, 10, pytest.approx(0.1), "stop"
    )


def test_without_a_key_no_authorization_header_is_sent() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(200, json=body())

    async def scenario() -> Completion:
        provider = OpenAICompatibleProvider(config(), transport=httpx.MockTransport(handler))
        try:
            return await provider.complete(REQUEST)
        finally:
            await provider.aclose()

    assert asyncio.run(scenario()).usage_estimated


def test_missing_usage_is_estimated_and_says_so() -> None:
    completion = call(answer(body()))
    assert completion.usage_estimated
    assert completion.prompt_tokens > 0
    assert completion.completion_tokens == 8  # 22 ASCII characters / 3, rounded up


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, FailureKind.REFUSED), (401, FailureKind.REFUSED), (404, FailureKind.REFUSED),
     (500, FailureKind.SERVER_ERROR), (502, FailureKind.SERVER_ERROR), (503, FailureKind.SERVER_ERROR),
     (429, FailureKind.RATE_LIMITED)],
)  # fmt: skip
def test_http_statuses_map_to_kinds(status: int, kind: FailureKind) -> None:
    error = failure(answer({"error": {"message": f"bad key {KEY}", "code": "invalid_api_key"}}, status))
    assert error.kind is kind  # the free-text message (which may echo the key or the prompt) is left out
    assert str(error) == f"primary: HTTP {status} (invalid_api_key)"


def test_retry_after_is_read_from_429_and_503() -> None:
    assert failure(answer({}, 429, **{"Retry-After": "3"})).retry_after_s == 3.0
    assert failure(answer({}, 503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})).retry_after_s == 0.0
    assert failure(answer({}, 429)).retry_after_s is None


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (body(finish="length"), FailureKind.TRUNCATED),
        (body(finish="content_filter"), FailureKind.REFUSED),
        (body(finish=None), FailureKind.MALFORMED),
        (body(content=""), FailureKind.MALFORMED),
        (body(content="  \n"), FailureKind.MALFORMED),
        (body(content=None), FailureKind.MALFORMED),
        (body(content=["a"]), FailureKind.MALFORMED),
        ({"choices": []}, FailureKind.MALFORMED),
        ({"object": "chat.completion"}, FailureKind.MALFORMED),
        ([1, 2], FailureKind.MALFORMED),
    ],
)
def test_an_http_200_is_not_success_by_itself(payload: Any, kind: FailureKind) -> None:
    assert failure(answer(payload)).kind is kind


def test_a_length_finish_still_reports_what_it_cost() -> None:
    error = failure(answer(body(finish="length", usage={"prompt_tokens": 100, "completion_tokens": 64})))
    assert error.usage is not None
    assert (error.usage.total_tokens, error.usage.estimated) == (164, False)
    assert error.usage.cost_usd == pytest.approx(0.2 + 0.256)


def test_a_body_that_is_not_json_is_malformed() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>gateway says hi</html>")

    assert failure(handler).kind is FailureKind.MALFORMED


def test_an_oversized_body_is_malformed() -> None:
    assert failure(answer(body(content="x" * 5000)), max_response_bytes=1000).kind is FailureKind.MALFORMED


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectTimeout("slow"), FailureKind.TIMEOUT),
        (httpx.ReadTimeout("slow"), FailureKind.TIMEOUT),
        (httpx.PoolTimeout("busy"), FailureKind.TIMEOUT),
        (httpx.ConnectError("refused"), FailureKind.CONNECTION),
        (httpx.ReadError("reset"), FailureKind.CONNECTION),
        (httpx.RemoteProtocolError("peer closed"), FailureKind.CONNECTION),
    ],
)
def test_transport_errors_map_to_kinds(exc: Exception, kind: FailureKind) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    error = failure(handler)
    assert error.kind is kind
    assert error.__cause__ is None, "the httpx error (which holds the request and its headers) is not chained"


def test_the_whole_call_is_bounded_by_timeout_s() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=body())

    assert failure(handler, timeout_s=0.05).kind is FailureKind.TIMEOUT


def test_a_stream_is_assembled_from_deltas() -> None:
    handler = sse(delta(""), delta("Your card "), delta("ships today."), delta(finish="stop"))
    completion = call(handler, stream=True)
    assert completion.text == "Your card ships today."
    assert completion.finish_reason == "stop"
    assert completion.usage_estimated


def test_a_stream_with_a_usage_chunk_reports_real_usage() -> None:
    seen: list[dict[str, Any]] = []
    usage_chunk = {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 6}}
    inner = sse(delta("Hello."), delta(finish="stop"), usage_chunk)

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return await inner(request)

    completion = call(handler, stream=True, stream_include_usage=True)
    assert (completion.prompt_tokens, completion.completion_tokens, completion.usage_estimated) == (
        40,
        6,
        False,
    )
    assert seen[0]["stream"] is True
    assert seen[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (sse(delta("Your card"), done=False), FailureKind.TRUNCATED),
        (sse(delta("Your card"), delta(finish="stop"), done=False), FailureKind.TRUNCATED),
        (sse(delta("Your card"), delta(finish="length")), FailureKind.TRUNCATED),
        (sse(delta("Your card")), FailureKind.MALFORMED),
        (sse(delta(finish="stop")), FailureKind.MALFORMED),
        (sse({"choices": "nope"}), FailureKind.MALFORMED),
        (sse({"error": {"code": "overloaded"}}), FailureKind.SERVER_ERROR),
    ],
)
def test_a_stream_is_complete_only_with_a_finish_reason_and_done(handler: Handler, kind: FailureKind) -> None:
    assert failure(handler, stream=True).kind is kind


def test_a_cut_stream_reports_its_estimated_usage() -> None:
    error = failure(sse(delta("Your card is"), done=False), stream=True)
    assert error.usage is not None
    assert error.usage.estimated
    assert error.usage.completion_tokens == 4


def test_a_stream_chunk_that_is_not_json_is_malformed() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"data: {oops\n\n", headers={"content-type": "text/event-stream"})

    assert failure(handler, stream=True).kind is FailureKind.MALFORMED


def test_a_server_that_ignores_stream_and_answers_json_is_understood() -> None:
    assert call(answer(body()), stream=True).text == "Your card ships today."


def test_the_repr_shows_no_key() -> None:
    async def scenario() -> str:
        provider = OpenAICompatibleProvider(config(), api_key=Secret(KEY))
        try:
            return repr(provider) + repr(provider.__dict__)
        finally:
            await provider.aclose()

    shown = asyncio.run(scenario())
    assert KEY not in shown
    assert "primary" in shown
