"""Seeded perturbations: each changes the text the way it says, or declines; placeholders stay intact."""

from __future__ import annotations

import random
import re

import pytest

from deskpilot.data.pii import BUILTIN_KINDS
from deskpilot.evaluation.perturb import (
    FIRST_NAMES,
    PERTURBATIONS,
    casing,
    entities,
    punctuation,
    typo,
)

TEXTS = [
    "My new card still hasn't arrived, please email me at <EMAIL>.",
    "I sent £250 to John on Monday and he never got it",
    "why was i charged twice???",
    "Card <CARD> declined",
    "ok",
]
PLACEHOLDER = re.compile(r"<[A-Z]+>")


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
@pytest.mark.parametrize("text", TEXTS)
def test_same_seed_same_output_and_never_the_input(name: str, text: str) -> None:
    perturb = PERTURBATIONS[name]
    outputs = [perturb(text, rng(seed)) for seed in range(30)]
    assert outputs == [perturb(text, rng(seed)) for seed in range(30)]
    assert all(out != text for out in outputs)


@pytest.mark.parametrize("seed", range(50))
def test_typo_changes_one_word_by_one_swap_or_drop(seed: int) -> None:
    text = "Please block my stolen card"
    out = typo(text, rng(seed))
    assert out is not None
    before, after = text.split(), out.split()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1
    word, new = changed[0]
    assert len(word) >= 4
    assert word[0] == new[0]
    assert word[-1] == new[-1]
    if len(new) == len(word):  # a swap of two adjacent inner letters
        diff = [i for i in range(len(word)) if word[i] != new[i]]
        assert len(diff) == 2
        assert diff[1] == diff[0] + 1
        assert sorted(word) == sorted(new)
    else:  # one inner letter dropped
        assert len(new) == len(word) - 1
        assert any(word[:i] + word[i + 1 :] == new for i in range(1, len(word) - 1))


@pytest.mark.parametrize("seed", range(30))
def test_typo_never_touches_placeholders(seed: int) -> None:
    out = typo("<EMAIL> <CREDENTIALS> help", rng(seed))
    assert out is not None
    assert out.startswith("<EMAIL> <CREDENTIALS> ")
    assert out != "<EMAIL> <CREDENTIALS> help"


def test_typo_declines_without_a_long_enough_word() -> None:
    assert typo("my pin is <CARD>", rng()) is None
    assert typo("", rng()) is None


def test_typo_swaps_only_letters_that_differ() -> None:
    # "committee": swapping its doubled letters would change nothing, so every output differs from the input
    assert all(typo("committee", rng(seed)) != "committee" for seed in range(100))


def test_casing_keeps_placeholders_and_uses_word_starts() -> None:
    text = "my card <CARD> hasn't come on the 3rd"
    outputs = {casing(text, rng(seed)) for seed in range(40)}
    assert outputs == {
        "MY CARD <CARD> HASN'T COME ON THE 3RD",
        "My Card <CARD> Hasn't Come On The 3rd",
    }


def test_casing_declines_when_nothing_changes() -> None:
    assert casing("123 <EMAIL> 456", rng()) is None


def test_punctuation_replaces_or_strips_only_the_end() -> None:
    text = "Where is my card?!"
    outputs = {punctuation(text, rng(seed)) for seed in range(40)}
    assert outputs == {"Where is my card", "Where is my card?", "Where is my card!", "Where is my card..."}
    bare = {punctuation("Where is my card", rng(seed)) for seed in range(40)}
    assert bare == {"Where is my card?", "Where is my card!", "Where is my card..."}


def test_punctuation_ignores_trailing_spaces_and_declines_on_punctuation_only() -> None:
    assert punctuation("hello  ", rng()) != "hello"
    assert punctuation("?!", rng()) is None
    assert punctuation("   ", rng()) is None


@pytest.mark.parametrize("seed", range(40))
def test_entities_swaps_numbers_for_numbers_of_the_same_digit_count(seed: int) -> None:
    out = entities("I asked for 100 and got 85", rng(seed))
    assert out is not None
    match = re.fullmatch(r"I asked for (\d+) and got (\d+)", out)
    assert match is not None
    first, second = match.groups()
    assert len(first) == 3
    assert len(second) == 2
    assert not first.startswith("0")
    assert not second.startswith("0")
    assert (first, second) != ("100", "85")
    assert (first == "100") != (second == "85")  # exactly one entity changes


@pytest.mark.parametrize("seed", range(20))
def test_entities_keeps_number_separators(seed: int) -> None:
    out = entities("I paid 1,250.50 today", rng(seed))
    assert out is not None
    assert re.fullmatch(r"I paid [1-9],\d{3}\.\d{2} today", out)


def test_entities_leaves_ordinals_and_glued_numbers_alone() -> None:
    assert entities("on the 3rd of the month, code A1", rng()) is None


@pytest.mark.parametrize("seed", range(20))
def test_entities_swaps_currency_symbols(seed: int) -> None:
    out = entities("It cost £", rng(seed))
    assert out in {"It cost $", "It cost €"}


@pytest.mark.parametrize("seed", range(20))
def test_entities_swaps_placeholders_for_another_builtin_kind(seed: int) -> None:
    out = entities("reach me at <EMAIL>", rng(seed))
    assert out is not None
    kinds = PLACEHOLDER.findall(out)
    assert len(kinds) == 1
    assert kinds[0] != "<EMAIL>"
    assert kinds[0][1:-1] in BUILTIN_KINDS


@pytest.mark.parametrize("seed", range(20))
def test_entities_swaps_first_names(seed: int) -> None:
    out = entities("Sarah sent it", rng(seed))
    assert out is not None
    name = out.removesuffix(" sent it")
    assert name in FIRST_NAMES
    assert name != "Sarah"


def test_entities_declines_without_entities_and_ignores_names_inside_words() -> None:
    assert entities("my card has not arrived", rng()) is None
    assert entities("Annabelle and Johnny wrote", rng()) is None
    assert entities("<NAME> wrote", rng()) is None  # a custom placeholder is protected, not swapped


def test_every_entity_kind_gets_picked_over_seeds() -> None:
    text = "John paid £40 to <PHONE>"
    outputs = [entities(text, rng(seed)) for seed in range(100)]
    assert any(o is not None and not o.startswith("John") for o in outputs)
    assert any(o is not None and "£" not in o for o in outputs)
    assert any(o is not None and "40" not in o for o in outputs)
    assert any(o is not None and "<PHONE>" not in o for o in outputs)
