"""Fakes for the service-core unit tests: a scripted classifier the in-memory registry can save and load.

``ScriptedClassifier`` is a real :class:`Classifier` (saved and loaded through ``TriageModel`` like any
family, once :func:`scripted_family` has registered its name), whose answers are chosen by the test: the
class whose name appears in a text gets ``confidence``, a text naming no class gets a uniform row. Its
``mode`` makes it fail, return NaN or the wrong shape, or hang until :data:`RELEASE` is set, and can be
switched on a loaded instance to make a serving model misbehave after it passed its smoke test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest

from deskpilot.domain import RoutingThreshold
from deskpilot.models.artifact import TriageModel
from deskpilot.models.base import Classifier
from deskpilot.models.families import FAMILIES
from deskpilot.registry.base import ModelRegistry, RunRecord

SCRIPTED = "scripted"
CLASSES = ("billing", "card", "login")
MODEL_NAME = "triage-test"
# A hanging model waits on this (at most ``hang_s``); tests set it before they close the service.
RELEASE = threading.Event()

OK, FAIL, NAN, SHAPE, HANG = "ok", "fail", "nan", "shape", "hang"


class ScriptedClassifier(Classifier):
    family = SCRIPTED

    def __init__(self, *, confidence: float = 0.9, mode: str = OK, hang_s: float = 5.0) -> None:
        self.confidence = confidence
        self.mode = mode
        self.hang_s = hang_s
        self.calls: list[list[str]] = []  # every batch predict_proba saw (not persisted)

    def _fit(
        self, texts: list[str], labels: list[str], validation: tuple[Sequence[str], Sequence[str]] | None
    ) -> None:
        self.classes_ = np.asarray(sorted(set(labels)), dtype=object)

    def _rows(self, texts: Sequence[str]) -> np.ndarray:
        n = len(self.classes_)
        rows = np.full((len(texts), n), 1.0 / n)
        rest = (1.0 - self.confidence) / (n - 1)
        for i, text in enumerate(texts):
            hits = [j for j, name in enumerate(self.classes_) if name in text.lower()]
            if hits:
                rows[i] = rest
                rows[i, hits[0]] = self.confidence
        return rows

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        logits: np.ndarray = np.log(self._rows(texts))
        return logits

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.mode == FAIL:
            raise RuntimeError("scripted failure")
        if self.mode == HANG:
            RELEASE.wait(self.hang_s)
        if self.mode == NAN:
            return np.full((len(texts), len(self.classes_)), np.nan)
        if self.mode == SHAPE:
            return np.full((len(texts), len(self.classes_) + 1), 0.25)
        return self._rows(texts)

    def _save(self, directory: Path) -> None:
        """Everything is in the hyperparameters the base class writes."""

    @classmethod
    def _load(cls, directory: Path, params: dict[str, Any]) -> Self:
        return cls(**params)


def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For a test module's autouse fixture (``yield from installed(monkeypatch)``): make ``scripted`` a known
    family for this test only, skip ``settle_heap`` after model swaps (a full collection per refresh, and
    its ``gc.freeze`` would outlive the test; it tunes the server's p99, not the behaviour under test), and
    release any model left hanging when the test ends."""
    monkeypatch.setitem(FAMILIES, SCRIPTED, f"{__name__}:ScriptedClassifier")
    monkeypatch.setattr("deskpilot.service.models.settle_heap", lambda: None)
    RELEASE.clear()
    yield
    RELEASE.set()


def scripted_model(
    *, confidence: float = 0.9, mode: str = OK, threshold: float | None = 0.5, hang_s: float = 5.0
) -> TriageModel:
    classifier = ScriptedClassifier(confidence=confidence, mode=mode, hang_s=hang_s)
    classifier.fit(list(CLASSES), list(CLASSES))
    return TriageModel.build(classifier, RoutingThreshold(threshold, 0.9, 0.5, 0.9, 30))


def register(
    registry: ModelRegistry, model: TriageModel, *, gate: str | None = "pass", name: str = MODEL_NAME
) -> str:
    """Register ``model`` (with a gate verdict tag unless ``gate`` is None); its version number."""
    tags = {} if gate is None else {"deskpilot.gate": gate}
    return registry.register(model, name=name, record=RunRecord(params={}, metrics={}, tags=tags)).version


def scripted(model: TriageModel | None) -> ScriptedClassifier:
    """The scripted classifier inside a loaded model (to read its calls or switch its mode)."""
    assert model is not None, "no model is loaded for this role"
    classifier = model.classifier
    assert isinstance(classifier, ScriptedClassifier)
    return classifier


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)
