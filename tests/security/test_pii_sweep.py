"""PII sweep: every kind in every format, sent through the real API, leaves no trace of its raw value.

A real uvicorn server with a trained tfidf model and a SQLite store, logging JSON lines to a file the way
``deskpilot serve`` does. Each value goes in (in the message text, the ticket ``id``, the ``X-Request-ID``
header and a feedback ``correct_intent``, one test function each); then every text column of every table
of the store, the raw database files, every log line and the response (body and headers) are searched for
it: as typed, in its plain form (NFKC, invisible characters dropped, "(at)" read as "@"), and for cards,
IBANs and phone numbers any eight of its digits in a row, which is how a half-redacted value shows.

The message text is redacted by ``deskpilot.data.pii`` (the finding this suite belongs to: cards with
no-break spaces, tabs, dots, zero-width characters, full-width digits, split over lines; IBANs and e-mail
addresses likewise). The ticket id, ``X-Request-ID`` and ``correct_intent`` are other findings' parts; their
tests say here what those changes achieve.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from stdnum import iban, luhn

from deskpilot.api.app import Overrides, create_app
from deskpilot.service.observability import configure_json_logging
from tests.integration.api_fixtures import ACME_KEY, TrainedHome, settings_for, trained_home
from tests.live_server import LiveServer, serve

NBSP, NNBSP, ZWSP, ZWJ, WJ = "\u00a0", "\u202f", "\u200b", "\u200d", "\u2060"


def _card(prefix: str, sep: str = " ") -> str:
    """A Luhn-valid 16-digit number from a 15-digit ``prefix``, in groups of four joined by ``sep``."""
    digits = prefix + luhn.calc_check_digit(prefix)
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


def _iban(country: str, bban: str, sep: str = " ") -> str:
    value = country + iban.calc_check_digits(country + "00" + bban) + bban
    return sep.join(value[i : i + 4] for i in range(0, len(value), 4))


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@dataclass(frozen=True)
class Value:
    """One PII value in one format; ``secret`` is the part that must never show (the password of a URL)."""

    family: str
    kind: str
    typed: str
    secret: str = ""

    @property
    def core(self) -> str:
        return plain(self.secret or self.typed)

    @property
    def digits(self) -> str:
        return re.sub(r"\D", "", self.core) if self.kind in {"CARD", "IBAN", "PHONE"} else ""

    @property
    def in_header(self) -> bool:
        """Whether it can travel in an HTTP header (no line breaks; h11 refuses them)."""
        return "\n" not in self.typed and "\r" not in self.typed


_SPELLED = re.compile(r"\s*[(\[{<]\s*(at|dot)\s*[)\]}>]\s*", re.IGNORECASE)


def plain(text: str) -> str:
    """``text`` as a reader sees it: NFKC, digits as ASCII, invisible characters dropped, "(at)" as "@"."""
    kept = "".join(c for c in text if unicodedata.category(c) != "Cf")
    folded = unicodedata.normalize("NFKC", kept)
    folded = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in folded)
    folded = _SPELLED.sub(lambda m: "@" if m.group(1).lower() == "at" else ".", folded)
    return re.sub(r"\s+", " ", folded)


VALUES = [
    # the formats the redactor has always handled
    Value("email", "EMAIL", "zelda.marlowe@example.com"),
    Value("phone", "PHONE", "+44 20 7946 0371"),
    Value("phone-us", "PHONE", "(202) 555-0164"),
    Value("card", "CARD", _card("453914880343646")),
    Value("card-dashes", "CARD", _card("552234561234567", "-")),
    Value("card-compact", "CARD", _card("401299887766551", "")),
    Value("iban", "IBAN", _iban("GB", "NWBK60161331926819")),
    Value("iban-compact", "IBAN", _iban("DE", "370400440532013000", "")),
    Value("ipv4", "IP", "203.0.113.195"),
    Value("ipv6", "IP", "2001:db8:85a3::8a2e:370:7334"),
    Value("credentials", "CREDENTIALS", "https://admin:Sup3rS3cret9@portal.example.com/x", "Sup3rS3cret9"),
    # the formats of this finding
    Value("card-nbsp", "CARD", _card("454313009876512", NBSP)),
    Value("card-narrow-nbsp", "CARD", _card("455209876543219", NNBSP)),
    Value("card-tabs", "CARD", _card("471122334455661", "\t")),
    Value("card-double-spaces", "CARD", _card("492877665544332", "  ")),
    Value("card-dots", "CARD", _card("453287651234098", ".")),
    Value("card-slashes", "CARD", _card("510598761234876", "/")),
    Value("card-zero-width", "CARD", _card("462398127634512", ZWSP)),
    Value("card-zero-width-inside", "CARD", "4916" + ZWJ + "3381" + WJ + _card("491633817265431", "")[8:]),
    Value("card-fullwidth", "CARD", _fullwidth(_card("448833221100998"))),
    Value("card-glued", "CARD", "card" + _card("454612983476512", "") + "declined"),
    Value("card-two-lines", "CARD", _card("473319283746512").replace(" ", "\n", 2).replace("\n", " ", 1)),
    Value("iban-nbsp", "IBAN", _iban("FR", "20041010050500013M02606", NBSP)),
    Value("iban-dashes", "IBAN", _iban("NL", "ABNA0417164300", "-")),
    Value("email-fullwidth-at", "EMAIL", "ottilie.brandt\uff20example.de"),
    Value("email-at-dot", "EMAIL", "rufus.kingsley(at)example(dot)org"),
    Value("email-brackets", "EMAIL", "mirela.popescu [at] example [dot] ro"),
]
IDS = [v.family for v in VALUES]


# ---------------------------------------------------------------- the server, its store and its log


@dataclass
class Service:
    server: LiveServer
    home: Path
    log: Path

    @property
    def database(self) -> Path:
        return self.home / "deskpilot.db"

    def flush(self) -> None:
        writer = self.server.app.state.parts.service.writer
        assert writer is None or writer.flush(10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("pii-sweep") / "home", versions=1)


@pytest.fixture(scope="module")
def service(trained: TrainedHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("pii-sweep-log") / "serve.log"
    names = ("deskpilot", "uvicorn", "uvicorn.error")
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
        for n in names
    }
    with pytest.MonkeyPatch.context() as env:
        for name in ("DESKPILOT_DATABASE_URL", "DESKPILOT_MIGRATION_DATABASE_URL", "DESKPILOT_AUDIT_KEY"):
            env.delenv(name, raising=False)
        configure_json_logging(stream_path=log)  # what `deskpilot serve` does, at its INFO level
        try:
            app = create_app(settings_for(trained, reload_interval_s=0), Overrides())
            with serve(app) as server:
                yield Service(server, trained.home, log)
        finally:
            for name, (handlers, level, propagate) in saved.items():
                logger = logging.getLogger(name)
                for handler in logger.handlers:
                    if handler not in handlers:
                        handler.close()
                logger.handlers[:] = handlers
                logger.setLevel(level)
                logger.propagate = propagate


# ---------------------------------------------------------------- where a value could show, and how


def leaks(value: Value, haystack: str, *, strings: list[str] | None = None) -> list[str]:
    """How ``value`` shows in ``haystack``, if it does: typed, plain, or eight of its digits in a row.

    The digit check reads ``strings`` (the text values inside ``haystack``, default: all of it) rather than
    numbers such as a confidence of 0.4539148803..., which would match a card's digits by chance.
    """
    found = []
    texts = [haystack, *(strings or ())]  # JSON escapes non-ASCII: its decoded strings are read too
    if any(value.typed in t or (value.secret and value.secret in t) for t in texts):
        found.append("as typed")
    flat = "\n".join(plain(t) for t in texts).lower()
    if value.core and value.core.lower() in flat:
        found.append("in plain form")
    if value.kind == "EMAIL":
        local = plain(value.typed).split("@")[0].lower()
        if local in flat:
            found.append(f"local part {local!r}")
    if value.digits:
        windows = {value.digits[i : i + 8] for i in range(len(value.digits) - 7)}
        for text in [haystack] if strings is None else strings:
            runs = re.findall(r"\d+(?:[^\w]{1,3}\d+)*", plain(text))
            hit = sorted(w for w in windows for run in runs if w in re.sub(r"\D", "", run))
            if hit:
                found.append(f"digits {hit[0]}")
                break
    return found


def text_leaves(data: object) -> list[str]:
    """The strings in a JSON value (keys included), or the value itself when it is one."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in (*text_leaves(k), *text_leaves(v))]
    if isinstance(data, list):
        return [s for item in data for s in text_leaves(item)]
    return []


def json_leaves(text: str) -> list[str]:
    try:
        return text_leaves(json.loads(text))
    except ValueError:
        return [text]


def store_cells(database: Path) -> list[tuple[str, str]]:
    """(table.column, value) for every text cell of every table (numbers hold no text)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = []
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                cells.extend(
                    (f"{table}.{column}", cell)
                    for column, cell in zip(columns, row, strict=True)
                    if isinstance(cell, str)
                )
        return cells
    finally:
        conn.close()


def database_bytes(database: Path) -> str:
    """The database files as stored on disk (main file, WAL, journal), decoded leniently: what a copy of the
    disk would hold, free pages included."""
    return "".join(
        p.read_bytes().decode("utf-8", errors="replace")
        for p in sorted(database.parent.glob(database.name + "*"))
        if p.is_file()
    )


def wait_for(found: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError("not found in time")
        time.sleep(0.02)


def access_logged(service: Service, response: httpx.Response) -> bool:
    request_id = response.headers.get("x-request-id", "")
    return f'"request_id": "{request_id}"' in service.log.read_text(encoding="utf-8")


def sweep(service: Service, value: Value, responses: list[httpx.Response]) -> dict[str, list[str]]:
    """Everywhere ``value`` shows: store cells, database files, log lines, responses."""
    service.flush()
    for response in responses:
        wait_for(lambda response=response: access_logged(service, response))
    where: dict[str, list[str]] = {}
    for name, cell in store_cells(service.database):
        if found := leaks(value, cell, strings=json_leaves(cell)):
            where.setdefault(f"store {name}", []).extend(found)
    if found := leaks(value, database_bytes(service.database), strings=[]):
        where["database files"] = found
    for number, line in enumerate(service.log.read_text(encoding="utf-8").splitlines(), start=1):
        if found := leaks(value, line, strings=json_leaves(line)):
            where.setdefault("log", []).append(f"line {number} ({json.loads(line).get('event')}): {found}")
    for response in responses:
        headers = [f"{k}: {v}" for k, v in response.headers.items()]
        shown = "\n".join([response.text, *headers])
        if found := leaks(value, shown, strings=[*json_leaves(response.text), *headers]):
            where.setdefault(f"response {response.request.url.path}", []).extend(found)
    return where


def message(value: Value) -> str:
    return f"Hello team, {value.typed} is what I used. Please help!"


# ---------------------------------------------------------------- the message text


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_pii_in_the_message_text_shows_nowhere(service: Service, value: Value) -> None:
    with service.server.client(ACME_KEY) as client:
        one = client.post("/v1/triage", json={"text": message(value)})
        batch = client.post(
            "/v1/triage/batch", json={"items": [{"text": message(value)}, {"text": value.typed}]}
        )
    assert one.status_code == 200, one.text
    assert batch.status_code == 200, batch.text
    assert sweep(service, value, [one, batch]) == {}
    request_ids = [one.json()["request_id"], *(item["request_id"] for item in batch.json()["items"])]
    stored = stored_texts(service, request_ids)
    assert len(stored) == 3
    assert all(f"<{value.kind}>" in text for text in stored), stored


def stored_texts(service: Service, request_ids: list[str]) -> list[str]:
    service.flush()
    conn = sqlite3.connect(f"file:{service.database}?mode=ro", uri=True)
    try:
        marks = ", ".join("?" * len(request_ids))
        query = f"SELECT text FROM decisions WHERE request_id IN ({marks})"
        return [row[0] for row in conn.execute(query, request_ids)]
    finally:
        conn.close()


def test_redacted_text_keeps_no_digit_of_a_sweep_value(service: Service) -> None:
    """The messages hold no digits but the values', so a stored message with a digit kept part of one."""
    with service.server.client(ACME_KEY) as client:
        responses = [
            client.post("/v1/triage", json={"text": message(v)}) for v in VALUES if v.kind != "EMAIL"
        ]
    assert all(r.status_code == 200 for r in responses)
    stored = stored_texts(service, [r.json()["request_id"] for r in responses])
    assert len(stored) == len(responses)
    assert [text for text in stored if any(c.isdecimal() for c in plain(text))] == []


# ---------------------------------------------------------------- the other fields a caller fills in


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_pii_in_the_ticket_id_shows_nowhere(service: Service, value: Value) -> None:
    with service.server.client(ACME_KEY) as client:
        one = client.post("/v1/triage", json={"text": "my card was not delivered", "id": value.typed})
        batch = client.post(
            "/v1/triage/batch", json={"items": [{"text": "top up failed", "id": value.typed}]}
        )
    assert sweep(service, value, [one, batch]) == {}


@pytest.mark.parametrize(
    "value", [v for v in VALUES if v.in_header], ids=[v.family for v in VALUES if v.in_header]
)
def test_pii_in_the_x_request_id_header_shows_nowhere(service: Service, value: Value) -> None:
    header = {"X-Request-ID": value.typed.encode("utf-8")}
    with service.server.client(ACME_KEY) as client:
        one = client.post("/v1/triage", json={"text": "my card was not delivered"}, headers=header)
        batch = client.post("/v1/triage/batch", json={"items": [{"text": "top up"}]}, headers=header)
    assert sweep(service, value, [one, batch]) == {}


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_pii_in_a_feedback_correct_intent_shows_nowhere(service: Service, value: Value) -> None:
    with service.server.client(ACME_KEY) as client:
        triaged = client.post("/v1/triage", json={"text": "I still have not received my new card"})
        assert triaged.status_code == 200, triaged.text
        service.flush()
        verdict = client.post(
            "/v1/feedback", json={"request_id": triaged.json()["request_id"], "correct_intent": value.typed}
        )
    assert sweep(service, value, [triaged, verdict]) == {}
