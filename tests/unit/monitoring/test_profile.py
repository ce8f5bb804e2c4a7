"""The reference profile's vocabulary baseline: counted on training texts, measured on held-out ones."""

from __future__ import annotations

import json

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


def test_profile_round_trips_and_reads_profiles_without_the_new_fields(desk: Desk) -> None:
    loaded = ReferenceProfile.from_dict(json.loads(json.dumps(desk.profile.to_dict())))
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


def test_a_confident_model_s_confidence_is_kept_at_full_precision() -> None:
    """Values piled just under 1.0 must survive the profile's JSON as they are: rounded, every reference
    value fell below the served ones and the KS tests fired on unchanged traffic (5 of 5 clean windows of
    an encoder champion in the incident drill)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from deskpilot.monitoring.signals.prediction import confidence_signal, margin_signal
    from deskpilot.monitoring.types import Window

    rng = np.random.default_rng(3)

    def confident(n: int) -> np.ndarray:
        logits = rng.normal(size=(n, 4))
        logits[:, 0] += 16.0  # a confidence of 1 - O(1e-7)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    labels = ["a"] * 400
    profile = build_profile(
        classes=["a", "b", "c", "d"],
        routing_threshold=0.9,
        validation_labels=labels,
        validation_probs=confident(400),
        texts=[f"text {i}" for i in range(400)],
    )
    profile = ReferenceProfile.from_dict(profile.to_dict())  # through the JSON it is stored as
    served = np.sort(confident(300), axis=1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    window = Window(
        tenant=None,
        start=now,
        end=now,
        texts=["x"] * 300,
        intents=["a"] * 300,
        confidence=served[:, -1],
        margin=served[:, -1] - served[:, -2],
        auto=np.ones(300, dtype=bool),
        review_sample=np.zeros(300, dtype=bool),
        correct_intent=[None] * 300,
    )
    for signal in (confidence_signal(profile, window), margin_signal(profile, window)):
        assert signal.p_value is not None
        assert signal.p_value > 0.01, signal
    rounded = replace(profile, confidence=[round(v, 6) for v in profile.confidence])
    assert (confidence_signal(rounded, window).p_value or 1.0) < 1e-6  # what the rounding did
