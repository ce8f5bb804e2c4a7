"""The one predictor of batch scoring: a callable that turns a frame of tickets into a table of scores.

The local engine calls it in-process, chunk by chunk; the Ray engine hands it to ``map_batches``, so each
actor receives it once (the model is deserialized once per actor) and calls it on every batch. Both go through
:meth:`TriageModel.decide`, the rule the online service applies to the same probabilities, so a row scores
the same on all three paths.

Ids and texts are copied as the text they hold: a missing value stays missing (never ``"nan"``), and an
integer id that a reader turned into a float (JSON readers do when some ids are null) keeps its integer form.
The columns are fixed once per job (:meth:`FramePredictor.for_layout`), so every chunk and every part has the
same ones, whatever its own rows hold.

With a ``challenger`` (an offline champion/challenger comparison) both models score the same redacted texts
in the same pass, and each row gains the challenger's intent, confidence and route and whether the two
intents agree; the input's label, when it has one, is copied as ``label`` for the comparison report.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
import pyarrow as pa

from deskpilot.batch.parts import InputLayout
from deskpilot.data.pii import PiiRedactor
from deskpilot.domain import Route
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
    "label": pa.string(),
    "challenger_intent": pa.string(),
    "challenger_confidence": pa.float64(),
    "challenger_route": pa.string(),
    "agrees": pa.bool_(),
}
TEXT_EMPTY = "text_empty"


def cell_text(value: Any) -> str | None:
    """One cell as the text it holds: ``None`` for a missing value, ``"7"`` for an integral float 7.0."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def cell_texts(values: Iterable[Any]) -> list[str | None]:
    return [cell_text(v) for v in values]


def score_frame(
    model: TriageModel,
    chunk: pd.DataFrame,
    *,
    text_column: str,
    id_column: str | None,
    redact: Redact,
    top_k: int,
    challenger: TriageModel | None = None,
    label_column: str | None = None,
) -> pd.DataFrame:
    """Score one chunk; ``id_column`` and ``label_column`` (None: not in the output) may be absent from this
    chunk, and so may the text column (a JSONL chunk whose records lack it): such cells are missing, such
    rows unscorable."""
    n = len(chunk)
    raw = chunk[text_column].tolist() if text_column in chunk.columns else [None] * n
    texts = [v.strip() if isinstance(v, str) else "" for v in raw]
    scorable = [i for i, t in enumerate(texts) if t]
    redacted = redact([texts[i] for i in scorable])
    decided = model.decide(model.predict_proba(redacted), top_k=top_k) if redacted else []
    out = pd.DataFrame(index=range(n))
    if id_column is not None:
        out["id"] = cell_texts(chunk[id_column]) if id_column in chunk.columns else [None] * n
    out["text"] = cell_texts(raw)
    if label_column is not None:
        out["label"] = cell_texts(chunk[label_column]) if label_column in chunk.columns else [None] * n
    intent: list[str | None] = [None] * n
    confidence: list[float | None] = [None] * n
    route = [Route.HUMAN.value] * n
    alternatives = ["[]"] * n
    error: list[str | None] = [TEXT_EMPTY] * n
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
    if challenger is not None:
        _add_challenger(out, challenger, redacted, scorable, intent)
    return out


def _add_challenger(
    out: pd.DataFrame,
    challenger: TriageModel,
    redacted: list[str],
    scorable: list[int],
    intent: list[str | None],
) -> None:
    n = len(out)
    decided = challenger.decide(challenger.predict_proba(redacted)) if redacted else []
    other: list[str | None] = [None] * n
    confidence: list[float | None] = [None] * n
    route = [Route.HUMAN.value] * n
    agrees: list[bool | None] = [None] * n
    for position, (prediction, decided_route) in zip(scorable, decided, strict=True):
        other[position] = prediction.intent
        confidence[position] = round(prediction.confidence, 6)
        route[position] = decided_route.value
        agrees[position] = prediction.intent == intent[position]
    out["challenger_intent"] = other
    out["challenger_confidence"] = pd.array(confidence, dtype="Float64")
    out["challenger_route"] = route
    out["agrees"] = pd.array(agrees, dtype="boolean")


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
        challenger: TriageModel | None = None,
        label_column: str | None = None,
    ) -> None:
        self.model = model
        self.text_column = text_column
        self.id_column = id_column
        self.redactor = redactor or PiiRedactor()
        self.top_k = top_k
        self.challenger = challenger
        self.label_column = label_column
        self.emit_id: bool | None = None  # None: an id column when the chunk has one
        self.emit_label: bool | None = None

    def for_layout(self, layout: InputLayout) -> FramePredictor:
        """This predictor with the job's columns fixed: ``id`` in every chunk's output if any part has it."""
        bound = copy.copy(self)
        bound.emit_id = layout.has_id
        bound.emit_label = layout.has_label
        return bound

    def __call__(self, chunk: pd.DataFrame, source: str = "the input") -> pd.DataFrame:
        """One scored row per row of ``chunk``; ``source`` names where it came from (for messages)."""
        emit_id, emit_label = self.emit_id, self.emit_label
        if emit_id is None:
            emit_id = self.id_column is not None and self.id_column in chunk.columns
        if emit_label is None:
            emit_label = self.label_column is not None and self.label_column in chunk.columns
        return score_frame(
            self.model,
            chunk,
            text_column=self.text_column,
            id_column=self.id_column if emit_id else None,
            redact=self._redact,
            top_k=self.top_k,
            challenger=self.challenger,
            label_column=self.label_column if emit_label else None,
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
