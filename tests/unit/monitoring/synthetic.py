"""A synthetic support desk for the monitoring tests: intents with their own vocabulary, a Zipfian filler
vocabulary with a long tail (so a held-out vocabulary misses some words, as real ones do), pairs of
intents that share words (so the model confuses them), a TF-IDF + logistic model, its reference profile,
and windows of logged decisions drawn fresh from the same world or from a shifted one.

Fresh draws matter: windows resampled from one finite pool would share that pool's own deviation from the
world, and false-alarm rates measured on them would be off.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from deskpilot.monitoring.profile import ReferenceProfile, build_profile
from deskpilot.monitoring.textstats import tokenize
from deskpilot.monitoring.types import Window

OTHER = "__other__"


def _words(spaced: str) -> list[str]:
    return spaced.split()


_COMMON = _words(
    "the to my is it for can you how and please help me with on was not this have what why need get "
    "account thanks hello hi there just still again today yesterday already would like know when been"
)
_SPANISH = _words("el la que de en los por una para mi con del las es se no como")
_SYLLABLES = _words("ka lo mi ne ru ta be so fi da go pe vu za li mo re ki nu sa")
_TOPIC_WORDS = 8
_ENDINGS = np.array([0.5, 0.8])  # cumulative: '?' half the time, '.' 30 %, none 20 %


def _pseudo_words(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        word = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


class World:
    """The distribution tickets come from; ``prior`` is the intent mix of the reference period."""

    def __init__(self, n_intents: int = 20, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        taken = set(_COMMON)
        self.intents = [f"intent_{i:02d}" for i in range(n_intents)]
        self.topics = [_pseudo_words(rng, _TOPIC_WORDS, taken) for _ in self.intents]
        self.new_topic = _pseudo_words(rng, _TOPIC_WORDS, taken)
        self.filler = _COMMON + _pseudo_words(rng, 1500, taken)
        ranks = np.arange(1, len(self.filler) + 1)
        weights = 1 / ranks**1.05
        self._filler_cdf = np.cumsum(weights / weights.sum())
        prior = 1 / (1 + 0.15 * np.arange(n_intents))
        self.prior = prior / prior.sum()

    def sibling(self, k: int) -> int:
        return k ^ 1 if (k ^ 1) < len(self.intents) else k

    def sample(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        prior: np.ndarray | None = None,
        new_topic_share: float = 0.0,
        spanish_share: float = 0.0,
    ) -> tuple[list[str], list[str]]:
        """``n`` tickets and their true intents (``OTHER`` for the unseen topic).

        A ticket is 4 + Poisson(7) words: its intent's topic words (28 %), its sibling intent's (8 %), and
        Zipfian filler (Spanish function words instead, for the Spanish share); random draws are made for
        the whole batch at once, which keeps fifty windows of tickets cheap.
        """
        mix = self.prior if prior is None else prior
        labels = rng.choice(len(self.intents), size=n, p=mix)
        new_topic = rng.random(n) < new_topic_share
        spanish = rng.random(n) < spanish_share
        sizes = 4 + rng.poisson(7, size=n)
        ends = np.cumsum(sizes)
        total = int(ends[-1]) if n else 0
        kinds = np.searchsorted([0.28, 0.36], rng.random(total), side="right")
        picks = rng.integers(_TOPIC_WORDS, size=total)
        filler = np.minimum(np.searchsorted(self._filler_cdf, rng.random(total)), len(self.filler) - 1)
        anchor = rng.integers(_TOPIC_WORDS, size=n)
        email = rng.random(n) < 0.05
        endings = np.searchsorted(_ENDINGS, rng.random(n))
        texts, truth = [], []
        for t in range(n):
            k = int(labels[t])
            topic = self.new_topic if new_topic[t] else self.topics[k]
            other = self.new_topic if new_topic[t] else self.topics[self.sibling(k)]
            start = int(ends[t] - sizes[t])
            words = []
            for kind, pick, fill in zip(
                kinds[start : ends[t]], picks[start : ends[t]], filler[start : ends[t]], strict=True
            ):
                if kind == 0:
                    words.append(topic[pick])
                elif kind == 1:
                    words.append(other[pick])
                elif spanish[t]:
                    words.append(_SPANISH[pick % len(_SPANISH)])
                else:
                    words.append(self.filler[fill])
            words[int(picks[start]) % len(words)] = topic[anchor[t]]
            if email[t]:
                words.insert(int(anchor[t]) % len(words), "<EMAIL>")
            text = " ".join(words)
            texts.append(text[:1].upper() + text[1:] + ("?", ".", "")[int(endings[t])])
            truth.append(OTHER if new_topic[t] else self.intents[k])
        return texts, truth


class HashEmbedder:
    """A stand-in sentence encoder: the mean of fixed random vectors of the tokens, normalised."""

    def __init__(self, dimensions: int = 48) -> None:
        self.dimensions = dimensions
        self._vectors: dict[str, np.ndarray] = {}

    def _vector(self, token: str) -> np.ndarray:
        if token not in self._vectors:
            rng = np.random.default_rng(zlib.crc32(token.encode()))
            self._vectors[token] = rng.standard_normal(self.dimensions)
        return self._vectors[token]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            tokens = tokenize(text) or ["<empty>"]
            vector = np.mean([self._vector(token) for token in tokens], axis=0)
            rows.append(vector / max(float(np.linalg.norm(vector)), 1e-9))
        return np.asarray(rows)


@dataclass
class Desk:
    """A trained model on the world and its reference profile."""

    world: World
    model: Pipeline
    classes: list[str]
    threshold: float
    profile: ReferenceProfile
    embedder: HashEmbedder

    def window(
        self,
        texts: list[str],
        truth: list[str],
        rng: np.random.Generator,
        *,
        audit_rate: float = 0.1,
        human_feedback_rate: float = 0.6,
    ) -> Window:
        """Decisions on ``texts`` as the service would log them, with agents' verdicts on a share of human
        routes and on a random audit sample of auto routes."""
        probs = self.model.predict_proba(texts)
        order = np.sort(probs, axis=1)
        confidence, margin = order[:, -1], order[:, -1] - order[:, -2]
        intents = [self.classes[i] for i in probs.argmax(axis=1)]
        auto = confidence >= self.threshold
        review = auto & (rng.random(len(texts)) < audit_rate)
        gets_verdict = review | (~auto & (rng.random(len(texts)) < human_feedback_rate))
        now = datetime(2025, 1, 1, tzinfo=UTC)
        return Window(
            tenant=None,
            start=now,
            end=now,
            texts=texts,
            intents=intents,
            confidence=confidence,
            margin=margin,
            auto=auto,
            review_sample=review,
            correct_intent=[t if v else None for t, v in zip(truth, gets_verdict, strict=True)],
        )

    def draw(
        self, n: int, seed: int, transform: Callable[[str], str] | None = None, **shift: object
    ) -> Window:
        rng = np.random.default_rng(seed)
        texts, truth = self.world.sample(n, rng, **shift)  # type: ignore[arg-type]
        if transform is not None:
            texts = [transform(text) for text in texts]
        return self.window(texts, truth, rng)

    def projected(self, window: Window) -> np.ndarray:
        assert self.profile.embedding is not None
        return self.profile.embedding.project(self.embedder.embed(window.texts))


def pick_threshold(confidence: np.ndarray, correct: np.ndarray, precision: float = 0.97) -> float:
    """The lowest confidence whose auto routes (everything at or above it) reach ``precision``."""
    order = np.argsort(-confidence)
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    good = np.nonzero(running >= precision)[0]
    return float(confidence[order][good[-1]]) if good.size else 1.0


def build_desk(seed: int = 0, n_train: int = 4000, n_validation: int = 2000) -> Desk:
    world = World(seed=seed)
    rng = np.random.default_rng(seed + 1)
    train_texts, train_labels = world.sample(n_train, rng)
    validation_texts, validation_labels = world.sample(n_validation, rng)
    model = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, min_df=2),
        LogisticRegression(C=3.0, solver="saga", tol=1e-3, max_iter=300),
    )
    model.fit(train_texts, train_labels)
    classes = [str(c) for c in model.classes_]
    probs = model.predict_proba(validation_texts)
    correct = np.asarray(classes)[probs.argmax(axis=1)] == np.asarray(validation_labels)
    threshold = pick_threshold(probs.max(axis=1), correct)
    embedder = HashEmbedder()
    profile = build_profile(
        classes=classes,
        routing_threshold=threshold,
        validation_labels=validation_labels,
        validation_probs=probs,
        texts=train_texts + validation_texts,
        embedder=embedder,
        seed=seed,
        train_texts=train_texts,
        validation_texts=validation_texts,
    )
    return Desk(world, model, classes, threshold, profile, embedder)


def wrapper(text: str) -> str:
    """A mail client's template around every ticket (a new channel was connected)."""
    return f"Sent from my phone. {text} Reply above this line"


def lower_truncated(text: str) -> str:
    """An upstream form that lower-cases and cuts tickets to 30 characters."""
    return text.lower()[:30]


def skewed_prior(world: World, boost: Sequence[int] = (15, 16, 17), share: float = 0.5) -> np.ndarray:
    """The reference mix with ``share`` of the mass moved onto a few (rare) intents."""
    prior = world.prior * (1 - share)
    prior[list(boost)] += share / len(boost)
    return prior


def profile_with_validation(desk: Desk, n_validation: int, seed: int) -> ReferenceProfile:
    """The desk's model profiled on a fresh validation sample of another size (text side reused)."""
    rng = np.random.default_rng(seed)
    texts, labels = desk.world.sample(n_validation, rng)
    return build_profile(
        classes=desk.classes,
        routing_threshold=desk.threshold,
        validation_labels=labels,
        validation_probs=desk.model.predict_proba(texts),
        texts=desk.profile.sample_texts,
        seed=seed,
    )
