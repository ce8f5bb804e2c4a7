"""``deskpilot demo``: the main job end to end on a dataset (the bundled Banking77 by default).

Validate → snapshot → split → train each family (skipped when this data and seed already have that version)
→ evaluate and gate → promote the best version that passed → score sample messages → serve the API on
127.0.0.1 with a demo key and print a curl line that was checked to work.

``deskpilot demo incident``: the incident drill (:mod:`deskpilot.workflows.incident`): replay clean traffic
and upstream changes through a champion and show what the monitor detects, how fast, with what false alarms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deskpilot.cli.common import (
    EXIT_FAILED,
    JsonOpt,
    LabelColumnOpt,
    TextColumnOpt,
    emit_json,
    render_report,
    reported_errors,
    say_audited,
    state,
)
from deskpilot.cli.demo_serve import serve_demo
from deskpilot.copilot.suggest import Suggestion
from deskpilot.data.contracts import ValidationReport
from deskpilot.data.snapshots import Snapshot
from deskpilot.registry.base import CHAMPION, ModelVersion
from deskpilot.training.pipeline import RegisteredRun
from deskpilot.workflows.audit import AuditReceipt
from deskpilot.workflows.demo import (
    BUNDLED_DATA,
    DEMO_FAMILIES,
    DemoRequest,
    ScoredSample,
    demo_steps,
    run_demo,
)
from deskpilot.workflows.knowledge import KbImportResult

app = typer.Typer(
    help="The main job end to end on a dataset; `demo incident` runs the monitoring drill.",
    invoke_without_command=True,
)


@app.callback(invoke_without_command=True)
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
    if ctx.invoked_subcommand is not None:
        return
    settings = state(ctx).settings
    request = DemoRequest(data, text_column, label_column, seed, tuple(families or DEMO_FAMILIES))
    steps = demo_steps(request) + (1 if serve else 0)
    printer = _Printer(steps, settings.target_precision, settings.model_name)
    with reported_errors():
        outcome = run_demo(settings, request, printer)
    if outcome.key is None:
        raise typer.Exit(EXIT_FAILED)
    if not serve:
        typer.echo(
            "demo complete: `deskpilot models list` shows the registry; `deskpilot serve` starts the API"
        )
        return
    printer.step(f"serve the triage API on {host}:{port}")
    serve_demo(settings, host=host, port=port, key=outcome.key)


@app.command("incident")
def incident(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Dataset to run on.")] = BUNDLED_DATA,
    text_column: TextColumnOpt = "text",
    label_column: LabelColumnOpt = "category",
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    window: Annotated[int, typer.Option("--window", min=50, help="Decisions per monitored window.")] = 500,
    clean_windows: Annotated[
        int, typer.Option("--clean-windows", min=1, help="Unshifted windows that measure false alarms.")
    ] = 30,
    shifted_windows: Annotated[
        int, typer.Option("--shifted-windows", min=1, help="Windows replayed after each switch.")
    ] = 4,
    held_out_intent: Annotated[
        str | None, typer.Option("--held-out-intent", help="The intent kept out of training (the new one).")
    ] = None,
    family: Annotated[
        str, typer.Option("--family", help="Model family of the champion (embed adds the MMD test).")
    ] = "tfidf",
    json_output: JsonOpt = False,
) -> None:
    """Replay clean traffic, then template, truncation, new-intent and intent-mix changes through a champion
    and report which signal fired, after how many decisions, and the false-alarm rate on clean windows."""
    from deskpilot.workflows.incident import IncidentRequest, run_incident

    settings = state(ctx).settings
    request = IncidentRequest(
        data=data,
        text_column=text_column,
        label_column=label_column,
        seed=seed,
        window=window,
        clean_windows=clean_windows,
        shifted_windows=shifted_windows,
        held_out_intent=held_out_intent,
        family=family,
    )
    progress = None if json_output else (lambda text: typer.echo(f"  · {text}"))
    with reported_errors(as_json=json_output):
        outcome = run_incident(settings, request, progress)
    summary = outcome.to_dict()
    if json_output:
        emit_json({"ok": True, **summary})
        return
    alarms = summary["false_alarms"]
    low, high = alarms["interval"]
    typer.echo(
        f"false alarms: {alarms['fired']} of {alarms['windows']} clean windows of {outcome.window} decisions "
        f"({alarms['rate']:.1%}, 95% CI {low:.1%}-{high:.1%}) {alarms['by_signal'] or ''}"
    )
    for scenario in summary["scenarios"]:
        after = scenario["detected_after_decisions"]
        verdict = f"detected after {after:,} decisions" if after else "NOT detected"
        typer.echo(f"{scenario['scenario']:<20} {verdict}: {', '.join(scenario['fired']) or '-'}")
        for step in scenario["mitigation"][:2]:
            typer.echo(f"    runbook {step['runbook']}: {step['do']}")
    missed = [s["scenario"] for s in summary["scenarios"] if not s["detected_after_decisions"]]
    if missed:
        raise typer.Exit(EXIT_FAILED)


class _Printer:
    """The demo's steps on stdout, numbered."""

    def __init__(self, steps: int, target_precision: float, model_name: str) -> None:
        self.steps, self.done = steps, 0
        self.target_precision, self.model_name = target_precision, model_name

    def step(self, text: str) -> None:
        self.done += 1
        typer.echo(f"[{self.done}/{self.steps}] {text}")

    def progress(self, text: str) -> None:
        typer.echo(f"  · {text}")

    def validated(self, report: ValidationReport) -> None:
        typer.echo(render_report(report))

    def snapshotted(self, snapshot: Snapshot, split: dict[str, Any]) -> None:
        typer.echo(f"  snapshot {snapshot.digest[:12]} at {snapshot.path}")
        typer.echo(
            f"  {split['train_rows']:,} train / {split['validation_rows']:,} validation / "
            f"{split['evaluation_rows']:,} frozen evaluation rows, "
            f"{split['validation_labels']} labels; texts shared between splits: "
            f"{split['leakage']['overlapping_texts']}"
        )

    def trained(self, run: RegisteredRun, audit: tuple[AuditReceipt, ...]) -> None:
        say_audited(audit)
        m = run.result.metrics
        typer.echo(
            f"  {run.version.uri}: accuracy {m['accuracy']:.2%}, macro-F1 {m['macro_f1']:.2%}, "
            f"auto {m['auto_coverage']:.1%} at ≥{self.target_precision:.0%} precision, "
            f"fit {run.result.fit_seconds:.0f}s; gate {run.decision.outcome}"
            + (f" -> {run.alias}" if run.alias else "")
        )

    def promoted(self, best: ModelVersion) -> None:
        typer.echo(
            f"  {self.model_name}@{CHAMPION} = {best.uri} ({best.family}, validation accuracy "
            f"{best.metrics.get('val_accuracy', float('nan')):.2%})"
        )

    def scored(self, samples: list[ScoredSample]) -> None:
        for sample in samples:
            typer.echo(f"  {sample.route:<5} {sample.intent:<28} {sample.confidence:.2f}  {sample.text}")

    def knowledge(self, results: list[KbImportResult]) -> None:
        for result in results:
            build = result.build
            index = (
                ""
                if build is None or build.version is None
                else f"; index v{build.version.version} ({build.mode})"
            )
            typer.echo(
                f"  {result.items:,} {result.kind} for tenant {result.tenant!r}: "
                f"{result.counts.added:,} added, {result.counts.unchanged:,} unchanged{index}"
            )

    def suggested(self, suggestions: list[Suggestion]) -> None:
        for suggestion in suggestions:
            typer.echo(f"  message: {suggestion.triage.intent} ({suggestion.triage.route})")
            for source in suggestion.sources:
                item = source.hit.item
                label = item.title if item.kind == "article" else item.text
                typer.echo(f"    [{source.number}] {item.kind:<7} {label}")
            if suggestion.draft is None:
                typer.echo(f"    draft: none ({suggestion.reason})")
            else:
                typer.echo(f"    draft ({suggestion.draft.provider}): {suggestion.draft.text}")
