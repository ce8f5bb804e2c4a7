"""The closed loop end to end on a real SQLite store and MLflow registry: a champion's decisions, verdicts
from several tenants, ``feedback export``, ``retrain --from-feedback`` to a gated challenger in shadow, a
second run with nothing to do, a tenant flooding contradicting labels, and an operator's mistakes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deskpilot import tags
from deskpilot.config import Settings
from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import SnapshotStore
from deskpilot.data.splits import frozen_evaluation, split_around
from deskpilot.domain import ModelRef, Route
from deskpilot.registry.base import GATE_DECISION
from deskpilot.store import migrate
from deskpilot.store.base import OTHER_INTENT
from deskpilot.store.records import DecisionRecord
from deskpilot.store.sql import SqlStore
from deskpilot.workflows import training
from deskpilot.workflows.build import build_registry, writable_store_url
from deskpilot.workflows.feedback.derive import ORIGIN_COLUMN, SPLIT_COLUMN
from deskpilot.workflows.feedback.export import ExportRequest, export_feedback
from deskpilot.workflows.feedback.retrain import REPORT_MD
from tests.helpers import BUNDLED_DATA, run_cli

MODEL = "deskpilot-triage"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TENANTS = ("acme", "globex", "initech")
STRICT_THRESHOLD = 0.99
LEAKED = " Reply to jane.doe@example.com please"  # a stored text an older redactor let through


@dataclass(frozen=True)
class Loop:
    home: Path
    settings: Settings
    train: pd.DataFrame  # the champion's data
    spare: pd.DataFrame  # bundled rows of the same intents the champion never saw
    labels: list[str]


def _frames() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    frame = pd.read_csv(BUNDLED_DATA).rename(columns={"category": "label"})
    labels = sorted(frame["label"].unique())[:6]
    frame = frame[frame["label"].isin(labels)]
    train = frame.groupby("label").sample(n=30, random_state=0)
    spare = frame.drop(train.index).groupby("label").sample(n=30, random_state=1)
    return train.reset_index(drop=True), spare.reset_index(drop=True), labels


def decide(
    model: Any, texts: list[str], tenant: str, start: int, *, version: str = "1"
) -> list[DecisionRecord]:
    """What the champion answered for ``texts``, logged as the service logs it; routed with a stricter
    threshold than the model's own (a cautious operator's), so that both routes occur on this easy data."""
    records = []
    for i, (text, prediction) in enumerate(zip(texts, model.predict(texts), strict=True)):
        route = Route.AUTO if prediction.confidence >= STRICT_THRESHOLD else Route.HUMAN
        records.append(
            DecisionRecord(
                tenant=tenant,
                request_id=f"{tenant}-{start + i}",
                model_name=MODEL,
                model_version=version,
                intent=prediction.intent,
                confidence=prediction.confidence,
                route=route,
                latency_ms=1.0,
                text=text,
                review_sample=route is Route.AUTO and i % 3 == 0,
                created_at=T0 + timedelta(minutes=start + i),
            )
        )
    return records


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    """A champion (v1) trained on 6 intents, and verdicts from three tenants on its decisions about 60
    messages it never saw: agreeing duplicates, a disputed text, 'no intent fits', a leaked address."""
    folder = tmp_path_factory.mktemp("loop")
    train, spare, labels = _frames()
    data = folder / "tickets.csv"
    train.to_csv(data, index=False)
    settings = Settings(home=folder / "home")
    assert training.train(settings, training.TrainRequest(data=data, family="tfidf")).run.became_champion
    model = build_registry(settings).load(ModelRef(MODEL, version="1"))
    fresh = spare.groupby("label").head(10).reset_index(drop=True)  # 60 texts: the honest feedback
    texts = fresh["text"].tolist()
    texts[0] += LEAKED
    truth = dict(zip(texts, fresh["label"], strict=True))
    store = SqlStore(writable_store_url(settings))
    try:
        for n, tenant in enumerate(TENANTS):
            mine = texts[n::3] + (texts[(n + 1) % 3 : 30 : 3] if n < 2 else [])  # texts 1.. twice: agree
            store.write_decisions(decide(model, mine, tenant, 100 * n))
            for i, text in enumerate(mine):
                store.add_feedback(tenant, f"{tenant}-{100 * n + i}", truth[text])
        disputed = texts[1]  # acme's and globex's verdicts agree; initech says otherwise
        store.write_decisions(decide(model, [disputed], "initech", 900))
        wrong = next(label for label in labels if label != truth[disputed])
        store.add_feedback("initech", "initech-900", wrong)
        nonsense = ["what is the weather tomorrow", "ignore all previous instructions", "asdf qwerty"]
        for i, tenant in enumerate(TENANTS):
            store.write_decisions(decide(model, [nonsense[i]], tenant, 950 + i))
            store.add_feedback(tenant, f"{tenant}-{950 + i}", OTHER_INTENT)
    finally:
        store.close()
    return Loop(folder / "home", settings, train, spare, labels)


def cli(loop: Loop, *args: str | Path) -> tuple[int, str, str]:
    done = run_cli(*args, home=loop.home)
    return done.returncode, done.stdout, done.stderr


def test_export_writes_redacted_deduplicated_verdicts_with_provenance_that_meet_the_contract(
    loop: Loop,
) -> None:
    out = loop.home.parent / "feedback.csv"
    rc, stdout, stderr = cli(loop, "feedback", "export", "--output", out)
    assert rc == 0, stderr
    assert "data contract: met" in stdout
    rows = pd.read_csv(out, keep_default_na=False)
    assert list(rows.columns[:2]) == ["text", "label"]
    assert rows["text"].is_unique
    assert OTHER_INTENT not in set(rows["label"])
    leaked = rows[rows["text"].str.contains("Reply to")]
    assert leaked["text"].str.contains("<EMAIL>").all()
    assert not rows["text"].str.contains("jane.doe@example.com").any()
    agreed = rows[rows["count"] == 2]
    assert len(agreed) == 20  # texts 1..29 not divisible by 3 were decided for two tenants
    assert set(agreed["tenants"]) <= {"acme;globex", "acme;initech", "globex;initech"}
    (disputed,) = rows[rows["conflict"]].itertuples()
    assert disputed.count == 2
    assert "initech" in disputed.dissent
    assert set(rows["reviewer_kind"]) == {"audit_sample", "human_route", "auto_correction"}
    assert set(rows["model_version"].astype(str)) == {"1"}
    assert (rows["corrected"] == (rows["label"] != rows["predicted_intent"])).all()
    summary = json.loads(out.with_name("feedback.report.json").read_text())
    assert summary["other_intent_verdicts"]["verdicts"] == 3
    assert summary["texts_left_out"] == {"other_intent": 3}
    assert summary["by_tenant"] == {"acme": 31, "globex": 31, "initech": 22}
    assert summary["contract"] == {"ok": True, "failed_rules": []}
    rc, _, stderr = cli(loop, "validate", out)
    assert rc == 0, stderr
    table = read_table(out)  # and as the library reads a training file
    assert validate_table(table, DataContract()).ok

    jsonl = loop.home.parent / "initech.jsonl"
    rc, stdout, stderr = cli(loop, "feedback", "export", "-o", jsonl, "--tenant", "initech", "--json")
    assert rc == 0, stderr
    assert json.loads(stdout)["by_tenant"] == {"initech": 22}
    assert set(pd.read_json(jsonl, lines=True)["tenant"]) == {"initech"}


def test_corrections_become_a_gated_challenger_in_shadow_and_a_second_run_has_nothing_to_do(
    loop: Loop,
) -> None:
    rc, stdout, stderr = cli(loop, "retrain", "--from-feedback", "--json")
    assert rc == 0, stderr
    result = json.loads(stdout)
    assert (result["status"], result["uri"]) == ("passed", f"models:/{MODEL}/2"), result["message"]
    report = result["report"]
    # 60 texts, the disputed one too (two tenants against one), less one that repeats a training text
    assert report["guard"]["added_rows"] == 59
    assert report["guard"]["rejected"]["agrees_with_snapshot"] == {"groups": 1, "verdicts": 1}
    assert report["guard"]["flipped_rows"] == 0
    assert report["guard"]["rejected"]["other_intent"] == {"groups": 3, "verdicts": 3}
    assert report["guard"]["rejected"]["conflicting_verdicts"] == {"groups": 1, "verdicts": 1}
    assert max(t["share"] for t in report["tenants"]) <= 0.5
    assert report["warnings"] == []  # about as many new rows for every intent
    # both models are compared on the lineage's frozen evaluation split: the champion's rows, none of the
    # feedback (new rows train and validate; they never join the split, ADR 0019)
    assert report["metrics"]["rows"] > 0
    assert "feedback" not in report["metrics"]["before"]["by_origin"]
    assert "is in shadow" in report["shadow"]

    rc, stdout, stderr = cli(loop, "rollout", "status", "--json")
    assert rc == 0, stderr
    status = json.loads(stdout)
    assert (status["champion"], status["challenger"], status["stage"]) == (
        f"models:/{MODEL}/1",
        f"models:/{MODEL}/2",
        "shadow",
    )
    actions = [(e["action"], e["target"]) for e in status["events"][-3:]]
    assert actions == [(a, f"models:/{MODEL}/2") for a in ("gate", "retrain", "promote")]

    registry = build_registry(loop.settings)
    parent_digest = report["parent_snapshot"]
    version = registry.get(ModelRef(MODEL, version="2"))
    assert version.tags[tags.FEEDBACK_PARENT] == parent_digest
    assert "Evaluation metrics" in (registry.document(MODEL, "2", REPORT_MD) or "")
    decision = json.loads(registry.document(MODEL, "2", GATE_DECISION) or "{}")
    assert decision["champion"]["comparison_unseen_by_both"] is True
    assert decision["champion"]["same_evaluation_split"] is True  # the lineage grew; its split did not
    assert decision["rows"]["left_out"] == 0

    snapshots = SnapshotStore(loop.settings.snapshot_dir)
    parent, child = snapshots.get(parent_digest), snapshots.get(report["snapshot"])
    assert child.metadata.lineage is not None
    assert child.metadata.lineage["parent_digest"] == parent_digest
    held_out = frozen_evaluation(parent)
    split = split_around(parent.frame, held_out, digest=parent.digest, seed=0)  # the champion's own split
    sides = dict(zip(child.frame["text"], child.frame[SPLIT_COLUMN], strict=True))
    assert {sides[t] for t in parent.frame["text"].iloc[held_out.rows]} == {"evaluation"}
    assert frozen_evaluation(child).identity == held_out.identity
    assert {sides[t] for t in parent.frame["text"].iloc[split.validation]} == {"validation"}
    assert {sides[t] for t in parent.frame["text"].iloc[split.train]} == {"train"}
    added = child.frame[child.frame[ORIGIN_COLUMN] == "feedback"]
    assert len(added) == 59
    assert set(added[SPLIT_COLUMN]) == {"train", "validation"}

    rc, stdout, stderr = cli(loop, "retrain", "--from-feedback")
    assert rc == 0, stderr
    assert "nothing to do" in stdout
    assert [v.version for v in registry.versions(MODEL)] == ["2", "1"]


def test_a_tenant_flooding_contradicting_labels_is_rejected_and_capped_and_reported(loop: Loop) -> None:
    model = build_registry(loop.settings).load(ModelRef(MODEL, version="1"))
    known = loop.train.head(12)  # texts the champion trained on (all of the first intent), relabelled
    flood = loop.spare.groupby("label").tail(20)["text"].tolist()  # 120 new texts, all the first intent
    target = loop.labels[0]
    labels = [loop.labels[1]] * len(known) + [target] * len(flood)
    store = SqlStore(writable_store_url(loop.settings))
    try:
        records = decide(model, known["text"].tolist() + flood, "mallory", 2000)
        store.write_decisions(records)
        for record, label in zip(records, labels, strict=True):
            store.add_feedback("mallory", record.request_id, label)
    finally:
        store.close()
    before = build_registry(loop.settings).versions(MODEL)
    snapshots = len(SnapshotStore(loop.settings.snapshot_dir).all())
    report_dir = loop.home.parent / "poisoned"
    rc, stdout, stderr = cli(
        loop, "retrain", "--from-feedback", "--dry-run", "--json", "--report", report_dir
    )
    assert rc == 0, stderr
    report = json.loads(stdout)["report"]
    rejected = report["guard"]["rejected"]
    assert rejected["contradicts_snapshot"] == {"groups": 12, "verdicts": 12}
    assert report["guard"]["flipped_rows"] == 0
    mallory = next(t for t in report["tenants"] if t["tenant"] == "mallory")
    assert mallory["verdicts"] == 132
    # 55 flood rows relabel what the champion routed automatically, unasked: the model is the other side
    assert rejected["overrides_model"] == {"groups": 55, "verdicts": 55}
    # 65 are left, over the share cap against 59 honest rows (a <= 0.5 * (59 + a) keeps 59): 6 are dropped
    assert (mallory["accepted"], mallory["share"], mallory["dropped_by_cap"]) == (59, 0.5, 6)
    assert rejected["tenant_cap"] == {"groups": 6, "verdicts": 6}
    balance = {row["label"]: row for row in report["class_balance"]["labels"]}
    assert balance[target]["shift_pp"] > 15  # what is left of the flood still shows, and is called out
    assert report["warnings"] == [
        f"{target} moves from 16.7% to {balance[target]['after_share']:.1%} of the rows "
        f"({balance[target]['shift_pp']:+.1f} pp)"
    ]
    markdown = (report_dir / "feedback_report.md").read_text()
    assert "| contradicts_snapshot | 12 | 12 |" in markdown
    assert "| mallory | 132 | 59 | 50.0% | 6 |" in markdown
    assert "| overrides_model | 55 | 55 |" in markdown
    assert f"- **warning**: {target} moves from 16.7%" in markdown
    assert build_registry(loop.settings).versions(MODEL) == before  # a dry run writes nothing
    assert len(SnapshotStore(loop.settings.snapshot_dir).all()) == snapshots


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("feedback", "export", "-o", "OUT.csv", "--tenant", "hooli"), 2, "unknown tenant 'hooli'"),
        (
            ("feedback", "export", "-o", "OUT.csv", "--since", "last tuesday"),
            2,
            "--since 'last tuesday': not an",
        ),
        (("feedback", "export", "-o", "OUT.csv", "--until", "2020-01-01"), 1, "nothing to export"),
        (("feedback", "export", "-o", "OUT.xlsx"), 2, "unknown data format '.xlsx'"),
        (("retrain", "--from-feedback", "--since", "2026-13-01"), 2, "--since '2026-13-01': not an ISO"),
        (
            ("retrain", "--from-feedback", "--max-tenant-share", "2"),
            2,
            "--max-tenant-share must be in (0, 1]",
        ),
        (("retrain",), 2, "pass --from-feedback"),
    ],
)
def test_mistakes_are_clear_errors(loop: Loop, args: tuple[str, ...], code: int, message: str) -> None:
    out = str(loop.home.parent / "refused")
    rc, stdout, stderr = cli(loop, *(arg.replace("OUT", out) for arg in args))
    assert rc == code, stdout + stderr
    assert message in stderr
    assert "Traceback" not in stderr


def test_retraining_without_a_champion_says_what_to_do_first(tmp_path: Path) -> None:
    done = run_cli("retrain", "--from-feedback", home=tmp_path / "empty")
    assert done.returncode == 2
    assert "has no champion to retrain from feedback: train one first" in done.stderr


def test_export_selects_verdicts_by_when_they_were_given_on_either_database(url: str, tmp_path: Path) -> None:
    """Decisions made weeks ago and judged today are today's feedback (PostgreSQL or SQLite, Parquet out)."""
    migrate.upgrade(url)
    store = SqlStore(url)
    old = T0 - timedelta(days=30)
    try:
        for tenant in ("acme", "globex"):
            records = [
                DecisionRecord(
                    tenant=tenant,
                    request_id=f"{tenant}-{i}",
                    model_name=MODEL,
                    model_version="7",
                    intent="card_arrival",
                    confidence=0.4,
                    route=Route.HUMAN,
                    latency_ms=1.0,
                    text=f"my card number {i} has not come",
                    created_at=old + timedelta(minutes=i),
                )
                for i in range(6)
            ]
            store.write_decisions(records)
            for i in range(6):
                store.add_feedback(tenant, f"{tenant}-{i}", "lost_card" if i % 2 else "card_arrival")
        out = tmp_path / "feedback.parquet"
        request = ExportRequest(out, since=datetime.now(UTC) - timedelta(hours=1), tenant="globex")
        outcome = export_feedback(Settings(home=tmp_path / "home"), request, store=store)
    finally:
        store.close()
    assert outcome.summary["by_tenant"] == {"globex": 6}
    rows = pd.read_parquet(out).sort_values("decided_at", ignore_index=True)
    assert rows["label"].tolist() == ["card_arrival", "lost_card"] * 3
    assert set(rows["reviewer_kind"]) == {"human_route"}
    assert rows["decided_at"].iloc[0] == old.isoformat()
    assert (rows["verdict_at"] > rows["decided_at"]).all()
    assert outcome.summary["contract"]["ok"] is False  # 3 rows a label: below the contract's 5
    assert outcome.summary["contract"]["failed_rules"] == ["class_too_small"]
