"""The demo's own steps on top of the other use cases: skip what is already trained, promote the best
version that passed its gate, score sample messages, and keep a demo API key."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deskpilot import tags
from deskpilot.batch.predict import score_file
from deskpilot.config import Settings
from deskpilot.data.snapshots import Snapshot
from deskpilot.domain import ModelRef
from deskpilot.errors import ModelNotFoundError
from deskpilot.registry.base import ModelRegistry, ModelVersion
from deskpilot.rollout.actions import read_state
from deskpilot.service.keys import KeyRing
from deskpilot.workflows import keys, rollout
from deskpilot.workflows.audit import AuditRecorder
from deskpilot.workflows.build import build_redactor

DEMO_TENANT = "demo"
DEMO_KEY_FILE = "demo-key"
SAMPLE_MESSAGES = [
    "I ordered a card two weeks ago and it still hasn't come, my email is sam@example.com",
    "Someone has stolen my card, block it please!",
    "How much does it cost to top up with a card?",
    "What is the weather like in Lisbon tomorrow?",
]


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
            to="champion",
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
        score_file(model, source, scored, redact=lambda texts: [redactor.redact(t) for t in texts])
        rows = pd.read_csv(scored)
        return [
            ScoredSample(str(text), str(intent), float(confidence), str(route))
            for text, intent, confidence, route in zip(
                rows["text"], rows["intent"], rows["confidence"].astype(float), rows["route"], strict=True
            )
        ]


def demo_key(settings: Settings, audit: AuditRecorder | None = None) -> str:
    """The demo tenant's key: reused while it still authenticates, else created (audited, and kept in the
    home folder with mode 0600)."""
    path = settings.home / DEMO_KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        if KeyRing(settings.keys_file).authenticate(key) is not None:
            return key
    created = keys.create(
        settings, DEMO_TENANT, label="created by deskpilot demo", reason="deskpilot demo", audit=audit
    )
    path.write_text(created.raw_key + "\n")
    path.chmod(0o600)
    return created.raw_key
