"""The local engine: score a file (or a folder of parts) in chunks on this process, replacing the output
only when done. The Ray engine (:mod:`deskpilot.batch.ray_engine`) runs the same predictor on a cluster.

Each output row keeps the input's id (when there is one) and text, and adds ``intent``, ``confidence``,
``route`` and ``alternatives`` (a JSON list of the runners-up). Rows whose text is missing or blank cannot be
scored: they are routed ``human`` with the reason in ``error`` rather than failing the whole file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from deskpilot.batch.parts import check_output_location, input_parts, inspect_parts, iter_jsonl_frames
from deskpilot.batch.predictor import FramePredictor, to_arrow
from deskpilot.data.io import detect_format, iter_batches
from deskpilot.domain import Route
from deskpilot.evaluation.comparison import ComparisonReport
from deskpilot.models.artifact import TriageModel

DEFAULT_BATCH_ROWS = 2048


@dataclass(frozen=True)
class BatchSummary:
    rows: int
    auto_rows: int
    unscorable_rows: int
    seconds: float
    output: Path
    comparison: ComparisonReport | None = None  # with a challenger: how its answers differ from the model's

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def score_file(
    model: TriageModel | FramePredictor,
    input_path: Path,
    output_path: Path,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_rows: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Stream ``input_path`` (a file, or a folder of parts in one format) through the predictor into
    ``output_path`` (format from its extension); a bare model is scored with the default columns."""
    predictor = model if isinstance(model, FramePredictor) else FramePredictor(model)
    started = time.perf_counter()
    out_format = detect_format(output_path)
    parts = input_parts(input_path)
    check_output_location(input_path, output_path)
    layout = inspect_parts(
        parts,
        text_column=predictor.text_column,
        id_column=predictor.id_column,
        label_column=predictor.label_column,
    )
    predictor = predictor.for_layout(layout)
    rows = auto = unscorable = 0
    with _atomic_output(output_path) as tmp, _Writer(tmp, out_format) as writer:
        for part in parts:
            # JSONL by the batch reader: an integer id beside a null must not pass through a float
            chunks = (
                iter_jsonl_frames(part, batch_rows)
                if layout.format == "jsonl"
                else iter_batches(part, batch_rows)
            )
            for chunk in chunks:
                scored = predictor(chunk, str(part))
                writer.write(scored)
                rows += len(scored)
                auto += int((scored["route"] == Route.AUTO.value).sum())
                unscorable += int(scored["error"].notna().sum())
                if on_rows is not None:
                    on_rows(len(scored))
    return BatchSummary(rows, auto, unscorable, time.perf_counter() - started, output_path)


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class _Writer:
    """Appends scored chunks to one file in the output format."""

    def __init__(self, path: Path, fmt: str) -> None:
        self._path = path
        self._format = fmt
        self._parquet: pq.ParquetWriter | None = None
        self._first = True

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._parquet is not None:
            self._parquet.close()

    def write(self, frame: pd.DataFrame) -> None:
        if self._format == "parquet":
            table = to_arrow(frame)
            schema = table.schema
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._path, schema)
            self._parquet.write_table(table)
        elif self._format == "jsonl":
            with self._path.open("a", encoding="utf-8") as fh:
                frame.to_json(fh, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(
                self._path,
                mode="a",
                header=self._first,
                index=False,
                sep="\t" if self._format == "tsv" else ",",
            )
        self._first = False
