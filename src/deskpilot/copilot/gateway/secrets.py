"""API keys that cannot leak by accident: masked in repr, str, format and pickling.

Only :meth:`Secret.reveal` returns the value, and only the provider calls it, to build the one header that
needs it. Load errors name the variable or the file, never the value.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from deskpilot.errors import ConfigError

_MASK = "**********"


class Secret:
    """A string that prints as ``**********``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ConfigError("a secret must not be empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with the value masked wherever it occurs: a last guard on messages from responses."""
        return text.replace(self._value, _MASK)

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def load_secret(
    *, env: str | None = None, file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Secret | None:
    """The key from the environment variable named ``env`` or from the file at ``file`` (trailing whitespace
    stripped); None when neither is given (a local server without auth). Missing or empty: ConfigError."""
    if env and file:
        raise ConfigError("give an API key variable or a key file, not both")
    if env:
        value = (os.environ if environ is None else environ).get(env, "").strip()
        if not value:
            raise ConfigError(f"the API key variable {env} is unset or empty")
        return Secret(value)
    if file:
        path = Path(file)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the API key file {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        if not value:
            raise ConfigError(f"the API key file {path} is empty")
        return Secret(value)
    return None
