"""What the index holds (:class:`KnowledgeItem`) and what a search returns (:class:`Hit`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["ticket", "article"]
KINDS: tuple[Kind, ...] = ("ticket", "article")


@dataclass(frozen=True)
class KnowledgeItem:
    """One resolved ticket or help-center article of one tenant, already PII-redacted.

    ``id`` is unique within its tenant: a ticket's own id when its source has one, else a digest of its text;
    an article's slug. ``intents`` is the ticket's final intent (one) or the intents an article answers.
    """

    id: str
    tenant: str
    kind: Kind
    text: str
    title: str | None = None
    intents: tuple[str, ...] = ()
    reply: str | None = None
    source: str = ""

    @property
    def search_text(self) -> str:
        """What both retrievers read: an article's title and body, a ticket's message."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Hit:
    """One fused result. Ranks are 1-based positions in each retriever's list (``None``: not in its list)."""

    item: KnowledgeItem
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None  # cosine similarity of the query and the item
    lexical_score: float | None = None  # BM25 score
    extra: dict[str, float] = field(default_factory=dict, compare=False)
