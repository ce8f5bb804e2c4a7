"""The Ray engine: batch scoring on Ray Data, streamed from input parts to Parquet parts.

Ray Data reads the parts (a file, or a folder of CSV/TSV/JSONL/Parquet files in one format) in blocks, and an
actor pool runs :class:`~deskpilot.batch.predictor.FramePredictor` on them: the predictor (model and redactor)
goes into Ray's object store once and each actor takes it from there once. The streaming executor keeps only
a bounded number of blocks in flight, so memory does not grow with the input. Parts are written to a hidden
folder beside the output, which replaces the output only when every part is written; a summary file
(``_deskpilot.json``, skipped by Parquet readers for its leading underscore) records the job.

Without an address a local Ray starts with the given number of CPUs and stops when the job ends; with one
the job joins that cluster and leaves it running. Ray is imported only here, on use (the ``[ray]`` extra).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from deskpilot.batch.predict import BatchSummary
from deskpilot.batch.predictor import FramePredictor, input_parts
from deskpilot.data.io import detect_format, iter_batches
from deskpilot.domain import Route
from deskpilot.errors import BatchEngineUnavailableError, UsageError

SUMMARY_FILE = "_deskpilot.json"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` of a cluster to join (None: start a local one), ``workers``
    (actors scoring at once; None: one per CPU Ray sees but one, left for reading and writing), and the
    local object store's size."""

    address: str | None = None
    workers: int | None = None
    object_store_mb: int = 1024
    progress: bool = True


def score_with_ray(
    predictor: FramePredictor,
    input_path: Path,
    output_dir: Path,
    *,
    batch_rows: int,
    options: RayOptions | None = None,
) -> BatchSummary:
    """Score ``input_path`` into Parquet parts under ``output_dir`` on Ray; the summary counts the parts."""
    options = options or RayOptions()
    parts = input_parts(input_path)
    _check_output(output_dir)
    _check_columns(predictor, parts[0])
    started = time.perf_counter()
    staging = output_dir.with_name(f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        with _ray_session(options) as ray:
            dataset = _read(ray, parts)
            workers = _workers(options, int(ray.cluster_resources().get("CPU", 1)))
            reference = ray.put(predictor)
            scored = dataset.map_batches(
                _RayPredictor,
                fn_constructor_kwargs={"boxed": [reference]},
                batch_size=batch_rows,
                batch_format="pandas",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
            scored.write_parquet(str(staging))
        staging.mkdir(parents=True, exist_ok=True)  # an input of header-only files writes no part
        rows, auto, unscorable = _count(staging)
        seconds = time.perf_counter() - started
        summary = BatchSummary(rows, auto, unscorable, seconds, output_dir)
        record = {**asdict(summary), "output": str(output_dir), "inputs": [str(p) for p in parts]}
        (staging / SUMMARY_FILE).write_text(json.dumps(record, indent=2))
        _replace(staging, output_dir)
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _workers(options: RayOptions, cpus: int) -> int:
    """Actors to score with: one CPU stays free for the tasks that read and write the parts, else the
    actors hold every CPU and the reads wait for ever."""
    if options.workers is None:
        return max(1, cpus - 1)
    if options.workers > max(1, cpus - 1):
        raise UsageError(
            f"--ray-workers {options.workers}: the cluster has {cpus} CPUs and reading and writing the "
            f"parts need one, so at most {max(1, cpus - 1)} actors can score",
            details={"workers": options.workers, "cpus": cpus},
        )
    return options.workers


class _RayPredictor:
    """What each actor runs: the shared predictor, taken from the object store once, on every batch."""

    def __init__(self, boxed: list[Any]) -> None:
        import ray  # in the actor's process

        self._predictor: FramePredictor = ray.get(boxed[0])  # boxed: Ray leaves a ref in a list as it is

    def __call__(self, batch: Any) -> pa.Table:
        return self._predictor.table(batch)


@contextlib.contextmanager
def _ray_session(options: RayOptions) -> Iterator[Any]:
    try:
        import ray
        from ray.data import DataContext
    except ImportError as exc:
        raise BatchEngineUnavailableError(
            "the Ray engine needs Ray: pip install 'deskpilot[ray]' (or use --engine local)"
        ) from exc
    DataContext.get_current().enable_progress_bars = options.progress
    owned = not ray.is_initialized()
    if owned:
        try:
            if options.address is not None:
                ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=max(os.cpu_count() or 1, (options.workers or 0) + 1),
                    object_store_memory=options.object_store_mb * 1024 * 1024,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = options.address or "a local Ray"
            raise BatchEngineUnavailableError(f"cannot start or join {where}: {exc}") from exc
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


def _read(ray: Any, parts: list[Path]) -> Any:
    """The parts as a Ray dataset; CSV cells as text, as the local engine reads them."""
    paths = [str(part) for part in parts]
    fmt = detect_format(parts[0])
    if fmt == "parquet":
        return ray.data.read_parquet(paths)
    if fmt == "jsonl":
        return ray.data.read_json(paths, lines=True)
    import pyarrow.csv as pacsv

    header = next(iter_batches(parts[0], 1)).columns
    return ray.data.read_csv(
        paths,
        parse_options=pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
        convert_options=pacsv.ConvertOptions(
            column_types={str(name): pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _check_columns(predictor: FramePredictor, first: Path) -> None:
    """Refuse before any cluster work when the first part lacks the text column (the error names it)."""
    head = next(iter_batches(first, 1), None)
    if head is not None:
        predictor(head.iloc[:0], str(first))


def _check_output(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(
            f"{output_dir}: the Ray engine writes a folder of Parquet parts; this is a file",
            details={"file": str(output_dir)},
        )
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / SUMMARY_FILE).exists():
        raise UsageError(
            f"{output_dir}: the folder holds other files; give an empty or new folder (a folder this "
            "command wrote before is replaced)",
            details={"file": str(output_dir)},
        )


def _count(folder: Path) -> tuple[int, int, int]:
    """Rows, auto-routed rows and unscorable rows of the written parts, read a batch at a time."""
    rows = auto = unscorable = 0
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        return 0, 0, 0
    for batch in pads.dataset(files, format="parquet").to_batches(columns=["route", "error"]):
        rows += batch.num_rows
        auto += int(pc.sum(pc.equal(batch.column("route"), Route.AUTO.value)).as_py() or 0)
        unscorable += batch.num_rows - batch.column("error").null_count
    return rows, auto, unscorable


def _replace(staging: Path, output_dir: Path) -> None:
    """Put the finished parts where the output goes; an earlier output of this command is removed after."""
    old = None
    if output_dir.exists():
        old = output_dir.with_name(f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}")
        output_dir.rename(old)
    staging.rename(output_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
