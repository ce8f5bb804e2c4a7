"""Batch scoring of a file (or a folder of parts) with a registered version, on this process or on Ray: PII
redacted first, one output row per input row, the same predictor on both engines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deskpilot.batch.predict import DEFAULT_BATCH_ROWS, BatchSummary, score_file
from deskpilot.batch.predictor import FramePredictor, input_parts
from deskpilot.config import Settings
from deskpilot.data.io import count_rows
from deskpilot.errors import UsageError
from deskpilot.registry.base import ModelRegistry
from deskpilot.workflows.build import build_redactor, build_registry, parse_model_uri

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BatchJob:
    model_uri: str
    input_path: Path
    output_path: Path
    text_column: str = "text"
    id_column: str | None = "id"
    batch_rows: int = DEFAULT_BATCH_ROWS
    pii_patterns: list[str] | None = None
    engine: str = "local"
    ray_address: str | None = None
    ray_workers: int | None = None
    progress: bool = True


def resolve_model_uri(settings: Settings, uri: str) -> str:
    """``@ALIAS`` (``@champion``, ``@challenger``) names an alias of the configured model, so a batch job
    follows the rollout; anything else must be a ``models:/`` URI."""
    if uri.startswith("@") and len(uri) > 1:
        return f"models:/{settings.model_name}{uri}"
    return uri


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
    if job.engine not in ENGINES:
        raise UsageError(f"--engine {job.engine!r}: use one of {', '.join(ENGINES)}")
    ref = parse_model_uri(resolve_model_uri(settings, job.model_uri))
    parts = input_parts(job.input_path)
    redactor = build_redactor(job.pii_patterns)
    model = (registry or build_registry(settings)).load(ref)
    predictor = FramePredictor(model, text_column=job.text_column, id_column=job.id_column, redactor=redactor)
    if job.engine == "ray":
        from deskpilot.batch.ray_engine import RayOptions, score_with_ray  # Ray only when asked for

        options = RayOptions(address=job.ray_address, workers=job.ray_workers, progress=job.progress)
        return score_with_ray(
            predictor, job.input_path, job.output_path, batch_rows=job.batch_rows, options=options
        )
    if on_total is not None:
        on_total(sum(count_rows(part) for part in parts))
    return score_file(predictor, job.input_path, job.output_path, batch_rows=job.batch_rows, on_rows=on_rows)
