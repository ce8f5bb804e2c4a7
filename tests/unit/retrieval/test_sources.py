"""Knowledge-source readers: resolved tickets from tables, articles from Markdown/HTML folders or tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskpilot.errors import (
    ContractViolationError,
    DataFileNotFoundError,
    DataFormatError,
    EmptyDatasetError,
    MissingColumnError,
    UnsupportedFormatError,
)
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.retrieval.sources import (
    article_passages,
    detect_kind,
    load_tickets,
    read_articles,
    read_tickets,
    split_sentences,
    ticket_digest,
)
from tests.helpers import WriteRows

# --- tickets


def test_tickets_carry_text_intent_and_digest_ids(write_rows: WriteRows) -> None:
    path = write_rows("t.csv", [{"text": " card lost ", "label": "lost"}, {"text": "fee?", "label": "fees"}])
    items = read_tickets(path, tenant="acme")
    assert [(i.text, i.intents, i.kind, i.tenant, i.reply) for i in items] == [
        ("card lost", ("lost",), "ticket", "acme", None),
        ("fee?", ("fees",), "ticket", "acme", None),
    ]
    assert items[0].id == ticket_digest("card lost")
    assert items[0].id.startswith("t-")
    assert len(items[0].id) == 18
    assert items[0].source == "t.csv:2"
    assert [i.id for i in read_tickets(path, tenant="other")] == [i.id for i in items]


def test_tickets_take_replies_and_ids_from_named_columns(write_rows: WriteRows) -> None:
    rows = [
        {"msg": "where is my card", "intent": "card_arrival", "answer": "It ships in 3 days.", "ref": 17},
        {"msg": "refund please", "intent": "request_refund", "answer": None, "ref": 18},
    ]
    path = write_rows("t.jsonl", rows)
    items = read_tickets(
        path, tenant="t", text_column="msg", label_column="intent", reply_column="answer", id_column="ref"
    )
    assert [(i.id, i.reply) for i in items] == [("17", "It ships in 3 days."), ("18", None)]


def test_a_blank_reply_cell_in_csv_is_no_reply(write_rows: WriteRows) -> None:
    path = write_rows(
        "t.csv", [{"text": "a", "label": "x", "reply": ""}, {"text": "b", "label": "x", "reply": "ok"}]
    )
    assert [i.reply for i in read_tickets(path, tenant="t", reply_column="reply")] == [None, "ok"]


def test_integer_labels_become_text(write_rows: WriteRows) -> None:
    path = write_rows("t.jsonl", [{"text": "a", "label": 3}])
    assert read_tickets(path, tenant="t")[0].intents == ("3",)


def test_repeated_ids_keep_the_last_row_and_are_counted(write_rows: WriteRows) -> None:
    rows = [
        {"text": "hello", "label": "a", "id": "1"},
        {"text": "other", "label": "b", "id": "2"},
        {"text": "hello again", "label": "c", "id": "1"},
    ]
    loaded = load_tickets(write_rows("t.csv", rows), tenant="t", id_column="id")
    assert [(i.id, i.text, i.intents) for i in loaded.items] == [
        ("2", "other", ("b",)),
        ("1", "hello again", ("c",)),
    ]
    assert (loaded.rows, loaded.replaced) == (3, 1)


def test_identical_texts_share_a_digest_and_the_last_label_wins(write_rows: WriteRows) -> None:
    rows = [{"text": "same words", "label": "a"}, {"text": "same words", "label": "b"}]
    loaded = load_tickets(write_rows("t.csv", rows), tenant="t")
    assert [i.intents for i in loaded.items] == [("b",)]
    assert loaded.replaced == 1


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ({"text": "  ", "label": "a"}, "text", "empty after trimming"),
        ({"text": "fine", "label": ""}, "label", "empty after trimming"),
    ],
)
def test_an_empty_cell_refuses_the_file_naming_file_line_and_column(
    write_rows: WriteRows, row: dict[str, str], column: str, reason: str
) -> None:
    path = write_rows("t.csv", [{"text": "ok", "label": "a"}, row])
    with pytest.raises(ContractViolationError) as caught:
        read_tickets(path, tenant="t")
    message = caught.value.message
    assert str(path) in message
    assert f"line 3, column {column!r}: {reason}" in message
    assert caught.value.details == {"file": str(path), "line": 3, "column": column, "reason": reason}


def test_parquet_problems_name_the_row(write_rows: WriteRows) -> None:
    path = write_rows("t.parquet", [{"text": "ok", "label": "a"}, {"text": None, "label": "a"}])
    with pytest.raises(ContractViolationError, match=r"row 2, column 'text': no value"):
        read_tickets(path, tenant="t")


def test_a_line_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "a", "label": "x"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(ContractViolationError, match=r"line 2: not valid JSON"):
        read_tickets(path, tenant="t")


def test_a_blank_id_names_its_row(write_rows: WriteRows) -> None:
    path = write_rows(
        "t.csv", [{"text": "a", "label": "x", "id": "7"}, {"text": "b", "label": "x", "id": " "}]
    )
    with pytest.raises(ContractViolationError, match=r"line 3, column 'id': empty after trimming"):
        read_tickets(path, tenant="t", id_column="id")


def test_a_reply_that_is_not_text_names_its_row(write_rows: WriteRows) -> None:
    path = write_rows("t.jsonl", [{"text": "a", "label": "x", "reply": {"body": "hi"}}])
    with pytest.raises(ContractViolationError, match=r"line 1, column 'reply': a dict, expected a string"):
        read_tickets(path, tenant="t", reply_column="reply")


@pytest.mark.parametrize("options", [{"label_column": "category"}, {"reply_column": "answer"}])
def test_a_missing_column_names_file_column_and_what_is_there(
    write_rows: WriteRows, options: dict[str, str]
) -> None:
    path = write_rows("t.csv", [{"text": "a", "label": "x"}])
    with pytest.raises(MissingColumnError) as caught:
        read_tickets(path, tenant="t", **options)
    missing = next(iter(options.values()))
    assert str(path) in caught.value.message
    assert repr(missing) in caught.value.message
    assert "'text', 'label'" in caught.value.message
    assert caught.value.details["missing"] == [missing]


def test_a_header_without_rows_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(EmptyDatasetError, match="no data rows"):
        read_tickets(path, tenant="t")


def test_a_missing_ticket_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFoundError, match=r"nope\.csv"):
        read_tickets(tmp_path / "nope.csv", tenant="t")


# --- articles


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


ARTICLE = """---
title: Card delivery
intents: [card_arrival, card_delivery_estimate]
sample: true
---
# Card delivery

Your card **usually** arrives in *3-5* working days,
sent to your [home address](https://example.invalid/address).

## Tracking

- Open the `Cards` tab.
- Tap __Track__.

```
code stays as text
```
"""


def test_markdown_articles_become_plain_text_with_paragraphs(tmp_path: Path) -> None:
    write(tmp_path / "kb" / "Cards" / "Card Delivery.md", ARTICLE)
    (item,) = read_articles(tmp_path / "kb", tenant="acme")
    assert item == KnowledgeItem(
        id="cards-card-delivery",
        tenant="acme",
        kind="article",
        text=(
            "Your card usually arrives in 3-5 working days, sent to your home address.\n\n"
            "Tracking\n\nOpen the Cards tab.\nTap Track.\n\ncode stays as text"
        ),
        title="Card delivery",
        intents=("card_arrival", "card_delivery_estimate"),
        source="Cards/Card Delivery.md",
    )
    assert article_passages(item) == [
        "Your card usually arrives in 3-5 working days, sent to your home address.",
        "Tracking",
        "Open the Cards tab.\nTap Track.",
        "code stays as text",
    ]


def test_titles_fall_back_to_the_first_heading_then_the_file_name(tmp_path: Path) -> None:
    write(tmp_path / "b-heading.md", "Setext title\n============\n\nBody text.\n")
    write(tmp_path / "c_no_heading.markdown", "Just a body.\n")
    write(tmp_path / "a.md", "---\nid: custom-id\n---\nIntro first.\n\n# Later heading\n\nMore.\n")
    items = read_articles(tmp_path, tenant="t")
    assert [(i.id, i.title, i.text) for i in items] == [
        ("custom-id", "Later heading", "Intro first.\n\nLater heading\n\nMore."),
        ("b-heading", "Setext title", "Body text."),
        ("c-no-heading", "C no heading", "Just a body."),
    ]


def test_the_root_readme_and_hidden_paths_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "README.md", "# About this folder\n\nNot an article.\n")
    write(tmp_path / ".drafts" / "wip.md", "Draft.\n")
    write(tmp_path / "notes.txt", "Not an article either.\n")
    write(tmp_path / "sub" / "README.md", "# Sub readme\n\nThis one is an article.\n")
    assert [i.id for i in read_articles(tmp_path, tenant="t")] == ["sub-readme"]


HTML = """<!doctype html><html><head><title>Fees &amp; limits</title>
<style>p { color: red }</style><script>var x = "<p>hidden</p>";</script></head>
<body><h1>Fees &amp; limits</h1><p>Card payments are <b>free</b>&nbsp;in euros.</p>
<ul><li>ATM: 2&#37; above the allowance.</li><li>Exchange: 0.5%.</li></ul>
<p>Line one<br>line two</p></body></html>"""


def test_html_articles_keep_blocks_and_drop_scripts(tmp_path: Path) -> None:
    write(tmp_path / "fees.html", HTML)
    (item,) = read_articles(tmp_path, tenant="t")
    assert item.title == "Fees & limits"
    assert item.text == (
        "Card payments are free in euros.\n\n"
        "ATM: 2% above the allowance.\nExchange: 0.5%.\n\n"
        "Line one\nline two"
    )


def test_html_title_comes_from_the_first_h1_without_a_title_tag(tmp_path: Path) -> None:
    write(tmp_path / "x.htm", "<p>Intro.</p><h1>Main</h1><p>Body.</p><h1>Second</h1>")
    (item,) = read_articles(tmp_path, tenant="t")
    assert (item.title, item.text) == ("Main", "Intro.\n\nMain\n\nBody.\n\nSecond")


def test_articles_from_a_table(write_rows: WriteRows) -> None:
    rows = [
        {
            "title": "Card delivery",
            "body": "Cards arrive in **5** days.",
            "intents": "card_arrival; card_delivery_estimate",
        },
        {
            "title": "PIN",
            "body": "Change it in the app.",
            "intents": "change_pin|pin_blocked",
            "id": "pin-help",
        },
    ]
    items = read_articles(write_rows("kb.csv", rows), tenant="t")
    assert [(i.id, i.title, i.text, i.intents, i.source) for i in items] == [
        (
            "card-delivery",
            "Card delivery",
            "Cards arrive in 5 days.",
            ("card_arrival", "card_delivery_estimate"),
            "kb.csv:2",
        ),
        ("pin-help", "PIN", "Change it in the app.", ("change_pin", "pin_blocked"), "kb.csv:3"),
    ]


def test_a_jsonl_table_may_list_intents(write_rows: WriteRows) -> None:
    path = write_rows("kb.jsonl", [{"title": "T", "body": "B.", "intents": ["a", "b"]}])
    assert read_articles(path, tenant="t")[0].intents == ("a", "b")


def test_a_table_row_with_an_empty_body_names_file_line_and_column(write_rows: WriteRows) -> None:
    path = write_rows("kb.csv", [{"title": "T", "body": "Fine."}, {"title": "U", "body": "  "}])
    with pytest.raises(
        ContractViolationError, match=r"kb\.csv: line 3, column 'body': the article body is empty"
    ):
        read_articles(path, tenant="t")


def test_an_article_table_needs_title_and_body(write_rows: WriteRows) -> None:
    path = write_rows("kb.csv", [{"title": "T", "text": "x"}])
    with pytest.raises(MissingColumnError, match=r"missing column 'body'.*'title', 'text'"):
        read_articles(path, tenant="t")


@pytest.mark.parametrize(
    ("front_matter", "pattern"),
    [
        ("intents: []\ntitle: a: b\n", r"front matter is not valid YAML \(line 3\): mapping values"),
        ("intents: card_arrival\n", r"field 'intents' must be a list of non-empty strings"),
        (
            "intents: [card_arrival, 3]\n",
            r"field 'intents' must be a list of non-empty strings, not a list holding int",
        ),
        ("title: 12\n", r"field 'title' must be a non-empty string"),
        ("- just\n- a list\n", r"front matter must be a mapping"),
    ],
)
def test_bad_front_matter_names_the_file_and_field(tmp_path: Path, front_matter: str, pattern: str) -> None:
    path = write(tmp_path / "bad.md", f"---\n{front_matter}---\nBody.\n")
    with pytest.raises(DataFormatError, match=pattern) as caught:
        read_articles(tmp_path, tenant="t")
    assert str(path) in caught.value.message
    assert caught.value.details["file"] == str(path)


def test_unclosed_front_matter_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "bad.md", "---\ntitle: x\nBody.\n")
    with pytest.raises(DataFormatError, match="never closed"):
        read_articles(tmp_path, tenant="t")


def test_an_article_without_body_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.md", "---\ntitle: Nothing here\n---\n# Nothing here\n")
    with pytest.raises(EmptyDatasetError, match="no body text") as caught:
        read_articles(tmp_path, tenant="t")
    assert caught.value.details == {"file": str(path), "field": "body"}


def test_two_articles_with_one_id_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.md", "---\nid: same\n---\nOne.\n")
    write(tmp_path / "b.md", "---\nid: same\n---\nTwo.\n")
    with pytest.raises(DataFormatError, match=r"two articles have the id 'same' \(a\.md and b\.md\)"):
        read_articles(tmp_path, tenant="t")


def test_a_folder_without_articles_is_empty(tmp_path: Path) -> None:
    write(tmp_path / "README.md", "Only a readme.\n")
    with pytest.raises(EmptyDatasetError, match="no article files"):
        read_articles(tmp_path, tenant="t")


def test_an_article_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "latin.md").write_bytes("Caf\xe9 hours.".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin\.md: not UTF-8 text"):
        read_articles(tmp_path, tenant="t")


def test_an_unknown_article_format_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"notes\.txt"):
        read_articles(write(tmp_path / "notes.txt", "x"), tenant="t")
    with pytest.raises(DataFileNotFoundError):
        read_articles(tmp_path / "missing", tenant="t")


# --- detect_kind


def test_detect_kind(tmp_path: Path, write_rows: WriteRows) -> None:
    assert detect_kind(tmp_path) == "articles"
    assert detect_kind(write(tmp_path / "one.md", "x")) == "articles"
    assert detect_kind(write_rows("kb.csv", [{"title": "t", "body": "b"}])) == "articles"
    assert detect_kind(write_rows("tickets.jsonl", [{"text": "t", "label": "l"}])) == "tickets"
    assert detect_kind(write_rows("odd.csv", [{"title": "t", "text": "b"}])) == "tickets"
    with pytest.raises(UnsupportedFormatError):
        detect_kind(write(tmp_path / "x.txt", "x"))
    with pytest.raises(DataFileNotFoundError):
        detect_kind(tmp_path / "missing.csv")


# --- sentences


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Open the app. Tap Cards.", ["Open the app.", "Tap Cards."]),
        ("Use a wallet, e.g. Apple Pay. It is free.", ["Use a wallet, e.g. Apple Pay.", "It is free."]),
        (
            "Some cards, i.e. prepaid ones, fail. Try again.",
            ["Some cards, i.e. prepaid ones, fail.", "Try again."],
        ),
        (
            "The fee is 1.5 percent. It applies at weekends.",
            ["The fee is 1.5 percent.", "It applies at weekends."],
        ),
        ("It costs $2.50. Then it is free.", ["It costs $2.50.", "Then it is free."]),
        ("Cards from the U.S. Work too.", ["Cards from the U.S. Work too."]),
        ("Banks in the U.S. and Canada. Next.", ["Banks in the U.S. and Canada.", "Next."]),
        (
            "Transfers start at 9 a.m. Weekends are slower.",
            ["Transfers start at 9 a.m.", "Weekends are slower."],
        ),
        ("See form No. 5 first. Then wait.", ["See form No. 5 first.", "Then wait."]),
        ("Is it blocked? Yes! Unblock it.", ["Is it blocked?", "Yes!", "Unblock it."]),
        ('Tap "Freeze." Then wait.', ['Tap "Freeze."', "Then wait."]),
        ("Wait 3 days (approx. Friday). Then call.", ["Wait 3 days (approx. Friday).", "Then call."]),
        ("One line\nAnother line", ["One line", "Another line"]),
        ("  ", []),
        ("Visit example.com today. Done.", ["Visit example.com today.", "Done."]),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences
