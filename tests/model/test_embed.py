"""The embedding family: Classifier contract, ONNX vs torch agreement, determinism, precision choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deskpilot.models.embed import EmbeddingClassifier
from deskpilot.models.encoder import ENCODER_FILE, ENCODER_INT8_FILE, TOKENIZER_FILE, OnnxSentenceEncoder
from deskpilot.models.encoder_export import ensure_encoder, reference_embeddings
from tests.helpers import NoRedaction, bundled_split, bundled_subset


@pytest.fixture(scope="module")
def encoder_dir(encoder_cache: Path) -> Path:
    return ensure_encoder(encoder_cache)


@pytest.fixture(scope="module")
def split() -> tuple[list[str], list[str], list[str], list[str]]:
    return bundled_split(8, 30, 6)


def test_onnx_encoder_agrees_with_the_torch_model(encoder_dir: Path) -> None:
    texts = [*bundled_subset(labels=10, per_label=5)["text"].tolist(), "", "a", "x " * 400]
    reference = reference_embeddings(texts)
    fp32 = OnnxSentenceEncoder(encoder_dir / ENCODER_FILE, encoder_dir / TOKENIZER_FILE).encode(texts)
    cosine = (fp32 * reference).sum(axis=1)
    assert cosine.min() > 0.9999
    int8 = OnnxSentenceEncoder(encoder_dir / ENCODER_INT8_FILE, encoder_dir / TOKENIZER_FILE).encode(texts)
    assert (int8 * reference).sum(axis=1).mean() > 0.9


def test_batching_and_order_do_not_change_embeddings(encoder_dir: Path) -> None:
    texts = bundled_subset(labels=4, per_label=6)["text"].tolist()
    encoder = OnnxSentenceEncoder(encoder_dir / ENCODER_FILE, encoder_dir / TOKENIZER_FILE, batch_size=5)
    whole = encoder.encode(texts)
    one_by_one = np.vstack([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_contract_and_round_trip(
    encoder_cache: Path, split: tuple[list[str], list[str], list[str], list[str]], tmp_path: Path
) -> None:
    train_texts, train_labels, val_texts, val_labels = split
    model = EmbeddingClassifier(cache_dir=encoder_cache)
    assert not hasattr(model, "classes_")
    assert model.fit(train_texts, train_labels, validation=(val_texts, val_labels)) is model
    assert model.precision_ in ("fp32", "int8")
    assert model.int8_accuracy_drop_ is not None
    probs = model.predict_proba(val_texts)
    assert probs.shape == (len(val_texts), 8)
    assert (model.predict(val_texts) == np.asarray(val_labels, dtype=object)).mean() > 0.7
    model.calibrate(val_texts, val_labels).save(tmp_path / "m")
    assert "cache_dir" not in (tmp_path / "m" / "params.json").read_text()
    loaded = EmbeddingClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(val_texts), model.predict_proba(val_texts), atol=1e-6)


def test_same_data_same_model(
    encoder_cache: Path, split: tuple[list[str], list[str], list[str], list[str]]
) -> None:
    train_texts, train_labels, val_texts, _ = split
    a = EmbeddingClassifier(cache_dir=encoder_cache, precision="fp32").fit(train_texts, train_labels)
    b = EmbeddingClassifier(cache_dir=encoder_cache, precision="fp32").fit(train_texts, train_labels)
    np.testing.assert_array_equal(a.decision_function(val_texts), b.decision_function(val_texts))


def test_forced_int8_is_honoured(
    encoder_cache: Path, split: tuple[list[str], list[str], list[str], list[str]]
) -> None:
    train_texts, train_labels, _, _ = split
    model = EmbeddingClassifier(cache_dir=encoder_cache, precision="int8").fit(train_texts, train_labels)
    assert model.precision_ == "int8"
    assert model.encoder_.model_path.name == ENCODER_INT8_FILE
    with pytest.raises(ValueError, match="precision must be"):
        EmbeddingClassifier(cache_dir=encoder_cache, precision="fp16").fit(train_texts, train_labels)  # type: ignore[arg-type]


def test_training_run_is_reproducible(encoder_cache: Path, tmp_path: Path) -> None:

    from deskpilot.data.contracts import DataContract, validate_table
    from deskpilot.data.io import read_table
    from deskpilot.data.snapshots import SnapshotStore
    from deskpilot.training.run import TrainingConfig, train_on_snapshot

    bundled_subset(labels=6, per_label=20).to_csv(tmp_path / "d.csv", index=False)
    table = read_table(tmp_path / "d.csv")
    snapshot = SnapshotStore(tmp_path / "snaps").create(
        table, validate_table(table, DataContract()), NoRedaction()
    )
    config = TrainingConfig(family="embed", seed=1, cache_dir=encoder_cache)
    first = train_on_snapshot(snapshot, config).metrics
    second = train_on_snapshot(snapshot, config).metrics
    first.pop("fit_seconds")
    second.pop("fit_seconds")
    assert first == second
