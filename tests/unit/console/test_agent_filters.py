"""The queue's filters: parsed from a URL or a form, refused with a 400 that names the field, and written
back into URLs that carry them from the queue to a ticket and on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from deskpilot.console.agent_filters import QueueFilters, cursor_of, ticket_url
from deskpilot.console.errors import ConsoleError
from deskpilot.store.queue import Cursor, QueueQuery

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_no_filters_is_the_open_queue() -> None:
    filters = QueueFilters.parse({})
    assert filters == QueueFilters()
    assert filters.query(NOW) == QueueQuery()
    assert filters.qs() == ""
    assert not filters.active


def test_every_filter_becomes_the_store_query() -> None:
    values = {
        "intent": " refund ",
        "channel": "email",
        "min_conf": "20",
        "max_conf": "75.5",
        "age": "24h",
        "state": "all",
        "kind": "sampled",
        "unknown": "ignored",
    }
    filters = QueueFilters.parse(values)
    cursor = Cursor(NOW, 7)
    assert filters.query(NOW, after=cursor) == QueueQuery(
        intent="refund",
        channel="email",
        min_confidence=0.2,
        max_confidence=0.755,
        since=NOW - timedelta(hours=24),
        state="all",
        kind="sampled",
        after=cursor,
    )
    assert QueueFilters.parse(dict(parse_qsl(filters.qs()[1:]))) == filters
    assert filters.active


@pytest.mark.parametrize(("age", "delta"), [("90m", timedelta(minutes=90)), ("7d", timedelta(days=7))])
def test_an_age_is_minutes_hours_or_days(age: str, delta: timedelta) -> None:
    assert QueueFilters.parse({"age": age}).query(NOW).since == NOW - delta
    assert QueueFilters.parse({"age": "all"}).query(NOW).since is None


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"channel": "E-Mail"}, "channel"),
        ({"channel": "x" * 33}, "channel"),
        ({"min_conf": "abc"}, "min_conf"),
        ({"min_conf": "-1"}, "min_conf"),
        ({"max_conf": "101"}, "max_conf"),
        ({"max_conf": "nan"}, "max_conf"),
        ({"min_conf": "80", "max_conf": "20"}, "min_conf"),
        ({"age": "yesterday"}, "age"),
        ({"age": "0h"}, "age"),
        ({"age": "9999d"}, "age"),
        ({"state": "closed"}, "state"),
        ({"kind": "auto"}, "kind"),
        ({"intent": "x" * 129}, "intent"),
        ({"intent": "bad\nname"}, "intent"),
    ],
)
def test_a_bad_value_is_a_400_naming_its_field(values: dict[str, str], field: str) -> None:
    with pytest.raises(ConsoleError) as caught:
        QueueFilters.parse(values)
    assert caught.value.status_code == 400
    assert f"`{field}`" in caught.value.message


def test_a_cursor_travels_as_an_opaque_token() -> None:
    cursor = Cursor(NOW, 42)
    assert cursor_of(cursor.encode()) == cursor
    assert cursor_of("") is None
    assert cursor_of(None) is None
    with pytest.raises(ConsoleError) as caught:
        cursor_of("not-a-cursor!", "pos")
    assert caught.value.status_code == 400
    assert "`pos`" in caught.value.message


def test_a_ticket_url_carries_the_list_and_the_place_in_it() -> None:
    filters = QueueFilters.parse({"intent": "refund", "state": "all"})
    url = ticket_url("a/b c", filters, Cursor(NOW, 3), saved="verdict")
    parts = urlsplit(url)
    assert parts.path == "/console/tickets/a%2Fb%20c"
    query = dict(parse_qsl(parts.query))
    assert query == {"intent": "refund", "state": "all", "pos": Cursor(NOW, 3).encode(), "saved": "verdict"}
    assert ticket_url("r1", QueueFilters()) == "/console/tickets/r1"
