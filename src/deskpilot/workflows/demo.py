"""``deskpilot demo`` as a use case: check, snapshot and split the data, train each family (skipping what this
data and seed already have), gate and register, promote the best version that passed, score sample messages,
and keep a demo API key. What happens is told to a :class:`DemoObserver` (the CLI prints it)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from deskpilot import tags
from deskpilot.batch.predict import score_file
from deskpilot.batch.predictor import FramePredictor
from deskpilot.config import Settings
from deskpilot.copilot.grounding import TriageView
from deskpilot.copilot.suggest import Suggestion
from deskpilot.data.contracts import ValidationReport
from deskpilot.data.snapshots import Snapshot
from deskpilot.domain import ModelRef
from deskpilot.errors import ModelNotFoundError
from deskpilot.registry.base import ModelRegistry, ModelVersion
from deskpilot.rollout.actions import CHAMPION_TARGET, read_state
from deskpilot.service.keys import OPERATOR, KeyRing
from deskpilot.training.pipeline import RegisteredRun
from deskpilot.training.run import TrainingConfig
from deskpilot.workflows import keys, rollout
from deskpilot.workflows.audit import AuditReceipt, AuditRecorder, open_audit
from deskpilot.workflows.build import build_redactor, build_registry, load_policies
from deskpilot.workflows.datasets import load_and_validate, split_summary, store_snapshot
from deskpilot.workflows.demo_copilot import demo_knowledge, demo_suggestions
from deskpilot.workflows.evaluation import resolve_suite
from deskpilot.workflows.knowledge import KbImportResult
from deskpilot.workflows.training import train_snapshot

BUNDLED_DATA = Path("data/banking77/train.csv")
DEMO_FAMILIES = ("tfidf", "embed")
DEMO_TENANT = "demo"
DEMO_KEY_FILE = "demo-key"
SAMPLE_MESSAGES = [
    "I ordered a card two weeks ago and it still hasn't come, my email is sam@example.com",
    "Someone has stolen my card, block it please!",
    "How much does it cost to top up with a card?",
    "What is the weather like in Lisbon tomorrow?",
]


@dataclass(frozen=True)
class DemoRequest:
    data: Path = BUNDLED_DATA
    text_column: str = "text"
    label_column: str = "category"
    seed: int = 0
    families: Sequence[str] = DEMO_FAMILIES


class DemoObserver(Protocol):
    """Told of each step as it happens (``step`` starts a numbered one)."""

    def step(self, text: str) -> None: ...

    def progress(self, text: str) -> None: ...

    def validated(self, report: ValidationReport) -> None: ...

    def snapshotted(self, snapshot: Snapshot, split: dict[str, Any]) -> None: ...

    def trained(self, run: RegisteredRun, audit: tuple[AuditReceipt, ...]) -> None: ...

    def promoted(self, best: ModelVersion) -> None: ...

    def scored(self, samples: list[ScoredSample]) -> None: ...

    def knowledge(self, results: list[KbImportResult]) -> None: ...

    def suggested(self, suggestions: list[Suggestion]) -> None: ...


@dataclass(frozen=True)
class DemoOutcome:
    """``report`` is set and nothing else when the data breaks the contract."""

    report: ValidationReport
    snapshot: Snapshot | None = None
    best: ModelVersion | None = None
    key: str | None = None
    runs: list[RegisteredRun] = field(default_factory=list)


def demo_steps(request: DemoRequest) -> int:
    """How many numbered steps :func:`run_demo` announces (validate, snapshot, each family, promote, score,
    model card)."""
    return 7 + len(request.families)


def run_demo(settings: Settings, request: DemoRequest, observer: DemoObserver) -> DemoOutcome:
    """Everything the demo does before it serves; audited like the commands it stands for."""
    observer.step(f"validate {request.data}")
    checked = load_and_validate(
        settings, request.data, text_column=request.text_column, label_column=request.label_column
    )
    observer.validated(checked.report)
    if not checked.report.ok:
        return DemoOutcome(checked.report)
    observer.step(f"snapshot (PII redacted, content-addressed) and split (seed {request.seed})")
    snapshot = store_snapshot(settings, checked)
    observer.snapshotted(snapshot, split_summary(snapshot, seed=request.seed, validation_fraction=0.2))
    registry, audit = build_registry(settings), open_audit(settings)
    policy, suite = load_policies(None).gate, resolve_suite(request.data, None)
    runs = []
    for family in request.families:
        existing = find_trained(registry, settings.model_name, snapshot, family, request.seed)
        if existing is not None:
            observer.step(f"{family}: already trained on this data as {existing.uri}; skipped")
            continue
        observer.step(f"train, evaluate and gate {family}")
        run, receipts = train_snapshot(
            settings,
            snapshot,
            TrainingConfig(family=family, seed=request.seed, cache_dir=settings.encoder_cache_dir),
            policy=policy,
            suite=suite,
            progress=observer.progress,
            registry=registry,
            audit=audit,
        )
        runs.append(run)
        observer.trained(run, receipts)
    observer.step("promote the best version that passed its gate")
    best = promote_best(settings, registry, snapshot, audit)
    observer.promoted(best)
    observer.step(f"score sample messages with {best.uri} (batch scoring)")
    samples = score_samples(registry, best)
    observer.scored(samples)
    observer.step("import the copilot's knowledge (tickets and sample articles) and build the index")
    observer.knowledge(
        demo_knowledge(
            settings,
            request.data,
            tenant=DEMO_TENANT,
            text_column=request.text_column,
            label_column=request.label_column,
            progress=observer.progress,
        )
    )
    observer.step("suggest replies: similar tickets and a cited draft for each sample (no LLM)")
    views = [(s.text, TriageView(s.intent, s.confidence, s.route)) for s in samples]
    observer.suggested(demo_suggestions(settings, DEMO_TENANT, views))
    observer.step(f"model card and report stored with {best.uri}: `deskpilot models card {best.uri}`")
    return DemoOutcome(checked.report, snapshot, best, demo_key(settings, audit), runs)


@dataclass(frozen=True)
class ScoredSample:
    text: str  # as redacted before scoring
    intent: str
    confidence: float
    route: str


def find_trained(
    registry: ModelRegistry, name: str, snapshot: Snapshot, family: str, seed: int
) -> ModelVersion | None:
    """The version of ``family`` already trained on this snapshot with this seed, if any."""
    for version in registry.versions(name):
        found = version.tags
        if (
            found.get(tags.DATASET_DIGEST) == snapshot.digest
            and version.family == family
            and found.get(tags.SEED) == str(seed)
        ):
            return version
    return None


def promote_best(
    settings: Settings, registry: ModelRegistry, snapshot: Snapshot, audit: AuditRecorder | None = None
) -> ModelVersion:
    """Make the best version trained on this snapshot that passed its gate the champion (audited)."""
    name = settings.model_name
    passed = [
        v
        for v in registry.versions(name)
        if v.tags.get(tags.DATASET_DIGEST) == snapshot.digest and v.tags.get(tags.GATE) == tags.GATE_PASS
    ]
    if not passed:
        raise ModelNotFoundError(
            "no version trained on this data passed its gate; see `deskpilot models list`"
        )
    best = max(passed, key=lambda v: (v.metrics.get("val_accuracy", 0.0), int(v.version)))
    if read_state(registry, name).champion != best.version:
        rollout.promote(
            settings,
            best.uri,
            to=CHAMPION_TARGET,
            reason="deskpilot demo: best validation accuracy among versions that passed their gate",
            registry=registry,
            audit=audit,
        )
    return registry.get(ModelRef(name, version=best.version))


def score_samples(registry: ModelRegistry, version: ModelVersion) -> list[ScoredSample]:
    """The sample messages through batch scoring, PII redacted first."""
    model = registry.load(ModelRef(version.name, version=version.version))
    redactor = build_redactor()
    with tempfile.TemporaryDirectory() as tmp:
        source, scored = Path(tmp) / "inbox.csv", Path(tmp) / "scored.csv"
        pd.DataFrame({"id": range(1, len(SAMPLE_MESSAGES) + 1), "text": SAMPLE_MESSAGES}).to_csv(
            source, index=False
        )
        score_file(FramePredictor(model, redactor=redactor), source, scored)
        rows = pd.read_csv(scored)
        return [
            ScoredSample(str(text), str(intent), float(confidence), str(route))
            for text, intent, confidence, route in zip(
                rows["text"], rows["intent"], rows["confidence"].astype(float), rows["route"], strict=True
            )
        ]


def demo_key(settings: Settings, audit: AuditRecorder | None = None) -> str:
    """The demo tenant's operator key: reused while it still authenticates, else created (audited, and kept
    in the home folder with mode 0600)."""
    path = settings.home / DEMO_KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        if KeyRing(settings.keys_file).authenticate(key) is not None:
            return key
    created = keys.create(
        settings,
        DEMO_TENANT,
        label="created by deskpilot demo",
        role=OPERATOR,  # one key for the API and the whole console (the queue and the operator's pages)
        reason="deskpilot demo",
        audit=audit,
    )
    path.write_text(created.raw_key + "\n")
    path.chmod(0o600)
    if created.audit_error is not None:
        raise created.audit_error
    return created.raw_key
