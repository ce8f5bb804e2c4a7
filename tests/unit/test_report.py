"""The evaluation report: sections, escaping, self-containment, champion columns, atomic write."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from deskpilot.evaluation import plots
from deskpilot.evaluation.behavioral import parse_suite
from deskpilot.evaluation.evaluate import Evaluation, EvaluationData, EvaluationOptions, evaluate
from deskpilot.evaluation.gate import GateDecision, decide
from deskpilot.evaluation.policy import parse_policy
from deskpilot.evaluation.report import render_html, render_markdown, write_report
from deskpilot.evaluation.selective import pick_threshold
from deskpilot.models.artifact import TriageModel
from deskpilot.models.families import make_classifier
from tests.helpers import bundled_split

INJECTION = '<script>alert("pwned")</script> my card | is *lost* [here](javascript:x)'
UNSEEN_LABEL = "label_the_model_never_saw"
STAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SUITE = f"""
version: 1
tests:
  - name: obvious intents
    type: mft
    cases:
      - {{text: {json.dumps(INJECTION)}, expect: age_limit}}
      - {{text: "How do I activate my new card?", expect: activate_my_card}}
      - {{text: "My new card still has not arrived", expect: card_arrival}}
  - name: greetings do not matter
    type: inv
    cases:
      - text: I want to cancel a transfer
        variants: ["hi, I want to cancel a transfer", "cancel transfer!!"]
"""
POLICY = """
version: 1
bootstrap: 200
floors:
  accuracy: 0.99
ceilings:
  ece: 0.5
relative:
  accuracy: {max_drop: 0.01}
"""


@dataclass(frozen=True)
class Reports:
    challenger: Evaluation
    champion: Evaluation
    decision: GateDecision


def _model(
    texts: list[str], labels: list[str], val_texts: list[str], val_labels: list[str], c: float
) -> TriageModel:
    classifier = make_classifier("tfidf", {"c": c}).fit(texts, labels).calibrate(val_texts, val_labels)
    probs = classifier.predict_proba(val_texts)
    classes = np.asarray([str(x) for x in classifier.classes_], dtype=object)
    correct = classes[probs.argmax(axis=1)] == np.asarray(val_labels, dtype=object)
    return TriageModel.build(classifier, pick_threshold(probs.max(axis=1), correct, 0.9))


def build_reports() -> Reports:
    """A challenger and a weaker champion, both tfidf on a slice of the bundled data, evaluated on one set."""
    texts, labels, val_texts, val_labels = bundled_split(labels=10, per_label=50, validation_per_label=20)
    challenger_model = _model(texts, labels, val_texts, val_labels, c=10.0)
    champion_model = _model(texts[::3], labels[::3], val_texts, val_labels, c=0.5)
    eval_texts = [*val_texts, INJECTION, "something no class covers"]
    eval_labels = [*val_labels, val_labels[0], UNSEEN_LABEL]
    channel = ["email" if i % 3 else "chat" for i in range(len(eval_texts))]
    data = EvaluationData(eval_texts, eval_labels, source="bundled slice <b>", extras={"channel": channel})
    suite = parse_suite(SUITE, source="suite.yaml")
    options = EvaluationOptions(n_boot=200, latency_sample=5)
    challenger = evaluate(
        challenger_model, data, model_info={"uri": "models:/deskpilot-triage/2"}, suite=suite, options=options
    )
    champion = evaluate(
        champion_model, data, model_info={"uri": "models:/deskpilot-triage/1"}, suite=suite, options=options
    )
    decision = decide(challenger, champion, parse_policy(POLICY, source="policy.yaml"))
    return Reports(challenger, champion, decision)


@pytest.fixture(scope="module")
def reports() -> Reports:
    return build_reports()


@pytest.fixture(scope="module")
def html(reports: Reports) -> str:
    return render_html(
        reports.challenger,
        reports.champion,
        reports.decision,
        title="Challenger v2 <vs> v1",
        generated_at=STAMP,
    )


@pytest.fixture(scope="module")
def markdown(reports: Reports) -> str:
    return render_markdown(
        reports.challenger, reports.champion, reports.decision, title="Challenger v2", generated_at=STAMP
    )


def test_html_has_every_section(html: str) -> None:
    for section in (
        "gate",
        "headline",
        "cost",
        "unseen",
        "plots",
        "confusions",
        "classes",
        "slices",
        "behavioral",
    ):
        assert f'<section id="{section}">' in html
    assert '<section id="errors">' in html
    assert "models:/deskpilot-triage/2" in html
    assert "2026-01-02T03:04:05+00:00" in html
    assert UNSEEN_LABEL in html
    assert "greetings do not matter" in html
    assert html.count('src="data:image/png;base64,') == 4


def test_customer_text_is_escaped(html: str) -> None:
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    assert "bundled slice &lt;b&gt;" in html
    assert "Challenger v2 &lt;vs&gt; v1" in html


def test_html_is_self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.IGNORECASE)
    assert "@import" not in html
    assert "<link" not in html.lower()
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", html)


def test_champion_and_challenger_side_by_side(html: str, markdown: str) -> None:
    headline = html.split('<section id="headline">')[1].split("</section>", maxsplit=1)[0]
    assert "<th>challenger</th><th>champion</th><th>Δ challenger − champion</th>" in headline
    assert "models:/deskpilot-triage/1" in html
    assert "| metric | challenger | champion | Δ challenger − champion |" in markdown
    assert "champion F1" in markdown


def test_gate_table_is_coloured(html: str, reports: Reports) -> None:
    assert not reports.decision.passed  # the accuracy floor of 0.99 fails
    assert '<span class="badge fail">FAIL</span>' in html
    assert '<tr class="row-fail">' in html
    assert '<tr class="row-pass">' in html
    assert '<td class="fail">FAIL</td>' in html


def test_markdown_tables_and_escaping(markdown: str, reports: Reports) -> None:
    lines = markdown.splitlines()
    assert lines[0] == "# Challenger v2"
    for heading in (
        "## Gate decision: FAIL",
        "## Headline metrics",
        "## Top confusions",
        "## Example errors",
    ):
        assert heading in lines
    assert "|---|---:|---:|---:|" in lines
    assert "report.html" in markdown
    assert "<script" not in markdown
    escaped = '&lt;script&gt;alert("pwned")&lt;/script&gt; my card \\| is \\*lost\\* \\[here\\](javascript:x)'
    assert escaped in markdown
    # every table row has as many cells as its header
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            width = _cells(lines[i - 1])
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert _cells(lines[j]) == width, lines[j]
                j += 1
    per_class = markdown.split("## Per-class scores")[1].split("## Slices", maxsplit=1)[0]
    assert (
        sum(1 for line in per_class.splitlines() if line.startswith("| "))
        == len(reports.challenger.per_class) + 1
    )


def _cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line)) - 2


def test_per_class_table_lists_all_classes_worst_first(html: str, reports: Reports) -> None:
    table = html.split('<section id="classes">')[1].split("</section>", maxsplit=1)[0]
    positions = [table.index(f'<td class="label">{s.label}</td>') for s in reports.challenger.per_class]
    assert positions == sorted(positions)
    f1 = [s.f1 for s in reports.challenger.per_class]
    assert f1 == sorted(f1)


def test_without_champion_or_decision_or_behavioral(reports: Reports) -> None:
    alone = replace(reports.challenger, behavioral=None)
    html = render_html(alone, title="alone")
    markdown = render_markdown(alone, title="alone")
    assert '<section id="gate">' not in html
    assert "<th>champion</th>" not in html
    assert "No behavioral suite was run" in html
    assert "No behavioral suite was run" in markdown
    assert "| metric | challenger |" in markdown
    assert "champion" not in markdown.lower()


def test_write_report_is_atomic(reports: Reports, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "report"
    html_path, md_path = write_report(target, reports.challenger, title="written", generated_at=STAMP)
    assert (html_path.name, md_path.name) == ("report.html", "report.md")
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert md_path.read_text(encoding="utf-8").startswith("# written")
    before = html_path.read_bytes()

    def boom(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(target, reports.champion, title="second", generated_at=STAMP)
    assert html_path.read_bytes() == before
    assert sorted(p.name for p in target.iterdir()) == ["report.html", "report.md"]


def test_plots_are_png_and_small(reports: Reports) -> None:
    e = reports.challenger
    heatmap = plots.confusion_heatmap(e.confusion, e.labels, e.top_confusions)
    assert heatmap.startswith(b"\x89PNG")
    assert len(heatmap) < 150_000
    assert plots.reliability_diagram([plots.ReliabilitySeries("a $5 model", e.reliability)]).startswith(
        b"\x89PNG"
    )


def test_heatmap_keeps_to_the_top_confusions() -> None:
    labels = [f"class_{i:02d}" for i in range(80)]
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(20, 60, size=80)) + (rng.random((80, 80)) < 0.05) * rng.integers(
        1, 9, (80, 80)
    )
    from deskpilot.evaluation.breakdown import top_confusions

    confusions = top_confusions(matrix, labels)
    chosen = plots.heatmap_classes(confusions)
    assert 0 < len(chosen) <= plots.MAX_HEATMAP_CLASSES
    assert {confusions[0].truth, confusions[0].predicted} <= set(chosen)
    assert plots.confusion_heatmap(matrix, labels, confusions).startswith(b"\x89PNG")


def test_importing_plots_does_not_import_matplotlib() -> None:
    import subprocess
    import sys

    code = "import sys, deskpilot.evaluation.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
