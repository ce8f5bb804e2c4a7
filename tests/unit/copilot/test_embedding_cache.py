"""The sentence-vector cache: encodes each distinct sentence once, stays bounded, keeps the order asked."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from deskpilot.copilot.embedding_cache import SentenceVectors


class CountingEncoder:
    """A unit vector per text from its length and first letter; records every text it is asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.extend(texts)
        rows = np.array([[len(t) + 1.0, ord(t[0]) if t else 1.0, 1.0] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_vectors_come_back_in_the_order_asked_and_each_sentence_is_encoded_once() -> None:
    encoder = CountingEncoder()
    vectors = SentenceVectors(encoder)
    first = vectors(["b", "a", "b"])
    assert encoder.asked == ["b", "a"]
    np.testing.assert_array_equal(first, encoder(["b", "a", "b"]))
    encoder.asked.clear()
    again = vectors(["a", "c", "b"])
    assert encoder.asked == ["c"]
    np.testing.assert_array_equal(again, encoder(["a", "c", "b"]))


def test_the_cache_stays_bounded_and_evicts_the_least_recently_used() -> None:
    encoder = CountingEncoder()
    vectors = SentenceVectors(encoder, capacity=3)
    vectors(["one", "two", "three"])
    vectors(["one"])  # "one" is now the most recently used
    vectors(["four"])  # evicts "two"
    assert len(vectors) == 3
    encoder.asked.clear()
    vectors(["one", "three", "four"])
    assert encoder.asked == []
    vectors(["two"])
    assert encoder.asked == ["two"]
    for n in range(50):
        vectors([f"sentence {n}", f"other {n}"])
        assert len(vectors) <= 3


def test_a_call_with_more_sentences_than_the_capacity_still_answers_every_one() -> None:
    encoder = CountingEncoder()
    vectors = SentenceVectors(encoder, capacity=2)
    texts = [f"s{n}" * (n + 1) for n in range(6)]
    np.testing.assert_array_equal(vectors(texts), encoder(texts))
    assert len(vectors) <= 2


def test_support_is_the_best_cosine_with_the_pool() -> None:
    vectors = SentenceVectors(CountingEncoder())
    assert vectors.support("abc", []) == 0.0
    assert vectors.support("abc", ["xyzxyzxyz", "abc"]) == pytest.approx(1.0)
    assert vectors.support("abc", ["xyzxyzxyz"]) < 1.0


def test_no_sentences_make_an_empty_matrix() -> None:
    assert SentenceVectors(CountingEncoder())([]).shape == (0, 0)


def test_concurrent_callers_get_their_own_rows_and_the_bound_holds() -> None:
    encoder = CountingEncoder()
    vectors = SentenceVectors(encoder, capacity=5)
    texts = [f"{chr(97 + n % 7)}{'x' * n}" for n in range(40)]

    def ask(offset: int) -> bool:
        wanted = texts[offset : offset + 6]
        return bool(np.array_equal(vectors(wanted), CountingEncoder()(wanted)))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(ask, [n % 34 for n in range(200)]))
    assert len(vectors) <= 5
