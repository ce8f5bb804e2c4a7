"""``deskpilot demo incident``: an incident drill. Train a champion, replay unseen traffic through it as the
service would log it, switch the replay to a realistic upstream change, and measure what the monitor sees.

The data is split three ways before anything is trained: one intent is held out entirely (the "new intent"
of a product launch), the rest is split into the champion's training data and a replay pool neither the
model nor its reference profile ever saw, so that clean windows measure the real false-alarm rate. Agents
are simulated from the true labels: every human-routed ticket and every ticket in the audit sample gets a
verdict (``__other__`` for the held-out intent), as a support team's queue would produce.

Each window is monitored on its own, as a scheduled ``deskpilot monitor`` run would see it: detection is
"the first window after the switch in which any signal fired", and the false-alarm rate is the share of
clean windows in which any signal fired, with its Wilson interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskpilot.config import Settings
from deskpilot.data.snapshots import LABEL, TEXT
from deskpilot.domain import Route, TriageDecision
from deskpilot.evaluation.significance import wilson
from deskpilot.models.artifact import TriageModel
from deskpilot.monitoring.incidents import Scenario, ScenarioKind, Traffic, sample, scenarios, split_pool
from deskpilot.monitoring.profile import Embedder, ReferenceProfile
from deskpilot.monitoring.result import MonitorResult
from deskpilot.monitoring.run import MonitorConfig, run_monitor
from deskpilot.monitoring.window import WindowPlan
from deskpilot.service.triage import in_review_sample
from deskpilot.store import migrate
from deskpilot.store.base import OTHER_INTENT, DecisionStore
from deskpilot.store.records import DecisionRecord
from deskpilot.store.sql import SqlStore
from deskpilot.training.run import TrainingConfig, train_on_snapshot
from deskpilot.workflows.datasets import load_and_validate, require_valid, store_snapshot

CLEAN = "clean"
MODEL_NAME = "deskpilot-incident-drill"
MITIGATIONS: dict[str, tuple[str, str]] = {
    # signal -> (runbook section, what to do first); most specific first
    "domain_classifier": (
        "deskpilotinputdrift",
        "find the upstream change (the report lists the tokens "
        "that separate the window from the reference) and fix or strip it at the source",
    ),
    "vocabulary": (
        "deskpilotinputdrift",
        "new frequent terms: a new product or template; label samples and retrain from feedback",
    ),
    "text_length": ("deskpilotinputdrift", "lengths moved: look for truncation or a wrapper in ingestion"),
    "language": ("deskpilotinputdrift", "a new language: check the translation layer before the service"),
    "embedding_mmd": ("deskpilotinputdrift", "the texts mean something else: compare the report's samples"),
    "label_shift": (
        "deskpilotlabelshift",
        "the intent mix changed: rebalance queues; recalibrate if accuracy drops",
    ),
    "accuracy_feedback": (
        "deskpilotaccuracydropfeedback",
        "verdicts say accuracy fell: deskpilot rollback, or retrain from feedback and shadow it",
    ),
    "accuracy_audit_sample": (
        "deskpilotaccuracydropauditsample",
        "auto routes are wrong more often: raise the threshold or roll back",
    ),
    "accuracy_estimate": (
        "deskpilotaccuracydropconfidenceestimate",
        "estimated accuracy fell: confirm with the audit sample",
    ),
    "intent_histogram": (
        "deskpilotpredictiondrift",
        "check the label-shift estimate: a real change of mix needs no fix, a model change does",
    ),
    "confidence": (
        "deskpilotpredictiondrift",
        "confidence fell: raise the auto threshold or route to people until the cause is fixed",
    ),
    "margin": ("deskpilotpredictiondrift", "the model hesitates between intents: compare with the shadow"),
    "auto_route_rate": (
        "deskpilotpredictiondrift",
        "fewer tickets route automatically: staff the human queue",
    ),
}


def mitigation(fired: list[str]) -> list[dict[str, str]]:
    """What the runbook says to do first, most specific signal first, one step per runbook section: the
    cause-naming signals (input drift, label shift, verdicts) before the symptoms they bring along."""
    steps: list[dict[str, str]] = []
    sections: set[str] = set()
    for signal in sorted((s for s in fired if s in MITIGATIONS), key=list(MITIGATIONS).index):
        section, action = MITIGATIONS[signal]
        if section not in sections:
            sections.add(section)
            steps.append({"signal": signal, "runbook": f"docs/runbook.md#{section}", "do": action})
    return steps


@dataclass(frozen=True)
class IncidentRequest:
    data: Path
    text_column: str = "text"
    label_column: str = "category"
    seed: int = 0
    family: str = "tfidf"
    window: int = 500  # decisions per monitored window
    clean_windows: int = 30  # for the false-alarm rate
    shifted_windows: int = 4  # after the switch, per scenario
    review_sample_rate: float = 0.05
    held_out_intent: str | None = None  # default: one picked by the seed
    kinds: tuple[ScenarioKind, ...] = tuple(ScenarioKind)
    config: MonitorConfig = field(default_factory=MonitorConfig)


@dataclass(frozen=True)
class ScenarioOutcome:
    kind: ScenarioKind
    description: str
    detected_after: int | None  # decisions after the switch until the first window that fired
    fired: list[str]  # signals that fired in that window
    windows: list[list[str]]  # signals fired in each window after the switch

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": str(self.kind),
            "description": self.description,
            "detected_after_decisions": self.detected_after,
            "fired": self.fired,
            "fired_per_window": self.windows,
            "mitigation": mitigation(self.fired),
        }


@dataclass(frozen=True)
class IncidentOutcome:
    model: str
    held_out_intent: str
    window: int
    clean_windows: int
    false_alarms: int
    false_alarm_signals: dict[str, int]
    scenarios: list[ScenarioOutcome]
    directory: Path

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.clean_windows if self.clean_windows else float("nan")

    def to_dict(self) -> dict[str, Any]:
        low, high = wilson(self.false_alarms, self.clean_windows)
        return {
            "model": self.model,
            "held_out_intent": self.held_out_intent,
            "window_decisions": self.window,
            "false_alarms": {
                "windows": self.clean_windows,
                "fired": self.false_alarms,
                "rate": self.false_alarm_rate,
                "interval": [low, high],
                "by_signal": self.false_alarm_signals,
            },
            "scenarios": [outcome.to_dict() for outcome in self.scenarios],
            "directory": str(self.directory),
        }


Progress = Callable[[str], None]


def run_incident(
    settings: Settings, request: IncidentRequest, progress: Progress | None = None
) -> IncidentOutcome:
    """Train, replay clean traffic, replay each scenario, and measure detection and false alarms."""
    say = progress or (lambda _text: None)
    directory = settings.home / "incident-drill"
    drill = settings.model_copy(update={"home": directory, "database_url": None})
    checked = require_valid(
        load_and_validate(
            drill, request.data, text_column=request.text_column, label_column=request.label_column
        )
    )
    frame = store_snapshot(drill, checked).frame
    held_out = request.held_out_intent or _pick_intent(frame, request.seed)
    if held_out not in set(frame[LABEL]):
        raise ValueError(f"--held-out-intent {held_out!r} is not a label of {request.data}")
    train_rows, replay_rows = _three_way_split(frame, held_out, request.seed)
    say(
        f"held out the intent {held_out!r}; {len(train_rows):,} messages to train on, "
        f"{len(replay_rows):,} to replay"
    )
    model = _train(drill, train_rows, request, say)
    profile = ReferenceProfile.from_dict(model.reference or {})
    known, unseen = split_pool(
        replay_rows[TEXT].tolist(), replay_rows[LABEL].tolist(), held_out_intent=held_out, seed=request.seed
    )
    url = f"sqlite:///{(directory / 'drill.db').resolve()}"
    (directory / "drill.db").unlink(missing_ok=True)
    migrate.upgrade(url)
    store = SqlStore(url)
    try:
        replay = _Replay(store, model, profile, request, say)
        rng = np.random.default_rng(request.seed)
        say(f"replay {request.clean_windows} clean windows of {request.window} decisions")
        clean = [
            replay.window(CLEAN, sample(known, request.window, rng)) for _ in range(request.clean_windows)
        ]
        false_signals: dict[str, int] = {}
        for fired in clean:
            for name in fired:
                false_signals[name] = false_signals.get(name, 0) + 1
        outcomes = []
        for scenario in scenarios(known, unseen):
            if scenario.kind not in request.kinds:
                continue
            outcomes.append(_scenario(replay, scenario, known, request, rng, say))
    finally:
        store.close()
    return IncidentOutcome(
        model=f"{request.family} trained on {len(train_rows):,} messages",
        held_out_intent=held_out,
        window=request.window,
        clean_windows=len(clean),
        false_alarms=sum(1 for fired in clean if fired),
        false_alarm_signals=false_signals,
        scenarios=outcomes,
        directory=directory,
    )


def _scenario(
    replay: _Replay,
    scenario: Scenario,
    known: Traffic,
    request: IncidentRequest,
    rng: np.random.Generator,
    say: Progress,
) -> ScenarioOutcome:
    say(f"scenario {scenario.kind}: {scenario.description}")
    windows = [
        replay.window(str(scenario.kind), scenario.apply(sample(known, request.window, rng), rng))
        for _ in range(request.shifted_windows)
    ]
    first = next((i for i, fired in enumerate(windows) if fired), None)
    return ScenarioOutcome(
        kind=scenario.kind,
        description=scenario.description,
        detected_after=None if first is None else (first + 1) * request.window,
        fired=[] if first is None else windows[first],
        windows=windows,
    )


class _Replay:
    """Log a window of traffic as the service would, then monitor just that window."""

    def __init__(
        self,
        store: DecisionStore,
        model: TriageModel,
        profile: ReferenceProfile,
        request: IncidentRequest,
        say: Progress,
    ) -> None:
        self.store, self.model, self.profile, self.request, self.say = store, model, profile, request, say
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.sequence = 0
        self.results: list[MonitorResult] = []
        classifier = model.classifier
        self.embedder = classifier if isinstance(classifier, Embedder) else None

    def window(self, tenant: str, traffic: Traffic) -> list[str]:
        start = self.clock
        predictions = self.model.predict(traffic.texts)
        records = []
        verdicts: list[tuple[str, str]] = []
        known = set(self.model.classes)
        for i, (text, truth, prediction) in enumerate(
            zip(traffic.texts, traffic.intents, predictions, strict=True)
        ):
            self.sequence += 1
            request_id = f"drill-{self.sequence:08d}"  # deterministic, so the audit sample is too
            route = self.model.route_for(prediction.confidence)
            decision = TriageDecision(
                request_id=request_id,
                prediction=prediction,
                route=route,
                model_version="1",
                review=route is Route.AUTO and in_review_sample(request_id, self.request.review_sample_rate),
            )
            records.append(  # logged as the service logs it
                DecisionRecord.from_decision(
                    decision,
                    tenant=tenant,
                    model_name=MODEL_NAME,
                    text=text,
                    latency_ms=0.0,
                    created_at=start + timedelta(seconds=i),
                )
            )
            if route is Route.HUMAN or decision.review:
                verdicts.append((request_id, truth if truth in known else OTHER_INTENT))
        self.store.write_decisions(records)
        for request_id, verdict in verdicts:
            self.store.add_feedback(tenant, request_id, verdict)
        self.clock = start + timedelta(seconds=len(records) + 1)
        result = run_monitor(
            self.store,
            self.profile,
            WindowPlan(since=start, until=self.clock),
            model_name=MODEL_NAME,
            model_version="1",
            tenant=tenant,
            per_tenant=False,
            embedder=self.embedder,
            config=self.request.config,
        )
        self.results.append(result)
        return [str(signal.name) for window in result.windows for signal in window.fired]


def _train(drill: Settings, rows: pd.DataFrame, request: IncidentRequest, say: Progress) -> TriageModel:
    path = drill.home / "champion-train.csv"
    rows.rename(columns={TEXT: "text", LABEL: "label"})[["text", "label"]].to_csv(path, index=False)
    snapshot = store_snapshot(
        drill, require_valid(load_and_validate(drill, path, text_column="text", label_column="label"))
    )
    say(f"train the {request.family} champion")
    result = train_on_snapshot(
        snapshot, TrainingConfig(family=request.family, seed=request.seed), progress=say
    )
    return result.model


def _pick_intent(frame: pd.DataFrame, seed: int) -> str:
    labels = sorted(set(frame[LABEL]))
    return str(labels[np.random.default_rng(seed).integers(0, len(labels))])


def _three_way_split(frame: pd.DataFrame, held_out: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows without ``held_out``; replay rows: a stratified quarter of the rest, and ``held_out``."""
    rng = np.random.default_rng(seed)
    replay_mask = np.zeros(len(frame), dtype=bool)
    labels = frame[LABEL].to_numpy()
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if label == held_out:
            replay_mask[rows] = True
            continue
        take = max(1, len(rows) // 4)
        replay_mask[rng.choice(rows, size=take, replace=False)] = True
    return frame[~replay_mask].reset_index(drop=True), frame[replay_mask].reset_index(drop=True)
