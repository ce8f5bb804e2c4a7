"""The rollout state of one registered model: the champion, an optional challenger in shadow or canary.

It is kept in the registry as one JSON tag on the registered model, so every replica reads the same state
with one call and never sees half of an update; the ``champion``/``challenger`` aliases are mirrored for
people and tools that read aliases. ``history`` lists earlier champions, newest first: a rollback returns to
the head of it in one step.

``salt`` is a random value drawn when a challenger starts and kept until it leaves: the canary split hashes
it with the tenant and the ticket id, so a ticket stays on its side through a ramp, while a tenant, who never
sees the salt, cannot choose ticket ids that land on the challenger (or stay off it). States written before
it existed read with no salt and keep the split they had.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from deskpilot.errors import UsageError

HISTORY_LIMIT = 20


class Stage(StrEnum):
    NONE = "none"  # only the champion serves
    SHADOW = "shadow"  # the challenger scores every request after the response; nobody sees its answers
    CANARY = "canary"  # the challenger answers ``percent`` of the traffic


def new_salt() -> str:
    return secrets.token_hex(16)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RolloutState:
    champion: str | None = None
    challenger: str | None = None
    stage: Stage = Stage.NONE
    percent: float = 0.0
    history: tuple[str, ...] = ()
    revision: int = 0
    updated_at: str = field(default_factory=_now)
    updated_by: str = ""
    reason: str = ""
    salt: str = field(default="", repr=False)  # the canary split's secret for this challenger

    def __post_init__(self) -> None:
        if not 0.0 <= self.percent <= 100.0:
            raise UsageError(f"a canary share must be between 0 and 100 percent, not {self.percent}")
        if self.stage is Stage.NONE and self.challenger is not None:
            raise UsageError("a challenger needs a stage (shadow or canary)")
        if self.stage is not Stage.NONE and self.challenger is None:
            raise UsageError(f"stage {self.stage} needs a challenger")

    @property
    def canary_share(self) -> float:
        """Fraction of traffic the challenger answers (0 unless in canary)."""
        return self.percent / 100.0 if self.stage is Stage.CANARY else 0.0

    def next(self, *, actor: str, reason: str, **changes: Any) -> RolloutState:
        """The next revision with ``changes``; a new challenger draws a new salt, no challenger has none."""
        if "challenger" in changes and changes["challenger"] != self.challenger:
            changes.setdefault("salt", new_salt() if changes["challenger"] is not None else "")
        return replace(
            self, revision=self.revision + 1, updated_at=_now(), updated_by=actor, reason=reason, **changes
        )

    def to_json(self) -> str:
        payload = asdict(self)
        payload["stage"] = str(self.stage)
        payload["history"] = list(self.history)
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        payload = json.loads(text)
        payload["stage"] = Stage(payload.get("stage", "none"))
        payload["history"] = tuple(payload.get("history", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in payload.items() if k in known})
