"""The edit distance an edited draft is stored with: the bit-vector algorithm agrees with the DP table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deskpilot.service.copilot import levenshtein


def table(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@given(st.text(alphabet="abc é", max_size=40), st.text(alphabet="abcd é", max_size=40))
def test_the_bit_vector_distance_equals_the_dynamic_program(a: str, b: str) -> None:
    assert levenshtein(a, b) == table(a, b) == levenshtein(b, a)


def test_known_distances() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0
    assert levenshtein("a" * 200, "b" * 200) == 200  # longer than one machine word of bits
