"""The bundled sample knowledge base: it answers every Banking77 intent, parses cleanly, holds no PII, and
says plainly that it is sample content."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deskpilot.data.pii import PiiRedactor
from deskpilot.retrieval.articles import article_files, split_front_matter
from deskpilot.retrieval.items import KnowledgeItem
from deskpilot.retrieval.sources import read_articles, split_sentences
from tests.helpers import BUNDLED_DATA

KB = BUNDLED_DATA.parent / "kb"
FILES = article_files(KB)


@pytest.fixture(scope="module")
def intents() -> set[str]:
    return set(pd.read_csv(BUNDLED_DATA)["category"])


@pytest.fixture(scope="module")
def articles() -> list[KnowledgeItem]:
    return read_articles(KB, tenant="demo")


def test_every_intent_has_an_article(articles: list[KnowledgeItem], intents: set[str]) -> None:
    covered = {intent for item in articles for intent in item.intents}
    assert len(intents) == 77
    assert intents - covered == set()


def test_the_knowledge_base_has_a_sensible_size(articles: list[KnowledgeItem]) -> None:
    assert 60 <= len(articles) <= 77
    assert len({item.id for item in articles}) == len(articles)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(KB).as_posix())
def test_each_article_is_well_formed(path: Path, intents: set[str]) -> None:
    meta, _ = split_front_matter(path.read_text(encoding="utf-8"), path)
    assert meta.extra is not None
    assert meta.extra.get("sample") is True
    assert meta.title
    assert meta.intents
    assert set(meta.intents) <= intents, set(meta.intents) - intents
    (item,) = read_articles(path, tenant="demo")
    assert item.title == meta.title
    words = len(item.text.split())
    assert 60 <= words <= 250, words
    assert 2 <= len(item.text.split("\n\n")) <= 5
    assert all(s.endswith((".", "?", "!")) for s in split_sentences(item.text))


def test_no_article_contains_pii(articles: list[KnowledgeItem]) -> None:
    redactor = PiiRedactor()
    found = {
        item.id: [item.text[s.start : s.end] for s in redactor.find(item.text)]
        for item in articles
        if redactor.find(item.text) or redactor.find(item.title or "")
    }
    assert found == {}
    raw = {path.name: redactor.find(path.read_text(encoding="utf-8")) for path in FILES}
    assert {name: spans for name, spans in raw.items() if spans} == {}


def test_readme_says_it_is_sample_content() -> None:
    readme = (KB / "README.md").read_text(encoding="utf-8")
    assert "SAMPLE CONTENT" in readme
    assert "not the help content" in readme
    assert "Apache" in readme
    assert "deskpilot kb import data/banking77/kb --tenant demo" in readme
    assert all(path.name != "README.md" for path in FILES if path.parent == KB)
