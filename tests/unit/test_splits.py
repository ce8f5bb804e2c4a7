"""Splits: reproducible from (digest, seed), stratified, group-aware; the leakage check finds overlaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deskpilot.data.splits import (
    carve_evaluation,
    find_leakage,
    keys_identity,
    split_around,
    split_frame,
    text_keys,
)
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


def test_the_evaluation_split_is_chosen_by_text_alone_and_stratified() -> None:
    data = frame(n_labels=4, per_label=50)
    held_out = carve_evaluation(data, root=DIGEST, fraction=0.1)
    assert data["label"].iloc[held_out.rows].value_counts().to_dict() == {f"l{i}": 5 for i in range(4)}
    shuffled = data.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = carve_evaluation(shuffled, root="cd" * 32, fraction=0.1)  # another order, another digest
    assert again.identity == held_out.identity
    assert set(shuffled["text"].iloc[again.rows]) == set(data["text"].iloc[held_out.rows])
    # the seed moves the train/validation split, never the evaluation rows
    for seed in (1, 2):
        split = split_around(data, held_out, digest=DIGEST, seed=seed)
        assert np.array_equal(split.evaluation, held_out.rows)
        sides = np.concatenate([split.train, split.validation, split.evaluation])
        assert np.array_equal(np.sort(sides), np.arange(len(data)))
        assert np.intersect1d(split.train, held_out.rows).size == 0
    first, second = (split_around(data, held_out, digest=DIGEST, seed=s) for s in (1, 2))
    assert not np.array_equal(first.validation, second.validation)


def test_duplicates_written_differently_share_a_row_id_and_a_side() -> None:
    keys = text_keys(pd.Series(["Where is my card?", "WHERE  is my card", "where is my cards"]))
    assert keys[0] == keys[1] != keys[2]
    data = frame(n_labels=2, per_label=30)
    target = data["text"].iloc[carve_evaluation(data, root=DIGEST).rows[0]]
    variants = pd.DataFrame({"text": [target.upper() + "!!", f"  {target}  ?"], "label": ["l0", "l0"]})
    grown = pd.concat([data, variants], ignore_index=True)
    held = grown["text"].iloc[carve_evaluation(grown, root=DIGEST).rows].tolist()
    assert {target, target.upper() + "!!", f"  {target}  ?"} <= set(held)


def test_a_label_keeps_two_distinct_messages_out_of_evaluation() -> None:
    data = pd.DataFrame({"text": ["a one", "a two", "b one", "b two", "b three"], "label": list("aabbb")})
    held_out = carve_evaluation(data, root=DIGEST, fraction=0.5)
    assert data["label"].iloc[held_out.rows].tolist() == ["b"]
    assert held_out.record()["rows"] == 1
    assert held_out.identity == keys_identity(held_out.keys)
