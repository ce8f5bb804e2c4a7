"""``deskpilot kb``, run as an operator runs it: imports that build index versions (full, then incremental,
then nothing when nothing changed), PII redacted before anything is stored, and bad input refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deskpilot.config import Settings
from deskpilot.store.knowledge_sql import SqlKnowledgeStore
from tests.helpers import run_cli
from tests.integration.copilot.kb_fixtures import SAMPLE_KB, link_encoder

pytestmark = pytest.mark.slow

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
TICKETS = [
    {
        "ticket": "T-1",
        "message": f"My card has not arrived yet, write to me at {EMAIL}",
        "category": "card_arrival",
        "answer": f"Cards arrive in 3 to 6 working days. Call us on {PHONE} if not.",
    },
    {
        "ticket": "T-2",
        "message": "How do I activate my new card?",
        "category": "activate_my_card",
        "answer": "",
    },
    {
        "ticket": "T-3",
        "message": "Which ATMs can I use to take out cash?",
        "category": "atm_support",
        "answer": "Any ATM showing the Visa or Mastercard logo works.",
    },
]
ARTICLES = ("cards/card-delivery.md", "cards/activate-card.md")
IMPORT_TICKETS = ("--text-column", "message", "--label-column", "category", "--reply-column", "answer")


def kb(home: Path, *args: str | Path) -> dict[str, Any]:
    """``deskpilot kb ARGS --json``, which must succeed."""
    result = run_cli("kb", *args, "--json", home=home)
    assert result.returncode == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    assert payload["ok"] is True
    return payload


def write_tickets(path: Path, rows: list[dict[str, str]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def home(tmp_path: Path, encoder_cache: Path) -> Path:
    home = tmp_path / "home"
    link_encoder(home, encoder_cache)
    return home


@pytest.fixture
def articles(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    for name in ARTICLES:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE_KB / name, target)
    return folder


def test_imports_publish_full_then_incremental_then_unchanged_versions(
    home: Path, tmp_path: Path, articles: Path
) -> None:
    tickets = write_tickets(tmp_path / "tickets.csv", TICKETS)
    first = kb(home, "import", tickets, "--tenant", "acme", *IMPORT_TICKETS, "--id-column", "ticket")
    assert first["kind"] == "tickets"
    assert (first["rows"], first["items"]) == (3, 3)
    assert (first["added"], first["replaced"], first["unchanged"]) == (3, 0, 0)
    assert first["redactions"] == {"EMAIL": 1, "PHONE": 1}
    assert first["index"]["mode"] == "full"
    assert first["index"]["version"] == 1
    assert first["index"]["encoded"] == 3

    added = kb(home, "import", articles, "--tenant", "acme")
    assert added["kind"] == "articles"
    assert (added["added"], added["replaced"], added["unchanged"]) == (2, 0, 0)
    assert added["index"] == {**added["index"], "mode": "incremental", "version": 2, "encoded": 2}

    again = kb(home, "import", tickets, "--tenant", "acme", *IMPORT_TICKETS, "--id-column", "ticket")
    assert (again["added"], again["replaced"], again["unchanged"]) == (0, 0, 3)
    assert again["index"] == {**again["index"], "mode": "unchanged", "version": 2, "encoded": 0}

    changed = [dict(TICKETS[0], answer="Cards arrive in 2 to 4 working days."), *TICKETS[1:]]
    changed.append(
        {"ticket": "T-4", "message": "Can I change my PIN?", "category": "change_pin", "answer": ""}
    )
    write_tickets(tickets, changed)  # the same export, a day later: one reply edited, one ticket more
    updated = kb(home, "import", tickets, "--tenant", "acme", *IMPORT_TICKETS, "--id-column", "ticket")
    assert (updated["added"], updated["replaced"], updated["unchanged"]) == (1, 1, 2)
    # the edited reply keeps its stored embedding (a ticket is searched by its message): one new text embedded
    assert updated["index"] == {**updated["index"], "mode": "incremental", "version": 3, "encoded": 1}

    status = kb(home, "status")
    assert status["current"] == 3
    assert [(v["version"], v["current"]) for v in status["versions"]] == [(1, False), (2, False), (3, True)]
    assert status["versions"][-1]["counts"] == {"acme": {"ticket": 4, "article": 2}}
    assert [v["note"] for v in status["versions"]] == ["full build", "incremental build", "incremental build"]
    listed = run_cli("kb", "status", home=home)
    assert listed.returncode == 0, listed.stderr
    marked = [line for line in listed.stdout.splitlines() if line.startswith("*")]
    assert len(marked) == 1
    assert marked[0].startswith("* v3")


def test_pii_is_redacted_in_the_store_and_in_search(home: Path, tmp_path: Path) -> None:
    # without an id column a ticket's id is its text's digest: two texts that differ only in PII are one item
    again = dict(TICKETS[0], message=TICKETS[0]["message"].replace(EMAIL, "sam@example.org"))
    tickets = write_tickets(tmp_path / "tickets.csv", [*TICKETS, again])
    imported = kb(home, "import", tickets, "--tenant", "acme", *IMPORT_TICKETS)
    assert (imported["rows"], imported["items"], imported["added"]) == (4, 3, 3)
    assert imported["redactions"] == {"EMAIL": 2, "PHONE": 2}

    store = SqlKnowledgeStore(Settings(home=home).resolved_database_url)
    try:
        stored = {item.intents[0]: item for item in store.kb_items("acme")}
    finally:
        store.close()
    arrival = stored["card_arrival"]
    assert arrival.text == "My card has not arrived yet, write to me at <EMAIL>"
    assert arrival.reply is not None
    assert "<PHONE>" in arrival.reply
    assert "7946" not in arrival.reply
    assert stored["activate_my_card"].reply is None  # a blank reply is no reply
    assert all(EMAIL not in item.text for item in stored.values())

    found = kb(home, "search", f"card not arrived, I am {EMAIL}", "--tenant", "acme", "-k", "2")
    top = found["results"][0]
    assert top["id"] == arrival.id
    assert top["text"] == arrival.text
    assert top["intents"] == ["card_arrival"]
    assert set(top["ranks"]) == {"dense", "lexical"}
    assert len(found["results"]) == 2
    shown = run_cli("kb", "search", "card not arrived", "--tenant", "acme", home=home)
    assert shown.returncode == 0, shown.stderr
    assert "<EMAIL>" in shown.stdout
    assert EMAIL not in shown.stdout
    elsewhere = kb(home, "search", "card not arrived", "--tenant", "globex")
    assert elsewhere["results"] == []


def test_a_missing_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tickets = write_tickets(tmp_path / "tickets.csv", TICKETS)
    label = run_cli("kb", "import", tickets, "--text-column", "message", home=home)
    assert label.returncode == 1
    assert str(tickets) in label.stderr
    assert "'label'" in label.stderr
    assert "--label-column" in label.stderr

    reply = run_cli(
        "kb", "import", tickets, *IMPORT_TICKETS[:4], "--reply-column", "reply", "--json", home=home
    )
    assert reply.returncode == 1
    error = json.loads(reply.stdout)["error"]
    assert error["code"] == "missing_column"
    assert error["details"]["file"] == str(tickets)
    assert error["details"]["missing"] == ["reply"]
    assert str(tickets) in error["message"]
    assert "'reply'" in error["message"]


@pytest.mark.parametrize(
    ("front_matter", "said"),
    [
        ("title: [never closed\n", "front matter is not valid YAML"),
        ("title: Fine\nintents: 5\n", "front matter field 'intents'"),
        ("title: Never ends\nintents: [card_arrival]\n\nBody without an end line.\n", "never closed"),
    ],
)
def test_bad_front_matter_names_the_file_and_imports_nothing(
    tmp_path: Path, articles: Path, front_matter: str, said: str
) -> None:
    home = tmp_path / "home"
    broken = articles / "cards" / "broken.md"
    closing = "" if said == "never closed" else "---\n"
    broken.write_text(f"---\n{front_matter}{closing}Body text.\n", encoding="utf-8")
    result = run_cli("kb", "import", articles, "--tenant", "acme", home=home)
    assert result.returncode == 1, result.stdout
    assert str(broken) in result.stderr
    assert said in result.stderr
    status = kb(home, "status")
    assert status["versions"] == []
    assert status["current"] is None
