"""The model families by name. Each is imported only when asked for, so loading a TF-IDF model never
imports an ONNX runtime and serving never imports torch."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from deskpilot.errors import UnknownFamilyError
from deskpilot.models.base import Classifier

FAMILIES: dict[str, str] = {
    "tfidf": "deskpilot.models.tfidf:TfidfClassifier",
    "embed": "deskpilot.models.embed:EmbeddingClassifier",
    "finetune": "deskpilot.models.finetune:FinetunedClassifier",
    "ensemble": "deskpilot.models.ensemble:EnsembleClassifier",
}


def family_class(family: str) -> type[Classifier]:
    """The Classifier subclass of a family name; unknown names list the known ones."""
    target = FAMILIES.get(family)
    if target is None:
        raise UnknownFamilyError(
            f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}",
            details={"family": family},
        )
    module_name, _, class_name = target.partition(":")
    cls: type[Classifier] = getattr(importlib.import_module(module_name), class_name)
    return cls


def make_classifier(
    family: str, params: dict[str, Any], *, cache_dir: str | Path | None = None
) -> Classifier:
    """A new, unfitted model of ``family``; ``cache_dir`` goes only to families that cache exports."""
    cls = family_class(family)
    extra: dict[str, Any] = {}
    if cache_dir is not None and "cache_dir" in inspect.signature(cls).parameters:
        extra["cache_dir"] = cache_dir
    return cls(**params, **extra)
