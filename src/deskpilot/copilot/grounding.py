"""Which retrieved items may ground a reply, and the no-LLM (extractive) draft built from them.

Retrieval finds what is similar; grounding asks what can answer. An article answers the intents it is
written for, a resolved ticket answers with its reply; an item without intents must be close to the ticket
instead. When the classifier is confident, only the predicted intent counts; when it is not, its runner-up
intents count too. Nothing that can answer means no draft: the ticket goes to a person with its sources.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from deskpilot.copilot.prompts import ReplyTemplate
from deskpilot.retrieval.items import Hit
from deskpilot.retrieval.passages import split_sentences

EmbedFn = Callable[[Sequence[str]], np.ndarray]
_ENDED = re.compile(r"[.!?][\"'”’)\]]*$")


@dataclass(frozen=True)
class GroundingConfig:
    articles: int = 3  # help-center articles shown (and numbered) with a suggestion
    tickets: int = 3  # similar resolved tickets shown after them
    article_pool: int = 10  # closest articles searched, of which those for the triaged intent go first
    unlabeled_min_score: float = 0.5  # cosine an item without intents needs to count as answering
    sentence_min_score: float = 0.3  # cosine a quoted sentence needs with the ticket
    max_quoted: int = 3  # sentences an extractive draft quotes
    runner_up_intents: int = 2  # alternatives that count when the ticket is routed to a person


@dataclass(frozen=True)
class TriageView:
    """What the copilot needs from triage."""

    intent: str
    confidence: float
    route: str
    request_id: str | None = None
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class NumberedSource:
    number: int
    hit: Hit

    @property
    def answer_text(self) -> str | None:
        """What this source can be quoted from: an article's body, a ticket's reply."""
        item = self.hit.item
        return item.text if item.kind == "article" else item.reply

    def sentences(self) -> list[str]:
        text = self.answer_text
        return split_sentences(text) if text else []


def number_sources(hits: Sequence[Hit]) -> list[NumberedSource]:
    return [NumberedSource(i, hit) for i, hit in enumerate(hits, start=1)]


def intents_answered(triage: TriageView, config: GroundingConfig) -> set[str]:
    """The intents a source may answer: the triaged one, and its runner-ups when a person decides."""
    wanted = {triage.intent}
    if triage.route != "auto":
        wanted.update(triage.alternatives[: config.runner_up_intents])
    return wanted


def answering(
    sources: Sequence[NumberedSource], triage: TriageView, config: GroundingConfig
) -> list[NumberedSource]:
    """The sources that may ground a draft for this ticket, best first."""
    wanted = intents_answered(triage, config)
    found = []
    for source in sources:
        item = source.hit.item
        if not source.answer_text:
            continue
        if item.intents:
            if wanted.intersection(item.intents):
                found.append(source)
        elif (source.hit.dense_score or 0.0) >= config.unlabeled_min_score:
            found.append(source)
    return found


def extractive_draft(
    template: ReplyTemplate,
    triage: TriageView,
    query: np.ndarray,
    candidates: Sequence[NumberedSource],
    embed: EmbedFn,
    config: GroundingConfig,
) -> str | None:
    """The template's opening, the sentences of the answering sources closest to the ticket (each with its
    citation), and the closing line; ``None`` when no sentence is close enough."""
    scored: list[tuple[float, int, int, str]] = []  # (similarity, source number, position, sentence)
    for source in candidates:
        sentences = source.sentences()
        if not sentences:
            continue
        similarity = embed(sentences) @ query
        scored += [
            (float(s), source.number, i, text)
            for i, (s, text) in enumerate(zip(similarity, sentences, strict=True))
        ]
    picked = _pick(scored, config)
    if not picked:
        return None
    body = " ".join(f"{_terminated(text)} [{number}]" for _, number, _, text in picked)
    opening, closing = template.frame(triage.intent)
    return f"{opening} {body} {closing}"


def _pick(
    scored: list[tuple[float, int, int, str]], config: GroundingConfig
) -> list[tuple[float, int, int, str]]:
    """Up to ``max_quoted`` sentences: the best source's best ones first, in that source's own order, then
    the next sources' best; never below ``sentence_min_score``."""
    good = [row for row in scored if row[0] >= config.sentence_min_score]
    if not good:
        return []
    best_source = max(good)[1]
    own = sorted(row for row in good if row[1] == best_source)[::-1][: config.max_quoted]
    picked = sorted(own, key=lambda row: row[2])
    others = sorted((row for row in good if row[1] != best_source), reverse=True)
    for row in others:
        if len(picked) >= config.max_quoted:
            break
        if all(row[3] != p[3] for p in picked):
            picked.append(row)
    return picked


def _terminated(sentence: str) -> str:
    """A quoted list item ("Open the app") ends with a period, or the guard's sentence splitter would run it
    into the next quote and the closing line, merging their citations."""
    if _ENDED.search(sentence):
        return sentence
    return sentence.rstrip(" :;,") + "."
