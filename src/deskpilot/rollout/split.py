"""Sticky canary assignment: the same (tenant, ticket) always lands on the same side of the split.

The hash includes the rollout's secret salt (drawn when the challenger started, see
:class:`~deskpilot.rollout.state.RolloutState`), so a tenant cannot pick ticket ids that land where it wants.
"""

from __future__ import annotations

import hashlib

from deskpilot.rollout.state import RolloutState, Stage

BUCKETS = 10_000


def bucket(tenant: str, key: str, salt: str = "") -> int:
    """A stable bucket in [0, 10000) from the tenant and the ticket id (or request id when there is none),
    salted with the rollout's secret (none: the split of states written before salts existed)."""
    material = f"{tenant}\x1f{key}" if not salt else f"{salt}\x1f{tenant}\x1f{key}"
    digest = hashlib.sha256(material.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def to_challenger(state: RolloutState, tenant: str, key: str) -> bool:
    """Whether the challenger answers this ticket: only in canary, for ``percent`` of the buckets."""
    if state.stage is not Stage.CANARY or state.challenger is None:
        return False
    return bucket(tenant, key, state.salt) < round(state.percent * BUCKETS / 100.0)
