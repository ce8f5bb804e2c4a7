"""The bundled Banking77 behavioral suite: it parses, speaks the dataset's intents, and covers all of them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from deskpilot.evaluation.behavioral import (
    BatchOutcome,
    BehavioralSuite,
    BehaviorType,
    Expectation,
    load_suite,
    run_suite,
)
from deskpilot.evaluation.perturb import PERTURBATIONS
from tests.helpers import BUNDLED_DATA

SUITE = BUNDLED_DATA.parent / "behavioral.yaml"


@pytest.fixture(scope="module")
def suite() -> BehavioralSuite:
    return load_suite(SUITE)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(BUNDLED_DATA)


def expected_intents(suite: BehavioralSuite, *kinds: Expectation) -> set[str]:
    return {
        str(c.expected)
        for t in suite.tests
        for c in t.checks
        if c.expectation in kinds and c.expected is not None
    }


def test_every_expected_intent_exists_in_the_data(suite: BehavioralSuite, frame: pd.DataFrame) -> None:
    unknown = expected_intents(suite, Expectation.INTENT, Expectation.MOVES_TO) - set(frame["category"])
    assert not unknown


def test_every_intent_has_a_minimum_functionality_case(suite: BehavioralSuite, frame: pd.DataFrame) -> None:
    assert set(frame["category"]) - expected_intents(suite, Expectation.INTENT) == set()


def test_the_suite_has_invariance_and_directional_cases_and_generates_all_perturbations(
    suite: BehavioralSuite,
) -> None:
    counts = {kind: sum(len(t.checks) for t in suite.tests if t.type is kind) for kind in BehaviorType}
    assert counts[BehaviorType.MFT] >= 77
    assert counts[BehaviorType.INV] >= 15
    assert counts[BehaviorType.DIR] >= 15
    kinds = {c.expectation for t in suite.tests if t.type is BehaviorType.DIR for c in t.checks}
    assert {Expectation.ROUTE, Expectation.MOVES_TO, Expectation.LOWER_CONFIDENCE} <= kinds
    assert suite.generated is not None
    assert set(suite.generated.perturbations) == set(PERTURBATIONS)


def test_suite_texts_are_written_fresh_not_copied_from_the_data(
    suite: BehavioralSuite, frame: pd.DataFrame
) -> None:
    rows = {t.strip().lower() for t in frame["text"]}
    texts = {t for test in suite.tests for c in test.checks for t in (c.text, c.variant) if t is not None}
    assert {t for t in texts if t.strip().lower() in rows} == set()


def test_the_suite_runs_over_the_data_in_one_prediction_call(
    suite: BehavioralSuite, frame: pd.DataFrame
) -> None:
    calls: list[int] = []

    def constant(texts: Sequence[str]) -> BatchOutcome:
        calls.append(len(texts))
        return BatchOutcome(
            ["card_arrival"] * len(texts), np.full(len(texts), 0.5), np.zeros(len(texts), bool)
        )

    classes = sorted(frame["category"].unique())
    result = run_suite(suite, constant, classes=classes, sample_texts=frame["text"].tolist(), seed=0)
    assert len(calls) == 1
    assert result.pass_rates["inv"] == 1.0  # a constant answer never changes
    assert result.pass_rates["mft"] == pytest.approx(1 / 77, abs=0.01)
    generated = [t for t in result.tests if t.generated]
    assert [t.name for t in generated] == [f"generated: {name}" for name in PERTURBATIONS]
    assert all(t.total > 0 for t in generated)
