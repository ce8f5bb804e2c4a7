"""The copilot's part of ``deskpilot demo``: the dataset as resolved tickets and, when the dataset's folder
has a ``kb`` folder (the bundled Banking77 sample knowledge base), its articles, for the demo tenant; then a
reply suggestion for each sample message, with no LLM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from deskpilot.config import Settings
from deskpilot.copilot.grounding import TriageView
from deskpilot.copilot.suggest import Suggestion
from deskpilot.retrieval.catalog import IndexCatalog
from deskpilot.workflows.build import build_redactor
from deskpilot.workflows.copilot import build_copilot
from deskpilot.workflows.knowledge import KbImportRequest, KbImportResult, import_knowledge, knowledge_store

KB_FOLDER = "kb"


def demo_knowledge(
    settings: Settings,
    data: Path,
    *,
    tenant: str,
    text_column: str,
    label_column: str,
    progress: Callable[[str], None] | None = None,
) -> list[KbImportResult]:
    """Import the dataset's tickets and its sample articles (skipped when there are none); idempotent."""
    store = knowledge_store(settings)
    try:
        requests = [
            KbImportRequest(data, tenant, "tickets", text_column=text_column, label_column=label_column)
        ]
        articles = data.parent / KB_FOLDER
        if articles.is_dir():
            requests.append(KbImportRequest(articles, tenant, "articles"))
        return [import_knowledge(settings, r, store=store, progress=progress) for r in requests]
    finally:
        store.close()


def demo_suggestions(
    settings: Settings, tenant: str, samples: Sequence[tuple[str, TriageView]]
) -> list[Suggestion]:
    """A suggestion for each (redacted text, triage) pair, drafted without any LLM."""
    index = IndexCatalog(settings.resolved_kb_dir).load()
    store = knowledge_store(settings)
    offline = settings.model_copy(update={"llm_base_url": None, "llm_fallback_base_url": None})
    copilot, _ = build_copilot(offline, build_redactor(), store)

    async def run() -> list[Suggestion]:
        return [
            await copilot.suggest(tenant=tenant, text=text, triage=triage, index=index, acceptance={})
            for text, triage in samples
        ]

    try:
        return asyncio.run(run())
    finally:
        store.close()
