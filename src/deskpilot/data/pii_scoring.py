"""Span-level precision and recall for PII detection, shared by the evaluation test and the benchmark.

A prediction counts only when kind, start and end all equal a gold span: a redaction that leaves half a
phone number behind has leaked it, so partial overlaps earn nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from deskpilot.data.pii import PiiSpan

__all__ = ["OVERALL", "EvalCase", "KindScore", "SpanLike", "load_cases", "score_spans"]

OVERALL: Final = "ALL"


class SpanLike(Protocol):
    """Anything with a kind and character offsets, such as ``deskpilot.data.pii.PiiSpan``."""

    @property
    def kind(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


@dataclass(frozen=True, slots=True)
class KindScore:
    """Exact-match counts for one kind (or ``OVERALL``), with the ratios derived from them.

    A ratio with an empty denominator is 1.0: nothing claimed means no false claims, nothing to find means
    nothing missed. Read it together with the counts.
    """

    kind: str
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def support(self) -> int:
        """Gold spans of this kind."""
        return self.true_positives + self.false_negatives

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.support if self.support else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_spans(
    gold: Iterable[Iterable[SpanLike]],
    predicted: Iterable[Iterable[SpanLike]],
    *,
    kinds: Collection[str] | None = None,
) -> dict[str, KindScore]:
    """Per-kind and ``OVERALL`` (micro-averaged) scores over aligned documents.

    ``gold[i]`` and ``predicted[i]`` describe the same document. ``kinds`` restricts scoring to those kinds
    on both sides, which is how two detectors are compared on the kinds they both support.
    """
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    seen: set[str] = set()
    for gold_doc, pred_doc in zip(gold, predicted, strict=True):
        gold_set = {(s.kind, s.start, s.end) for s in gold_doc if kinds is None or s.kind in kinds}
        pred_set = {(s.kind, s.start, s.end) for s in pred_doc if kinds is None or s.kind in kinds}
        for kind, _, _ in gold_set & pred_set:
            tp[kind] += 1
        for kind, _, _ in pred_set - gold_set:
            fp[kind] += 1
        for kind, _, _ in gold_set - pred_set:
            fn[kind] += 1
        seen.update(kind for kind, _, _ in gold_set | pred_set)
    scores = {kind: KindScore(kind, tp[kind], fp[kind], fn[kind]) for kind in sorted(seen | set(kinds or ()))}
    scores[OVERALL] = KindScore(OVERALL, sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return scores


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One message of a PII evaluation set and its gold spans."""

    id: str
    category: str
    text: str
    entities: tuple[PiiSpan, ...]


def load_cases(path: Path) -> list[EvalCase]:
    """Read an evaluation set in the ``data/pii_eval/cases.jsonl`` format (one JSON object per line)."""
    cases: list[EvalCase] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            raw = json.loads(line)
            cases.append(
                EvalCase(
                    id=str(raw.get("id", number)),
                    category=str(raw.get("category", "")),
                    text=raw["text"],
                    entities=tuple(PiiSpan(e["kind"], e["start"], e["end"]) for e in raw["entities"]),
                )
            )
    return cases
