"""Behavioral suites: the file format and its errors, pass-rate arithmetic, skipping, batching, seeding."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from deskpilot.errors import SuiteError
from deskpilot.evaluation.behavioral import (
    BatchOutcome,
    BehavioralSuite,
    BehaviorType,
    Expectation,
    Failure,
    GeneratedSpec,
    generated_tests,
    load_suite,
    parse_suite,
    run_suite,
)

KEYWORDS = {"stolen": "lost_or_stolen_card", "pin": "change_pin", "card": "card_arrival"}  # first match wins
CLASSES = [*KEYWORDS.values(), "other"]


class KeywordModel:
    """A fake model: the first keyword found decides the intent; no keyword means low confidence."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> BatchOutcome:
        self.calls.append(list(texts))
        intents, confidence = [], []
        for text in texts:
            intent = next((i for k, i in KEYWORDS.items() if k in text.lower()), "other")
            intents.append(intent)
            confidence.append(0.3 if intent == "other" else 0.95)
        conf = np.array(confidence)
        return BatchOutcome(intents, conf, conf >= 0.5)


def suite(body: str) -> BehavioralSuite:
    return parse_suite(textwrap.dedent(body), source="suite.yaml")


ARITHMETIC = """\
    version: 1
    tests:
      - name: basics
        type: mft
        cases:
          - {text: "where is my card", expect: card_arrival}
          - {text: "change my pin", expect: change_pin}
          - {text: "hello there", expect: change_pin}
          - {text: "my card", expect: not_in_this_model}
      - name: invariance
        type: inv
        cases:
          - {text: "where is my card", variants: ["hi, where is my card", "where is my PIN"]}
      - name: directional
        type: dir
        cases:
          - {text: "what's the weather", expect_route: human}
          - {text: "my card", variant: "my card was stolen", expect_intent: lost_or_stolen_card}
          - {text: "my card", variant: "my card again", expect_intent: card_arrival}
          - {text: "my card", variant: "hmm", expect: lower_confidence}
          - {text: "hmm", variant: "my card", expect: lower_confidence}
          - {text: "hmm", variant: "my card", expect: higher_confidence}
          - {text: "my card", variant: "my pin", expect_intent: not_in_this_model}
"""


def test_pass_rates_match_hand_computed_values() -> None:
    result = run_suite(suite(ARITHMETIC), KeywordModel(), classes=CLASSES)
    by_name = {t.name: t for t in result.tests}
    mft, inv, dir_ = by_name["basics"], by_name["invariance"], by_name["directional"]
    assert (mft.total, mft.passed, mft.skipped, mft.failed) == (4, 2, 1, 1)
    assert (inv.total, inv.passed, inv.skipped, inv.failed) == (2, 1, 0, 1)
    assert (dir_.total, dir_.passed, dir_.skipped, dir_.failed) == (7, 4, 1, 2)
    assert mft.pass_rate == pytest.approx(2 / 3)
    assert result.pass_rates == pytest.approx({"mft": 2 / 3, "inv": 1 / 2, "dir": 4 / 6})
    assert list(result.pass_rates) == ["mft", "inv", "dir"]


def test_failures_say_what_was_expected_and_what_came_back() -> None:
    result = run_suite(suite(ARITHMETIC), KeywordModel(), classes=CLASSES)
    failures = {t.name: t.failures for t in result.tests}
    assert failures["basics"] == (Failure("hello there", None, "change_pin", "other"),)
    assert failures["invariance"] == (
        Failure("where is my card", "where is my PIN", "card_arrival", "change_pin"),
    )
    assert failures["directional"] == (
        Failure(
            "my card", "my card again", "not card_arrival -> card_arrival", "card_arrival -> card_arrival"
        ),
        Failure("hmm", "my card", "below 0.300", "0.950"),
    )


def test_routes_are_checked_and_reported() -> None:
    body = """\
        version: 1
        tests:
          - name: routes
            type: dir
            cases:
              - {text: "my card", expect_route: human}
              - {text: "my card", expect_route: auto}
    """
    (result,) = run_suite(suite(body), KeywordModel(), classes=CLASSES).tests
    assert (result.passed, result.failed) == (1, 1)
    assert result.failures == (Failure("my card", None, "human", "auto (card_arrival, 0.950)"),)


def test_unknown_labels_are_skipped_and_an_all_skipped_type_has_no_rate() -> None:
    body = """\
        version: 1
        tests:
          - name: other model's intents
            type: mft
            cases:
              - {text: "my card", expect: card_arrival}
              - {text: "my pin", expect: change_pin}
    """
    result = run_suite(suite(body), KeywordModel(), classes=["card_arrival"])
    (test,) = result.tests
    assert (test.total, test.passed, test.skipped, test.failed) == (2, 1, 1, 0)
    assert result.pass_rates == {"mft": 1.0}
    nothing_known = run_suite(suite(body), KeywordModel(), classes=["other"])
    assert nothing_known.pass_rates == {}
    assert nothing_known.tests[0].pass_rate is None


def test_the_predictor_is_called_once_with_distinct_texts() -> None:
    model = KeywordModel()
    texts = [f"my card number {i}" for i in range(40)] * 2
    run_suite(suite(ARITHMETIC), model, classes=CLASSES, sample_texts=texts, seed=3)
    assert len(model.calls) == 1
    (batch,) = model.calls
    assert len(batch) == len(set(batch))
    assert {"where is my card", "hi, where is my card", "hmm", "my card was stolen"} <= set(batch)


def test_no_texts_means_no_prediction_call() -> None:
    model = KeywordModel()
    result = run_suite(
        BehavioralSuite("s", generated=GeneratedSpec(sample=5)), model, classes=CLASSES, sample_texts=[]
    )
    assert model.calls == []
    assert result.pass_rates == {}
    assert [t.name for t in result.tests] == [
        "generated: typo",
        "generated: casing",
        "generated: punctuation",
        "generated: entities",
    ]
    assert all(t.total == 0 and t.generated for t in result.tests)


def test_a_predictor_answering_too_few_texts_is_an_error() -> None:
    def short(texts: Sequence[str]) -> BatchOutcome:
        return BatchOutcome(["other"], np.array([0.1]), np.array([False]))

    with pytest.raises(ValueError, match="answered 1 of"):
        run_suite(suite(ARITHMETIC), short, classes=CLASSES)


def test_batch_outcome_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        BatchOutcome(["a", "b"], np.array([0.5]), np.array([True, False]))


def test_at_most_five_failure_examples_are_kept_in_suite_order() -> None:
    body = one_test("mft", *(f"{{text: 'hello {i}', expect: change_pin}}" for i in range(8)))
    (test,) = run_suite(suite(body), KeywordModel(), classes=CLASSES).tests
    assert test.failed == 8
    assert [f.text for f in test.failures] == [f"hello {i}" for i in range(5)]


SAMPLE = [f"Where is the card number {i}?" for i in range(30)] + [f"my pin {i} is wrong" for i in range(30)]


def test_generated_tests_are_seeded_and_sampled() -> None:
    spec = GeneratedSpec(sample=10, perturbations=("casing", "punctuation"))
    first = generated_tests(spec, SAMPLE, seed=7)
    assert first == generated_tests(spec, SAMPLE, seed=7)
    assert [t.name for t in first] == ["generated: casing", "generated: punctuation"]
    for test in first:
        assert test.type is BehaviorType.INV
        assert test.generated
        assert len(test.checks) == 10
        assert all(c.expectation is Expectation.SAME_INTENT and c.variant != c.text for c in test.checks)
        assert {c.text for c in test.checks} <= set(SAMPLE)
    others = [generated_tests(spec, SAMPLE, seed=s)[0].checks for s in range(8, 12)]
    assert any(checks != first[0].checks for checks in others)


def test_a_perturbation_draws_the_same_cases_whatever_else_is_generated() -> None:
    alone = generated_tests(GeneratedSpec(sample=20, perturbations=("typo",)), SAMPLE, seed=1)
    together = generated_tests(GeneratedSpec(sample=20, perturbations=("casing", "typo")), SAMPLE, seed=1)
    assert alone[0] == together[1]


def test_generated_sample_is_capped_by_distinct_texts_and_skips_inapplicable_ones() -> None:
    texts = ["ok", "ok", "  ", "pin"]  # both too short for a typo
    (typo_test,) = generated_tests(GeneratedSpec(sample=50, perturbations=("typo",)), texts, seed=0)
    assert typo_test.checks == ()
    (casing_test,) = generated_tests(GeneratedSpec(sample=50, perturbations=("casing",)), texts, seed=0)
    assert sorted(c.text for c in casing_test.checks) == ["ok", "pin"]


def test_whole_runs_are_reproducible_with_the_seed() -> None:
    body = ARITHMETIC.replace("    tests:", "    generated: {sample: 25}\n    tests:", 1)
    parsed = suite(body)
    runs = [
        run_suite(parsed, KeywordModel(), classes=CLASSES, sample_texts=SAMPLE, seed=5).to_dict()
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    other = run_suite(parsed, KeywordModel(), classes=CLASSES, sample_texts=SAMPLE, seed=6).to_dict()
    assert other["tests"] != runs[0]["tests"]
    generated = [t for t in runs[0]["tests"] if t["generated"]]
    casing = next(t for t in generated if t["name"] == "generated: casing")
    assert casing["pass_rate"] == 1.0  # the keyword model ignores case


def test_to_dict_is_json_ready() -> None:
    result = run_suite(suite(ARITHMETIC), KeywordModel(), classes=CLASSES, seed=2)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["seed"] == 2
    assert data["source"] == "suite.yaml"
    assert data["pass_rates"]["inv"] == 0.5
    first = data["tests"][0]
    assert first == {
        "name": "basics",
        "type": "mft",
        "generated": False,
        "total": 4,
        "passed": 2,
        "failed": 1,
        "skipped": 1,
        "pass_rate": pytest.approx(2 / 3),
        "failures": [{"text": "hello there", "variant": None, "expected": "change_pin", "got": "other"}],
    }


def test_parsing_keeps_what_the_file_says() -> None:
    parsed = suite(
        """\
        version: 1
        generated:
          sample: 12
          perturbations: [entities, typo]
        tests:
          - name: inv
            type: inv
            description: greetings
            cases:
              - text: "my card"
                variants: ["hi, my card", "my card, thanks"]
        """
    )
    assert parsed.generated == GeneratedSpec(sample=12, perturbations=("entities", "typo"))
    (test,) = parsed.tests
    assert (test.name, test.type, test.description, test.line) == ("inv", BehaviorType.INV, "greetings", 6)
    assert [(c.text, c.variant, c.line) for c in test.checks] == [
        ("my card", "hi, my card", 10),
        ("my card", "my card, thanks", 10),
    ]
    assert suite("version: 1\ngenerated: {}\n").generated == GeneratedSpec()


HEAD = "version: 1\ntests:\n"


def one_test(kind: str, *cases: str) -> str:
    return HEAD + f"  - name: t\n    type: {kind}\n    cases:\n" + "".join(f"      - {c}\n" for c in cases)


BAD = [
    pytest.param("version: 1\ntests: [\n", 3, "not valid YAML", id="bad-yaml"),
    pytest.param("version: 1\n---\nversion: 1\n", 2, "single document", id="two-documents"),
    pytest.param("", 1, "empty", id="empty"),
    pytest.param("# only a comment\n", 1, "empty", id="comment-only"),
    pytest.param("- version\n", 1, "must be a mapping", id="top-not-mapping"),
    pytest.param("version: 1\ncolour: red\n", 2, "unknown key 'colour'", id="unknown-top-key"),
    pytest.param("version: 1\nversion: 1\n", 2, "appears twice", id="duplicate-key"),
    pytest.param("tests: []\n", 1, "missing 'version'", id="no-version"),
    pytest.param("version: 2\ngenerated: {}\n", 1, "only version 1", id="version-2"),
    pytest.param("version: true\ngenerated: {}\n", 1, "only version 1", id="version-bool"),
    pytest.param("version: [1]\ngenerated: {}\n", 1, "single value", id="version-list"),
    pytest.param("version: 1\n", 1, "no tests", id="nothing-to-run"),
    pytest.param(HEAD + "  {}\n", 3, "non-empty list", id="tests-not-list"),
    pytest.param("version: 1\ntests: []\n", 2, "non-empty list", id="tests-empty"),
    pytest.param(HEAD + "  - just a string\n", 3, "must be a mapping", id="test-not-mapping"),
    pytest.param(
        HEAD + "  - {name: t, type: mft, cases: [], owner: me}\n", 3, "unknown key 'owner'", id="test-key"
    ),
    pytest.param(HEAD + "  - {type: mft, cases: [{text: a, expect: b}]}\n", 3, "needs 'name'", id="no-name"),
    pytest.param(HEAD + "  - {name: t, cases: [{text: a, expect: b}]}\n", 3, "needs 'type'", id="no-type"),
    pytest.param(HEAD + "  - {name: t, type: mft}\n", 3, "needs 'cases'", id="no-cases"),
    pytest.param(
        HEAD + "  - {name: 12, type: mft, cases: [{text: a, expect: b}]}\n", 3, "name must be", id="name-int"
    ),
    pytest.param(
        HEAD + "  - name: t\n    type: smoke\n    cases: [{text: a}]\n", 4, "unknown test type", id="type"
    ),
    pytest.param(
        HEAD + "  - {name: t, type: mft, cases: []}\n", 3, "cases must be a non-empty list", id="no-case"
    ),
    pytest.param(
        HEAD + "  - {name: t, type: mft, description: [x], cases: [{text: a, expect: b}]}\n",
        3,
        "description must be a single value",
        id="description-list",
    ),
    pytest.param(
        HEAD + "  - {name: t, type: mft, cases: [{text: a, expect: b}]}\n"
        "  - {name: t, type: mft, cases: [{text: c, expect: d}]}\n",
        4,
        "used twice",
        id="duplicate-name",
    ),
    pytest.param(
        HEAD + "  - {name: 'generated: typo', type: inv, cases: [{text: a, variants: [b]}]}\n",
        3,
        "reserved",
        id="reserved-name",
    ),
    pytest.param(one_test("mft", "just text"), 6, "must be a mapping", id="case-not-mapping"),
    pytest.param(one_test("mft", "{expect: card_arrival}"), 6, "needs 'text'", id="case-no-text"),
    pytest.param(
        one_test("mft", "{text: a, expect: b}", "{text: c}"), 7, "needs 'expect'", id="mft-no-expect"
    ),
    pytest.param(
        one_test("mft", "{text: a, expect: b, variants: [c]}"), 6, "unknown key 'variants'", id="mft-key"
    ),
    pytest.param(one_test("mft", "{text: '', expect: b}"), 6, "non-empty text", id="empty-text"),
    pytest.param(one_test("mft", "{text: 2024, expect: b}"), 6, "quote", id="text-number"),
    pytest.param(one_test("mft", "{text: a, expect: [b]}"), 6, "single value", id="expect-list"),
    pytest.param(
        one_test("mft", "{text: a, expect: b, text: c}"), 6, "appears twice", id="case-duplicate-key"
    ),
    pytest.param(one_test("inv", "{text: a}"), 6, "needs 'variants'", id="inv-no-variants"),
    pytest.param(one_test("inv", "{text: a, variants: b}"), 6, "non-empty list", id="variants-not-list"),
    pytest.param(
        one_test("inv", "text: a\n        variants:\n          - b\n          - a"), 9, "differ", id="same"
    ),
    pytest.param(one_test("inv", "{text: a, variants: [b, 3]}"), 6, "a variant must be", id="variant-int"),
    pytest.param(one_test("dir", "{text: a}"), 6, "needs expect_route", id="dir-nothing"),
    pytest.param(one_test("dir", "{text: a, variant: b}"), 6, "needs expect_route", id="dir-variant-only"),
    pytest.param(
        one_test("dir", "{text: a, expect: lower_confidence}"), 6, "needs expect_route", id="no-variant"
    ),
    pytest.param(
        one_test("dir", "{text: a, variant: b, expect_route: human}"),
        6,
        "needs expect_route",
        id="route-variant",
    ),
    pytest.param(
        one_test("dir", "{text: a, variant: b, expect: lower_confidence, expect_intent: c}"),
        6,
        "needs expect_route",
        id="two-expectations",
    ),
    pytest.param(one_test("dir", "{text: a, expect_route: robot}"), 6, "auto or human", id="bad-route"),
    pytest.param(
        one_test("dir", "{text: a, variant: b, expect: bigger}"), 6, "lower_confidence", id="bad-expect"
    ),
    pytest.param(
        one_test("dir", "{text: a, expect_intent: b}"), 6, "needs expect_route", id="intent-no-variant"
    ),
    pytest.param("version: 1\ngenerated: [typo]\n", 2, "must be a mapping", id="generated-list"),
    pytest.param("version: 1\ngenerated: {seed: 3}\n", 2, "unknown key 'seed'", id="generated-key"),
    pytest.param("version: 1\ngenerated:\n  sample: 0\n", 3, "at least 1", id="sample-zero"),
    pytest.param("version: 1\ngenerated:\n  sample: many\n", 3, "at least 1", id="sample-text"),
    pytest.param("version: 1\ngenerated:\n  sample: true\n", 3, "at least 1", id="sample-bool"),
    pytest.param(
        "version: 1\ngenerated:\n  perturbations:\n    - typo\n    - shout\n", 5, "'shout'", id="perturbation"
    ),
    pytest.param("version: 1\ngenerated:\n  perturbations: [typo, typo]\n", 3, "repeated", id="repeated"),
    pytest.param("version: 1\ngenerated:\n  perturbations: []\n", 3, "non-empty list", id="no-perturbations"),
]


@pytest.mark.parametrize(("body", "line", "fragment"), BAD)
def test_malformed_suites_name_the_file_and_line(body: str, line: int, fragment: str) -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite(body, source="suite.yaml")
    error = caught.value
    assert error.message.startswith(f"suite.yaml:{line}: "), error.message
    assert fragment in error.message
    assert error.details == {"file": "suite.yaml", "line": line}
    assert error.code == "behavioral_suite_invalid"


def test_load_suite_reads_files_and_names_them(tmp_path: Path) -> None:
    good = tmp_path / "suite.yaml"
    good.write_text(one_test("mft", "{text: my card, expect: card_arrival}"), encoding="utf-8")
    assert load_suite(good).source == str(good)
    good.write_text(one_test("mft", "{text: my card}"), encoding="utf-8")
    with pytest.raises(SuiteError, match=rf"^{re.escape(str(good))}:6: an mft case needs 'expect'"):
        load_suite(good)
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00version")
    with pytest.raises(SuiteError, match="cannot read"):
        load_suite(binary)
