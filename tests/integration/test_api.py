"""The triage API on a real uvicorn server, real MLflow registry and real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deskpilot.api.schemas import TriageBatchPublic, TriagePublic
from tests.integration.api_fixtures import (
    ACME_KEY,
    GLOBEX_KEY,
    TINY_KEY,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("api") / "home")


@pytest.fixture(scope="module")
def server(trained: TrainedHome) -> Iterator[LiveServer]:
    with running(settings_for(trained)) as live:
        yield live


def test_health_ready_and_openapi(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/triage", "/v1/triage/batch", "/v1/feedback", "/v1/models", "/healthz", "/readyz"} <= set(
        paths
    )


def test_triage_answers_with_the_champion(server: LiveServer, trained: TrainedHome) -> None:
    with server.client(ACME_KEY) as client:
        response = client.post("/v1/triage", json={"text": "  my card still has not arrived  ", "id": "T-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    TriagePublic.model_validate(body, strict=True)  # the hand-built JSON keeps the published schema
    assert set(body) >= {"intent", "confidence", "route", "alternatives", "model_version", "request_id"}
    assert body["model_version"] == trained.versions[0]
    assert body["route"] in {"auto", "human"}
    assert body["id"] == "T-1"
    assert len(body["alternatives"]) == 2
    assert body["fallback"] is False
    assert response.headers["x-request-id"]


def test_missing_or_wrong_key_is_401(server: LiveServer) -> None:
    with server.client() as anonymous, server.client("not-a-key-0123456789") as wrong:
        for client in (anonymous, wrong):
            response = client.post("/v1/triage", json={"text": "hello"})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("payload", "headers", "status", "code"),
    [
        ({"text": ""}, {}, 422, "validation_error"),
        ({"text": "   "}, {}, 422, "validation_error"),
        ({"text": 12}, {}, 422, "validation_error"),
        ({"text": "hi", "priority": "high"}, {}, 422, "validation_error"),
        ({}, {}, 422, "validation_error"),
        ({"text": "x" * 301}, {}, 422, "validation_error"),
        ({"text": "x" * 30_000}, {}, 413, "payload_too_large"),
        (b'{"text": ', {}, 400, "invalid_json"),
        (b'{"text": "caf\xe9"}', {}, 400, "invalid_encoding"),
        (b'{"text": "hi"}', {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"text": "hi"}', {"content-type": "application/json; charset=utf-16"}, 400, "invalid_encoding"),
    ],
)
def test_bad_requests_get_a_stable_error(
    server: LiveServer, payload: object, headers: dict[str, str], status: int, code: str
) -> None:
    with server.client(ACME_KEY) as client:
        if isinstance(payload, bytes):
            sent = {"content-type": "application/json", **headers}
            response = client.post("/v1/triage", content=payload, headers=sent)
        else:
            response = client.post("/v1/triage", json=payload, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_batch_and_its_limits(server: LiveServer) -> None:
    with server.client(ACME_KEY) as client:
        ok = client.post(
            "/v1/triage/batch", json={"items": [{"text": "lost card"}, {"text": "top up", "id": "7"}]}
        )
        too_many = client.post("/v1/triage/batch", json={"items": [{"text": "hi"}] * 17})
        empty = client.post("/v1/triage/batch", json={"items": []})
        one_bad = client.post("/v1/triage/batch", json={"items": [{"text": "fine"}, {"text": "y" * 301}]})
    assert ok.status_code == 200
    TriageBatchPublic.model_validate(ok.json(), strict=True)
    items = ok.json()["items"]
    assert [i["id"] for i in items] == [None, "7"]
    assert len({i["request_id"] for i in items}) == 2
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "payload_too_large"
    assert empty.status_code == 422
    assert one_bad.status_code == 422
    assert one_bad.json()["error"]["details"]["errors"][0]["field"] == "items.1.text"


def test_unknown_routes_and_methods(server: LiveServer) -> None:
    with server.client(ACME_KEY) as client:
        assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
        wrong = client.get("/v1/triage")
        put = client.put("/v1/triage", json={"text": "hi"})
    assert put.status_code == 405, "a method the route lacks is 405 whatever its body"
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_feedback_is_scoped_to_the_tenant(server: LiveServer) -> None:
    with server.client(ACME_KEY) as acme, server.client(GLOBEX_KEY) as globex:
        request_id = acme.post("/v1/triage", json={"text": "I want to change my PIN"}).json()["request_id"]
        server.app.state.parts.service.writer.flush(10)
        other = globex.post(
            "/v1/feedback", json={"request_id": request_id, "correct_intent": "activate_my_card"}
        )
        mine = acme.post(
            "/v1/feedback", json={"request_id": request_id, "correct_intent": "activate_my_card"}
        )
        unknown = acme.post("/v1/feedback", json={"request_id": "nope", "correct_intent": "activate_my_card"})
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    assert mine.status_code == 200, mine.text
    assert mine.json()["correct_intent"] == "activate_my_card"
    assert unknown.status_code == 404
    store = server.app.state.parts.service.store
    assert store.get_decision("acme", request_id) is not None
    assert store.get_decision("globex", request_id) is None


def test_rate_limit_answers_429_with_retry_after(server: LiveServer) -> None:
    with server.client(TINY_KEY) as client:
        too_big = client.post("/v1/triage/batch", json={"items": [{"text": "a"}] * 3})
        codes = [client.post("/v1/triage", json={"text": "hello"}).status_code for _ in range(3)]
        limited = client.post("/v1/triage", json={"text": "hello"})
    assert too_big.status_code == 413  # more tickets than the tenant's burst can ever hold
    # a refused request keeps its door fee (one token of the burst of two): one answer, then 429s
    assert codes[0] == 200
    assert 429 in codes[1:]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1


def test_models_and_metrics(server: LiveServer, trained: TrainedHome) -> None:
    with server.client(ACME_KEY) as client:
        client.post("/v1/triage", json={"text": "exchange rate please"})
        models = client.get("/v1/models").json()
        metrics = client.get("/metrics").text
    assert models["champion"]["version"] == trained.versions[0]
    assert models["primary"] == models["champion"], "the first API version's name stays, deprecated"
    assert models["challenger"] is None
    assert models["fallback"]["family"] == "tfidf"
    assert models["shares"] == {models["primary"]["uri"]: 1.0}
    for name in (
        "deskpilot_http_request_duration_seconds_bucket",
        "deskpilot_model_latency_seconds_bucket",
        "deskpilot_batch_size_bucket",
        "deskpilot_predictions_total",
        "deskpilot_confidence_bucket",
        "deskpilot_store_queue_depth",
        'deskpilot_model_info{family="tfidf",name="triage",role="champion"',
    ):
        assert name in metrics, name
    assert ACME_KEY not in metrics
