"""The vocabulary and language signals tokenize a seeded sample of a large window, not every text."""

from __future__ import annotations

from dataclasses import replace

from deskpilot.monitoring.signals.text import language_signal, sample_texts, vocabulary_signal
from deskpilot.monitoring.types import Window
from tests.unit.monitoring.synthetic import Desk


def half_drifted(desk: Desk, n: int) -> Window:
    """Every other ticket in Spanish with words the reference never saw, so each sample differs."""
    window = desk.draw(n, seed=5)
    texts = [
        f"hola el cliente que zorblax quiere {text}" if i % 2 else text for i, text in enumerate(window.texts)
    ]
    return replace(window, texts=texts)


def test_the_cap_is_applied_and_the_window_size_still_reported(desk: Desk) -> None:
    window = half_drifted(desk, 1_000)
    for signal in (
        vocabulary_signal(desk.profile, window, max_texts=200, seed=3),
        language_signal(desk.profile, window, max_texts=200, seed=3),
    ):
        assert signal.detail["sampled"] == 200
        assert signal.n_window == 1_000
        assert signal.detail["sample_error"] > 0


def test_the_sample_is_deterministic_for_a_seed_and_changes_with_it(desk: Desk) -> None:
    window = half_drifted(desk, 1_000)
    for signal_of in (vocabulary_signal, language_signal):
        first = signal_of(desk.profile, window, max_texts=200, seed=3)
        again = signal_of(desk.profile, window, max_texts=200, seed=3)
        other = signal_of(desk.profile, window, max_texts=200, seed=4)
        assert (first.statistic, first.p_value, first.detail) == (
            again.statistic,
            again.p_value,
            again.detail,
        )
        assert first.statistic != other.statistic
    assert sample_texts(window.texts, 200, seed=3) == sample_texts(window.texts, 200, seed=3)


def test_a_window_under_the_cap_is_read_whole(desk: Desk) -> None:
    window = half_drifted(desk, 300)
    capped = vocabulary_signal(desk.profile, window, max_texts=300, seed=3)
    whole = vocabulary_signal(desk.profile, window, max_texts=10_000, seed=9)
    assert capped.detail == whole.detail
    assert capped.statistic == whole.statistic
    assert whole.detail["sampled"] == 300
    assert whole.detail["sample_error"] == 0.0
    assert language_signal(desk.profile, window, seed=9).detail["sample_error"] == 0.0
    assert sample_texts(window.texts, 300, seed=1) == window.texts
