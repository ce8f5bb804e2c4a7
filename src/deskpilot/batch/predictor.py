"""The one predictor of batch scoring: a callable that turns a frame of tickets into a table of scores.

The local engine calls it in-process, chunk by chunk; the Ray engine hands it to ``map_batches``, so each
actor receives it once (the model is deserialized once per actor) and calls it on every batch. Both go through
:meth:`TriageModel.decide`, the rule the online service applies to the same probabilities, so a row scores
the same on all three paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from deskpilot.data.io import FORMATS_BY_SUFFIX, detect_format
from deskpilot.data.pii import PiiRedactor
from deskpilot.domain import Route
from deskpilot.errors import DataFileNotFoundError, MissingColumnError, UsageError
from deskpilot.models.artifact import TriageModel

Redact = Callable[[list[str]], list[str]]
OUTPUT_TYPES = {
    "id": pa.string(),
    "text": pa.string(),
    "intent": pa.string(),
    "confidence": pa.float64(),
    "route": pa.string(),
    "alternatives": pa.string(),
    "error": pa.string(),
}


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
    redacted = redact([texts[i] for i in scorable])
    decided = model.decide(model.predict_proba(redacted), top_k=top_k) if redacted else []
    out = pd.DataFrame(index=range(len(chunk)))
    if id_column is not None:
        out["id"] = chunk[id_column].astype(str).to_numpy()
    out["text"] = raw.astype(str).to_numpy()
    intent: list[str | None] = [None] * len(chunk)
    confidence: list[float | None] = [None] * len(chunk)
    route = [Route.HUMAN.value] * len(chunk)
    alternatives = ["[]"] * len(chunk)
    error: list[str | None] = ["text_empty"] * len(chunk)
    for position, (prediction, decided_route) in zip(scorable, decided, strict=True):
        intent[position] = prediction.intent
        confidence[position] = round(prediction.confidence, 6)
        route[position] = decided_route.value
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


class FramePredictor:
    """Scores frames: PII redacted first, then intent, confidence, route, alternatives and error per row."""

    def __init__(
        self,
        model: TriageModel,
        *,
        text_column: str = "text",
        id_column: str | None = "id",
        redactor: PiiRedactor | None = None,
        top_k: int = 3,
    ) -> None:
        self.model = model
        self.text_column = text_column
        self.id_column = id_column
        self.redactor = redactor or PiiRedactor()
        self.top_k = top_k

    def __call__(self, chunk: pd.DataFrame, source: str = "the input") -> pd.DataFrame:
        """One scored row per row of ``chunk``; ``source`` names the file in a missing-column error."""
        if self.text_column not in chunk.columns:
            raise MissingColumnError(
                f"{source}: no column {self.text_column!r}; the file has "
                f"{', '.join(map(repr, chunk.columns))}",
                details={"file": source, "missing": [self.text_column]},
            )
        use_id = self.id_column if self.id_column is not None and self.id_column in chunk.columns else None
        return score_frame(
            self.model,
            chunk,
            text_column=self.text_column,
            id_column=use_id,
            redact=self._redact,
            top_k=self.top_k,
        )

    def table(self, chunk: pd.DataFrame) -> pa.Table:
        """The scores as an Arrow table with fixed column types (a batch whose rows were all unscorable
        still writes ``intent`` as strings), as Parquet parts need."""
        return to_arrow(self(chunk))

    def _redact(self, texts: list[str]) -> list[str]:
        return self.redactor.redact_many(texts)[0]


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    schema = pa.schema([(column, OUTPUT_TYPES[column]) for column in frame.columns])
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def input_parts(path: Path) -> list[Path]:
    """The files to score: ``path`` itself, or the data files of a folder (sorted by name, one format, hidden
    and ``_``-prefixed files skipped); a clear error for a folder with none or with mixed formats."""
    if path.is_file():
        detect_format(path)
        return [path]
    if not path.is_dir():
        raise DataFileNotFoundError(f"{path}: no such file or folder", details={"file": str(path)})
    parts = sorted(
        child
        for child in path.iterdir()
        if child.is_file()
        and not child.name.startswith((".", "_"))
        and child.suffix.lower() in FORMATS_BY_SUFFIX
    )
    if not parts:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise DataFileNotFoundError(
            f"{path}: the folder holds no data files ({known})", details={"file": str(path)}
        )
    formats = _formats(parts)
    if len(formats) > 1:
        raise UsageError(
            f"{path}: the folder mixes formats ({', '.join(sorted(formats))}); score one format at a time",
            details={"file": str(path), "formats": sorted(formats)},
        )
    return parts


def _formats(parts: Sequence[Path]) -> set[str]:
    return {detect_format(part) for part in parts}
