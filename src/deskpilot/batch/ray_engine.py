"""The Ray engine: batch scoring on Ray Data, streamed from input parts to Parquet parts.

Ray Data reads the parts (a file, or a folder of CSV/TSV/JSONL/Parquet files in one format) in blocks, and an
actor pool runs :class:`~deskpilot.batch.predictor.FramePredictor` on them: the predictor (model and redactor)
goes into Ray's object store once and each actor takes it from there once. The streaming executor keeps only
a bounded number of blocks in flight, so memory does not grow with the input, and keeps the input's order.
Parts are written to a private hidden folder beside the output, which replaces the output only when the
written parts hold every input row; a summary file (``_deskpilot.json``, skipped by Parquet readers for its
leading underscore) records the job.

Every part is inspected on the driver first (columns, header, exact row count), so a bad part is refused
before Ray starts, naming the file. Errors inside Ray are unwrapped into the DeskPilot error they carry, and
Arrow read errors become :class:`DataFormatError`.

Without an address a local Ray starts with the given number of CPUs and stops when the job ends; with one
the job joins that cluster and leaves it running: the workers write the parts themselves, so the output
folder must then be on storage every node shares. Ray is imported only here, on use (the ``[ray]`` extra).
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

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from deskpilot.batch.parts import (
    InputLayout,
    arrow_reason,
    check_output_location,
    csv_convert_options,
    csv_parse_options,
    csv_read_options,
    input_parts,
    inspect_parts,
)
from deskpilot.batch.predict import BatchSummary
from deskpilot.batch.predictor import FramePredictor
from deskpilot.data.io import FORMATS_BY_SUFFIX
from deskpilot.domain import Route
from deskpilot.errors import BatchEngineUnavailableError, DataFormatError, DeskPilotError, UsageError

SUMMARY_FILE = "_deskpilot.json"
MIN_CPUS = 2  # one for the actor that scores, one for the tasks that read and write


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` of a cluster to join (None: start a local one), ``workers``
    (actors scoring at once; None: one per CPU Ray sees but one, left for reading and writing), and the
    local object store's size."""

    address: str | None = None
    workers: int | None = None
    object_store_mb: int = 1024
    progress: bool = True


def require_ray() -> None:
    """Refuse early (before a model is loaded) when Ray is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise BatchEngineUnavailableError(
            f"the Ray engine needs Ray ({exc}): pip install 'deskpilot[ray]' (or use --engine local)"
        ) from exc


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
    target = _check_output(input_path, output_dir)
    layout = inspect_parts(
        parts,
        text_column=predictor.text_column,
        id_column=predictor.id_column,
        label_column=predictor.label_column,
        count=True,
        one_header=True,
    )
    bound = predictor.for_layout(layout)
    started = time.perf_counter()
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir(mode=0o700)  # private until complete
        with _ray_session(options) as ray, _ray_errors(input_path):
            dataset = _read(ray, layout)
            workers = _workers(options, int(ray.cluster_resources().get("CPU", 0)))
            reference = ray.put(bound)
            scored = dataset.map_batches(
                _RayPredictor,
                fn_constructor_kwargs={"boxed": [reference]},
                batch_size=batch_rows,
                batch_format="pyarrow",  # to pandas in the actor, integers kept whole (see _to_frame)
                # one batch at a time per actor: with more in flight, Ray 2.60 was seen to emit a batch
                # after later ones even with preserve_order
                compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
                num_cpus=1,
            )
            scored.write_parquet(str(staging))
        rows, auto, unscorable = _count(staging)
        _check_complete(rows, layout, output_dir, options)
        seconds = time.perf_counter() - started
        summary = BatchSummary(rows, auto, unscorable, seconds, output_dir)
        record = {**asdict(summary), "output": str(output_dir), "inputs": [str(p) for p in parts]}
        (staging / SUMMARY_FILE).write_text(json.dumps(record, indent=2))
        staging.chmod(0o777 & ~_umask())
        _replace(staging, target)
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _workers(options: RayOptions, cpus: int) -> int:
    """Actors to score with: one CPU stays free for the tasks that read and write the parts, else the
    actors hold every CPU and the reads wait for ever."""
    if cpus < MIN_CPUS:
        raise BatchEngineUnavailableError(
            f"the Ray cluster has {cpus} CPU{'' if cpus == 1 else 's'}; the Ray engine needs at least "
            f"{MIN_CPUS} (one scores, one reads and writes the parts), or use --engine local",
            details={"cpus": cpus},
        )
    if options.workers is None:
        return cpus - 1
    if options.workers > cpus - 1:
        raise UsageError(
            f"--ray-workers {options.workers}: the cluster has {cpus} CPUs and reading and writing the "
            f"parts need one, so at most {cpus - 1} actors can score",
            details={"workers": options.workers, "cpus": cpus},
        )
    return options.workers


class _RayPredictor:
    """What each actor runs: the shared predictor, taken from the object store once, on every batch."""

    def __init__(self, boxed: list[Any]) -> None:
        import ray  # in the actor's process

        from deskpilot.models.encoder import threads_when_unpickled

        # the actor holds one CPU: its ONNX Runtime sessions get one thread, not one per core of the machine
        with threads_when_unpickled(1):
            self._predictor: FramePredictor = ray.get(boxed[0])  # boxed: Ray leaves a ref in a list as it is

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._predictor.table(_to_frame(batch))


def _to_frame(batch: pa.Table) -> pd.DataFrame:
    """An Arrow batch as pandas with integer columns nullable: Ray's own pandas batches turn an integer
    column with a null into floats, and an id past 2**53 would then be written with lost digits."""
    frame: pd.DataFrame = batch.to_pandas(types_mapper=_nullable_integer)
    return frame


def _nullable_integer(dtype: pa.DataType) -> Any:
    if pa.types.is_signed_integer(dtype):
        return pd.Int64Dtype()
    if pa.types.is_unsigned_integer(dtype):
        return pd.UInt64Dtype()
    return None


@contextlib.contextmanager
def _ray_session(options: RayOptions) -> Iterator[Any]:
    require_ray()
    import ray
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = options.progress
    context.execution_options.preserve_order = True  # output rows in input order, as the local engine
    owned = not ray.is_initialized()
    if owned:
        try:
            if options.address is not None:
                ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=max(os.cpu_count() or 1, (options.workers or 1) + 1),
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


@contextlib.contextmanager
def _ray_errors(source: Path) -> Iterator[None]:
    """A failure inside Ray as the DeskPilot error it carries, or an Arrow read error as a format error."""
    try:
        yield
    except Exception as exc:
        causes = list(_causes(exc))
        carried = next((e for e in causes if isinstance(e, DeskPilotError) and not _is_ray(e)), None)
        if carried is not None:
            if carried is exc:
                raise
            raise type(carried)(carried.message, details=carried.details) from None
        arrow = next((e for e in causes if isinstance(e, pa.ArrowException) and not _is_ray(e)), None)
        if arrow is not None:
            raise DataFormatError(
                f"{source}: cannot read the input: {arrow_reason(arrow)}",
                details={"file": str(source), "parser": str(arrow).strip()},
            ) from None
        raise


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: Ray keeps a task's exception in ``cause``, Python in ``__cause__``."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]


def _is_ray(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("ray.")


def _read(ray: Any, layout: InputLayout) -> Any:
    """The parts as a Ray dataset; CSV cells as text, with the header as the local engine reads it.

    ``file_extensions``: every suffix DeskPilot accepts for the format, and those of the parts themselves;
    Ray's default filters know neither ``.pq`` nor ``.ndjson`` (a ``.pq`` file alone is refused, and one
    beside ``.parquet`` parts silently dropped), and its Parquet reader takes ``None`` for its default.
    A failure to set up the read is a :class:`DataFormatError`."""
    paths = [str(part) for part in layout.parts]
    extensions = sorted(
        {suffix[1:] for suffix, fmt in FORMATS_BY_SUFFIX.items() if fmt == layout.format}
        | {part.suffix[1:] for part in layout.parts}
    )
    try:
        if layout.format == "parquet":
            return ray.data.read_parquet(paths, file_extensions=extensions)
        if layout.format == "jsonl":
            return ray.data.read_json(paths, lines=True, file_extensions=extensions)
        header = layout.header or ()
        return ray.data.read_csv(
            paths,
            read_options=csv_read_options(header, layout.skip_rows),
            parse_options=csv_parse_options(layout.format),
            convert_options=csv_convert_options(header),
            file_extensions=extensions,
        )
    except DeskPilotError:
        raise
    except Exception as exc:
        where = paths[0] if len(paths) == 1 else f"{len(paths)} parts ({paths[0]}, ...)"
        raise DataFormatError(
            f"{where}: Ray cannot read the input: {arrow_reason(exc)}",
            details={"files": paths, "reason": str(exc).strip()},
        ) from exc


def _check_output(input_path: Path, output_dir: Path) -> Path:
    target = check_output_location(input_path, output_dir)
    if target.exists() and not target.is_dir():
        raise UsageError(
            f"{output_dir}: the Ray engine writes a folder of Parquet parts; this is a file",
            details={"file": str(output_dir)},
        )
    if target.is_dir() and any(target.iterdir()) and not (target / SUMMARY_FILE).exists():
        raise UsageError(
            f"{output_dir}: the folder holds other files; give an empty or new folder (a folder this "
            "command wrote before is replaced)",
            details={"file": str(output_dir)},
        )
    return target


def _check_complete(rows: int, layout: InputLayout, output_dir: Path, options: RayOptions) -> None:
    """Refuse to replace the output with parts that miss rows (with a cluster, workers whose output folder
    is on their own disks write parts this machine never sees) or that hold more (a row written twice)."""
    expected = layout.rows or 0
    if rows == expected:
        return
    if rows > expected:
        where = "some rows were written more than once"
    elif options.address:
        where = (
            f"the output folder must be on storage every node of {options.address} shares "
            "(a network file system)"
        )
    else:
        where = "the workers wrote fewer rows than they read"
    raise UsageError(
        f"{output_dir}: the written parts hold {rows:,} of the input's {expected:,} rows; {where}. "
        "The previous output, if any, is kept",
        details={"file": str(output_dir), "rows": rows, "expected": expected},
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
    """Put the finished parts where the output goes; an earlier output of this command is removed after,
    and put back if the finished parts cannot be moved into place."""
    old = None
    if output_dir.exists():
        old = output_dir.with_name(f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}")
        output_dir.rename(old)
    try:
        staging.rename(output_dir)
    except OSError as exc:
        if old is not None:
            old.rename(output_dir)
        raise UsageError(
            f"{output_dir}: cannot move the finished parts into place ({exc.strerror or exc}); the previous "
            "output is kept",
            details={"file": str(output_dir)},
        ) from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
