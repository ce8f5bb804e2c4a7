"""Console sign-in sessions: what a browser's session cookie stands for, kept server-side.

The token in the cookie is never stored, only its SHA-256, so a copy of the database signs nobody in. A
session ends when it expires, when it signs out (its row is deleted), or when the key it signed in with is
revoked (the console checks the key on every request).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime


def token_digest(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: the tenant and key it acts as, the role it signed in with, until when."""

    token_sha256: str
    tenant: str
    key_id: str
    role: str
    created_at: datetime
    expires_at: datetime


class SessionStore(ABC):
    """Where console sessions live; failures surface as :class:`deskpilot.errors.StoreError`."""

    @abstractmethod
    def add_session(self, session: ConsoleSession) -> None: ...

    @abstractmethod
    def get_session(self, token_sha256: str, now: datetime) -> ConsoleSession | None:
        """The session with this digest if it has not expired at ``now``."""

    @abstractmethod
    def delete_session(self, token_sha256: str) -> bool:
        """End one session; whether it existed."""

    @abstractmethod
    def delete_expired(self, now: datetime) -> int:
        """Remove the sessions expired at ``now``; how many."""

    @abstractmethod
    def close(self) -> None: ...
