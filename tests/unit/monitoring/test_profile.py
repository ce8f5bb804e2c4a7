"""The reference profile's vocabulary baseline: counted on training texts, measured on held-out ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.monitoring.profile import ReferenceProfile, build_profile
from tests.unit.monitoring.synthetic import Desk, World


def _probs(n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    logits = rng.normal(size=(n, classes)) * 3
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_unseen_rate_is_measured_on_validation_against_a_training_vocabulary() -> None:
    train = ["refund my card please", "card arrived broken", "refund status"]
    validation = ["card refund zorblax", "status please"]  # 1 of 5 tokens is outside the training vocabulary
    rng = np.random.default_rng(0)
    profile = build_profile(
        classes=["a", "b"],
        routing_threshold=0.9,
        validation_labels=["a", "b"],
        validation_probs=_probs(2, 2, rng),
        texts=train + validation,
        train_texts=train,
        validation_texts=validation,
    )
    assert "zorblax" not in profile.vocabulary
    assert profile.vocabulary["card"] == 2
    assert profile.vocabulary_texts == 3
    assert profile.unseen_rate == pytest.approx(1 / 5)
    # texts are the sampled units: residuals 1 − 0.2·3 and 0 − 0.2·2, times n/(n−1) = 2, over 5 tokens
    assert profile.unseen_rate_error == pytest.approx(np.sqrt(2 * (0.4**2 + 0.4**2)) / 5)


def test_without_split_texts_a_seeded_held_out_fifth_plays_validation() -> None:
    world, rng = World(seed=2), np.random.default_rng(2)
    texts, labels = world.sample(500, rng)
    kwargs = {
        "classes": world.intents,
        "routing_threshold": None,
        "validation_labels": labels[:100],
        "validation_probs": _probs(100, len(world.intents), rng),
        "texts": texts,
        "seed": 5,
    }
    first, second = build_profile(**kwargs), build_profile(**kwargs)  # type: ignore[arg-type]
    assert first.vocabulary_texts == 400
    assert first.unseen_rate is not None
    assert 0 < first.unseen_rate < 0.1
    assert (first.unseen_rate, first.vocabulary) == (second.unseen_rate, second.vocabulary)
    assert first.auto_accuracy is None
    assert first.auto_rate == 0.0


def test_profile_round_trips_and_reads_profiles_without_the_new_fields(desk: Desk, tmp_path: Path) -> None:
    desk.profile.save(tmp_path)
    loaded = ReferenceProfile.load(tmp_path)
    assert loaded is not None
    assert loaded.unseen_rate == desk.profile.unseen_rate
    assert loaded.embedding is not None
    assert desk.profile.embedding is not None
    assert np.allclose(loaded.embedding.sample_array, desk.profile.embedding.sample_array)
    payload = desk.profile.to_dict()
    for key in ("vocabulary_texts", "unseen_rate", "unseen_rate_error"):
        payload.pop(key)
    older = ReferenceProfile.from_dict(payload)
    assert older.unseen_rate is None
    assert older.vocabulary_texts == 0
