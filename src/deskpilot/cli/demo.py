"""``deskpilot demo``: the main job end to end on a dataset (the bundled Banking77 by default)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from deskpilot.batch.predict import score_file
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
from deskpilot.cli.eval_cmds import resolve_suite
from deskpilot.cli.snapshot_cmds import load_and_validate, split_summary, store_snapshot
from deskpilot.cli.train_cmds import CODE_DIR
from deskpilot.domain import ModelRef
from deskpilot.evaluation.policy import load_policy
from deskpilot.registry.base import CHAMPION
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
) -> None:
    """Validate, snapshot and split the data, train and register models, then score a few messages."""
    settings = state(ctx).settings
    chosen = families or list(DEMO_FAMILIES)
    steps = 3 + len(chosen)
    with reported_errors():
        typer.echo(f"[1/{steps}] validate {data}")
        table, report = load_and_validate(settings, data, text_column=text_column, label_column=label_column)
        typer.echo(render_report(report))
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
        typer.echo(f"[2/{steps}] snapshot (PII redacted, content-addressed) and split (seed {seed})")
        snapshot = store_snapshot(settings, table, report)
        summary = split_summary(snapshot, seed=seed, validation_fraction=0.2)
        typer.echo(f"  snapshot {snapshot.digest[:12]} at {snapshot.path}")
        typer.echo(
            f"  {summary['train_rows']:,} train / {summary['validation_rows']:,} validation rows, "
            f"{summary['validation_labels']} labels; texts shared between splits: "
            f"{summary['leakage']['overlapping_texts']}"
        )
        registry = build_registry(settings)
        policy, suite = load_policy(None), resolve_suite(data, None)
        for step, family in enumerate(chosen, start=3):
            typer.echo(f"[{step}/{steps}] train {family}")
            run = train_and_register(
                snapshot,
                TrainingConfig(family=family, seed=seed, cache_dir=settings.encoder_cache_dir),
                registry,
                name=settings.model_name,
                code_dir=CODE_DIR,
                policy=policy,
                suite=suite,
                progress=lambda message: typer.echo(f"  · {message}"),
            )
            m = run.result.metrics
            typer.echo(
                f"  {run.version.uri}: accuracy {m['accuracy']:.2%}, macro-F1 {m['macro_f1']:.2%}, "
                f"auto {m['auto_coverage']:.1%} at ≥{settings.target_precision:.0%} precision, "
                f"fit {run.result.fit_seconds:.0f}s; gate {run.decision.outcome}"
                + (f" -> {run.alias}" if run.alias else "")
            )
        typer.echo(f"[{steps}/{steps}] score sample messages with {settings.model_name}@{CHAMPION}")
        champion = registry.load(ModelRef(settings.model_name, alias=CHAMPION))
        redactor = build_redactor(None)
        with tempfile.TemporaryDirectory() as tmp:
            source, scored = Path(tmp) / "inbox.csv", Path(tmp) / "scored.csv"
            pd.DataFrame({"id": range(1, len(SAMPLE_MESSAGES) + 1), "text": SAMPLE_MESSAGES}).to_csv(
                source, index=False
            )
            score_file(champion, source, scored, redact=lambda texts: [redactor.redact(t) for t in texts])
            for row in pd.read_csv(scored).itertuples():
                typer.echo(f"  {row.route:<5} {row.intent:<28} {row.confidence:.2f}  {row.text}")
    typer.echo(
        "demo complete: `deskpilot models list` shows the registry; `deskpilot predict --help` scores files"
    )
