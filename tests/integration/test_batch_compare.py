"""``deskpilot predict --challenger``: two registered models score the same rows, and the comparison report
agrees with an independent recount of the output file."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from scipy import stats

from deskpilot import tags
from deskpilot.rollout.state import RolloutState, Stage
from tests.helpers import bundled_subset, run_cli
from tests.integration.api_fixtures import MODEL, TrainedHome, trained_home

pytestmark = pytest.mark.slow

Z = 1.959963984540054


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("compare") / "home", versions=2, per_label=20)


def tickets() -> pd.DataFrame:
    frame = bundled_subset(labels=6, per_label=12, seed=7)
    frame["label"] = frame["label"].astype(object)
    frame.loc[frame.index[::5], "label"] = ""  # some rows carry no label
    extra = pd.DataFrame({"text": ["", "   "], "label": ["", "card_arrival"]})
    frame = pd.concat([frame, extra], ignore_index=True)
    frame.insert(0, "ticket", [f"t{i:03d}" for i in range(len(frame))])
    return frame.rename(columns={"label": "truth"})


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def recount(out: pd.DataFrame, report: dict[str, Any]) -> None:
    """Check every number of ``report`` against ``out`` (the output as text cells, "" for missing)."""
    scored = out[(out["intent"] != "") & (out["challenger_intent"] != "")]
    agree = scored["intent"] == scored["challenger_intent"]
    assert report["rows"] == len(out)
    assert report["scored_rows"] == len(scored)
    assert report["agreement"]["successes"] == int(agree.sum())
    assert (report["agreement"]["low"], report["agreement"]["high"]) == pytest.approx(
        wilson(int(agree.sum()), len(scored))
    )
    moves = Counter(zip(out["route"], out["challenger_route"], strict=True))
    assert {(t["champion"], t["challenger"]): t["rows"] for t in report["route_transitions"]} == {
        (a, b): moves[(a, b)] for a in ("auto", "human") for b in ("auto", "human")
    }
    coverage = report["auto_coverage"]
    assert coverage["champion"]["successes"] == int((out["route"] == "auto").sum())
    assert coverage["challenger"]["successes"] == int((out["challenger_route"] == "auto").sum())
    pairs = Counter(zip(scored.loc[~agree, "intent"], scored.loc[~agree, "challenger_intent"], strict=True))
    top = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert [
        (d["champion_intent"], d["challenger_intent"], d["rows"]) for d in report["top_disagreements"]
    ] == [(a, b, n) for (a, b), n in top]
    labelled = scored[scored["label"] != ""]
    champion_right = labelled["intent"] == labelled["label"]
    challenger_right = labelled["challenger_intent"] == labelled["label"]
    section = report["labelled"]
    assert section["rows"] == len(labelled) > 0
    assert section["champion_accuracy"]["successes"] == int(champion_right.sum())
    assert section["challenger_accuracy"]["successes"] == int(challenger_right.sum())
    b = int((champion_right & ~challenger_right).sum())
    c = int((~champion_right & challenger_right).sum())
    test = section["mcnemar"]
    assert (test["only_champion_correct"], test["only_challenger_correct"]) == (b, c)
    if b + c == 0:
        assert test["p_value"] == 1.0
    elif b + c < 25:
        assert test["p_value"] == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue)
    else:
        assert test["p_value"] == pytest.approx(stats.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), df=1))


def test_champion_and_the_rollouts_challenger_side_by_side_with_a_report(
    trained: TrainedHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion, challenger = trained.versions
    state = RolloutState(champion=champion, challenger=challenger, stage=Stage.SHADOW, salt="s")
    trained.registry.set_model_tag(MODEL, tags.ROLLOUT_STATE, state.to_json())
    monkeypatch.setenv("DESKPILOT_MODEL_NAME", MODEL)
    frame = tickets()
    frame.to_csv(tmp_path / "tickets.csv", index=False)
    done = run_cli(
        "predict",
        "--model",
        "@champion",
        "--challenger",
        "rollout",
        "--input",
        tmp_path / "tickets.csv",
        "--output",
        tmp_path / "scores.csv",
        "--id-column",
        "ticket",
        "--label-column",
        "truth",
        "--report",
        tmp_path / "report",
        "--json",
        home=trained.home,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    out = pd.read_csv(tmp_path / "scores.csv", dtype=str, keep_default_na=False)
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
    assert out["id"].tolist() == frame["ticket"].tolist()
    assert out["label"].tolist() == frame["truth"].tolist()
    scored = out["error"] == ""
    assert (out.loc[scored, "agrees"] == (out["intent"] == out["challenger_intent"])[scored].map(str)).all()
    assert (out.loc[~scored, "agrees"] == "").all()

    report = json.loads((tmp_path / "report" / "comparison.json").read_text())
    assert report == result["comparison"]
    assert (report["champion"], report["challenger"]) == (
        f"models:/{MODEL}/{champion}",
        f"models:/{MODEL}/{challenger}",
    )
    recount(out, report)
    assert (tmp_path / "report" / "comparison.md").read_text().startswith("# Batch comparison:")
    assert "<table>" in (tmp_path / "report" / "comparison.html").read_text()


def test_the_cli_prints_a_short_summary_and_refuses_a_report_without_a_challenger(
    trained: TrainedHome, tmp_path: Path
) -> None:
    champion, challenger = trained.versions
    tickets().to_csv(tmp_path / "tickets.csv", index=False)
    common = ["--input", tmp_path / "tickets.csv", "--output", tmp_path / "scores.parquet"]
    done = run_cli(
        "predict",
        "--model",
        f"models:/{MODEL}/{champion}",
        "--challenger",
        f"models:/{MODEL}/{challenger}",
        "--label-column",
        "truth",
        *common,
        home=trained.home,
    )
    assert done.returncode == 0, done.stderr
    assert "intent agreement" in done.stdout
    assert "accuracy on" in done.stdout
    refused = run_cli(
        "predict",
        "--model",
        f"models:/{MODEL}/{champion}",
        "--report",
        tmp_path / "r",
        *common,
        home=trained.home,
    )
    assert refused.returncode != 0
    assert "--report compares two models: give --challenger too" in refused.stderr + refused.stdout
