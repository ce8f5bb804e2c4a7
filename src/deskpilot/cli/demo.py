"""``deskpilot demo``: the main job end to end on a dataset (the bundled Banking77 by default).

Validate → snapshot → split → train each family (skipped when this data and seed already have that version)
→ evaluate and gate → promote the best version that passed → score sample messages → serve the API on
127.0.0.1 with a demo key and print a curl line that was checked to work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import (
    EXIT_FAILED,
    LabelColumnOpt,
    TextColumnOpt,
    render_report,
    reported_errors,
    say_audited,
    state,
)
from deskpilot.cli.demo_serve import serve_demo
from deskpilot.registry.base import CHAMPION
from deskpilot.training.run import TrainingConfig
from deskpilot.workflows.audit import open_audit
from deskpilot.workflows.build import build_registry, load_policies
from deskpilot.workflows.datasets import load_and_validate, split_summary, store_snapshot
from deskpilot.workflows.demo import demo_key, find_trained, promote_best, score_samples
from deskpilot.workflows.evaluation import resolve_suite
from deskpilot.workflows.training import train_snapshot

BUNDLED_DATA = Path("data/banking77/train.csv")
DEMO_FAMILIES = ("tfidf", "embed")


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
        checked = load_and_validate(settings, data, text_column=text_column, label_column=label_column)
        say(render_report(checked.report))
        if not checked.report.ok:
            raise typer.Exit(EXIT_FAILED)
        say(f"[2/{steps}] snapshot (PII redacted, content-addressed) and split (seed {seed})")
        snapshot = store_snapshot(settings, checked)
        summary = split_summary(snapshot, seed=seed, validation_fraction=0.2)
        say(f"  snapshot {snapshot.digest[:12]} at {snapshot.path}")
        say(
            f"  {summary['train_rows']:,} train / {summary['validation_rows']:,} validation rows, "
            f"{summary['validation_labels']} labels; texts shared between splits: "
            f"{summary['leakage']['overlapping_texts']}"
        )
        registry, audit = build_registry(settings), open_audit(settings)
        policy, suite = load_policies(None).gate, resolve_suite(data, None)
        for step, family in enumerate(chosen, start=3):
            existing = find_trained(registry, settings.model_name, snapshot, family, seed)
            if existing is not None:
                say(f"[{step}/{steps}] {family}: already trained on this data as {existing.uri}; skipped")
                continue
            say(f"[{step}/{steps}] train, evaluate and gate {family}")
            run, receipts = train_snapshot(
                settings,
                snapshot,
                TrainingConfig(family=family, seed=seed, cache_dir=settings.encoder_cache_dir),
                policy=policy,
                suite=suite,
                progress=lambda message: say(f"  · {message}"),
                registry=registry,
                audit=audit,
            )
            say_audited(receipts)
            m = run.result.metrics
            say(
                f"  {run.version.uri}: accuracy {m['accuracy']:.2%}, macro-F1 {m['macro_f1']:.2%}, "
                f"auto {m['auto_coverage']:.1%} at ≥{settings.target_precision:.0%} precision, "
                f"fit {run.result.fit_seconds:.0f}s; gate {run.decision.outcome}"
                + (f" -> {run.alias}" if run.alias else "")
            )
        step = 3 + len(chosen)
        say(f"[{step}/{steps}] promote the best version that passed its gate")
        best = promote_best(settings, registry, snapshot, audit)
        say(
            f"  {settings.model_name}@{CHAMPION} = {best.uri} ({best.family}, validation accuracy "
            f"{best.metrics.get('val_accuracy', float('nan')):.2%})"
        )
        say(f"[{step + 1}/{steps}] score sample messages with {best.uri} (batch scoring)")
        for sample in score_samples(registry, best):
            say(f"  {sample.route:<5} {sample.intent:<28} {sample.confidence:.2f}  {sample.text}")
        say(
            f"[{step + 2}/{steps}] model card and report stored with {best.uri}: "
            f"`deskpilot models card {best.uri}`"
        )
        key = demo_key(settings, audit)
    if not serve:
        say("demo complete: `deskpilot models list` shows the registry; `deskpilot serve` starts the API")
        return
    say(f"[{steps}/{steps}] serve the triage API on {host}:{port}")
    serve_demo(settings, host=host, port=port, key=key)
