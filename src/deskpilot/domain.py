"""Typed, immutable values that every layer passes around: tickets in, decisions out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_MODEL_NAME = "deskpilot-triage"

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$")


class Route(StrEnum):
    """Where a ticket goes: straight to its queue, or to a person first."""

    AUTO = "auto"
    HUMAN = "human"


class Role(StrEnum):
    """What a served model is for. One vocabulary for the service, its metrics, ``/v1/models``, the rollout
    monitor and the logs.

    ``champion`` answers every ticket not in a canary; ``challenger`` is the version under rollout (shadow or
    canary); ``fallback`` answers when the one in line before it fails or runs out of time.
    """

    CHAMPION = "champion"
    CHALLENGER = "challenger"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class RoutingThreshold:
    """Confidence at or above which a ticket is routed ``auto``, as chosen on validation data.

    ``threshold`` is ``None`` when no threshold reached the target precision: nothing is routed ``auto``.
    ``coverage`` and ``precision`` are what the threshold achieved on the ``n`` validation messages.
    """

    threshold: float | None
    target_precision: float
    coverage: float
    precision: float | None
    n: int


@dataclass(frozen=True, slots=True)
class Ticket:
    """A customer message as DeskPilot receives it (text already validated, maybe not yet redacted)."""

    text: str
    id: str | None = None
    channel: str | None = None  # where it came from (email, chat, ...), as the caller named it


@dataclass(frozen=True, slots=True)
class IntentScore:
    intent: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer for one text: the top intent and the runners-up, best first."""

    intent: str
    confidence: float
    alternatives: tuple[IntentScore, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A registered model version, addressed the way MLflow addresses it."""

    name: str
    version: str | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if (self.version is None) == (self.alias is None):
            raise ValueError("a ModelRef names exactly one of version or alias")

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        """Parse ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; a ``ValueError`` names the shape."""
        match = _MODEL_URI.match(uri.strip())
        if match is None:
            raise ValueError(
                f"{uri!r} is not a model URI; expected models:/NAME/VERSION or models:/NAME@ALIAS"
            )
        return cls(name=match["name"], version=match["version"], alias=match["alias"])


@dataclass(frozen=True, slots=True)
class TriageDecision:
    """What the service answers: a prediction, the routing verdict, and which model made it."""

    request_id: str
    prediction: Prediction
    route: Route
    model_version: str
    reason: str = ""
    fallback: bool = False
    # an auto-routed decision sampled for a person's review, so auto routes' accuracy can be measured
    review: bool = False
