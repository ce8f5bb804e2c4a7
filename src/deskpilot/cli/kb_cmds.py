"""``deskpilot kb``: the copilot's knowledge: import tickets and articles, build and inspect the index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deskpilot.cli.common import JsonOpt, emit_json, reported_errors, state
from deskpilot.errors import UsageError

app = typer.Typer(
    help="The copilot's knowledge: resolved tickets and help-center articles, and the retrieval index.",
    no_args_is_help=True,
)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant that owns the items.")]


@app.command("import")
def import_command(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="Tickets (.csv/.tsv/.jsonl/.parquet with text and label columns), or articles: a folder of "
            ".md/.html files, or a table with title, body and intents columns."
        ),
    ],
    tenant: TenantOpt = "default",
    kind: Annotated[
        str, typer.Option("--kind", help="auto, tickets or articles [default: auto, from the path].")
    ] = "auto",
    text_column: Annotated[str, typer.Option("--text-column", help="Tickets: the message column.")] = "text",
    label_column: Annotated[
        str, typer.Option("--label-column", help="Tickets: the final intent column.")
    ] = "label",
    reply_column: Annotated[
        str | None, typer.Option("--reply-column", help="Tickets: the agent's reply column (optional).")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Tickets: their own id column [default: text digest].")
    ] = None,
    build: Annotated[
        bool, typer.Option("--build/--no-build", help="Publish a new index version after the import.")
    ] = True,
    json_output: JsonOpt = False,
) -> None:
    """Redact and store the items (an item with a stored id replaces it), then update the index."""
    from deskpilot.workflows.knowledge import KbImportRequest, import_knowledge

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        if kind not in ("auto", "tickets", "articles"):
            raise UsageError(f"--kind must be auto, tickets or articles, not {kind!r}")
        request = KbImportRequest(
            path=path,
            tenant=tenant,
            kind=None if kind == "auto" else kind,  # type: ignore[arg-type]
            text_column=text_column,
            label_column=label_column,
            reply_column=reply_column,
            id_column=id_column,
            build=build,
        )
        result = import_knowledge(settings, request, progress=None if json_output else typer.echo)
    if json_output:
        emit_json({"ok": True, **result.to_dict()})
        return
    redacted = sum(result.redactions.values())
    typer.echo(
        f"imported {result.items:,} {result.kind} from {path} for tenant {tenant!r}: "
        f"{result.counts.added:,} added, {result.counts.replaced:,} replaced, "
        f"{result.counts.unchanged:,} unchanged; {redacted:,} PII values redacted"
    )


@app.command("build")
def build_command(
    ctx: typer.Context,
    full: Annotated[bool, typer.Option("--full", help="Rebuild even when the index is current.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Publish an index version built from every stored knowledge item."""
    from deskpilot.workflows.knowledge import build_index, knowledge_store

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        store = knowledge_store(settings)
        try:
            result = build_index(settings, store, full=full, progress=None if json_output else typer.echo)
        finally:
            store.close()
    if json_output:
        emit_json({"ok": True, **result.to_dict()})


@app.command("status")
def status_command(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """Index versions (the current one marked) and what each holds."""
    from deskpilot.retrieval.catalog import IndexCatalog

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        catalog = IndexCatalog(settings.resolved_kb_dir)
        current = catalog.current_version()
        versions = catalog.versions()
    rows = [
        {
            "version": v.version,
            "current": v.version == current,
            "created_at": v.created_at,
            "note": v.note,
            "items": v.manifest.get("items"),
            "counts": v.counts,
            "build": v.manifest.get("build"),
        }
        for v in versions
    ]
    if json_output:
        emit_json({"ok": True, "root": str(catalog.root), "current": current, "versions": rows})
        return
    if not rows:
        typer.echo(f"no index under {catalog.root}: run `deskpilot kb import`")
        return
    for v in versions:
        mark = "*" if v.version == current else " "
        items = sum(sum(c.values()) for c in v.counts.values())
        typer.echo(f"{mark} v{v.version}  {v.created_at}  {items:,} items  {v.note}")
        for tenant, counts in sorted(v.counts.items()):
            typer.echo(f"      {tenant}: " + ", ".join(f"{n:,} {k}s" for k, n in sorted(counts.items())))


@app.command("search")
def search_command(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The message to find similar items for.")],
    tenant: TenantOpt = "default",
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many results.")] = 5,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or lexical.")] = "hybrid",
    json_output: JsonOpt = False,
) -> None:
    """Search the current index as the API would for this tenant (the text is redacted first)."""
    from deskpilot.data.pii import PiiRedactor
    from deskpilot.retrieval.catalog import IndexCatalog

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        if mode not in ("hybrid", "dense", "lexical"):
            raise UsageError(f"--mode must be hybrid, dense or lexical, not {mode!r}")
        index = IndexCatalog(settings.resolved_kb_dir).load()
        hits = index.search(tenant, PiiRedactor().redact(text), k, mode=mode)  # type: ignore[arg-type]
    results = [
        {
            "id": h.item.id,
            "kind": h.item.kind,
            "title": h.item.title,
            "text": h.item.text,
            "intents": list(h.item.intents),
            "score": round(h.score, 6),
            "ranks": {"dense": h.dense_rank, "lexical": h.lexical_rank},
        }
        for h in hits
    ]
    if json_output:
        emit_json({"ok": True, "results": results})
        return
    for i, h in enumerate(hits, start=1):
        label = h.item.title if h.item.kind == "article" else h.item.text
        typer.echo(f"{i:>2}. [{h.item.kind}] {label}  ({', '.join(h.item.intents)}; score {h.score:.4f})")


@app.command("eval")
def eval_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Labelled tickets: split into indexed and queries.")],
    text_column: Annotated[str, typer.Option("--text-column", help="The message column.")] = "text",
    label_column: Annotated[str, typer.Option("--label-column", help="The intent column.")] = "label",
    articles: Annotated[
        Path | None,
        typer.Option("--articles", help="Articles for the draft evaluation [default: DATA's kb/]."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, the sample and the removals.")] = 0,
    removed_fraction: Annotated[
        float, typer.Option("--removed-fraction", min=0.0, max=0.9, help="Share of intents whose answers go.")
    ] = 0.2,
    max_queries: Annotated[
        int, typer.Option("--max-queries", min=10, help="Validation queries used.")
    ] = 1000,
    report: Annotated[Path | None, typer.Option("--report", help="Write copilot-eval.md/.json here.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Retrieval (dense vs BM25 vs hybrid, paired tests) and draft quality on a validation split."""
    import json

    from deskpilot.workflows.copilot_eval import CopilotEvalRequest, evaluate_copilot

    settings = state(ctx).settings
    with reported_errors(as_json=json_output):
        request = CopilotEvalRequest(
            data=data,
            text_column=text_column,
            label_column=label_column,
            articles=articles,
            seed=seed,
            removed_fraction=removed_fraction,
            max_queries=max_queries,
        )
        result = evaluate_copilot(settings, request, progress=None if json_output else typer.echo)
    payload = result.to_dict()
    markdown = _eval_markdown(result.retrieval.markdown(), payload)
    if report is not None:
        report.mkdir(parents=True, exist_ok=True)
        (report / "copilot-eval.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        (report / "copilot-eval.md").write_text(markdown, encoding="utf-8")
    if json_output:
        emit_json({"ok": True, **payload})
    else:
        typer.echo(markdown)


def _eval_markdown(retrieval: str, payload: dict[str, object]) -> str:
    lines = ["# Copilot evaluation", "", "## Retrieval", "", retrieval, ""]
    for key, title in (
        ("drafts", "Drafts (articles labelled with their intents)"),
        ("drafts_unlabelled_articles", "Drafts (article labels hidden: grounding by similarity alone)"),
    ):
        found = payload.get(key)
        if not isinstance(found, dict):
            continue
        lines += [f"## {title}", "", "| measure | value |", "|---|---|"]
        for name in (
            "queries",
            "answerable",
            "unanswerable",
            "answer_rate",
            "refusal_rate",
            "citation_correctness",
            "grounding_rate",
            "pii_probes",
            "pii_leaks",
            "cost_per_1000_suggestions_usd",
        ):
            lines.append(f"| {name} | {found.get(name)} |")
        latency = found.get("latency_ms") or {}
        if isinstance(latency, dict):
            lines.append(f"| latency p50 / p95 ms | {latency.get('p50')} / {latency.get('p95')} |")
        lines.append("")
    removed = payload.get("removed_intents")
    if isinstance(removed, list) and removed:
        lines += ["Intents whose answers were removed: " + ", ".join(map(str, removed)), ""]
    return "\n".join(lines)
