"""Batch scoring of a file (or a folder of parts) with a registered version, on this process or on Ray: PII
redacted first, one output row per input row, the same predictor on both engines.

A job can follow the rollout: ``@champion`` names the champion alias, and a ``challenger`` (a URI, an
``@ALIAS``, or ``rollout`` for the version the rollout has in shadow or canary now) scores the same rows in
the same pass, for an offline comparison report read back from the output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from deskpilot.batch.compare import compare_output
from deskpilot.batch.parts import check_output_location, input_parts
from deskpilot.batch.predict import DEFAULT_BATCH_ROWS, BatchSummary, score_file
from deskpilot.batch.predictor import FramePredictor
from deskpilot.config import Settings
from deskpilot.data.io import count_rows
from deskpilot.domain import ModelRef
from deskpilot.errors import UsageError
from deskpilot.evaluation.comparison import write_comparison
from deskpilot.registry.base import ModelRegistry
from deskpilot.workflows.build import build_redactor, build_registry, parse_model_uri

ENGINES = ("local", "ray")
ROLLOUT_CHALLENGER = "rollout"  # --challenger rollout: the version in shadow or canary now


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
    challenger_uri: str | None = None
    label_column: str | None = "label"  # copied as ``label`` for the comparison (a challenger only)
    report_dir: Path | None = None


def resolve_model_uri(settings: Settings, uri: str) -> str:
    """``@ALIAS`` (``@champion``, ``@challenger``) names an alias of the configured model, so a batch job
    follows the rollout; anything else must be a ``models:/`` URI."""
    if uri.startswith("@") and len(uri) > 1:
        return f"models:/{settings.model_name}{uri}"
    return uri


def resolve_challenger(
    settings: Settings, registry: ModelRegistry, spec: str, model_name: str | None = None
) -> str:
    """``rollout`` is the rollout's current challenger; anything else as :func:`resolve_model_uri`. (The
    ``@challenger`` alias is the latest candidate that passed its gate, not necessarily the one in shadow.)
    ``model_name``: the model the job scores; the rollout (of the configured model) must be of that model."""
    if spec != ROLLOUT_CHALLENGER:
        return resolve_model_uri(settings, spec)
    if model_name is not None and model_name != settings.model_name:
        raise UsageError(
            f"--challenger rollout: the rollout is that of {settings.model_name}, but --model names "
            f"{model_name}; name the challenger (models:/NAME/VERSION) instead",
            details={"model": model_name, "rollout_model": settings.model_name},
        )
    from deskpilot.rollout.actions import read_state  # the rollout's modules only when asked for

    state = read_state(registry, settings.model_name)
    if state.challenger is None:
        raise UsageError(
            f"--challenger rollout: the rollout of {settings.model_name} has no challenger now; promote one "
            "to shadow, or name a version (models:/NAME/VERSION or @ALIAS)",
            details={"model": settings.model_name},
        )
    return ModelRef(settings.model_name, version=state.challenger).uri


def score_batch(
    settings: Settings,
    job: BatchJob,
    *,
    on_total: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
    registry: ModelRegistry | None = None,
) -> BatchSummary:
    """Score ``job.input_path`` into ``job.output_path``; ``on_total`` hears the row count before scoring
    starts and ``on_rows`` each batch done, for progress. With a challenger the summary carries the
    comparison, also written under ``job.report_dir`` when given."""
    _check_job(job)
    ref = parse_model_uri(resolve_model_uri(settings, job.model_uri))
    parts = input_parts(job.input_path)
    check_output_location(job.input_path, job.output_path)
    if job.engine == "ray":
        from deskpilot.batch.ray_engine import require_ray

        require_ray()  # before the model is loaded: a missing extra should not cost a download
    registry = registry or build_registry(settings)
    # aliases resolved once, to the versions that score and that the report names, even if the rollout
    # moves an alias while the job runs
    champion = registry.get(ref)
    ref = ModelRef(champion.name, version=champion.version)
    challenger_ref = None
    challenger_uri = None
    if job.challenger_uri is not None:
        spec = parse_model_uri(resolve_challenger(settings, registry, job.challenger_uri, ref.name))
        challenger = registry.get(spec)
        challenger_ref = ModelRef(challenger.name, version=challenger.version)
        challenger_uri = challenger.uri
        if challenger_ref == ref:
            raise UsageError(
                f"--challenger {job.challenger_uri}: the challenger is the same version as the model "
                f"({champion.uri}); compare two different versions",
                details={"model": champion.uri, "challenger": challenger_uri},
            )
    predictor = FramePredictor(
        registry.load(ref),
        text_column=job.text_column,
        id_column=job.id_column,
        redactor=build_redactor(job.pii_patterns),
        challenger=None if challenger_ref is None else registry.load(challenger_ref),
        label_column=job.label_column if challenger_ref is not None else None,
    )
    if job.engine == "ray":
        from deskpilot.batch.ray_engine import RayOptions, score_with_ray

        options = RayOptions(address=job.ray_address, workers=job.ray_workers, progress=job.progress)
        summary = score_with_ray(
            predictor, job.input_path, job.output_path, batch_rows=job.batch_rows, options=options
        )
    else:
        if on_total is not None:
            on_total(sum(count_rows(part) for part in parts))
        summary = score_file(
            predictor, job.input_path, job.output_path, batch_rows=job.batch_rows, on_rows=on_rows
        )
    if challenger_uri is None:
        return summary
    comparison = compare_output(job.output_path, champion=champion.uri, challenger=challenger_uri)
    if job.report_dir is not None:
        write_comparison(comparison, job.report_dir)
    return replace(summary, comparison=comparison)


def _check_job(job: BatchJob) -> None:
    if job.engine not in ENGINES:
        raise UsageError(f"--engine {job.engine!r}: use one of {', '.join(ENGINES)}")
    if job.engine != "ray" and (job.ray_address is not None or job.ray_workers is not None):
        raise UsageError("--ray-address and --ray-workers apply to --engine ray only")
    if job.report_dir is not None and job.challenger_uri is None:
        raise UsageError("--report compares two models: give --challenger too")
