"""Embedding family: frozen all-MiniLM-L6-v2 sentence embeddings (ONNX) and a multinomial linear head.

Training exports the encoder once (cached), embeds the training texts, and fits a logistic regression. With
``precision="auto"`` the int8 encoder is adopted only if, with the same head, it loses no more than
``max_int8_drop`` validation accuracy; otherwise the fp32 encoder ships. Serving needs onnxruntime and
tokenizers only: the head is stored as plain arrays.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from sklearn.linear_model import LogisticRegression

from deskpilot.models.base import Classifier, encode_labels
from deskpilot.models.encoder import ENCODER_FILE, ENCODER_INT8_FILE, TOKENIZER_FILE, OnnxSentenceEncoder

HEAD_FILE = "head.npz"
STATE_FILE = "embed_state.json"
Precision = Literal["auto", "fp32", "int8"]


class EmbeddingClassifier(Classifier):
    family = "embed"

    def __init__(
        self,
        *,
        c: float = 30.0,
        precision: Precision = "auto",
        max_int8_drop: float = 0.002,
        max_length: int = 256,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.c = c
        self.precision = precision
        self.max_int8_drop = max_int8_drop
        self.max_length = max_length
        self.batch_size = batch_size
        self.cache_dir = cache_dir

    def _fit(
        self, texts: list[str], labels: list[str], validation: tuple[Sequence[str], Sequence[str]] | None
    ) -> None:
        from deskpilot.models.encoder_export import ensure_encoder

        if self.precision not in ("auto", "fp32", "int8"):
            raise ValueError(f"precision must be auto, fp32 or int8, not {self.precision!r}")
        encoder_dir = ensure_encoder(
            Path(self.cache_dir or Path.home() / ".cache" / "deskpilot" / "encoders")
        )
        classes, targets = encode_labels(labels)
        fp32 = self._encoder(encoder_dir / ENCODER_FILE, encoder_dir / TOKENIZER_FILE)
        head = LogisticRegression(C=self.c, max_iter=5000).fit(fp32.encode(texts), targets)
        self.classes_ = classes
        self.coef_ = head.coef_.astype(np.float64)
        self.intercept_ = head.intercept_.astype(np.float64)
        self.temperature_ = 1.0
        self.int8_accuracy_drop_: float | None = None
        chosen = "int8" if self.precision == "int8" else "fp32"
        if self.precision == "auto" and validation is not None and len(validation[0]) > 0:
            int8 = self._encoder(encoder_dir / ENCODER_INT8_FILE, encoder_dir / TOKENIZER_FILE)
            index = {label: i for i, label in enumerate(classes)}
            known = [i for i, y in enumerate(validation[1]) if y in index]
            val_texts = [validation[0][i] for i in known]
            truth = np.array([index[validation[1][i]] for i in known])
            acc32 = float((self._head(fp32.encode(val_texts)).argmax(axis=1) == truth).mean())
            acc8 = float((self._head(int8.encode(val_texts)).argmax(axis=1) == truth).mean())
            self.int8_accuracy_drop_ = acc32 - acc8
            chosen = "int8" if self.int8_accuracy_drop_ <= self.max_int8_drop else "fp32"
        self.precision_ = chosen
        encoder_file = encoder_dir / (ENCODER_INT8_FILE if chosen == "int8" else ENCODER_FILE)
        self.encoder_ = self._encoder(encoder_file, encoder_dir / TOKENIZER_FILE)

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        return self._head(self.encoder_.encode(texts))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The sentence embeddings this model classifies (used by ensembles and retrieval)."""
        self._check_fitted()
        return self.encoder_.encode(texts)

    def _head(self, embeddings: np.ndarray) -> np.ndarray:
        logits: np.ndarray = embeddings.astype(np.float64) @ self.coef_.T + self.intercept_
        if logits.shape[1] == 1:
            logits = np.column_stack([np.zeros(len(logits)), logits[:, 0]])
        return logits

    def _encoder(self, model_path: Path, tokenizer_path: Path) -> OnnxSentenceEncoder:
        return OnnxSentenceEncoder(
            model_path, tokenizer_path, max_length=self.max_length, batch_size=self.batch_size
        )

    def _save(self, directory: Path) -> None:
        if self.encoder_.model_path is None:
            raise ValueError("the embedding encoder has no file to save")
        shutil.copyfile(self.encoder_.model_path, directory / ENCODER_FILE)
        shutil.copyfile(self.encoder_.tokenizer_path, directory / TOKENIZER_FILE)
        np.savez(directory / HEAD_FILE, coef=self.coef_, intercept=self.intercept_)
        state = {"precision": self.precision_, "int8_accuracy_drop": self.int8_accuracy_drop_}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def _load(cls, directory: Path, params: dict[str, Any]) -> Self:
        model = cls(**params)
        with np.load(directory / HEAD_FILE) as head:
            model.coef_ = head["coef"]
            model.intercept_ = head["intercept"]
        state = json.loads((directory / STATE_FILE).read_text())
        model.precision_ = state["precision"]
        model.int8_accuracy_drop_ = state["int8_accuracy_drop"]
        model.encoder_ = model._encoder(directory / ENCODER_FILE, directory / TOKENIZER_FILE)
        return model
