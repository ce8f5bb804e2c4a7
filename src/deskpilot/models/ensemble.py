"""Ensemble family: members of other families, each calibrated, combined with weights fit on validation.

``combine="logpool"`` adds the members' log-probabilities with the weights (a product of experts, sharper
where members agree); ``"mean"`` averages their probabilities. Weights live on the simplex and minimize the
validation negative log-likelihood; the ensemble is then calibrated as a whole like any other family,
because a combination of calibrated members is itself not calibrated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, logsumexp, softmax

from deskpilot.models.base import Classifier
from deskpilot.models.families import family_class, make_classifier

WEIGHTS_FILE = "ensemble.json"
Combine = Literal["logpool", "mean"]


class EnsembleClassifier(Classifier):
    family = "ensemble"

    def __init__(
        self,
        *,
        members: Sequence[str] = ("tfidf", "embed"),
        member_params: dict[str, dict[str, Any]] | None = None,
        combine: Combine = "logpool",
        cache_dir: str | Path | None = None,
    ) -> None:
        self.members = tuple(members)
        self.member_params = member_params or {}
        self.combine = combine
        self.cache_dir = cache_dir

    def _fit(
        self, texts: list[str], labels: list[str], validation: tuple[Sequence[str], Sequence[str]] | None
    ) -> None:
        if validation is None or len(validation[0]) == 0:
            raise ValueError(
                "an ensemble needs validation data to calibrate its members and fit their weights"
            )
        if self.combine not in ("logpool", "mean"):
            raise ValueError(f"combine must be logpool or mean, not {self.combine!r}")
        if not self.members or "ensemble" in self.members:
            raise ValueError("an ensemble needs one or more non-ensemble members")
        fitted: list[Classifier] = []
        for name in self.members:
            member = make_classifier(name, self.member_params.get(name, {}), cache_dir=self.cache_dir)
            fitted.append(member.fit(texts, labels, validation=validation))
        self._combine_fitted(fitted, validation)

    @classmethod
    def from_fitted(
        cls,
        members: Sequence[Classifier],
        validation: tuple[Sequence[str], Sequence[str]],
        *,
        combine: Combine = "logpool",
    ) -> EnsembleClassifier:
        """An ensemble of already-trained members (trained on the same split); only the weights are fit."""
        model = cls(members=[m.family for m in members], combine=combine)
        return model._combine_fitted(list(members), validation)

    def _combine_fitted(
        self, members: list[Classifier], validation: tuple[Sequence[str], Sequence[str]]
    ) -> Self:
        for member in members:
            member.calibrate(*validation)
        classes = members[0].classes_
        if any(list(m.classes_) != list(classes) for m in members):
            raise ValueError("ensemble members disagree on the classes")
        self.members_ = members
        self.classes_ = classes
        self.temperature_ = 1.0
        index = {label: i for i, label in enumerate(classes)}
        known = [i for i, y in enumerate(validation[1]) if y in index]
        log_probs = self._member_log_probs([validation[0][i] for i in known])
        targets = np.array([index[validation[1][i]] for i in known])
        self.weights_ = self._fit_weights(log_probs, targets)
        return self

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        return self._combine(self._member_log_probs(texts), self.weights_)

    def _member_log_probs(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([np.log(np.clip(m.predict_proba(texts), 1e-12, None)) for m in self.members_])

    def _combine(self, log_probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if self.combine == "logpool":
            combined: np.ndarray = np.tensordot(weights, log_probs, axes=1)
            return combined
        mixture: np.ndarray = logsumexp(
            log_probs + np.log(np.clip(weights, 1e-12, None))[:, None, None], axis=0
        )
        return mixture

    def _fit_weights(self, log_probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        if len(self.members_) == 1:
            return np.ones(1)
        rows = np.arange(targets.size)

        def loss(theta: np.ndarray) -> float:
            logits = self._combine(log_probs, softmax(theta))
            return float(-log_softmax(logits, axis=1)[rows, targets].mean())

        result = minimize(loss, np.zeros(len(self.members_)), method="L-BFGS-B")
        weights: np.ndarray = softmax(result.x)
        return weights

    def _save(self, directory: Path) -> None:
        names = []
        for position, member in enumerate(self.members_):
            name = f"member_{position}_{member.family}"
            member.save(directory / name)
            names.append(name)
        state = {"member_dirs": names, "weights": self.weights_.tolist()}
        (directory / WEIGHTS_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def _load(cls, directory: Path, params: dict[str, Any]) -> Self:
        model = cls(**params)
        state = json.loads((directory / WEIGHTS_FILE).read_text())
        model.members_ = [
            family_class(family).load(directory / name)
            for family, name in zip(model.members, state["member_dirs"], strict=True)
        ]
        model.weights_ = np.asarray(state["weights"], dtype=np.float64)
        return model
