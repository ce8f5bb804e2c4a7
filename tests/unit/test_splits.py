"""Splits: reproducible from (digest, seed), stratified, group-aware; the leakage check finds overlaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deskpilot.data.splits import find_leakage, split_frame
from deskpilot.errors import UsageError

DIGEST = "ab" * 32


def frame(n_labels: int = 5, per_label: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [
                f"message number {i} for {label}" for label in range(n_labels) for i in range(per_label)
            ],
            "label": [f"l{label}" for label in range(n_labels) for _ in range(per_label)],
        }
    )


def test_same_digest_and_seed_give_the_same_split() -> None:
    data = frame()
    a = split_frame(data, digest=DIGEST, seed=7)
    b = split_frame(data, digest=DIGEST, seed=7)
    assert np.array_equal(a.train, b.train)
    assert np.array_equal(a.validation, b.validation)


def test_seed_and_digest_both_change_the_split() -> None:
    data = frame()
    base = split_frame(data, digest=DIGEST, seed=7).validation
    assert not np.array_equal(base, split_frame(data, digest=DIGEST, seed=8).validation)
    assert not np.array_equal(base, split_frame(data, digest="cd" * 32, seed=7).validation)


def test_split_is_a_stratified_partition() -> None:
    data = frame(n_labels=4, per_label=50)
    split = split_frame(data, digest=DIGEST, seed=0, validation_fraction=0.2)
    assert np.intersect1d(split.train, split.validation).size == 0
    assert np.union1d(split.train, split.validation).size == len(data)
    per_label = data["label"].iloc[split.validation].value_counts()
    assert per_label.to_dict() == {f"l{i}": 10 for i in range(4)}


def test_small_classes_keep_a_training_example() -> None:
    data = pd.DataFrame({"text": ["a one", "a two", "b one", "b two", "b three"], "label": list("aabbb")})
    split = split_frame(data, digest=DIGEST, seed=1, validation_fraction=0.5)
    assert set(data["label"].iloc[split.train]) == {"a", "b"}
    assert set(data["label"].iloc[split.validation]) == {"a", "b"}


def test_normalized_duplicates_stay_on_one_side() -> None:
    data = frame(n_labels=2, per_label=30)
    dupes = pd.DataFrame(
        {"text": ["Message number 3 for 0!", "MESSAGE   number 3 for 0"], "label": ["l0", "l0"]}
    )
    data = pd.concat([data, dupes], ignore_index=True)
    for seed in range(20):
        split = split_frame(data, digest=DIGEST, seed=seed)
        leak = find_leakage(data["text"].iloc[split.train], data["text"].iloc[split.validation])
        assert leak.clean


def test_leakage_check_reports_overlap_of_a_naive_split() -> None:
    train = pd.Series(["Where is my card?", "top up failed", "hello"])
    validation = pd.Series(["where is my card", "WHERE IS MY CARD??", "new text"])
    report = find_leakage(train, validation)
    assert not report.clean
    assert report.overlapping_texts == 1
    assert report.validation_rows == 2
    assert report.train_rows == 1
    assert report.examples == ("where is my card",)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_fraction_out_of_range_is_a_usage_error(fraction: float) -> None:
    with pytest.raises(UsageError, match="between 0 and 1"):
        split_frame(frame(), digest=DIGEST, seed=0, validation_fraction=fraction)
