"""Sticky canary assignment: the same (tenant, ticket) always lands on the same side of the split."""

from __future__ import annotations

import hashlib

from deskpilot.rollout.state import RolloutState, Stage

BUCKETS = 10_000


def bucket(tenant: str, key: str) -> int:
    """A stable bucket in [0, 10000) from the tenant and the ticket id (or request id when there is none)."""
    digest = hashlib.sha256(f"{tenant}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def to_challenger(state: RolloutState, tenant: str, key: str) -> bool:
    """Whether the challenger answers this ticket: only in canary, for ``percent`` of the buckets."""
    if state.stage is not Stage.CANARY or state.challenger is None:
        return False
    return bucket(tenant, key) < round(state.percent * BUCKETS / 100.0)
