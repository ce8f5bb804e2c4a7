"""The HTTP edge: what the service tells whom, what it logs and stores of a caller's ids, and how long it
lets a connection take.

Finding 7: a client that left was counted as HTTP 500; now 499, and its request leaves the model queue.
Finding 10: ``/readyz`` and the feedback 503 showed the database URL, ``/metrics`` every tenant's name, to
anyone; now the reasons need the operator key, the 503 is generic, and ``/metrics`` can need the key or
live on its own port.
Finding 11: a caller's ``X-Request-ID`` became the request's id (reusable, logged verbatim, even a card
number); now the service makes every id and logs the caller's, redacted, beside it.
Finding 12: a body was read and parsed before the key was checked, and slow bodies, slow heads and idle
connections were kept for ever; now the key comes first and every stage has a deadline.
Finding 4 (part): ticket ids (often e-mail addresses) were stored raw; now redacted, the canary still sticky.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from deskpilot.api.app import Overrides, create_app
from deskpilot.api.server import uvicorn_options
from deskpilot.config import Settings
from deskpilot.domain import Role, Ticket
from deskpilot.rollout.split import to_challenger
from deskpilot.service.observability import JsonFormatter
from deskpilot.store.audit import InMemoryAuditLog
from deskpilot.store.sql import SqlStore
from tests.integration.api_fixtures import ACME_KEY, GLOBEX_KEY, TrainedHome, running, settings_for
from tests.live_server import LiveServer, free_port, serve
from tests.security.test_admission import champion_held, metric, shared_trained_home, wait_until
from tests.unit.service_fakes import installed
from tests.unit.test_service_core import CHALLENGER, CHAMPION, Harness, build

OPS_KEY = "ops-key-0123456789abcdef"
OPERATOR = {"Authorization": f"Bearer {OPS_KEY}"}
CARD = "4111111111111111"  # Luhn-valid


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return shared_trained_home(tmp_path_factory)


@pytest.fixture(scope="module")
def server(trained: TrainedHome) -> Iterator[LiveServer]:
    settings = settings_for(
        trained, ops_key=OPS_KEY, body_timeout_s=0.5, reload_interval_s=0, model_timeout_s=30.0
    )
    with running(settings) as live:
        yield live


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("deskpilot")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == "deskpilot.access"]


def connect(server_url: str) -> socket.socket:
    host, port = server_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def head(path: str, *, length: int, key: str | None = ACME_KEY) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or 10 s pass: the caller's assertion then fails)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pass
    return received


# ---- finding 12: the key before the body, deadlines for bodies and heads -------------------------


def test_an_unauthenticated_body_is_refused_before_it_is_read(server: LiveServer) -> None:
    """1 MB announced, not one byte of it sent: the answer must not wait for it."""
    with connect(server.url) as sock:
        sock.sendall(head("/v1/triage", length=1_000_000, key=None))
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closes(server: LiveServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(head("/v1/triage", length=100) + b'{"text": "sl')
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert b"connection: close" in answer.lower()


@contextmanager
def served_like_the_cli(app: FastAPI, settings: Settings) -> Iterator[str]:
    """The app on uvicorn with ``deskpilot serve``'s options (asyncio loop: this runs in a thread)."""
    port = free_port()
    options = {**uvicorn_options(settings), "loop": "asyncio"}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "the server started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_slow_heads_are_closed_so_idle_connections_cannot_hold_the_connection_cap(
    trained: TrainedHome,
) -> None:
    settings = settings_for(trained, header_timeout_s=0.5, limit_concurrency=4, reload_interval_s=0)
    with served_like_the_cli(create_app(settings), settings) as url:
        idle = [connect(url) for _ in range(3)]
        slow = connect(url)
        slow.sendall(b"POST /v1/triage HTTP/1.1\r\nHost: x\r\n")  # and never the rest of the head
        try:
            crowded = httpx.get(f"{url}/healthz", timeout=10)
            closed = [read_all(sock) for sock in [*idle, slow]]  # the server closes each one
            after = httpx.get(f"{url}/healthz", timeout=10)
        finally:
            for sock in [*idle, slow]:
                sock.close()
    assert crowded.status_code == 503, "four open connections reach the cap of four"
    assert closed == [b""] * 4, "no head in time: closed without an answer"
    assert after.status_code == 200


# ---- finding 7: a client that leaves --------------------------------------------------------------


def test_a_client_that_leaves_mid_body_is_counted_499_not_500(server: LiveServer) -> None:
    before_500 = metric(server, "deskpilot_http_request_duration_seconds_count", key=OPS_KEY, status="500")
    before_499 = metric(server, "deskpilot_http_request_duration_seconds_count", key=OPS_KEY, status="499")
    with connect(server.url) as sock:
        sock.sendall(head("/v1/triage", length=100) + b'{"text": ')
    wait_until(
        lambda: (
            metric(server, "deskpilot_http_request_duration_seconds_count", key=OPS_KEY, status="499")
            > before_499
        ),
        what="the request counted as 499",
    )
    assert (
        metric(server, "deskpilot_http_request_duration_seconds_count", key=OPS_KEY, status="500")
        == before_500
    )


def test_a_client_that_leaves_while_queued_is_never_computed(server: LiveServer) -> None:
    marker = "marimba quokka lantern"
    body = json.dumps({"text": f"my card has not arrived {marker}"}).encode()
    before = metric(
        server, "deskpilot_http_request_duration_seconds_count", key=OPS_KEY, route="/v1/triage", status="499"
    )
    with (
        champion_held(server) as (entered, release, computed),
        server.client(GLOBEX_KEY) as other,
        ThreadPoolExecutor(1) as pool,
    ):
        queue = server.app.state.parts.service._batchers[Role.CHAMPION]  # read-only look
        first = pool.submit(other.post, "/v1/triage", json={"text": "lost card"})
        assert entered.wait(20)
        with connect(server.url) as sock:
            sock.sendall(head("/v1/triage", length=len(body)) + body)
            wait_until(lambda: queue.queued == 1, what="the request queued")
        wait_until(lambda: queue.queued == 0, what="the abandoned request left the queue")
        release.set()
        assert first.result(30).status_code == 200
    assert not any(marker in text for text in computed)
    wait_until(
        lambda: (
            metric(
                server,
                "deskpilot_http_request_duration_seconds_count",
                key=OPS_KEY,
                route="/v1/triage",
                status="499",
            )
            > before
        ),
        what="the request counted as 499",
    )


# ---- finding 10: what operations endpoints show ---------------------------------------------------


@pytest.fixture(scope="module")
def unreachable_store(trained: TrainedHome) -> Iterator[LiveServer]:
    """A server whose PostgreSQL store is unreachable (nothing listens on port 1)."""
    url = "postgresql+psycopg://deskpilot:secret-pw@127.0.0.1:1/deskpilot_edge"
    settings = settings_for(trained, ops_key=OPS_KEY, reload_interval_s=0)
    store = SqlStore(url, connect_timeout_s=2)
    app = create_app(settings, Overrides(store=store, audit=InMemoryAuditLog()))
    with serve(app) as live:
        yield live


def test_readyz_tells_why_only_to_the_operator(unreachable_store: LiveServer) -> None:
    with unreachable_store.client() as client:
        public = client.get("/readyz")
        operator = client.get("/readyz", headers=OPERATOR)
    assert public.status_code == operator.status_code == 503
    assert public.json()["ready"] is False
    for leak in ("127.0.0.1", "deskpilot_edge", "deskpilot@", "secret-pw", ":1/"):
        assert leak not in public.text, leak
    assert any("store unreachable" in problem for problem in operator.json()["problems"])
    assert "secret-pw" not in operator.text


def test_a_store_error_reaches_the_client_without_the_database_address(
    unreachable_store: LiveServer, json_log: io.StringIO
) -> None:
    classes = unreachable_store.app.state.parts.service.models.champion.model.classes
    with unreachable_store.client(ACME_KEY) as client:
        response = client.post("/v1/feedback", json={"request_id": "r-1", "correct_intent": classes[0]})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "store_unavailable"
    for leak in ("127.0.0.1", "deskpilot_edge", "deskpilot@", "postgresql"):
        assert leak not in response.text, leak
    assert "127.0.0.1" in json_log.getvalue(), "the operator still finds the address in the log"


def test_metrics_need_the_operator_key_when_one_is_set(server: LiveServer) -> None:
    with server.client() as anonymous, server.client(ACME_KEY) as tenant:
        refused = anonymous.get("/metrics")
        as_tenant = tenant.get("/metrics")
        allowed = anonymous.get("/metrics", headers=OPERATOR)
    assert refused.status_code == 401
    assert as_tenant.status_code == 401, "a tenant's key does not show the other tenants"
    assert "acme" not in refused.text
    assert allowed.status_code == 200
    assert "deskpilot_http_request_duration_seconds" in allowed.text


def test_metrics_on_their_own_port_leave_the_api_port(trained: TrainedHome) -> None:
    settings = settings_for(trained, metrics_port=free_port(), reload_interval_s=0)
    with running(settings) as server, server.client() as client:
        assert client.get("/metrics").status_code == 404


# ---- finding 11: request ids ----------------------------------------------------------------------


def test_the_service_makes_every_request_id_and_logs_the_callers_redacted(
    server: LiveServer, json_log: io.StringIO
) -> None:
    with server.client(ACME_KEY) as client:
        sent = [
            client.post("/v1/triage", json={"text": "lost card"}, headers={"X-Request-ID": "dup-1"})
            for _ in range(2)
        ]
        card = client.post("/v1/triage", json={"text": "lost card"}, headers={"X-Request-ID": CARD})
    ids = [r.headers["x-request-id"] for r in (*sent, card)]
    assert len(set(ids)) == 3
    assert "dup-1" not in ids
    assert CARD not in ids
    service = server.app.state.parts.service
    assert service.writer.flush(10)
    for response, http_id in zip((*sent, card), ids, strict=True):
        stored = service.store.get_decision("acme", response.json()["request_id"])
        assert stored is not None
        assert stored.http_request_id == http_id, "a decision leads to the request that made it"
    wait_until(lambda: {ids[2]} <= {line["request_id"] for line in access_lines(json_log)})
    by_id = {line["request_id"]: line for line in access_lines(json_log)}
    assert [by_id[i]["client_request_id"] for i in ids[:2]] == ["dup-1", "dup-1"]
    assert by_id[ids[2]]["client_request_id"] == "<CARD>"
    assert CARD not in json_log.getvalue()


# ---- finding 4 (part): ticket ids -------------------------------------------------------------------


def test_a_ticket_id_is_stored_and_echoed_redacted(server: LiveServer) -> None:
    """The id is echoed as stored: a response body is logged by proxies and clients as often as a request."""
    with server.client(ACME_KEY) as client:
        response = client.post("/v1/triage", json={"text": "lost card", "id": "jane.doe@example.com"})
        plain = client.post("/v1/triage", json={"text": "lost card", "id": "T-1001"})
    assert response.status_code == 200
    assert response.json()["id"] == "<EMAIL>"
    assert plain.json()["id"] == "T-1001", "an ordinary ticket id comes back as sent"
    service = server.app.state.parts.service
    assert service.writer.flush(10)
    stored = service.store.get_decision("acme", response.json()["request_id"])
    assert stored is not None
    assert stored.ticket_id == "<EMAIL>"


@pytest.fixture
def scripted_family(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from installed(monkeypatch)


@pytest.mark.usefixtures("scripted_family")
def test_the_canary_stays_sticky_on_the_raw_ticket_id() -> None:
    """The split hashes the id as sent (kept in memory only): two e-mail ids that both store as <EMAIL>
    still land on their own sides, and the same id always on the same one."""
    h: Harness = build()
    try:
        h.stage("canary", 50)
        emails = [f"customer{i}@example.com" for i in range(16)]

        async def scenario(service: Any) -> list[Any]:
            tickets = [Ticket("card question", id=e) for e in emails]
            first = await service.triage("acme", tickets)
            again = await service.triage("acme", tickets)
            return [*first, *again]

        answers = h.run(scenario)
    finally:
        h.writer.close(1.0)
        h.shadow_writer.close(1.0)
    versions = [a.decision.model_version for a in answers]
    expected = [CHALLENGER if to_challenger(h.manager.state, "acme", e) else CHAMPION for e in emails]
    assert versions == expected * 2
    assert set(expected) == {CHAMPION, CHALLENGER}
    stored = {h.store.get_decision("acme", a.decision.request_id).ticket_id for a in answers}  # type: ignore[union-attr]
    assert stored == {"<EMAIL>"}
