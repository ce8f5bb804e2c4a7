"""A real OpenAI-compatible HTTP server on 127.0.0.1, for tests that must cross a socket.

It speaks ``POST /v1/chat/completions`` (and ``/chat/completions``), streamed as server-sent events or not, as
the request's ``stream`` asks. Each request takes the next scripted step, or ``default`` when the script is
empty; steps are normal answers and the faults real servers produce: a slow start, a slow drip, 429 with
Retry-After, 5xx, a reset connection, a stream cut short without ``[DONE]``, ``finish_reason: length``, bodies
that are not JSON or lack fields. Every request (method, path, headers, body) is recorded before it is
answered, so tests can check what left the process.

The server is one asyncio loop in one thread; :meth:`FakeOpenAI.stop` cancels every connection, closes every
socket and joins the thread, so nothing leaks between tests.

    with FakeOpenAI() as fake:
        fake.enqueue(rate_limited("1"), Answer("Hello."))
        ... ProviderConfig(base_url=fake.base_url, ...) ...
        assert fake.requests[0].headers["authorization"] == "Bearer sk-test"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


@dataclass(frozen=True)
class Answer:
    """A chat completion. ``finish_reason=None`` leaves it out; ``done=False`` ends a stream cleanly without
    ``[DONE]`` (or, unstreamed, sends only the first half of the JSON body). ``delay_s`` waits before the
    status line; ``chunk_delay_s`` waits before each stream chunk (or each piece of an unstreamed body).
    A stream carries usage only when the request asked for it (``stream_options.include_usage``)."""

    text: str = "Thanks for getting in touch. Your new card is on its way."
    finish_reason: str | None = "stop"
    prompt_tokens: int = 21
    completion_tokens: int | None = None  # None: one per word of ``text``
    usage: bool = True
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    chunk_chars: int = 8
    done: bool = True

    def completion_count(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else len(self.text.split())


@dataclass(frozen=True)
class Status:
    """An HTTP error status with an OpenAI-style error body, and a Retry-After header when given."""

    status: int
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Reset:
    """Drop the connection with a TCP reset: before any response, or after ``after_chunks`` stream chunks."""

    after_chunks: int | None = None


@dataclass(frozen=True)
class Raw:
    """Any body, sent as is with a correct Content-Length."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"


Step = Answer | Status | Reset | Raw


def slow(delay_s: float, text: str = Answer.text) -> Answer:
    return Answer(text, delay_s=delay_s)


def drip(chunk_delay_s: float, text: str = Answer.text) -> Answer:
    return Answer(text, chunk_delay_s=chunk_delay_s)


def rate_limited(retry_after: str | None = "1") -> Status:
    return Status(429, retry_after=retry_after)


def server_error(status: int = 500) -> Status:
    return Status(status)


def truncated(text: str = "Thanks for getting in") -> Answer:
    return Answer(text, finish_reason=None, done=False)


def length(text: str = "Thanks for getting in touch. Your new") -> Answer:
    return Answer(text, finish_reason="length")


def malformed() -> Raw:
    return Raw(b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "Hel')


def missing_fields() -> Raw:
    return Raw(json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": []}).encode())


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_at: float  # time.monotonic() when the body was in

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    keep_alive: bool = True


class FakeOpenAI:
    def __init__(self, default: Step | None = None, *, model: str = "fake-model") -> None:
        self.default: Step = default if default is not None else Answer()
        self.model = model
        self._lock = threading.Lock()
        self._script: deque[Step] = deque()
        self._requests: list[RecordedRequest] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port = 0
        self._error: BaseException | None = None

    # -- the test's side ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def enqueue(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    @property
    def pending(self) -> int:
        """Scripted steps not yet used."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path in CHAT_PATHS]

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._error is not None:
            self.stop()
            raise RuntimeError("the fake OpenAI server did not start") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("the fake OpenAI server did not stop")
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the server's side ----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(); a thread must not die with an unhandled error
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        for _ in range(3):  # let closed transports run their connection_lost callbacks
            await asyncio.sleep(0)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Connection(reader, writer)
        try:
            while conn.keep_alive:
                request = await self._read_request(conn)
                if request is None:
                    break
                await self._respond(conn, request)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _ClientGoneError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly (a cancelled handler task is logged as an error)
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _read_request(self, conn: _Connection) -> RecordedRequest | None:
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await conn.reader.readexactly(int(headers.get("content-length", "0")))
        conn.keep_alive = headers.get("connection", "").lower() != "close"
        request = RecordedRequest(method, path.split("?", 1)[0], headers, body, time.monotonic())
        with self._lock:
            self._requests.append(request)
        return request

    def _next_step(self) -> Step:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    async def _respond(self, conn: _Connection, request: RecordedRequest) -> None:
        if request.path not in CHAT_PATHS or request.method != "POST":
            await self._send(conn, 404, json.dumps({"error": {"type": "not_found"}}).encode())
            return
        step = self._next_step()
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = {}
        stream = isinstance(payload, dict) and payload.get("stream") is True
        if isinstance(step, Reset):
            if step.after_chunks is None:
                _reset(conn.writer)
                conn.keep_alive = False
                return
            await self._stream(conn, Answer(), payload, reset_after=step.after_chunks)
        elif isinstance(step, Status):
            await _pause(conn, step.delay_s)
            body = step.body or {"error": {"message": "scripted failure", "type": f"http_{step.status}"}}
            extra = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
            await self._send(conn, step.status, json.dumps(body).encode(), extra)
        elif isinstance(step, Raw):
            await self._send(conn, step.status, step.body, {}, step.content_type)
        elif stream:
            await _pause(conn, step.delay_s)
            await self._stream(conn, step, payload)
        else:
            await _pause(conn, step.delay_s)
            await self._send_answer(conn, step, payload)

    async def _send(
        self,
        conn: _Connection,
        status: int,
        body: bytes,
        extra: dict[str, str] | None = None,
        content_type: str = "application/json",
        *,
        chunk_delay_s: float = 0.0,
        pieces: int = 1,
    ) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Type: {content_type}"]
        head += [f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (extra or {}).items())]
        conn.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        size = max(1, -(-len(body) // pieces))
        for start in range(0, len(body), size):
            if chunk_delay_s:
                await _pause(conn, chunk_delay_s)
            conn.writer.write(body[start : start + size])
        await conn.writer.drain()

    async def _send_answer(self, conn: _Connection, answer: Answer, payload: Any) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        choice: dict[str, Any] = {"index": 0, "message": message}
        if answer.finish_reason is not None:
            choice["finish_reason"] = answer.finish_reason
        body: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": _model(payload, self.model),
            "choices": [choice],
        }
        if answer.usage:
            body["usage"] = _usage(answer)
        raw = json.dumps(body).encode()
        if not answer.done:
            raw = raw[: len(raw) // 2]
        pieces = max(1, len(answer.text) // max(1, answer.chunk_chars)) if answer.chunk_delay_s else 1
        await self._send(conn, 200, raw, chunk_delay_s=answer.chunk_delay_s, pieces=pieces)

    async def _stream(
        self, conn: _Connection, answer: Answer, payload: Any, *, reset_after: int | None = None
    ) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        conn.writer.write(head.encode("latin-1"))
        model = _model(payload, self.model)
        events = [_chunk(model, {"role": "assistant", "content": ""}, None)]
        step = max(1, answer.chunk_chars)
        events += [
            _chunk(model, {"content": answer.text[i : i + step]}, None)
            for i in range(0, len(answer.text), step)
        ]
        if answer.done:
            if answer.finish_reason is not None:
                events.append(_chunk(model, {}, answer.finish_reason))
            options = payload.get("stream_options") if isinstance(payload, dict) else None
            if answer.usage and isinstance(options, dict) and options.get("include_usage"):
                events.append(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "choices": [],
                        "usage": _usage(answer),
                    }
                )
        lines = [f"data: {json.dumps(e)}\n\n".encode() for e in events]
        if answer.done:
            lines.append(b"data: [DONE]\n\n")
        for index, line in enumerate(lines):
            if reset_after is not None and index >= reset_after:
                await conn.writer.drain()
                _reset(conn.writer)
                conn.keep_alive = False
                return
            if answer.chunk_delay_s:
                await _pause(conn, answer.chunk_delay_s)
            _check(conn)
            conn.writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        conn.writer.write(b"0\r\n\r\n")
        await conn.writer.drain()


class _ClientGoneError(Exception):
    """The client hung up while we were dripping: stop writing to a dead socket."""


async def _pause(conn: _Connection, seconds: float) -> None:
    await conn.writer.drain()
    await asyncio.sleep(seconds)
    _check(conn)


def _check(conn: _Connection) -> None:
    if conn.writer.is_closing() or conn.reader.at_eof():
        raise _ClientGoneError


def _model(payload: Any, fallback: str) -> str:
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) else fallback


def _usage(answer: Answer) -> dict[str, int]:
    completion = answer.completion_count()
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": answer.prompt_tokens + completion,
    }


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed server or a load balancer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
