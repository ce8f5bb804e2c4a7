"""Retention and erasure reach the copilot's records: old suggestions go with old decisions, and an erased
ticket leaves the knowledge base and every published version of the retrieval index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from deskpilot.config import Settings
from deskpilot.retrieval.catalog import IndexCatalog
from deskpilot.store import migrate
from deskpilot.store.knowledge import SuggestionRecord
from deskpilot.store.knowledge_sql import SqlKnowledgeStore
from deskpilot.store.sql import SqlStore
from deskpilot.workflows import retention
from deskpilot.workflows.knowledge import KbImportRequest, import_knowledge
from tests.integration.copilot.kb_fixtures import link_encoder


def suggestion(suggestion_id: str, created_at: datetime) -> SuggestionRecord:
    return SuggestionRecord(
        tenant="acme",
        suggestion_id=suggestion_id,
        intent="card_arrival",
        route="auto",
        draft="Cards arrive in 5 days [1].",
        reason="grounded draft from the cited sources",
        provider="extractive",
        prompt_version="reply-v1",
        created_at=created_at,
    )


def test_a_purge_deletes_old_suggestions_and_their_verdicts_and_keeps_recent_ones(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    knowledge, store = SqlKnowledgeStore(url), SqlStore(url)
    try:
        now = datetime.now(UTC)
        knowledge.write_suggestion(suggestion("old", now - timedelta(days=40)))
        knowledge.write_suggestion(suggestion("new", now))
        knowledge.add_suggestion_feedback("acme", "old", "accepted", None)
        deleted = store.purge(now - timedelta(days=30))
        assert deleted.suggestions == 1
        assert knowledge.get_suggestion("acme", "old") is None
        assert knowledge.get_suggestion("acme", "new") is not None
        assert knowledge.acceptance("acme") == {}  # the old verdict went with its suggestion
    finally:
        knowledge.close()
        store.close()


def test_erasing_a_ticket_removes_it_from_the_knowledge_base_and_every_index_version(
    tmp_path: Path, encoder_cache: Path
) -> None:
    home = tmp_path / "home"
    link_encoder(home, encoder_cache)
    settings = Settings(home=home)
    tickets = tmp_path / "tickets.csv"
    pd.DataFrame(
        {
            "ticket": ["T-1", "T-2", "T-3"],
            "text": ["my card has not arrived", "how do I change my PIN", "my card was stolen"],
            "label": ["card_arrival", "change_pin", "lost_or_stolen_card"],
        }
    ).to_csv(tickets, index=False)
    import_knowledge(settings, KbImportRequest(tickets, "acme", "tickets", id_column="ticket"))
    pd.DataFrame({"ticket": ["T-4"], "text": ["my top-up failed"], "label": ["top_up_failed"]}).to_csv(
        tickets, index=False
    )
    import_knowledge(settings, KbImportRequest(tickets, "acme", "tickets", id_column="ticket"))
    catalog = IndexCatalog(settings.resolved_kb_dir)
    assert [v.version for v in catalog.versions()] == [1, 2]

    erased = retention.erase(settings, "T-2")

    assert erased.deleted.knowledge == 1
    versions = catalog.versions()
    assert [v.version for v in versions] == [3]  # rebuilt without it; versions 1 and 2 held it and are gone
    index = catalog.load()
    assert {item.id for item in index.items("acme")} == {"T-1", "T-3", "T-4"}
    assert all(hit.item.id != "T-2" for hit in index.search("acme", "how do I change my PIN", 10))


def test_erasing_the_last_ticket_clears_the_index(tmp_path: Path, encoder_cache: Path) -> None:
    home = tmp_path / "home"
    link_encoder(home, encoder_cache)
    settings = Settings(home=home)
    tickets = tmp_path / "tickets.csv"
    pd.DataFrame({"ticket": ["T-1"], "text": ["my card has not arrived"], "label": ["card_arrival"]}).to_csv(
        tickets, index=False
    )
    import_knowledge(settings, KbImportRequest(tickets, "acme", "tickets", id_column="ticket"))
    retention.erase(settings, "T-1", tenant="acme")
    catalog = IndexCatalog(settings.resolved_kb_dir)
    assert catalog.current_version() is None
    assert catalog.versions() == []


def test_a_ticket_whose_id_is_personal_data_is_found_by_its_erasure_and_articles_are_left_alone(
    tmp_path: Path, encoder_cache: Path
) -> None:
    home = tmp_path / "home"
    link_encoder(home, encoder_cache)
    settings = Settings(home=home)
    tickets = tmp_path / "tickets.csv"
    pd.DataFrame(
        {
            "ticket": ["jane.doe@example.com", "faq-1"],
            "text": ["my card has not arrived", "how do I change my PIN"],
            "label": ["card_arrival", "change_pin"],
        }
    ).to_csv(tickets, index=False)
    articles = tmp_path / "kb"
    articles.mkdir()
    (articles / "pin.md").write_text(
        "---\nid: faq-1\ntitle: PIN\nintents: [change_pin]\n---\nChange it in the app.\n"
    )
    import_knowledge(settings, KbImportRequest(tickets, "acme", "tickets", id_column="ticket"))
    import_knowledge(settings, KbImportRequest(articles, "acme", "articles"))
    stored = {item.id for item in IndexCatalog(settings.resolved_kb_dir).load().items("acme")}
    assert not any("example.com" in item_id for item_id in stored)  # the id that is PII is not kept

    assert retention.erase(settings, "jane.doe@example.com").deleted.knowledge == 1
    # ids are unique per tenant: the article faq-1 replaced the ticket of that id; erasing a ticket id
    # never deletes an article
    assert retention.erase(settings, "faq-1").deleted.knowledge == 0
    kinds = {(item.kind, item.id) for item in IndexCatalog(settings.resolved_kb_dir).load().items("acme")}
    assert kinds == {("article", "faq-1")}
