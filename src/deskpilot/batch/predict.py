"""Score a file of messages with a model, streaming it in chunks and replacing the output only when done.

Each output row keeps the input's id (when there is one) and text, and adds ``intent``, ``confidence``,
``route`` and ``alternatives`` (a JSON list of the runners-up). Rows whose text is missing or blank cannot be
scored: they are routed ``human`` with the reason in ``error`` rather than failing the whole file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deskpilot.data.io import detect_format, iter_batches
from deskpilot.domain import Route
from deskpilot.errors import MissingColumnError
from deskpilot.models.artifact import TriageModel

DEFAULT_BATCH_ROWS = 2048
Redact = Callable[[list[str]], list[str]]
_ARROW_TYPES = {
    "id": pa.string(),
    "text": pa.string(),
    "intent": pa.string(),
    "confidence": pa.float64(),
    "route": pa.string(),
    "alternatives": pa.string(),
    "error": pa.string(),
}


@dataclass(frozen=True)
class BatchSummary:
    rows: int
    auto_rows: int
    unscorable_rows: int
    seconds: float
    output: Path

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def score_frame(
    model: TriageModel,
    chunk: pd.DataFrame,
    *,
    text_column: str,
    id_column: str | None,
    redact: Redact,
    top_k: int,
) -> pd.DataFrame:
    """Score one chunk; the same function serves files and in-memory frames."""
    raw = chunk[text_column]
    texts = [v.strip() if isinstance(v, str) else "" for v in raw]
    scorable = [i for i, t in enumerate(texts) if t]
    predictions = model.predict(redact([texts[i] for i in scorable]), top_k=top_k)
    out = pd.DataFrame(index=range(len(chunk)))
    if id_column is not None:
        out["id"] = chunk[id_column].astype(str).to_numpy()
    out["text"] = raw.astype(str).to_numpy()
    intent: list[str | None] = [None] * len(chunk)
    confidence: list[float | None] = [None] * len(chunk)
    route = [Route.HUMAN.value] * len(chunk)
    alternatives = ["[]"] * len(chunk)
    error: list[str | None] = ["text_empty"] * len(chunk)
    for position, prediction in zip(scorable, predictions, strict=True):
        intent[position] = prediction.intent
        confidence[position] = round(prediction.confidence, 6)
        route[position] = model.route_for(prediction.confidence).value
        alternatives[position] = json.dumps(
            [{"intent": a.intent, "confidence": round(a.confidence, 6)} for a in prediction.alternatives]
        )
        error[position] = None
    out["intent"] = intent
    out["confidence"] = pd.array(confidence, dtype="Float64")
    out["route"] = route
    out["alternatives"] = alternatives
    out["error"] = error
    return out


def score_file(
    model: TriageModel,
    input_path: Path,
    output_path: Path,
    *,
    text_column: str = "text",
    id_column: str | None = "id",
    redact: Redact = lambda texts: texts,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    top_k: int = 3,
    on_rows: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Stream ``input_path`` through the model into ``output_path`` (format from its extension)."""
    started = time.perf_counter()
    out_format = detect_format(output_path)
    rows = auto = unscorable = 0
    with _atomic_output(output_path) as tmp, _Writer(tmp, out_format) as writer:
        for chunk in iter_batches(input_path, batch_rows):
            if text_column not in chunk.columns:
                raise MissingColumnError(
                    f"{input_path}: no column {text_column!r}; "
                    f"the file has {', '.join(map(repr, chunk.columns))}",
                    details={"file": str(input_path), "missing": [text_column]},
                )
            use_id = id_column if id_column is not None and id_column in chunk.columns else None
            scored = score_frame(
                model, chunk, text_column=text_column, id_column=use_id, redact=redact, top_k=top_k
            )
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
            schema = pa.schema([(c, _ARROW_TYPES[c]) for c in frame.columns])
            table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
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
