"""The reference profile of a model version: what its inputs and outputs looked like when it was trained.

Written at training next to the model (``reference_profile.json`` in the artifact directory, so it travels
with the version through the registry) and read by the monitor, which compares windows of logged decisions
with it. Everything in it is computed from the snapshot, whose texts are already redacted: the sample of
texts kept here never holds raw PII.

The prediction side (intent histogram, confidence and margin, auto-route rate, confusion matrix) comes from
the validation split, the rows the model did not fit on, so it is what serving looks like when nothing has
changed. The text side (lengths, languages, the sample for two-sample tests) comes from both splits. The
vocabulary comes from the training split only, and the validation split's rate of tokens outside it is the
unseen-token rate a window should show when nothing changed: measured, not assumed zero, since any finite
vocabulary misses the long tail of words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from deskpilot.errors import ArtifactError
from deskpilot.monitoring.textstats import guess_language, ratio_with_error, tokenize, unseen_counts

PROFILE_FORMAT = 1
SAMPLE_TEXTS = 2_000
VOCABULARY_SIZE = 20_000
EMBEDDING_SAMPLE = 1_000
EMBEDDING_DIMENSIONS = 32


@runtime_checkable
class Embedder(Protocol):
    """A classifier that can also return its sentence embeddings (the encoder families)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddingReference:
    """A PCA projection of the encoder's space and a sample of reference texts projected into it.

    Windows are embedded by the same model, projected with ``mean``/``components`` and compared with
    ``sample`` by an MMD test: 32 dimensions keep the kernel cheap and lose little of the signal.
    """

    mean: list[float]
    components: list[list[float]]  # k x d
    sample: list[list[float]]  # n x k

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        centred = np.asarray(embeddings, dtype=np.float64) - np.asarray(self.mean)
        return np.asarray(centred @ np.asarray(self.components).T)

    @property
    def sample_array(self) -> np.ndarray:
        return np.asarray(self.sample, dtype=np.float64)


@dataclass(frozen=True)
class ReferenceProfile:
    classes: list[str]
    routing_threshold: float | None
    n_validation: int
    n_texts: int
    intent_counts: dict[str, int]  # predicted intents on the validation split
    label_counts: dict[str, int]  # true intents on the validation split
    confidence: list[float]  # max calibrated confidence, each validation row
    margin: list[float]  # confidence minus the runner-up's, each validation row
    auto_rate: float
    validation_accuracy: float
    auto_accuracy: float | None  # accuracy of the validation rows that would be routed auto
    confusion: list[list[int]]  # [true][predicted], indexed by ``classes``
    text_lengths: list[int]  # characters, each text of the sample
    languages: dict[str, int]
    vocabulary: dict[str, int]  # document frequency of the most frequent tokens of the vocabulary texts
    sample_texts: list[str]
    embedding: EmbeddingReference | None = None
    seed: int = 0
    vocabulary_texts: int = 0  # how many texts ``vocabulary`` was counted on
    unseen_rate: float | None = None  # share of held-out tokens outside ``vocabulary``
    unseen_rate_error: float | None = None  # its standard error (texts as sampling units)
    format_version: int = PROFILE_FORMAT
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def confidence_array(self) -> np.ndarray:
        return np.asarray(self.confidence, dtype=np.float64)

    @property
    def margin_array(self) -> np.ndarray:
        return np.asarray(self.margin, dtype=np.float64)

    @property
    def confusion_array(self) -> np.ndarray:
        return np.asarray(self.confusion, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ReferenceProfile:
        data = dict(payload)
        if int(data.get("format_version", PROFILE_FORMAT)) > PROFILE_FORMAT:
            raise ArtifactError(
                f"reference profile format {data['format_version']} is newer than this DeskPilot reads "
                f"({PROFILE_FORMAT}); upgrade deskpilot"
            )
        embedding = data.pop("embedding", None)
        try:
            return cls(**data, embedding=EmbeddingReference(**embedding) if embedding else None)
        except TypeError as exc:  # a field missing or unknown: written by another (broken) version
            raise ArtifactError(f"unreadable reference profile: {exc}") from exc


def build_profile(
    *,
    classes: Sequence[str],
    routing_threshold: float | None,
    validation_labels: Sequence[str],
    validation_probs: np.ndarray,
    texts: Sequence[str],
    embedder: Embedder | None = None,
    seed: int = 0,
    train_texts: Sequence[str] | None = None,
    validation_texts: Sequence[str] | None = None,
) -> ReferenceProfile:
    """The profile of a trained model from its validation predictions and the snapshot's texts.

    ``texts`` are the snapshot's texts (both splits). Pass ``train_texts`` and ``validation_texts`` (the
    split's two sides) to count the vocabulary on the training side and its unseen-token baseline on the
    validation side; without them a seeded 80/20 split of ``texts`` plays those roles.
    """
    rng = np.random.default_rng(seed)
    class_index = {name: i for i, name in enumerate(classes)}
    probs = np.asarray(validation_probs, dtype=np.float64)
    order = np.sort(probs, axis=1)
    confidence = order[:, -1]
    margin = confidence - order[:, -2] if probs.shape[1] > 1 else confidence
    predicted = probs.argmax(axis=1)
    truth = np.asarray([class_index.get(label, -1) for label in validation_labels])
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    known = truth >= 0
    np.add.at(confusion, (truth[known], predicted[known]), 1)
    correct = predicted == truth
    auto = (
        confidence >= routing_threshold if routing_threshold is not None else np.zeros(len(probs), dtype=bool)
    )
    picked = _sample_positions(len(texts), SAMPLE_TEXTS, rng)
    sample = [texts[i] for i in picked]
    if train_texts is None or validation_texts is None:
        train_texts, validation_texts = _held_out_split(texts, rng)
    vocabulary = _vocabulary(train_texts)
    unseen_rate, unseen_error = ratio_with_error(
        *unseen_counts([tokenize(t) for t in validation_texts], set(vocabulary))
    )
    return ReferenceProfile(
        classes=list(classes),
        routing_threshold=routing_threshold,
        n_validation=len(probs),
        n_texts=len(texts),
        intent_counts=dict(Counter(classes[i] for i in predicted)),
        label_counts=dict(Counter(str(label) for label in validation_labels)),
        # full precision: a confident model piles values just under 1.0, where rounding would shift the
        # reference below every served value and make the KS tests fire on unchanged traffic
        confidence=[float(v) for v in confidence],
        margin=[float(v) for v in margin],
        auto_rate=float(auto.mean()) if len(auto) else 0.0,
        validation_accuracy=float(correct.mean()) if len(correct) else float("nan"),
        auto_accuracy=float(correct[auto].mean()) if auto.any() else None,
        confusion=confusion.tolist(),
        text_lengths=[len(text) for text in sample],
        languages=dict(Counter(guess_language(text) for text in sample)),
        vocabulary=vocabulary,
        sample_texts=sample,
        embedding=_embedding_reference(embedder, sample, rng) if embedder is not None else None,
        seed=seed,
        vocabulary_texts=len(train_texts),
        unseen_rate=unseen_rate if np.isfinite(unseen_error) else None,
        unseen_rate_error=unseen_error if np.isfinite(unseen_error) else None,
    )


def _vocabulary(texts: Sequence[str]) -> dict[str, int]:
    frequency: Counter[str] = Counter()
    for text in texts:
        frequency.update(set(tokenize(text)))
    return dict(frequency.most_common(VOCABULARY_SIZE))


def _held_out_split(texts: Sequence[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    held_out = np.zeros(len(texts), dtype=bool)
    held_out[rng.choice(len(texts), size=len(texts) // 5, replace=False)] = True
    kept = [text for text, out in zip(texts, held_out, strict=True) if not out]
    return kept, [text for text, out in zip(texts, held_out, strict=True) if out]


def _sample_positions(total: int, size: int, rng: np.random.Generator) -> np.ndarray:
    if total <= size:
        return np.arange(total)
    return np.sort(rng.choice(total, size=size, replace=False))


def _embedding_reference(
    embedder: Embedder, texts: Sequence[str], rng: np.random.Generator
) -> EmbeddingReference | None:
    """PCA of the sample's embeddings (by SVD) and the projected sample itself."""
    chosen = [texts[i] for i in _sample_positions(len(texts), EMBEDDING_SAMPLE, rng)]
    if len(chosen) < 2:
        return None
    embeddings = np.asarray(embedder.embed(chosen), dtype=np.float64)
    mean = embeddings.mean(axis=0)
    centred = embeddings - mean
    k = min(EMBEDDING_DIMENSIONS, centred.shape[0] - 1, centred.shape[1])
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:k]
    projected = centred @ components.T
    return EmbeddingReference(
        mean=[round(float(v), 6) for v in mean],
        components=np.round(components, 6).tolist(),
        sample=np.round(projected, 5).tolist(),
    )
