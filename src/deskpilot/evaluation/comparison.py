"""The offline champion/challenger comparison: how two models' answers differ on the same batch of tickets.

Tallied from scored frames (``intent``, ``route``, ``challenger_intent``, ``challenger_route`` and, when the
input had one, ``label``) a chunk at a time, so the input can be larger than memory. A row that neither model
could score (no text) counts in ``rows`` and as routed to a person by both, and nowhere else. What it
reports:

* agreement: the share of scored rows where both chose the same intent, with a 95% Wilson interval;
* route transitions: champion route → challenger route (``auto``/``human``) counts over every row, and each
  model's auto coverage (share of all rows it would answer without a person), with its interval;
* the most frequent disagreeing (champion intent, challenger intent) pairs;
* on rows with a label: each model's accuracy and McNemar's test of the difference
  (:func:`deskpilot.evaluation.significance.mcnemar`: exact below 25 discordant rows, else chi-square).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from deskpilot.evaluation.rendering import FILTERS, atomic_write, template_environment
from deskpilot.evaluation.significance import McNemarResult, Proportion, ci, mcnemar

ROUTES = ("auto", "human")
TOP_PAIRS = 10
JSON_FILE = "comparison.json"
MARKDOWN_FILE = "comparison.md"
HTML_FILE = "comparison.html"


@dataclass(frozen=True)
class ComparisonReport:
    champion: str
    challenger: str
    rows: int
    scored_rows: int
    agreement: Proportion
    transitions: dict[tuple[str, str], int]  # (champion route, challenger route) -> rows
    champion_auto: Proportion
    challenger_auto: Proportion
    disagreements: list[tuple[str, str, int]]  # (champion intent, challenger intent, rows), most first
    labelled_rows: int
    champion_accuracy: Proportion | None
    challenger_accuracy: Proportion | None
    mcnemar: McNemarResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "rows": self.rows,
            "scored_rows": self.scored_rows,
            "agreement": self.agreement.to_dict(),
            "route_transitions": [
                {"champion": a, "challenger": b, "rows": self.transitions.get((a, b), 0)}
                for a in ROUTES
                for b in ROUTES
            ],
            "auto_coverage": {
                "champion": self.champion_auto.to_dict(),
                "challenger": self.challenger_auto.to_dict(),
            },
            "top_disagreements": [
                {"champion_intent": a, "challenger_intent": b, "rows": n} for a, b, n in self.disagreements
            ],
            "labelled": {
                "rows": self.labelled_rows,
                "champion_accuracy": _maybe(self.champion_accuracy),
                "challenger_accuracy": _maybe(self.challenger_accuracy),
                "mcnemar": None if self.mcnemar is None else self.mcnemar.to_dict(),
            },
        }


def _maybe(rate: Proportion | None) -> dict[str, Any] | None:
    return None if rate is None else rate.to_dict()


@dataclass
class ComparisonTally:
    """Counts that add up chunk by chunk; :meth:`report` turns them into a :class:`ComparisonReport`."""

    rows: int = 0
    scored: int = 0
    agreed: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    labelled: int = 0
    # labelled rows by (champion right, challenger right)
    outcomes: Counter[tuple[bool, bool]] = field(default_factory=Counter)

    def add(self, frame: pd.DataFrame) -> None:
        """Count one chunk of scored rows (missing intents as ``None``/NaN/empty, as files hold them)."""
        champion = _texts(frame["intent"])
        challenger = _texts(frame["challenger_intent"])
        labels = _texts(frame["label"]) if "label" in frame.columns else [None] * len(frame)
        routes = zip(_texts(frame["route"]), _texts(frame["challenger_route"]), strict=True)
        self.rows += len(frame)
        self.transitions.update((a or "human", b or "human") for a, b in routes)
        for mine, theirs, label in zip(champion, challenger, labels, strict=True):
            if mine is None or theirs is None:
                continue
            self.scored += 1
            if mine == theirs:
                self.agreed += 1
            else:
                self.pairs[(mine, theirs)] += 1
            if label is not None:
                self.labelled += 1
                self.outcomes[(mine == label, theirs == label)] += 1

    def report(self, champion: str, challenger: str, *, top: int = TOP_PAIRS) -> ComparisonReport:
        auto_champion = sum(n for (a, _), n in self.transitions.items() if a == "auto")
        auto_challenger = sum(n for (_, b), n in self.transitions.items() if b == "auto")
        ordered = sorted(self.pairs.items(), key=lambda item: (-item[1], item[0]))[:top]
        test = None
        champion_accuracy = challenger_accuracy = None
        if self.labelled:
            right_champion = self.outcomes[(True, True)] + self.outcomes[(True, False)]
            right_challenger = self.outcomes[(True, True)] + self.outcomes[(False, True)]
            champion_accuracy = Proportion(right_champion, self.labelled)
            challenger_accuracy = Proportion(right_challenger, self.labelled)
            test = mcnemar(*self._paired_outcomes())
        return ComparisonReport(
            champion=champion,
            challenger=challenger,
            rows=self.rows,
            scored_rows=self.scored,
            agreement=Proportion(self.agreed, self.scored),
            transitions=dict(self.transitions),
            champion_auto=Proportion(auto_champion, self.rows),
            challenger_auto=Proportion(auto_challenger, self.rows),
            disagreements=[(a, b, n) for (a, b), n in ordered],
            labelled_rows=self.labelled,
            champion_accuracy=champion_accuracy,
            challenger_accuracy=challenger_accuracy,
            mcnemar=test,
        )

    def _paired_outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        keys = list(self.outcomes)
        counts = [self.outcomes[k] for k in keys]
        champion = np.repeat(np.array([k[0] for k in keys], dtype=bool), counts)
        challenger = np.repeat(np.array([k[1] for k in keys], dtype=bool), counts)
        return champion, challenger


def _texts(values: pd.Series) -> list[str | None]:
    """Cells as text, with every kind of missing (None, NaN, NA, an empty CSV cell) as ``None``."""
    return [v if isinstance(v, str) and v != "" else None for v in values.tolist()]


def summary_lines(report: ComparisonReport) -> list[str]:
    """The few lines the CLI prints."""
    moves = report.transitions
    lines = [
        f"{report.challenger} vs {report.champion} on {report.rows:,} rows ({report.scored_rows:,} scored)",
        f"  intent agreement {ci(report.agreement)}",
        f"  auto coverage {ci(report.champion_auto)} -> {ci(report.challenger_auto)}; routes changed: "
        f"{moves.get(('auto', 'human'), 0):,} auto->human, {moves.get(('human', 'auto'), 0):,} human->auto",
    ]
    if report.mcnemar is not None:
        lines.append(
            f"  accuracy on {report.labelled_rows:,} labelled rows: {ci(report.champion_accuracy)} -> "
            f"{ci(report.challenger_accuracy)} (McNemar p={report.mcnemar.p_value:.3g})"
        )
    if report.disagreements:
        champion, challenger, n = report.disagreements[0]
        lines.append(f"  most frequent disagreement: {champion} -> {challenger} ({n:,} rows)")
    return lines


@functools.cache
def _environment() -> jinja2.Environment:
    return template_environment("deskpilot.evaluation", {**FILTERS, "ci": ci})


def write_comparison(report: ComparisonReport, directory: Path) -> list[Path]:
    """``comparison.json``, ``comparison.md`` and ``comparison.html`` under ``directory``, each atomic."""
    directory.mkdir(parents=True, exist_ok=True)
    title = f"Batch comparison: {report.challenger} vs {report.champion}"
    context = {"r": report, "title": title, "transitions": report.to_dict()["route_transitions"]}
    written = []
    for name, text in (
        (JSON_FILE, json.dumps(report.to_dict(), indent=2) + "\n"),
        (MARKDOWN_FILE, _environment().get_template("comparison.md.j2").render(**context)),
        (HTML_FILE, _environment().get_template("comparison.html.j2").render(**context)),
    ):
        atomic_write(directory / name, text)
        written.append(directory / name)
    return written
