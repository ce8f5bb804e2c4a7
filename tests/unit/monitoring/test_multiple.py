"""Benjamini–Hochberg q-values and how a run's signals are fired from them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from deskpilot.monitoring.multiple import apply_fdr, benjamini_hochberg
from deskpilot.monitoring.types import Signal, SignalKind, SignalName


def test_bh_matches_a_hand_computed_example() -> None:
    # present p-values sorted: .005 .01 .03 .04 .5 (m = 5) → m·p/rank: .025 .025 .05 .05 .5, already monotone
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.005, None, 0.5])
    assert q[4] is None
    assert q[:4] + q[5:] == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])


def test_bh_is_monotone_where_raw_scaling_is_not() -> None:
    # m·p/rank = .04·3/2 = .06 for the second but .05·3/3 = .05 for the third: the step-up takes the minimum
    assert benjamini_hochberg([0.01, 0.04, 0.05]) == pytest.approx([0.03, 0.05, 0.05])


def test_bh_agrees_with_scipy_and_skips_nan() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=40) ** 3
    ours = benjamini_hochberg([*p.tolist(), float("nan")])
    assert ours[-1] is None
    assert ours[:-1] == pytest.approx(stats.false_discovery_control(p, method="bh").tolist())
    assert benjamini_hochberg([]) == []
    assert benjamini_hochberg([None]) == [None]


def _signal(name: SignalName, p: float | None, *, fired: bool = False, skipped: str | None = None) -> Signal:
    return Signal(name=name, kind=SignalKind.INPUT, p_value=p, fired=fired, skipped=skipped)


def test_apply_fdr_fires_tests_by_q_and_keeps_interval_signals() -> None:
    signals = [
        _signal(SignalName.CONFIDENCE, 0.0001),  # q = .0001·4/1 = .0004 → fires
        _signal(SignalName.MARGIN, 0.004),  # q = .004·4/2 = .008 → fires
        _signal(SignalName.TEXT_LENGTH, 0.009),  # q = .009·4/3 = .012 → does not, though p < .01
        _signal(SignalName.LANGUAGE, 0.8),
        _signal(SignalName.LABEL_SHIFT, None, fired=True),  # interval signal: its own decision stands
        _signal(SignalName.ACCURACY_FEEDBACK, 0.0, fired=False),  # its p-value is for the record only
        _signal(SignalName.VOCABULARY, 0.0, fired=True, skipped="window too small"),
    ]
    result = apply_fdr(signals, alpha=0.01)
    assert [s.fired for s in result] == [True, True, False, False, True, False, False]
    assert result[2].q_value == pytest.approx(0.012)
    assert result[4].q_value is None
    assert result[5].q_value is None
    assert result[6].q_value is None
    assert [s.name for s in result] == [s.name for s in signals]
