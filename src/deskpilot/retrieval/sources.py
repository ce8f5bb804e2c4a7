"""Where the copilot's knowledge comes from: resolved-ticket files and help-center articles.

The readers live in :mod:`~deskpilot.retrieval.tickets` and :mod:`~deskpilot.retrieval.articles`; this module
is the one place callers import them from, and decides which reader a path needs. Every text they return is
NOT yet PII-redacted: the import workflow redacts before anything is stored or indexed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from deskpilot.data.io import FORMATS_BY_SUFFIX, read_table
from deskpilot.errors import DataFileNotFoundError, UnsupportedFormatError
from deskpilot.retrieval.articles import ARTICLE_SUFFIXES, TABLE_COLUMNS, read_articles, split_front_matter
from deskpilot.retrieval.passages import article_passages, split_paragraphs, split_sentences
from deskpilot.retrieval.tickets import TicketLoad, load_tickets, read_tickets, ticket_digest

__all__ = [
    "SourceKind",
    "TicketLoad",
    "article_passages",
    "detect_kind",
    "load_tickets",
    "read_articles",
    "read_tickets",
    "split_front_matter",
    "split_paragraphs",
    "split_sentences",
    "ticket_digest",
]

SourceKind = Literal["tickets", "articles"]


def detect_kind(path: Path | str) -> SourceKind:
    """A folder or a Markdown/HTML file holds articles, so does a table with ``title`` and ``body`` columns;
    any other table holds tickets. A table is read for its columns: a malformed file is an error here."""
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: no such file or folder", details={"file": str(path)})
    if path.is_dir() or path.suffix.lower() in ARTICLE_SUFFIXES:
        return "articles"
    if path.suffix.lower() not in FORMATS_BY_SUFFIX:
        known = ", ".join(sorted(ARTICLE_SUFFIXES | set(FORMATS_BY_SUFFIX)))
        raise UnsupportedFormatError(
            f"{path}: unknown knowledge source format {path.suffix or '(no extension)'!r}; "
            f"use a folder of articles or one of {known}",
            details={"file": str(path), "suffix": path.suffix},
        )
    columns = set(read_table(path).frame.columns)
    return "articles" if columns.issuperset(TABLE_COLUMNS) else "tickets"
