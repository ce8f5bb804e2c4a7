"""The agent's queue filters as they travel in URLs and forms, checked once and turned into a store query.

The same filters ride along from the queue to a ticket and back (and into the verdict form), so that "next
ticket" means the next one of the list the agent was working through. A value the console cannot use is a
400 page that names the field, never a silently different list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import quote, urlencode

from deskpilot.console.errors import ConsoleError
from deskpilot.store.queue import KINDS, STATES, Cursor, QueueKind, QueueQuery, QueueState

AGES = ("1h", "24h", "7d", "30d", "all")
"""The ages the filter form offers; any ``<n>m``, ``<n>h`` or ``<n>d`` is accepted."""

_AGE = re.compile(r"([1-9][0-9]{0,3})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_MAX_AGE = timedelta(days=3650)
CHANNEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_INTENT = 128
FIELDS = ("intent", "channel", "min_conf", "max_conf", "age", "state", "kind")


def bad(field: str, problem: str) -> ConsoleError:
    return ConsoleError(400, "Bad filter", f"The filter `{field}` {problem}.")


@dataclass(frozen=True)
class QueueFilters:
    """Checked filter values, kept as the text the form shows (confidences in percent)."""

    intent: str = ""
    channel: str = ""
    min_conf: str = ""
    max_conf: str = ""
    age: str = "all"
    state: str = "open"
    kind: str = "all"

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> QueueFilters:
        """From query parameters or form fields; :class:`ConsoleError` (400) naming the first bad field."""
        get = {name: (values.get(name) or "").strip() for name in FIELDS}
        intent = get["intent"]
        if len(intent) > MAX_INTENT or any(ord(c) < 32 for c in intent):
            raise bad("intent", "is not an intent name")
        channel = get["channel"]
        if channel and not CHANNEL.fullmatch(channel):
            raise bad("channel", "must be a lowercase token such as email, chat, phone or web")
        low, high = _percent(get["min_conf"], "min_conf"), _percent(get["max_conf"], "max_conf")
        if low is not None and high is not None and low > high:
            raise bad("min_conf", "is above max_conf")
        age = get["age"] or "all"
        if age != "all":
            _age(age)
        state = get["state"] or "open"
        if state not in STATES:
            raise bad("state", f"must be one of {', '.join(STATES)}")
        kind = get["kind"] or "all"
        if kind not in KINDS:
            raise bad("kind", f"must be one of {', '.join(KINDS)}")
        return cls(intent, channel, get["min_conf"], get["max_conf"], age, state, kind)

    def query(self, now: datetime, after: Cursor | None = None) -> QueueQuery:
        low, high = _percent(self.min_conf, "min_conf"), _percent(self.max_conf, "max_conf")
        return QueueQuery(
            intent=self.intent or None,
            channel=self.channel or None,
            min_confidence=None if low is None else low / 100.0,
            max_confidence=None if high is None else high / 100.0,
            since=None if self.age == "all" else now - _age(self.age),
            state=cast(QueueState, self.state),
            kind=cast(QueueKind, self.kind),
            after=after,
        )

    def params(self) -> dict[str, str]:
        """The values that differ from the defaults (a clean URL for the common case)."""
        default = QueueFilters()
        return {name: getattr(self, name) for name in FIELDS if getattr(self, name) != getattr(default, name)}

    def qs(self, **extra: str) -> str:
        """The filters (and ``extra``) as a query string, ``?`` included, or "" when there is nothing."""
        values = {**self.params(), **{key: value for key, value in extra.items() if value}}
        return f"?{urlencode(values)}" if values else ""

    def with_state(self, state: str) -> QueueFilters:
        return replace(self, state=state)

    @property
    def active(self) -> bool:
        return bool(self.params())


def cursor_of(value: str | None, field: str = "cursor") -> Cursor | None:
    """The cursor a token names ("" for none); a 400 naming ``field`` for anything else."""
    if not value:
        return None
    try:
        return Cursor.decode(value)
    except ValueError as exc:
        raise bad(field, "is not a position in this queue (start again from the first page)") from exc


def ticket_url(request_id: str, filters: QueueFilters, position: Cursor | None = None, **extra: str) -> str:
    """A ticket's page, carrying the list it was opened from and its place in it."""
    pos = position.encode() if position is not None else ""
    return f"/console/tickets/{quote(request_id, safe='')}{filters.qs(pos=pos, **extra)}"


def _percent(value: str, field: str) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise bad(field, "must be a number from 0 to 100 (percent)") from exc
    if not math.isfinite(number) or not 0.0 <= number <= 100.0:
        raise bad(field, "must be a number from 0 to 100 (percent)")
    return number


def _age(value: str) -> timedelta:
    found = _AGE.fullmatch(value)
    if found is None:
        raise bad("age", "must be all or a number with m, h or d (such as 1h, 24h, 7d)")
    age = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if age > _MAX_AGE:
        raise bad("age", "is longer than ten years")
    return age
