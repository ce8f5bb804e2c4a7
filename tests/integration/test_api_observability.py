"""What the live service tells operators: JSON access logs without text or secrets, traces, redacted store."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deskpilot.api.app import Overrides, create_app
from deskpilot.service.observability import JsonFormatter
from tests.helpers import run_cli
from tests.integration.api_fixtures import ACME_KEY, TrainedHome, settings_for, trained_home
from tests.live_server import LiveServer, serve

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
MARKER = "zebra-quartz-lantern"  # a phrase no log or span may repeat
TEXT = f"Hi, {EMAIL} here: the ATM kept my card {CARD} ({MARKER}) and I need it back"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("observability") / "home", versions=1)


@pytest.fixture(scope="module")
def traced(trained: TrainedHome) -> Iterator[tuple[LiveServer, InMemorySpanExporter]]:
    overrides = Overrides()
    app = create_app(settings_for(trained, tracing="memory", reload_interval_s=0), overrides)
    (exporter,) = overrides.span_exporter
    assert isinstance(exporter, InMemorySpanExporter)
    with serve(app) as server:
        yield server, exporter


def wait_for(find: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """Poll until ``find()`` returns something truthy (log lines and spans end just after the response)."""
    deadline = time.monotonic() + timeout_s
    while not (found := find()):
        if time.monotonic() > deadline:
            raise AssertionError("not found in time")
        time.sleep(0.02)
    return found


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """DeskPilot's log records, formatted as the service formats them, in a string."""
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


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_access_log_lines_carry_request_and_tenant_but_no_text_keys_or_pii(
    traced: tuple[LiveServer, InMemorySpanExporter], json_log: io.StringIO
) -> None:
    server, _ = traced
    with server.client(ACME_KEY) as client, server.client() as anonymous:
        ok = client.post("/v1/triage", json={"text": TEXT, "id": "T-42"}, headers={"X-Request-ID": "obs-ok"})
        invalid = client.post(
            "/v1/triage", json={"text": TEXT, "note": EMAIL}, headers={"X-Request-ID": "obs-422"}
        )
        refused = anonymous.post("/v1/triage", json={"text": TEXT}, headers={"X-Request-ID": "obs-401"})
        batch = client.post("/v1/triage/batch", json={"items": [{"text": TEXT}, {"text": EMAIL}]})
    statuses = [r.status_code for r in (ok, invalid, refused, batch)]
    assert statuses == [200, 422, 401, 200]
    # the service makes every request id; the caller's own X-Request-ID is only logged beside it
    responses = {"ok": ok, "422": invalid, "401": refused, "batch": batch}
    ids = {name: response.headers["x-request-id"] for name, response in responses.items()}
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids.values()), ids

    def access() -> dict[str, dict[str, Any]]:
        lines = {
            line["request_id"]: line for line in _lines(json_log) if line["logger"] == "deskpilot.access"
        }
        return lines if set(ids.values()) <= set(lines) else {}

    lines = wait_for(access)
    assert lines[ids["ok"]] | {"time": None, "latency_ms": None} == {
        "time": None,
        "level": "info",
        "logger": "deskpilot.access",
        "event": "request",
        "request_id": ids["ok"],
        "client_request_id": "obs-ok",
        "tenant": "acme",
        "method": "POST",
        "route": "/v1/triage",
        "status": 200,
        "latency_ms": None,
    }
    assert lines[ids["ok"]]["latency_ms"] > 0
    assert (lines[ids["422"]]["tenant"], lines[ids["422"]]["status"]) == ("acme", 422)
    assert lines[ids["422"]]["client_request_id"] == "obs-422"
    assert (lines[ids["401"]]["tenant"], lines[ids["401"]]["status"]) == (None, 401)
    assert lines[ids["401"]]["route"] == "/v1/triage"  # refused before the body was read, still named
    assert (lines[ids["batch"]]["route"], lines[ids["batch"]]["tenant"]) == ("/v1/triage/batch", "acme")
    assert lines[ids["batch"]]["client_request_id"] is None
    written = json_log.getvalue()
    for secret in (MARKER, EMAIL, CARD, ACME_KEY, "T-42"):
        assert secret not in written, secret
    # the response does not echo the text either, and a validation error names the field, not the value
    for response in (ok, invalid, refused, batch):
        assert MARKER not in response.text
        assert EMAIL not in response.text


def test_a_request_is_traced_through_triage_batch_and_model(
    traced: tuple[LiveServer, InMemorySpanExporter],
) -> None:
    server, exporter = traced
    exporter.clear()
    with server.client(ACME_KEY) as client:
        response = client.post("/v1/triage", json={"text": TEXT}, headers={"X-Request-ID": "trace-1"})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]

    def request_span() -> ReadableSpan | None:
        return next(
            (
                s
                for s in exporter.get_finished_spans()
                if s.attributes and s.attributes.get("deskpilot.request_id") == request_id
            ),
            None,
        )

    request = wait_for(request_span)
    spans = exporter.get_finished_spans()
    assert request.name == "POST /v1/triage"
    assert attributes(request)["deskpilot.client_request_id"] == "trace-1"
    assert attributes(request)["http.route"] == "/v1/triage"
    assert attributes(request)["http.status_code"] == 200
    trace_id = request.context.trace_id

    (triage,) = [s for s in spans if s.name == "triage" and s.context.trace_id == trace_id]
    assert triage.parent is not None
    assert triage.parent.span_id == request.context.span_id
    assert attributes(triage)["deskpilot.tenant"] == "acme"
    assert attributes(triage)["deskpilot.tickets"] == 1

    (batch,) = [
        s
        for s in spans
        if s.name == "batch champion" and any(link.context.trace_id == trace_id for link in s.links)
    ]
    (link,) = [link for link in batch.links if link.context.trace_id == trace_id]
    assert link.context.span_id == triage.context.span_id  # the batch links every request it served
    assert attributes(batch)["deskpilot.batch_size"] >= 1

    (model,) = [
        s
        for s in spans
        if s.name == "model champion" and s.parent and s.parent.span_id == batch.context.span_id
    ]
    assert model.context.trace_id == batch.context.trace_id
    times = (batch.start_time, model.start_time, model.end_time, batch.end_time)
    assert None not in times
    assert list(times) == sorted(times)  # type: ignore[type-var]

    for span in spans:
        for value in attributes(span).values():
            assert MARKER not in str(value)
            assert EMAIL not in str(value)


def test_pii_is_redacted_before_the_text_reaches_the_store(
    traced: tuple[LiveServer, InMemorySpanExporter],
) -> None:
    server, _ = traced
    with server.client(ACME_KEY) as client:
        response = client.post("/v1/triage", json={"text": TEXT})
    assert response.status_code == 200
    service = server.app.state.parts.service
    assert service.writer.flush(10)
    stored = service.store.get_decision("acme", response.json()["request_id"])
    assert stored is not None
    assert EMAIL not in stored.text
    assert "4111" not in stored.text
    assert "<EMAIL>" in stored.text
    assert "<CARD>" in stored.text
    assert MARKER in stored.text  # only the PII is replaced; the message itself is kept for review


def test_one_id_leads_from_the_access_log_to_the_decisions_and_back(
    traced: tuple[LiveServer, InMemorySpanExporter], trained: TrainedHome, json_log: io.StringIO
) -> None:
    server, _ = traced
    items = [{"text": "my card has not arrived yet", "id": "T-1"}, {"text": "how do I top up?", "id": "T-2"}]
    with server.client(ACME_KEY) as client:
        response = client.post(
            "/v1/triage/batch", json={"items": items}, headers={"X-Request-ID": "trace-me-1"}
        )
    assert response.status_code == 200, response.text
    http_id = response.headers["x-request-id"]  # the service's id; the caller's is only logged beside it
    assert http_id != "trace-me-1"
    decision_ids = [item["request_id"] for item in response.json()["items"]]
    assert len(set(decision_ids)) == 2

    def access_line() -> dict[str, Any] | None:
        lines = [line for line in _lines(json_log) if line["logger"] == "deskpilot.access"]
        return next((line for line in lines if line["client_request_id"] == "trace-me-1"), None)

    line = wait_for(access_line)
    assert (line["route"], line["tenant"], line["status"]) == ("/v1/triage/batch", "acme", 200)
    assert line["request_id"] == http_id  # the caller's id leads to ours in the log, ours to the store
    service = server.app.state.parts.service
    assert service.writer.flush(10)
    for decision_id in decision_ids:
        stored = service.store.get_decision("acme", decision_id)
        assert stored is not None
        assert stored.http_request_id == http_id

    forward = run_cli("--home", trained.home, "store", "trace", http_id, "--json", home=trained.home)
    assert forward.returncode == 0, forward.stderr
    found = json.loads(forward.stdout)
    assert found["matched_as"] == ["http_request"]
    assert sorted(d["decision_id"] for d in found["decisions"]) == sorted(decision_ids)
    assert {d["ticket_id"] for d in found["decisions"]} == {"T-1", "T-2"}

    back = run_cli("--home", trained.home, "store", "trace", decision_ids[1], "--json", home=trained.home)
    assert back.returncode == 0, back.stderr
    found = json.loads(back.stdout)
    assert found["matched_as"] == ["decision"]
    assert found["http_request_ids"] == [http_id]
    assert sorted(d["decision_id"] for d in found["decisions"]) == sorted(decision_ids)  # with its sibling

    table = run_cli("--home", trained.home, "store", "trace", decision_ids[0], home=trained.home)
    assert table.returncode == 0, table.stderr
    assert http_id in table.stdout.splitlines()[0]
    unknown = run_cli("--home", trained.home, "store", "trace", "no-such-id", home=trained.home)
    assert unknown.returncode == 1
    assert "no-such-id" in unknown.stderr
