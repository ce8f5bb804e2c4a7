"""Batch scoring of a file with a registered version: PII redacted first, one output row per input row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deskpilot.batch.predict import DEFAULT_BATCH_ROWS, BatchSummary, score_file
from deskpilot.config import Settings
from deskpilot.data.io import count_rows
from deskpilot.registry.base import ModelRegistry
from deskpilot.workflows.build import build_redactor, build_registry, parse_model_uri


@dataclass(frozen=True)
class BatchJob:
    model_uri: str
    input_path: Path
    output_path: Path
    text_column: str = "text"
    id_column: str | None = "id"
    batch_rows: int = DEFAULT_BATCH_ROWS
    pii_patterns: list[str] | None = None


def score_batch(
    settings: Settings,
    job: BatchJob,
    *,
    on_total: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
    registry: ModelRegistry | None = None,
) -> BatchSummary:
    """Score ``job.input_path`` into ``job.output_path``; ``on_total`` hears the row count before scoring
    starts and ``on_rows`` each batch done, for progress."""
    ref = parse_model_uri(job.model_uri)
    total = count_rows(job.input_path)
    model = (registry or build_registry(settings)).load(ref)
    redactor = build_redactor(job.pii_patterns)
    if on_total is not None:
        on_total(total)
    return score_file(
        model,
        job.input_path,
        job.output_path,
        text_column=job.text_column,
        id_column=job.id_column,
        redact=lambda texts: [redactor.redact(t) for t in texts],
        batch_rows=job.batch_rows,
        on_rows=on_rows,
    )
