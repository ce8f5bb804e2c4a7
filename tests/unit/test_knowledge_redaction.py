"""What ``kb import`` stores: every text redacted, and no id that carries or digests personal data."""

from __future__ import annotations

from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.retrieval.tickets import ticket_digest
from deskpilot.workflows.knowledge import redact_items, sources_digest


def ticket(item_id: str, text: str, reply: str | None = None) -> KnowledgeItem:
    return KnowledgeItem(id=item_id, tenant="acme", kind="ticket", text=text, intents=("x",), reply=reply)


def test_texts_titles_and_replies_are_redacted_and_counted() -> None:
    article = KnowledgeItem(
        id="a",
        tenant="acme",
        kind="article",
        title="Write to help@example.com",
        text="Call +44 20 7946 0958.",
    )
    (redacted_ticket, redacted_article), found = redact_items(
        [ticket("T-1", "card 4111 1111 1111 1111", reply="mail bob@example.org"), article]
    )
    assert redacted_ticket.text == "card <CARD>"
    assert redacted_ticket.reply == "mail <EMAIL>"
    assert redacted_article.title == "Write to <EMAIL>"
    assert "0958" not in redacted_article.text
    assert found == {"CARD": 1, "EMAIL": 2, "PHONE": 1}


def test_ids_never_carry_or_digest_personal_data() -> None:
    raw = "my card 4111 1111 1111 1111 never came"
    digested, email_id, plain = redact_items(
        [
            ticket(ticket_digest(raw), raw),
            ticket("jane.doe@example.com", "where is my card"),
            ticket("T-7", "where is my card"),
        ]
    )[0]
    assert digested.id == ticket_digest("my card <CARD> never came")  # not a digest of the card number
    assert "example.com" not in email_id.id
    assert email_id.id.startswith("t-")
    assert plain.id == "T-7"


def test_the_sources_digest_follows_content_not_order() -> None:
    one, two = ticket("T-1", "a"), ticket("T-2", "b")
    assert sources_digest([one, two]) == sources_digest([two, one])
    assert sources_digest([one, two]) != sources_digest([one, ticket("T-2", "b", reply="r")])
