"""The one interface every model family implements, in scikit-learn's conventions.

``__init__`` stores hyperparameters only; ``fit`` learns and returns ``self``; learned state ends in ``_``.
Families produce logits; probabilities are the logits at the fitted temperature, so every family is
calibrated the same way and the routing threshold means the same thing whichever family made it.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from deskpilot.models.calibration import apply_temperature, fit_temperature

PARAMS_FILE = "params.json"


class NotFittedError(RuntimeError):
    """A model was asked to predict or save before ``fit``."""


class Classifier(ABC):
    """Text in, class scores out; subclasses implement ``_fit``, ``_scores``, ``_save`` and ``_load``."""

    family: ClassVar[str]
    classes_: np.ndarray
    temperature_: float = 1.0

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        validation: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> Self:
        """Learn from ``texts``/``labels``; ``validation`` serves early stopping and member weights."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if len(set(labels)) < 2:
            raise ValueError("fitting needs at least two distinct labels")
        self._fit(list(texts), list(labels), validation)
        return self

    @abstractmethod
    def _fit(
        self, texts: list[str], labels: list[str], validation: tuple[Sequence[str], Sequence[str]] | None
    ) -> None:
        """The family's learning step on validated input."""

    @abstractmethod
    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        """The family's logits for a non-empty batch of texts."""

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated logits, shape ``(len(texts), len(classes_))``; an empty batch gives zero rows."""
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.classes_)))
        return self._scores(texts)

    #: ``__init__`` arguments that say where to find things rather than how to learn (never persisted).
    runtime_arguments: ClassVar[tuple[str, ...]] = ("cache_dir",)

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters given to ``__init__``, read back by name as scikit-learn does."""
        names = inspect.signature(type(self).__init__).parameters
        return {
            name: getattr(self, name)
            for name in names
            if name != "self" and name not in self.runtime_arguments
        }

    @abstractmethod
    def _save(self, directory: Path) -> None: ...

    @classmethod
    @abstractmethod
    def _load(cls, directory: Path, params: dict[str, Any]) -> Self: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return apply_temperature(self.decision_function(texts), self.temperature_)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        scores = self.decision_function(texts)
        predicted: np.ndarray = self.classes_[scores.argmax(axis=1)]
        return predicted

    def calibrate(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        """Fit the temperature on held-out data (labels unseen in training are left out of the fit)."""
        self._check_fitted()
        index = {label: i for i, label in enumerate(self.classes_)}
        known = [i for i, label in enumerate(labels) if label in index]
        if not known:
            raise ValueError("no calibration example has a label the model knows")
        logits = self.decision_function([texts[i] for i in known])
        targets = np.array([index[labels[i]] for i in known])
        self.temperature_ = fit_temperature(logits, targets)
        return self

    def save(self, directory: Path) -> None:
        """Write a self-contained directory: hyperparameters, classes, temperature and the family's files."""
        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "family": self.family,
            "params": _jsonable(self.get_params()),
            "classes": [str(c) for c in self.classes_],
            "temperature": self.temperature_,
        }
        (directory / PARAMS_FILE).write_text(json.dumps(state, indent=2))
        self._save(directory)

    @classmethod
    def load(cls, directory: Path) -> Self:
        state = json.loads((directory / PARAMS_FILE).read_text())
        if state["family"] != cls.family:
            raise ValueError(f"{directory} holds a {state['family']!r} model, not {cls.family!r}")
        model = cls._load(directory, state["params"])
        model.classes_ = np.asarray(state["classes"], dtype=object)
        model.temperature_ = float(state["temperature"])
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet")


def encode_labels(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted class names and each label's index into them."""
    classes, targets = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    return classes.astype(object), targets


def _jsonable(value: Any) -> Any:
    """Tuples become lists (JSON has no tuples); ``__init__`` turns them back into tuples on load."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
