"""The shadow log and ``deskpilot rollout report`` on real databases.

A served shadow run on SQLite (real server, registry, store, CLI as a separate process) and rows written
through the store API on PostgreSQL; in both, the report's numbers must be the ones the stored rows give.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deskpilot.domain import ModelRef, Route
from deskpilot.rollout.actions import promote, rollback
from deskpilot.store import migrate
from deskpilot.store.base import DecisionStore
from deskpilot.store.memory import InMemoryStore
from deskpilot.store.records import DecisionRecord, ShadowRecord
from deskpilot.store.sql import SqlStore
from tests.helpers import bundled_subset, run_cli
from tests.integration.api_fixtures import (
    ACME_KEY,
    GLOBEX_KEY,
    MODEL,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)
from tests.integration.test_rollout import audit_log, serving, wait_for

POLICY = """\
version: 1
rollout:
  window_s: 60
  min_requests: 10
  max_error_rate: 0.5
  max_p99_ms: 5000
  max_disagreement: 1.0
  feedback_max_drop: 1.0
  feedback_min_samples: 1000
  alpha: 0.05
"""
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's store is the SQLite file under its home unless a test says otherwise."""
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("shadow-report") / "home", versions=2)


class Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "img":
            self.images.append(str(values.get("src")))
        elif tag not in {"meta", "br", "link"}:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1] if self.open else 'nothing'}")
            return
        self.open.pop()


def check_html(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    parser = Structure()
    parser.feed(text)
    parser.close()
    assert text.startswith("<!DOCTYPE html>")
    assert parser.problems == []
    assert parser.open == []
    assert {"headline", "plots", "intents", "routes", "shift", "feedback"} <= parser.ids
    assert len(parser.images) == 3
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "<script" not in text


def expected_from(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's headline numbers, counted directly from joined rows (champion, challenger, verdict)."""
    routes = Counter(f"{r['champion_route']}_to_{r['challenger_route']}" for r in rows)
    judged = [r for r in rows if r["correct"] is not None]
    by_intent: Counter[str] = Counter(r["champion_intent"] for r in rows)
    return {
        "compared": len(rows),
        "agreed": sum(r["champion_intent"] == r["challenger_intent"] for r in rows),
        "routes": {
            k: routes[k] for k in ("auto_to_auto", "auto_to_human", "human_to_auto", "human_to_human")
        },
        "judged": len(judged),
        "champion_right": sum(r["champion_intent"] == r["correct"] for r in judged),
        "challenger_right": sum(r["challenger_intent"] == r["correct"] for r in judged),
        "by_intent": dict(by_intent),
        "mean_shift": sum(r["challenger_confidence"] - r["champion_confidence"] for r in rows) / len(rows),
    }


def check_report(data: dict[str, Any], expected: dict[str, Any]) -> None:
    assert data["ok"] is True
    assert data["compared"] == expected["compared"]
    assert data["agreement"]["successes"] == expected["agreed"]
    assert data["agreement"]["rate"] == pytest.approx(expected["agreed"] / expected["compared"])
    assert data["agreement"]["low"] <= data["agreement"]["rate"] <= data["agreement"]["high"]
    assert {k: data["routes"][k] for k in expected["routes"]} == expected["routes"]
    assert {row["intent"]: row["n"] for row in data["by_intent"]} == expected["by_intent"]
    assert data["confidence_shift"]["mean"] == pytest.approx(expected["mean_shift"])
    if expected["judged"]:
        feedback = data["feedback"]
        assert feedback["n"] == expected["judged"]
        assert feedback["champion"]["successes"] == expected["champion_right"]
        assert feedback["challenger"]["successes"] == expected["challenger_right"]
    else:
        assert data["feedback"] is None


# ------------------------------------------------------------------------------ a served run (SQLite)


@pytest.fixture
def shadow_server(trained: TrainedHome, tmp_path: Path) -> Iterator[Any]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = settings_for(trained, policy_file=policy, guard_interval_s=0.2, rate_limit_per_s=0)
    v2 = trained.versions[1]
    audit = audit_log(trained)
    promote(
        trained.registry,
        audit,
        ModelRef(MODEL, version=v2),
        to="shadow",
        percent=None,
        actor="test",
        reason="shadow",
    )
    try:
        with running(settings, registry=trained.registry) as live:
            wait_for(lambda: (serving(live).get("rollout") or {}).get("stage") == "shadow")
            # the guard empties the monitor and the remembered shadow answers when it first sees the
            # challenger (every 0.2 s here): let that happen before the test's requests
            time.sleep(1.5)
            disagree_sometimes(live)
            yield live
    finally:
        if audit_log(trained).entries()[-1].action != "rollback":
            rollback(trained.registry, audit_log(trained), MODEL, actor="test", reason="end of test")


def disagree_sometimes(server: Any) -> None:
    """Make the challenger choose the neighbouring intent for about a third of the texts."""
    challenger = server.app.state.parts.service.models.challenger
    real = challenger.model.predict_proba

    def predict(batch: list[str]) -> np.ndarray:
        probs = real(batch)
        for row, text in enumerate(batch):
            if len(text) % 3 == 0:
                probs[row] = np.roll(probs[row], 1)
        return probs

    challenger.model.predict_proba = predict


def test_a_served_shadow_run_is_reported_from_the_store(
    shadow_server: Any, trained: TrainedHome, tmp_path: Path
) -> None:
    v1, v2 = trained.versions
    texts = bundled_subset(labels=6, per_label=30, seed=11)
    champion: dict[str, dict[str, Any]] = {}
    correct: dict[str, str] = {}
    for key, tenant in ((ACME_KEY, "acme"), (GLOBEX_KEY, "globex")):
        with shadow_server.client(key) as client:
            rows = texts.iloc[:40] if tenant == "acme" else texts.iloc[40:70]
            for i, (text, label) in enumerate(zip(rows["text"], rows["label"], strict=True)):
                body = client.post("/v1/triage", json={"text": text}).json()
                assert body["model_version"] == v1
                champion[body["request_id"]] = body | {"tenant": tenant}
                if i % 3 == 0:
                    correct[body["request_id"]] = label
    service = shadow_server.app.state.parts.service
    wait_for(lambda: (serving(shadow_server).get("shadow") or {}).get("compared", 0) >= len(champion))
    assert service.writer.flush(10)
    for request_id, label in correct.items():
        key = ACME_KEY if champion[request_id]["tenant"] == "acme" else GLOBEX_KEY
        with shadow_server.client(key) as client:
            assert client.post(
                "/v1/feedback", json={"request_id": request_id, "correct_intent": label}
            ).is_success
    assert service.shadow_writer.flush(10)

    live = serving(shadow_server)["shadow"]
    assert live["compared"] == len(champion)
    assert live["feedback"]["judged"] == len(correct)
    assert 0.0 < live["agreement_rate"] < 1.0

    with sqlite3.connect(trained.home / "deskpilot.db") as db:
        stored = db.execute(
            "SELECT tenant, request_id, model_name, model_version, intent, confidence, route "
            "FROM shadow_decisions"
        ).fetchall()
    shadow = {row[1]: row for row in stored}
    assert len(stored) == len(shadow) == len(champion)
    assert {(row[0], row[2], row[3]) for row in stored} == {("acme", MODEL, v2), ("globex", MODEL, v2)}
    assert all(champion[rid]["tenant"] == row[0] for rid, row in shadow.items())
    rows = [
        {
            "champion_intent": body["intent"],
            "champion_confidence": body["confidence"],
            "champion_route": body["route"],
            "challenger_intent": shadow[rid][4],
            "challenger_confidence": shadow[rid][5],
            "challenger_route": shadow[rid][6],
            "correct": correct.get(rid),
        }
        for rid, body in champion.items()
    ]
    expected = expected_from(rows)

    out = tmp_path / "report"
    result = run_cli("rollout", "report", "--name", MODEL, "--out", out, "--json", home=trained.home)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    check_report(data, expected)
    assert data["challenger_version"] == v2  # the current challenger, from the registry
    assert data["champion_versions"] == {v1: len(champion)}
    assert data["tenants"] == 2
    assert data["files"] == {"html": str(out / "report.html"), "markdown": str(out / "report.md")}
    check_html(out / "report.html")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert f"# Shadow report: models:/{MODEL}/{v2}" in markdown
    assert f"| requests compared | {len(champion)} |" in markdown

    # once the shadow stops, the report still finds the last challenger through the audit log
    rollback(trained.registry, audit_log(trained), MODEL, actor="test", reason="shadow done")
    text = run_cli("rollout", "report", "--name", MODEL, home=trained.home)
    assert text.returncode == 0, text.stderr
    agreement = f"{expected['agreed'] / expected['compared']:.1%}"
    assert f"challenger    models:/{MODEL}/{v2}\n" in text.stdout
    assert f"agreement     {agreement} [" in text.stdout
    assert f"compared      {len(champion)} requests from 2 tenant(s)" in text.stdout
    assert "report        " not in text.stdout

    future = run_cli("rollout", "report", "--name", MODEL, "--since", "2999-01-01", home=trained.home)
    assert future.returncode == 1
    assert "nothing to report: no shadow answers" in future.stderr
    assert "Traceback" not in future.stderr
    bad = run_cli("rollout", "report", "--name", MODEL, "--since", "yesterday", "--json", home=trained.home)
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"]["code"] == "usage_error"


# --------------------------------------------------------- the store contract, and the CLI on PostgreSQL


def decision(
    i: int, tenant: str, intent: str, confidence: float, route: Route, **changes: Any
) -> DecisionRecord:
    values: dict[str, Any] = {
        "tenant": tenant,
        "request_id": f"req-{i}",
        "model_name": MODEL,
        "model_version": "1",
        "intent": intent,
        "confidence": confidence,
        "route": route,
        "latency_ms": 2.0,
        "text": f"message {i}",
        "created_at": T0 + timedelta(seconds=i),
    }
    return DecisionRecord(**(values | changes))


def answer(i: int, tenant: str, intent: str, confidence: float, route: Route, **changes: Any) -> ShadowRecord:
    values: dict[str, Any] = {
        "tenant": tenant,
        "request_id": f"req-{i}",
        "model_name": MODEL,
        "model_version": "2",
        "intent": intent,
        "confidence": confidence,
        "route": route,
        "created_at": T0 + timedelta(seconds=i, milliseconds=500),
    }
    return ShadowRecord(**(values | changes))


A, H = Route.AUTO, Route.HUMAN
# (tenant, champion intent, conf, route, challenger intent, conf, route, verdict)
ROWS = [
    ("acme", "card", 0.9, A, "card", 0.95, A, "card"),
    ("acme", "card", 0.8, A, "lost", 0.60, H, "card"),
    ("acme", "lost", 0.5, H, "lost", 0.85, A, "lost"),
    ("globex", "lost", 0.7, A, "card", 0.75, A, "card"),
    ("globex", "card", 0.4, H, "card", 0.30, H, None),
    ("globex", "top_up", 0.9, A, "top_up", 0.90, A, None),
]


def fill(store: DecisionStore) -> None:
    """The six comparable requests above, plus rows the comparison must leave out."""
    store.write_decisions([decision(i, r[0], r[1], r[2], r[3]) for i, r in enumerate(ROWS)])
    shadow = [answer(i, r[0], r[4], r[5], r[6]) for i, r in enumerate(ROWS)]
    store.write_shadow(shadow)
    store.write_shadow(shadow[:3])  # a retried batch is skipped, not duplicated
    store.write_shadow([answer(0, "acme", "changed", 0.1, H)])  # the first write wins
    for i, r in enumerate(ROWS):
        if r[7] is not None:
            store.add_feedback(r[0], f"req-{i}", r[7])
    store.write_decisions(
        [
            decision(10, "acme", "card", 0.9, A, fallback=True, model_version="0"),  # not the champion's
            decision(11, "acme", "card", 0.9, A, model_name="other"),  # another model
        ]
    )
    store.write_shadow(
        [
            answer(10, "acme", "card", 0.9, A),
            answer(11, "acme", "card", 0.9, A),
            answer(12, "acme", "card", 0.9, A),  # no decision logged (dropped): nothing to compare
            answer(0, "acme", "lost", 0.7, H, model_version="3"),  # another challenger
            answer(1, "globex", "card", 0.7, H),  # another tenant's request with the same id: no decision
        ]
    )


def expected_rows(selected: list[int] | None = None) -> list[dict[str, Any]]:
    picked = range(len(ROWS)) if selected is None else selected
    return [
        {
            "champion_intent": ROWS[i][1],
            "champion_confidence": ROWS[i][2],
            "champion_route": ROWS[i][3].value,
            "challenger_intent": ROWS[i][4],
            "challenger_confidence": ROWS[i][5],
            "challenger_route": ROWS[i][6].value,
            "correct": ROWS[i][7],
        }
        for i in picked
    ]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionStore]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    migrate.upgrade(url)
    store = SqlStore(url)
    yield store
    store.close()


def test_shadow_comparison_joins_decision_shadow_and_feedback(any_store: DecisionStore) -> None:
    fill(any_store)
    pairs = any_store.shadow_comparison(MODEL, "2")
    assert [p.request_id for p in pairs] == [f"req-{i}" for i in range(len(ROWS))]  # oldest first
    first = pairs[0]
    assert (first.tenant, first.champion_version, first.challenger_version) == ("acme", "1", "2")
    assert (first.champion_intent, first.challenger_intent, first.correct_intent) == ("card", "card", "card")
    assert (first.champion_route, first.challenger_route) == (A, A)
    assert first.challenger_confidence == 0.95
    assert first.created_at == T0 + timedelta(milliseconds=500)
    assert [p.correct_intent for p in pairs] == [r[7] for r in ROWS]
    # the time filter, the tenant filter, and other versions or models
    since = any_store.shadow_comparison(MODEL, "2", T0 + timedelta(seconds=3))
    assert [p.request_id for p in since] == ["req-3", "req-4", "req-5"]
    assert {p.tenant for p in any_store.shadow_comparison(MODEL, "2", tenant="globex")} == {"globex"}
    other = any_store.shadow_comparison(MODEL, "3")
    assert [(p.request_id, p.challenger_intent, p.champion_intent) for p in other] == [
        ("req-0", "lost", "card")
    ]
    assert any_store.shadow_comparison("other", "2") == []
    assert any_store.shadow_comparison(MODEL, "404") == []


def test_the_report_command_on_postgresql(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(postgres_url)
    store = SqlStore(postgres_url)
    try:
        fill(store)
    finally:
        store.close()
    monkeypatch.setenv("DESKPILOT_DATABASE_URL", postgres_url)
    out = tmp_path / "out"
    args = ("rollout", "report", "--name", MODEL, "--version", "2", "--min-count", "2")
    result = run_cli(*args, "--out", out, "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    expected = expected_from(expected_rows())
    # by hand: agreed 0, 2, 4, 5 (4 of 6); routes A→A 0,3,5; A→H 1; H→A 2; H→H 4
    # feedback on 0-3: champion right on 0, 1, 2 (3); challenger right on 0, 2, 3 (3)
    assert (expected["agreed"], expected["judged"]) == (4, 4)
    assert expected["routes"] == {
        "auto_to_auto": 3,
        "auto_to_human": 1,
        "human_to_auto": 1,
        "human_to_human": 1,
    }
    assert (expected["champion_right"], expected["challenger_right"]) == (3, 3)
    check_report(data, expected)
    assert data["feedback"]["mcnemar"]["only_champion_correct"] == 1  # req-1
    assert data["feedback"]["mcnemar"]["only_challenger_correct"] == 1  # req-3
    assert [row["intent"] for row in data["by_intent"] if not row["low_count"]] == ["lost", "card"]
    assert data["tenants"] == 2
    check_html(out / "report.html")

    since = run_cli(
        *args, "--since", (T0 + timedelta(seconds=3)).isoformat(), "--json", home=tmp_path / "home"
    )
    assert since.returncode == 0, since.stderr
    check_report(json.loads(since.stdout), expected_from(expected_rows([3, 4, 5])))

    none = run_cli("rollout", "report", "--name", MODEL, "--json", home=tmp_path / "home")
    assert none.returncode == 1
    error = json.loads(none.stdout)["error"]
    assert error["code"] == "no_shadow_data"
    assert "pass --version" in error["message"]
