"""The champion/challenger comparison: the predictor's extra columns, the report's arithmetic, its files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deskpilot.batch.predictor import FramePredictor
from deskpilot.domain import RoutingThreshold
from deskpilot.evaluation.comparison import ComparisonTally, summary_lines, write_comparison
from deskpilot.models.artifact import TriageModel
from deskpilot.models.tfidf import TfidfClassifier
from tests.helpers import bundled_subset


def scored(rows: list[tuple[str | None, str, str | None, str, str | None]]) -> pd.DataFrame:
    """Rows of (intent, route, challenger intent, challenger route, label)."""
    columns = ["intent", "route", "challenger_intent", "challenger_route", "label"]
    return pd.DataFrame(rows, columns=columns)


ROWS = [
    ("card", "auto", "card", "auto", "card"),  # both right
    ("card", "auto", "topup", "human", "topup"),  # only the challenger right
    ("topup", "human", "topup", "auto", "topup"),  # both right
    ("card", "auto", "topup", "auto", "topup"),  # only the challenger right
    ("refund", "human", "card", "human", "refund"),  # only the champion right
    ("card", "human", "topup", "human", None),  # no label
    (None, "human", None, "human", "card"),  # no text: counted in rows only
]


def test_the_report_counts_agreement_routes_pairs_and_accuracy() -> None:
    tally = ComparisonTally()
    tally.add(scored(ROWS))
    report = tally.report("models:/m/1", "models:/m/2")
    assert (report.rows, report.scored_rows) == (7, 6)
    assert (report.agreement.successes, report.agreement.n) == (2, 6)
    assert report.agreement.interval == pytest.approx(_wilson(2, 6))
    assert report.transitions == {
        ("auto", "auto"): 2,
        ("auto", "human"): 1,
        ("human", "auto"): 1,
        ("human", "human"): 3,
    }
    assert (report.champion_auto.successes, report.challenger_auto.successes) == (3, 3)
    assert report.champion_auto.n == report.challenger_auto.n == 7
    assert report.disagreements == [("card", "topup", 3), ("refund", "card", 1)]
    assert report.labelled_rows == 5
    assert report.champion_accuracy is not None
    assert report.challenger_accuracy is not None
    assert (report.champion_accuracy.successes, report.challenger_accuracy.successes) == (3, 4)
    assert report.mcnemar is not None
    assert (report.mcnemar.only_champion_correct, report.mcnemar.only_challenger_correct) == (1, 2)
    assert report.mcnemar.p_value == pytest.approx(stats.binomtest(1, 3, 0.5).pvalue)


def test_chunks_add_up_and_missing_values_in_every_form_are_missing() -> None:
    whole = ComparisonTally()
    whole.add(scored(ROWS))
    split = ComparisonTally()
    as_read = scored(ROWS).astype(object)
    as_read.loc[6, ["intent", "challenger_intent"]] = [float("nan"), ""]  # JSONL NaN, CSV empty cell
    as_read.loc[5, "label"] = ""
    split.add(as_read.iloc[:3])
    split.add(as_read.iloc[3:])
    assert split.report("a", "b") == whole.report("a", "b")


def test_without_labels_there_is_no_accuracy_and_the_summary_says_little() -> None:
    tally = ComparisonTally()
    tally.add(scored([(a, b, c, d, None) for a, b, c, d, _ in ROWS]))
    report = tally.report("models:/m/1", "models:/m/2")
    assert report.labelled_rows == 0
    assert report.mcnemar is None
    assert report.champion_accuracy is None
    assert report.to_dict()["labelled"] == {
        "rows": 0,
        "champion_accuracy": None,
        "challenger_accuracy": None,
        "mcnemar": None,
    }
    lines = summary_lines(report)
    assert lines[1] == "  intent agreement 33.3% [9.7%, 70.0%]"
    assert not any("accuracy" in line for line in lines)


def test_many_discordant_rows_use_the_chi_square_form() -> None:
    rows = [("a", "auto", "b", "auto", "b")] * 30 + [("a", "auto", "b", "auto", "a")] * 10
    tally = ComparisonTally()
    tally.add(scored(rows))
    test = tally.report("x", "y").mcnemar
    assert test is not None
    assert test.method == "chi2"
    assert test.statistic == pytest.approx((abs(10 - 30) - 1) ** 2 / 40)


def test_report_files_escape_what_the_data_says(tmp_path: Path) -> None:
    rows = [("a|b", "auto", "<script>x</script>", "human", "a|b")]
    tally = ComparisonTally()
    tally.add(scored(rows))
    report = tally.report("models:/m/1", "models:/m/2")
    written = write_comparison(report, tmp_path / "report")
    assert sorted(p.name for p in written) == ["comparison.html", "comparison.json", "comparison.md"]
    assert json.loads((tmp_path / "report" / "comparison.json").read_text()) == json.loads(
        json.dumps(report.to_dict())
    )
    markdown = (tmp_path / "report" / "comparison.md").read_text()
    assert "| a\\|b | &lt;script&gt;x&lt;/script&gt; | 1 |" in markdown
    html = (tmp_path / "report" / "comparison.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "0.0% [0.0%, 79.3%]" in markdown  # agreement 0 of 1, with its interval


def test_the_predictor_scores_both_models_on_the_same_redacted_rows() -> None:
    frame = bundled_subset(labels=4, per_label=20)
    threshold = RoutingThreshold(0.5, 0.97, 0.5, 0.98, 100)
    champion = TriageModel.build(
        TfidfClassifier().fit(frame["text"].tolist(), frame["label"].tolist()), threshold
    )
    half = frame.groupby("label").head(5)
    challenger = TriageModel.build(
        TfidfClassifier().fit(half["text"].tolist(), half["label"].tolist()), threshold
    )
    texts = [*frame["text"].sample(12, random_state=2), "", None]
    chunk = pd.DataFrame({"id": range(len(texts)), "text": texts, "label": ["x"] * len(texts)})
    out = FramePredictor(champion, challenger=challenger, label_column="label")(chunk)
    assert list(out.columns) == [
        "id",
        "text",
        "label",
        "intent",
        "confidence",
        "route",
        "alternatives",
        "error",
        "challenger_intent",
        "challenger_confidence",
        "challenger_route",
        "agrees",
    ]
    scorable = out["error"].isna()
    clean = [t for t in texts if isinstance(t, str) and t.strip()]
    expected = challenger.predict(clean)
    assert out.loc[scorable, "challenger_intent"].tolist() == [p.intent for p in expected]
    assert out.loc[scorable, "challenger_confidence"].tolist() == pytest.approx(
        [p.confidence for p in expected], abs=1e-6
    )
    assert (
        out.loc[scorable, "agrees"].tolist()
        == (out.loc[scorable, "intent"] == out.loc[scorable, "challenger_intent"]).tolist()
    )
    assert out.loc[~scorable, "agrees"].isna().all()
    assert (out.loc[~scorable, "challenger_route"] == "human").all()
    assert np.isin(out.loc[scorable, "challenger_route"], ["auto", "human"]).all()


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half
