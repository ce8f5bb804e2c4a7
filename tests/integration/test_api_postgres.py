"""The live service on PostgreSQL: decisions and feedback land in the database, scoped to their tenant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from deskpilot.store import migrate
from tests.integration.api_fixtures import (
    ACME_KEY,
    GLOBEX_KEY,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("postgres") / "home", versions=1)


@pytest.fixture
def pg_server(trained: TrainedHome, postgres_url: str) -> Iterator[LiveServer]:
    migrate.upgrade(postgres_url)
    with running(settings_for(trained, database_url=postgres_url, reload_interval_s=0)) as server:
        yield server


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def flush(server: LiveServer) -> None:
    assert server.app.state.parts.service.writer.flush(10)


def test_triage_and_feedback_round_trip_on_postgresql(pg_server: LiveServer, postgres_url: str) -> None:
    server = pg_server
    assert server.app.state.parts.service.store.url.startswith("postgresql+psycopg://")
    with server.client(ACME_KEY) as acme, server.client(GLOBEX_KEY) as globex:
        assert acme.get("/readyz").status_code == 200
        mine = [
            acme.post("/v1/triage", json={"text": t, "id": f"A-{i}"})
            for i, t in enumerate(["lost card", "atm"])
        ]
        theirs = globex.post("/v1/triage/batch", json={"items": [{"text": "top up failed"}]})
        assert [r.status_code for r in [*mine, theirs]] == [200, 200, 200]
        acme_ids = [r.json()["request_id"] for r in mine]
        globex_id = theirs.json()["items"][0]["request_id"]
        flush(server)
        recorded = acme.post(
            "/v1/feedback", json={"request_id": acme_ids[0], "correct_intent": "activate_my_card"}
        )
        across = globex.post(
            "/v1/feedback", json={"request_id": acme_ids[1], "correct_intent": "atm_support"}
        )
        back = acme.post("/v1/feedback", json={"request_id": globex_id, "correct_intent": "automatic_top_up"})
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["predicted_intent"] == mine[0].json()["intent"]
    assert recorded.json()["model_version"] == mine[0].json()["model_version"]
    for refused in (across, back):
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"

    decisions = rows(postgres_url, "SELECT request_id, tenant, ticket_id, intent, text FROM decisions")
    assert sorted((r[0], r[1], r[2]) for r in decisions) == sorted(
        [(acme_ids[0], "acme", "A-0"), (acme_ids[1], "acme", "A-1"), (globex_id, "globex", None)]
    )
    by_id = {r[0]: r for r in decisions}
    assert by_id[acme_ids[0]][3] == mine[0].json()["intent"]
    assert by_id[globex_id][4] == "top up failed"
    feedback = rows(postgres_url, "SELECT tenant, request_id, correct_intent FROM feedback")
    assert feedback == [("acme", acme_ids[0], "activate_my_card")]


def test_nul_characters_are_refused_before_they_reach_postgresql(
    pg_server: LiveServer, postgres_url: str
) -> None:
    """PostgreSQL cannot store NUL in text: such a record would block the decision log behind it."""
    server = pg_server
    with server.client(ACME_KEY) as client:
        text_nul = client.post("/v1/triage", json={"text": "card\x00lost"})
        id_nul = client.post("/v1/triage", json={"text": "card lost", "id": "A\x00"})
        feedback_nul = client.post("/v1/feedback", json={"request_id": "a\x00b", "correct_intent": "x"})
        fine = client.post("/v1/triage", json={"text": "card lost"})
    for refused in (text_nul, id_nul, feedback_nul):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error"
    assert fine.status_code == 200
    flush(server)
    assert rows(postgres_url, "SELECT request_id FROM decisions") == [(fine.json()["request_id"],)]


def test_an_unmigrated_database_is_not_ready_until_migrated(trained: TrainedHome, postgres_url: str) -> None:
    ops_key = "ops-key-0123456789abcdef"  # /readyz gives its reasons to the operator key only
    settings = settings_for(trained, database_url=postgres_url, reload_interval_s=0, ops_key=ops_key)
    with running(settings) as server, server.client(ACME_KEY) as client:
        public = client.get("/readyz")
        before = client.get("/readyz", headers={"Authorization": f"Bearer {ops_key}"})
        answered = client.post("/v1/triage", json={"text": "my card has not arrived"})
        migrate.upgrade(postgres_url)
        after = client.get("/readyz")
        flush(server)
    assert before.status_code == 503
    (problem,) = before.json()["problems"]
    assert "has no DeskPilot store schema" in problem
    assert "deskpilot store migrate" in problem
    assert "deskpilot:deskpilot@" not in problem  # the password stays out of status pages
    assert public.status_code == 503
    assert "127.0.0.1" not in public.text  # nor the host and the user, for anyone without the key
    assert "deskpilot@" not in public.text
    assert answered.status_code == 200  # the decision waited in the buffer
    assert after.status_code == 200
    assert rows(postgres_url, "SELECT request_id, tenant FROM decisions") == [
        (answered.json()["request_id"], "acme")
    ]
