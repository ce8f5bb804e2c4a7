"""What the API suites share: a real MLflow registry with two trained versions, and apps built on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deskpilot.api.app import Overrides, create_app
from deskpilot.config import Settings
from deskpilot.data.contracts import DataContract, validate_table
from deskpilot.data.io import read_table
from deskpilot.data.snapshots import SnapshotStore
from deskpilot.registry.mlflow_registry import MlflowRegistry
from deskpilot.store.base import DecisionStore
from deskpilot.training.pipeline import train_and_register
from deskpilot.training.run import TrainingConfig
from tests.helpers import NoRedaction, bundled_subset
from tests.live_server import LiveServer, serve

ACME_KEY = "acme-key-0123456789abcdef"
GLOBEX_KEY = "globex-key-0123456789abcdef"
TINY_KEY = "tiny-key-0123456789abcdef"
MODEL = "triage"


@dataclass(frozen=True)
class TrainedHome:
    home: Path
    registry: MlflowRegistry
    versions: tuple[str, ...]


def trained_home(home: Path, *, versions: int = 2, labels: int = 6, per_label: int = 30) -> TrainedHome:
    """``versions`` tfidf versions of MODEL on a slice of the bundled data; the first is the champion."""
    home.mkdir(parents=True, exist_ok=True)
    data = home / "tickets.csv"
    bundled_subset(labels=labels, per_label=per_label).to_csv(data, index=False)
    table = read_table(data)
    snapshot = SnapshotStore(home / "snapshots").create(
        table, validate_table(table, DataContract()), NoRedaction()
    )
    registry = MlflowRegistry(
        f"sqlite:///{home / 'mlflow.db'}", artifact_root=home / "mlartifacts", cache_dir=home / "cache"
    )
    made = []
    for seed in range(versions):
        run = train_and_register(snapshot, TrainingConfig(family="tfidf", seed=seed), registry, name=MODEL)
        made.append(run.version.version)
    return TrainedHome(home, registry, tuple(made))


def settings_for(trained: TrainedHome, **values: object) -> Settings:
    defaults: dict[str, object] = {
        "home": trained.home,
        "model_name": MODEL,
        "api_keys": [f"acme:{ACME_KEY}", f"globex:{GLOBEX_KEY}", f"tiny:{TINY_KEY}"],
        "rate_limit_overrides": "tiny=0.5/2",
        "reload_interval_s": 0.2,
        "max_batch_items": 16,
        "max_text_length": 300,
        "max_body_bytes": 20_000,
        "model_timeout_s": 1.0,
    }
    return Settings(**(defaults | values))  # type: ignore[arg-type]


@contextmanager
def running(
    settings: Settings, *, store: DecisionStore | None = None, registry: MlflowRegistry | None = None
) -> Iterator[LiveServer]:
    with serve(create_app(settings, Overrides(registry=registry, store=store))) as server:
        yield server
