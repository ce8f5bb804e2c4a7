"""``deskpilot kb eval``: retrieval and reply-draft quality on a labelled dataset, nothing tuned on it.

The dataset gets a split of its own, seeded and stratified like training's (``split_frame``, keyed by the
file's bytes, not by a snapshot, so its sides need not match a model's): the training side is indexed as
resolved tickets, the validation side supplies the queries. No classifier is involved (triage is taken as
each query's label), so overlap with a model's training rows cannot flatter the numbers. Retrieval compares
dense, BM25 and hybrid search with paired bootstrap tests. Drafts are scored with the articles of a seeded
share of intents removed: answered where the articles can answer, refused where they cannot (see
:mod:`deskpilot.copilot.evaluation`), once with the articles' intent labels and once without them
(grounding by similarity alone).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deskpilot.config import Settings
from deskpilot.copilot.evaluation import DraftReport, LabelledQuery, evaluate_drafts, remove_answers
from deskpilot.copilot.guardrails import GuardConfig
from deskpilot.copilot.prompts import load_template
from deskpilot.copilot.suggest import Copilot
from deskpilot.data.io import read_table
from deskpilot.data.pii import PiiRedactor
from deskpilot.errors import MissingColumnError, UsageError
from deskpilot.retrieval.encoding import PackagedEncoder
from deskpilot.retrieval.evaluate import (
    RetrievalReport,
    evaluate_retrieval,
    retrieval_splits,
    tickets_from_frame,
)
from deskpilot.retrieval.index import RetrievalIndex
from deskpilot.retrieval.sources import read_articles

EVAL_TENANT = "eval"


@dataclass(frozen=True)
class CopilotEvalRequest:
    data: Path
    text_column: str = "text"
    label_column: str = "label"
    articles: Path | None = None  # default: a ``kb`` folder beside the data, when there is one
    seed: int = 0
    removed_fraction: float = 0.2
    max_queries: int = 1000
    n_boot: int = 2000


@dataclass(frozen=True)
class CopilotEvalReport:
    retrieval: RetrievalReport
    drafts: DraftReport | None
    drafts_unlabelled: DraftReport | None
    removed_intents: tuple[str, ...]
    indexed_tickets: int
    articles: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "retrieval": self.retrieval.to_dict(),
            "drafts": None if self.drafts is None else self.drafts.to_dict(),
            "drafts_unlabelled_articles": None
            if self.drafts_unlabelled is None
            else self.drafts_unlabelled.to_dict(),
            "removed_intents": list(self.removed_intents),
            "indexed_tickets": self.indexed_tickets,
            "articles": self.articles,
        }


def evaluate_copilot(
    settings: Settings, request: CopilotEvalRequest, progress: Callable[[str], None] | None = None
) -> CopilotEvalReport:
    say = progress or (lambda _: None)
    frame = read_table(request.data).frame
    for column in (request.text_column, request.label_column):
        if column not in frame.columns:
            raise MissingColumnError(
                f"{request.data}: no column {column!r} (columns: {', '.join(map(str, frame.columns))})",
                details={"file": str(request.data), "column": column},
            )
    frame = frame[[request.text_column, request.label_column]].dropna().astype(str)
    frame.columns = ["text", "label"]
    frame = frame.reset_index(drop=True)
    digest = hashlib.sha256(request.data.read_bytes()).hexdigest()
    split, _ = retrieval_splits(frame, digest=digest, seed=request.seed)
    from deskpilot.models.encoder_export import ensure_encoder

    encoder = PackagedEncoder.from_export(ensure_encoder(settings.encoder_cache_dir))
    tickets = tickets_from_frame(frame, split.indexed, tenant=EVAL_TENANT)
    say(f"indexing {len(tickets):,} training tickets")
    index = RetrievalIndex.build(tickets, encoder)
    rows = _sample(split.queries.tolist(), frame["label"].tolist(), request.max_queries, request.seed)
    queries = [str(frame["text"].iat[r]) for r in rows]
    intents = [str(frame["label"].iat[r]) for r in rows]
    say(f"retrieval: {len(queries):,} validation queries, dense vs BM25 vs hybrid")
    retrieval = evaluate_retrieval(
        index, EVAL_TENANT, queries, intents, n_boot=request.n_boot, seed=request.seed
    )
    folder = request.articles or request.data.parent / "kb"
    if not folder.exists():
        if request.articles is not None:
            raise UsageError(f"{folder}: no such articles folder or file")
        return CopilotEvalReport(retrieval, None, None, (), len(tickets), 0)
    articles = read_articles(folder, tenant=EVAL_TENANT)
    removed = remove_answers(articles, request.removed_fraction, request.seed)
    labelled = [LabelledQuery(q, i) for q, i in zip(queries, intents, strict=True)]
    say(
        f"drafts: {len(removed.articles)} of {len(articles)} articles kept, "
        f"{len(removed.removed_intents)} intents' answers removed"
    )
    drafts = _drafts(settings, index.add(removed.articles), labelled, removed.answerable_intents)
    unlabelled = [replace(a, intents=()) for a in removed.articles]
    say("drafts again with the articles' intent labels hidden (grounding by similarity alone)")
    truth = {a.id: a.intents for a in removed.articles}
    drafts_unlabelled = _drafts(
        settings, index.add(unlabelled), labelled, removed.answerable_intents, true_intents=truth
    )
    return CopilotEvalReport(
        retrieval,
        drafts,
        drafts_unlabelled,
        tuple(sorted(removed.removed_intents)),
        len(tickets),
        len(articles),
    )


def _drafts(
    settings: Settings,
    index: RetrievalIndex,
    queries: list[LabelledQuery],
    answerable: frozenset[str],
    *,
    true_intents: dict[str, tuple[str, ...]] | None = None,
) -> DraftReport:
    copilot = Copilot(
        template=load_template(settings.copilot_template),
        redactor=PiiRedactor(),
        guard=GuardConfig(
            min_support=settings.copilot_min_support, max_chars=settings.copilot_max_draft_chars
        ),
    )
    copilot.warm(index)
    return asyncio.run(
        evaluate_drafts(
            copilot,
            index,
            tenant=EVAL_TENANT,
            queries=queries,
            answerable_intents=answerable,
            true_intents=true_intents,
        )
    )


def _sample(rows: list[int], labels: list[str], limit: int, seed: int) -> list[int]:
    """At most ``limit`` rows, the same share of each label (seeded)."""
    if len(rows) <= limit:
        return rows
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for row in rows:
        by_label.setdefault(labels[row], []).append(row)
    share = limit / len(rows)
    picked: list[int] = []
    for label in sorted(by_label):
        group = by_label[label]
        picked += rng.sample(group, max(1, round(len(group) * share)))
    return sorted(picked)
