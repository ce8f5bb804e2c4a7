"""An OpenAI-compatible chat provider (OpenAI, vLLM, Ollama, LM Studio, ...) over one httpx client.

An HTTP 200 is not success by itself: the body must parse, carry non-empty content and a finish reason, and a
stream must end with both a finish reason and ``[DONE]``; anything less raises :class:`ProviderError` and the
gateway falls back. Every call is bounded end to end by ``timeout_s`` (httpx's read timeout is per chunk, so a
server that drips a byte a second would otherwise hold the call forever). Neither the key nor the prompt
ever reaches a log line or an error message: messages are built from status codes and exception types, and
the key is scrubbed from them once more for good measure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from deskpilot.copilot.gateway.base import ChatRequest, Completion, FailureKind, ProviderError, Usage
from deskpilot.copilot.gateway.config import ProviderConfig
from deskpilot.copilot.gateway.retry import parse_retry_after
from deskpilot.copilot.gateway.secrets import Secret
from deskpilot.copilot.gateway.tokens import estimate_prompt_tokens, estimate_text_tokens, price_usd

logger = logging.getLogger(__name__)

_ERROR_BODY_BYTES = 4096
_REFUSING_FINISHES = frozenset({"content_filter"})


@dataclass
class _Answer:
    text: str
    finish_reason: str | None
    usage: dict[str, Any] | None


class OpenAICompatibleProvider:
    """``POST {base_url}/chat/completions``, streaming or not as configured."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        api_key: Secret | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._key = api_key
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.timeout_s,
                write=config.timeout_s,
                pool=config.timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_keepalive_connections,
            ),
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str:
        return self.config.model

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(name={self.name!r}, model={self.model!r}, url={self._url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def complete(self, request: ChatRequest) -> Completion:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                answer = await self._exchange(request)
        except TimeoutError:
            raise self._error(
                FailureKind.TIMEOUT, f"no complete answer within {self.config.timeout_s}s"
            ) from None
        except httpx.TimeoutException as exc:
            raise self._error(FailureKind.TIMEOUT, f"{type(exc).__name__}") from None
        except httpx.DecodingError as exc:
            raise self._error(FailureKind.MALFORMED, f"undecodable body ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise self._error(FailureKind.CONNECTION, f"{type(exc).__name__}") from None
        completion = self._completion(request, answer)
        logger.debug(
            "llm call done",
            extra={
                "provider": self.name,
                "model": self.model,
                "elapsed_s": round(time.monotonic() - started, 3),
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            },
        )
        return completion

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if self.config.stream else "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return headers

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": self.config.stream,
        }
        if self.config.stream and self.config.stream_include_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    async def _exchange(self, request: ChatRequest) -> _Answer:
        async with self._client.stream(
            "POST", self._url, json=self._body(request), headers=self._headers()
        ) as response:
            if response.status_code != httpx.codes.OK:
                await self._raise_for_status(response)
            is_json = response.headers.get("content-type", "").startswith("application/json")
            if self.config.stream and not is_json:  # some servers ignore "stream" and answer in one body
                return await self._read_stream(request, response)
            return self._parse_body(await self._read_capped(response))

    async def _read_capped(self, response: httpx.Response, cap: int | None = None) -> bytes:
        limit = cap if cap is not None else self.config.max_response_bytes
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limit:
                if cap is not None:
                    break
                raise self._error(FailureKind.MALFORMED, f"response body over {limit} bytes")
        return bytes(data)

    async def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        detail = _error_code(await self._read_capped(response, cap=_ERROR_BODY_BYTES))
        message = f"HTTP {status}" + (f" ({detail})" if detail else "")
        if status == httpx.codes.TOO_MANY_REQUESTS:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise self._error(FailureKind.RATE_LIMITED, message, retry_after_s=retry_after)
        if status >= httpx.codes.INTERNAL_SERVER_ERROR:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise self._error(FailureKind.SERVER_ERROR, message, retry_after_s=retry_after)
        raise self._error(FailureKind.REFUSED, message)

    def _parse_body(self, raw: bytes) -> _Answer:
        try:
            body = json.loads(raw)
            choice = body["choices"][0]
            content = choice["message"]["content"]
            finish_reason = choice.get("finish_reason")
            usage = body.get("usage")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise self._error(FailureKind.MALFORMED, "the body is not a chat completion") from None
        if not isinstance(content, str) or (finish_reason is not None and not isinstance(finish_reason, str)):
            raise self._error(FailureKind.MALFORMED, "the completion's content or finish_reason is not text")
        return _Answer(content, finish_reason, usage if isinstance(usage, dict) else None)

    async def _read_stream(self, request: ChatRequest, response: httpx.Response) -> _Answer:
        parts: list[str] = []
        size = 0
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        done = False
        async for data in _sse_data(response):
            if data == "[DONE]":
                done = True
                break
            chunk = self._parse_chunk(data)
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                piece = delta.get("content")
                if isinstance(piece, str):
                    parts.append(piece)
                    size += len(piece)
                if isinstance(choice.get("finish_reason"), str):
                    finish_reason = choice["finish_reason"]
            if size > self.config.max_response_bytes:
                raise self._error(FailureKind.MALFORMED, "streamed answer over the size limit")
        text = "".join(parts)
        if not done:
            partial = self._usage(request, text, None)
            raise self._error(FailureKind.TRUNCATED, "the stream ended without [DONE]", usage=partial)
        return _Answer(text, finish_reason, usage)

    def _parse_chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._error(FailureKind.MALFORMED, "a stream chunk is not JSON") from None
        if not isinstance(chunk, dict):
            raise self._error(FailureKind.MALFORMED, "a stream chunk is not an object")
        if "error" in chunk:
            raise self._error(FailureKind.SERVER_ERROR, f"error in stream ({_error_code_of(chunk)})")
        choices = chunk.get("choices")
        if choices is not None and not (
            isinstance(choices, list) and all(isinstance(c, dict) for c in choices)
        ):
            raise self._error(FailureKind.MALFORMED, "a stream chunk's choices are not a list of objects")
        return chunk

    def _completion(self, request: ChatRequest, answer: _Answer) -> Completion:
        usage = self._usage(request, answer.text, answer.usage)
        if answer.finish_reason is None:
            raise self._error(FailureKind.MALFORMED, "the answer has no finish_reason", usage=usage)
        if answer.finish_reason == "length":
            raise self._error(
                FailureKind.TRUNCATED, "finish_reason length: max_tokens cut the answer", usage=usage
            )
        if answer.finish_reason in _REFUSING_FINISHES:
            raise self._error(FailureKind.REFUSED, f"finish_reason {answer.finish_reason}", usage=usage)
        if not answer.text.strip():
            raise self._error(FailureKind.MALFORMED, "the answer is empty", usage=usage)
        return Completion(
            text=answer.text,
            provider=self.name,
            model=self.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
            finish_reason=answer.finish_reason,
            usage_estimated=usage.estimated,
        )

    def _usage(self, request: ChatRequest, text: str, reported: dict[str, Any] | None) -> Usage:
        prompt = _count(reported, "prompt_tokens")
        completion = _count(reported, "completion_tokens")
        estimated = prompt is None or completion is None
        if prompt is None:
            prompt = estimate_prompt_tokens(request.messages)
        if completion is None:
            completion = estimate_text_tokens(text)
        cost = price_usd(
            prompt,
            completion,
            prompt_per_1k=self.config.prompt_price_per_1k,
            completion_per_1k=self.config.completion_price_per_1k,
        )
        return Usage(prompt, completion, cost, estimated=estimated)

    def _error(
        self,
        kind: FailureKind,
        message: str,
        *,
        retry_after_s: float | None = None,
        usage: Usage | None = None,
    ) -> ProviderError:
        text = f"{self.name}: {message}"
        if self._key is not None:
            text = self._key.scrub(text)
        return ProviderError(kind, text, retry_after_s=retry_after_s, usage=usage)


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data:`` payloads of a server-sent event stream (multi-line data joined, comments skipped)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _count(usage: dict[str, Any] | None, field: str) -> int | None:
    value = usage.get(field) if usage else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _error_code(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    return _error_code_of(body) if isinstance(body, dict) else ""


def _error_code_of(body: dict[str, Any]) -> str:
    """The provider's machine-readable error code or type, if it is a short identifier; never free text (which
    can echo the prompt or part of the key)."""
    error = body.get("error")
    if not isinstance(error, dict):
        return ""
    for field in ("code", "type"):
        value = error.get(field)
        if (
            isinstance(value, str)
            and 0 < len(value) <= 64
            and value.replace("_", "").replace("-", "").isalnum()
        ):
            return value
    return ""
