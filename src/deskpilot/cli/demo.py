"""``deskpilot demo``: the main job end to end on a dataset (the bundled Banking77 by default).

Validate → snapshot → split → train each family (skipped when this data and seed already have that version)
→ evaluate and gate → promote the best version that passed → score sample messages → serve the API on
127.0.0.1 with a demo key and print a curl line that was checked to work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from deskpilot.batch.predict import score_file
from deskpilot.cli.audit_cmds import open_for_append
from deskpilot.cli.common import (
    EXIT_FAILED,
    LabelColumnOpt,
    TextColumnOpt,
    build_redactor,
    build_registry,
    reported_errors,
    state,
)
from deskpilot.cli.data_cmds import render_report
from deskpilot.cli.demo_serve import demo_key, serve_demo
from deskpilot.cli.eval_cmds import resolve_suite
from deskpilot.cli.snapshot_cmds import load_and_validate, split_summary, store_snapshot
from deskpilot.cli.train_cmds import CODE_DIR, audit_training
from deskpilot.config import Settings
from deskpilot.data.snapshots import Snapshot
from deskpilot.domain import ModelRef
from deskpilot.errors import ModelNotFoundError
from deskpilot.evaluation.policy import load_policy
from deskpilot.registry.base import CHAMPION, ModelRegistry, ModelVersion
from deskpilot.rollout.actions import promote, read_state
from deskpilot.store.audit import default_actor
from deskpilot.training.pipeline import train_and_register
from deskpilot.training.run import TrainingConfig

BUNDLED_DATA = Path("data/banking77/train.csv")
DEMO_FAMILIES = ("tfidf", "embed")
SAMPLE_MESSAGES = [
    "I ordered a card two weeks ago and it still hasn't come, my email is sam@example.com",
    "Someone has stolen my card, block it please!",
    "How much does it cost to top up with a card?",
    "What is the weather like in Lisbon tomorrow?",
]


def demo(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Dataset to run on.")] = BUNDLED_DATA,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "category",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and of training.")] = 0,
    families: Annotated[
        list[str] | None, typer.Option("--family", help="Model families to train (repeatable).")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API at the end (until Ctrl-C).")
    ] = True,
    host: Annotated[str, typer.Option("--host", help="Interface the demo service listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port of the demo service.")] = 8000,
) -> None:
    """Validate, snapshot and split the data, train, gate and register models, promote the best, score a
    few messages, then serve the API with a demo key."""
    settings = state(ctx).settings
    chosen = families or list(DEMO_FAMILIES)
    steps = 5 + len(chosen) + (1 if serve else 0)
    say = typer.echo
    with reported_errors():
        say(f"[1/{steps}] validate {data}")
        table, report = load_and_validate(settings, data, text_column=text_column, label_column=label_column)
        say(render_report(report))
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
        say(f"[2/{steps}] snapshot (PII redacted, content-addressed) and split (seed {seed})")
        snapshot = store_snapshot(settings, table, report)
        summary = split_summary(snapshot, seed=seed, validation_fraction=0.2)
        say(f"  snapshot {snapshot.digest[:12]} at {snapshot.path}")
        say(
            f"  {summary['train_rows']:,} train / {summary['validation_rows']:,} validation rows, "
            f"{summary['validation_labels']} labels; texts shared between splits: "
            f"{summary['leakage']['overlapping_texts']}"
        )
        registry = build_registry(settings)
        policy, suite = load_policy(None), resolve_suite(data, None)
        for step, family in enumerate(chosen, start=3):
            existing = _trained(registry, settings.model_name, snapshot, family, seed)
            if existing is not None:
                say(f"[{step}/{steps}] {family}: already trained on this data as {existing.uri}; skipped")
                continue
            say(f"[{step}/{steps}] train, evaluate and gate {family}")
            run = train_and_register(
                snapshot,
                TrainingConfig(family=family, seed=seed, cache_dir=settings.encoder_cache_dir),
                registry,
                name=settings.model_name,
                code_dir=CODE_DIR,
                policy=policy,
                suite=suite,
                progress=lambda message: say(f"  · {message}"),
            )
            audit_training(settings, run)
            m = run.result.metrics
            say(
                f"  {run.version.uri}: accuracy {m['accuracy']:.2%}, macro-F1 {m['macro_f1']:.2%}, "
                f"auto {m['auto_coverage']:.1%} at ≥{settings.target_precision:.0%} precision, "
                f"fit {run.result.fit_seconds:.0f}s; gate {run.decision.outcome}"
                + (f" -> {run.alias}" if run.alias else "")
            )
        step = 3 + len(chosen)
        say(f"[{step}/{steps}] promote the best version that passed its gate")
        best = _promote_best(settings, registry, snapshot)
        say(
            f"  {settings.model_name}@{CHAMPION} = {best.uri} ({best.family}, validation accuracy "
            f"{best.metrics.get('val_accuracy', float('nan')):.2%})"
        )
        say(f"[{step + 1}/{steps}] score sample messages with {best.uri} (batch scoring)")
        _score_samples(registry, best)
        say(
            f"[{step + 2}/{steps}] model card and report stored with {best.uri}: "
            f"`deskpilot models card {best.uri}`"
        )
        key = demo_key(settings)
    if not serve:
        say("demo complete: `deskpilot models list` shows the registry; `deskpilot serve` starts the API")
        return
    say(f"[{steps}/{steps}] serve the triage API on {host}:{port}")
    serve_demo(settings, host=host, port=port, key=key)


def _trained(
    registry: ModelRegistry, name: str, snapshot: Snapshot, family: str, seed: int
) -> ModelVersion | None:
    for version in registry.versions(name):
        tags = version.tags
        if (
            tags.get("deskpilot.dataset_digest") == snapshot.digest
            and version.family == family
            and tags.get("deskpilot.seed") == str(seed)
        ):
            return version
    return None


def _promote_best(settings: Settings, registry: ModelRegistry, snapshot: Snapshot) -> ModelVersion:
    name = settings.model_name
    passed = [
        v
        for v in registry.versions(name)
        if v.tags.get("deskpilot.dataset_digest") == snapshot.digest
        and v.tags.get("deskpilot.gate") == "pass"
    ]
    if not passed:
        raise ModelNotFoundError(
            "no version trained on this data passed its gate; see `deskpilot models list`"
        )
    best = max(passed, key=lambda v: (v.metrics.get("val_accuracy", 0.0), int(v.version)))
    if read_state(registry, name).champion != best.version:
        promote(
            registry,
            open_for_append(settings),
            ModelRef(name, version=best.version),
            to="champion",
            percent=None,
            actor=default_actor(),
            reason="deskpilot demo: best validation accuracy among versions that passed their gate",
        )
    return registry.get(ModelRef(name, version=best.version))


def _score_samples(registry: ModelRegistry, version: ModelVersion) -> None:
    model = registry.load(ModelRef(version.name, version=version.version))
    redactor = build_redactor(None)
    with tempfile.TemporaryDirectory() as tmp:
        source, scored = Path(tmp) / "inbox.csv", Path(tmp) / "scored.csv"
        pd.DataFrame({"id": range(1, len(SAMPLE_MESSAGES) + 1), "text": SAMPLE_MESSAGES}).to_csv(
            source, index=False
        )
        score_file(model, source, scored, redact=lambda texts: [redactor.redact(t) for t in texts])
        for row in pd.read_csv(scored).itertuples():
            typer.echo(f"  {row.route:<5} {row.intent:<28} {row.confidence:.2f}  {row.text}")
