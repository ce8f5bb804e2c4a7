"""Fusion: one entry per id with every contribution summed, deterministic order, weights, convex mixing."""

from __future__ import annotations

import pytest

from deskpilot.errors import UsageError
from deskpilot.retrieval.fusion import FusionParams, convex_fusion, reciprocal_rank_fusion


def test_an_item_in_both_lists_gets_both_contributions_and_both_ranks() -> None:
    fused = reciprocal_rank_fusion(
        {"dense": [("a", 0.9), ("b", 0.8), ("c", 0.7)], "lexical": [("c", 12.0), ("d", 9.0), ("a", 3.0)]},
        k=60,
    )
    by_key = {entry.key: entry for entry in fused}
    assert len(fused) == 4
    assert by_key["a"].score == pytest.approx(1 / 61 + 1 / 63)
    assert by_key["a"].ranks == {"dense": 1, "lexical": 3}
    assert by_key["a"].scores == {"dense": 0.9, "lexical": 3.0}
    assert by_key["c"].score == pytest.approx(1 / 63 + 1 / 61)
    assert by_key["c"].ranks == {"dense": 3, "lexical": 1}
    assert by_key["b"].ranks == {"dense": 2}
    assert [entry.key for entry in fused] == ["a", "c", "b", "d"]  # a and c tie: by id


def test_the_result_does_not_depend_on_which_list_comes_last() -> None:
    """Haystack's join kept whichever duplicate it met last, losing the other list's score and rank."""
    dense = [("x", 0.5), ("y", 0.4)]
    lexical = [("y", 7.0), ("z", 6.0), ("x", 1.0)]
    one = reciprocal_rank_fusion({"dense": dense, "lexical": lexical})
    other = reciprocal_rank_fusion({"lexical": lexical, "dense": dense})
    assert one == other
    assert {e.key: e.ranks for e in one} == {
        "x": {"dense": 1, "lexical": 3},
        "y": {"dense": 2, "lexical": 1},
        "z": {"lexical": 2},
    }


def test_a_repeat_within_one_list_counts_once_at_its_best_rank() -> None:
    fused = reciprocal_rank_fusion({"dense": [("a", 0.9), ("b", 0.8), ("a", 0.1)]}, k=10)
    assert [(e.key, e.score, e.ranks) for e in fused] == [
        ("a", 1 / 11, {"dense": 1}),
        ("b", 1 / 12, {"dense": 2}),
    ]


def test_ties_are_broken_by_id_whatever_the_input_order() -> None:
    ab, ba = [("a", 1.0), ("b", 1.0)], [("b", 1.0), ("a", 1.0)]
    orders = {
        tuple(e.key for e in reciprocal_rank_fusion(lists))
        for lists in (
            {"dense": ab, "lexical": ba},
            {"dense": ba, "lexical": ab},
            {"lexical": ab, "dense": ba},
            {"lexical": ba, "dense": ab},
        )
    }
    assert orders == {("a", "b")}


def test_weights_scale_each_retrievers_contribution_and_limit_cuts() -> None:
    lists = {"dense": [("a", 0.9), ("b", 0.1)], "lexical": [("b", 5.0), ("a", 1.0)]}
    assert reciprocal_rank_fusion(lists, weights={"dense": 1.0, "lexical": 1.0})[0].key == "a"  # tie → id
    heavy = reciprocal_rank_fusion(lists, k=0, weights={"dense": 1.0, "lexical": 3.0}, limit=1)
    assert [(e.key, e.score) for e in heavy] == [("b", pytest.approx(1 / 2 + 3 / 1))]


def test_convex_fusion_mixes_scaled_scores_of_every_candidate() -> None:
    ranked = {"dense": [("a", 0.9), ("b", 0.5)], "lexical": [("b", 10.0)]}
    scores = {"dense": {"a": 0.9, "b": 0.5}, "lexical": {"b": 10.0, "a": 0.0}}
    fused = convex_fusion(ranked, scores, weights={"dense": 0.5, "lexical": 0.5}, scales={"lexical": 10.0})
    assert [(e.key, e.score) for e in fused] == [("b", pytest.approx(0.75)), ("a", pytest.approx(0.45))]
    assert fused[0].ranks == {"dense": 2, "lexical": 1}
    assert fused[1].scores == {"dense": 0.9, "lexical": 0.0}


@pytest.mark.parametrize(
    "bad",
    [
        {"rrf_k": -1},
        {"depth": 0},
        {"dense_weight": -0.5},
        {"dense_weight": 0.0, "lexical_weight": 0.0},
        {"method": "borda"},
    ],
)
def test_invalid_fusion_parameters_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        FusionParams(**bad)  # type: ignore[arg-type]


def test_fusion_parameters_round_trip() -> None:
    params = FusionParams(rrf_k=10, depth=20, dense_weight=0.9, lexical_weight=0.1, method="convex")
    assert FusionParams.from_dict(params.to_dict()) == params
