"""Grounding: which retrieved items may answer a ticket, and the extractive draft quoted from them."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from deskpilot.copilot.grounding import (
    GroundingConfig,
    NumberedSource,
    TriageView,
    answering,
    extractive_draft,
    number_sources,
)
from deskpilot.copilot.guardrails import DraftGuard, split_cited
from deskpilot.copilot.prompts import load_template
from deskpilot.data.pii import PiiRedactor
from deskpilot.retrieval.items import Hit, Kind, KnowledgeItem

TEMPLATE = load_template()
CONFIG = GroundingConfig()
_STOP = frozenset({
    "a", "an", "and", "are", "be", "can", "for", "i", "in", "is", "it",
    "my", "of", "on", "or", "the", "to", "we", "will", "with", "you", "your",
})  # fmt: skip


class WordEncoder:
    """Bag of words (stopwords dropped), one dimension per distinct word: cosine is word overlap."""

    dimension = 512

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, 0] = 1e-3
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                if word not in _STOP:
                    out[row, 1 + self.vocabulary.setdefault(word, len(self.vocabulary))] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def item(
    id_: str,
    kind: Kind = "article",
    intents: tuple[str, ...] = (),
    text: str = "text",
    reply: str | None = None,
) -> KnowledgeItem:
    return KnowledgeItem(id=id_, tenant="acme", kind=kind, text=text, intents=intents, reply=reply)


def hit(knowledge: KnowledgeItem, dense: float | None = 0.4) -> Hit:
    return Hit(item=knowledge, score=0.03, dense_score=dense)


def auto(intent: str = "card_arrival") -> TriageView:
    return TriageView(intent=intent, confidence=0.97, route="auto", alternatives=("lost_card", "card_limits"))


def human(intent: str = "card_arrival") -> TriageView:
    return TriageView(
        intent=intent, confidence=0.41, route="human", alternatives=("lost_card", "card_limits", "refund")
    )


def ids(sources: Sequence[NumberedSource]) -> list[str]:
    return [s.hit.item.id for s in sources]


def test_sources_are_numbered_from_one_in_retrieval_order() -> None:
    sources = number_sources([hit(item("a")), hit(item("b"))])
    assert [(s.number, s.hit.item.id) for s in sources] == [(1, "a"), (2, "b")]


def test_articles_answer_only_the_intents_they_are_written_for() -> None:
    sources = number_sources(
        [
            hit(item("arrival", intents=("card_arrival",))),
            hit(item("lost", intents=("lost_card",))),
            hit(item("both", intents=("card_limits", "card_arrival"))),
        ]
    )
    assert ids(answering(sources, auto(), CONFIG)) == ["arrival", "both"]
    assert ids(answering(sources, auto("refund"), CONFIG)) == []


def test_tickets_answer_only_with_a_reply() -> None:
    sources = number_sources(
        [
            hit(item("t1", "ticket", ("card_arrival",), "where is my card", reply="Cards arrive in 5 days.")),
            hit(item("t2", "ticket", ("card_arrival",), "my card is late")),
            hit(item("t3", "ticket", ("card_arrival",), "card?", reply="")),
            hit(item("t4", "ticket", ("lost_card",), "lost it", reply="Freeze it in the app.")),
        ]
    )
    found = answering(sources, auto(), CONFIG)
    assert ids(found) == ["t1"]
    assert found[0].answer_text == "Cards arrive in 5 days."
    assert found[0].sentences() == ["Cards arrive in 5 days."]


def test_a_person_route_also_accepts_the_runner_up_intents() -> None:
    sources = number_sources(
        [
            hit(item("arrival", intents=("card_arrival",))),
            hit(item("lost", intents=("lost_card",))),
            hit(item("limits", intents=("card_limits",))),
            hit(item("refund", intents=("refund",))),  # the third alternative: beyond runner_up_intents
        ]
    )
    assert ids(answering(sources, auto(), CONFIG)) == ["arrival"]
    assert ids(answering(sources, human(), CONFIG)) == ["arrival", "lost", "limits"]
    assert ids(answering(sources, human(), GroundingConfig(runner_up_intents=0))) == ["arrival"]


def test_an_unlabeled_item_needs_the_score() -> None:
    sources = number_sources(
        [
            hit(item("close"), dense=0.5),
            hit(item("far"), dense=0.49),
            hit(item("unscored"), dense=None),
            hit(item("reply", "ticket", text="card late", reply="It ships today."), dense=0.8),
        ]
    )
    assert ids(answering(sources, auto(), CONFIG)) == ["close", "reply"]
    assert ids(answering(sources, auto(), GroundingConfig(unlabeled_min_score=0.9))) == []


ARRIVAL = (
    "New cards arrive within 5 working days. You can track the delivery in the app under Cards. "
    "Our offices are closed on public holidays."
)
TICKET_REPLY = "A delayed card arrives within 10 working days; after that we send a new card."


def draft_for(text: str, sources: Sequence[NumberedSource], config: GroundingConfig = CONFIG) -> str | None:
    encoder = WordEncoder()
    query = encoder.encode([text])[0]
    return extractive_draft(TEMPLATE, auto(), query, sources, encoder.encode, config)


def test_the_extractive_draft_quotes_verbatim_sentences_with_their_citations() -> None:
    sources = number_sources(
        [
            hit(item("arrival", intents=("card_arrival",), text=ARRIVAL)),
            hit(item("t1", "ticket", ("card_arrival",), "late card", reply=TICKET_REPLY)),
        ]
    )
    draft = draft_for("when will my new card arrive, can I track the delivery", sources)
    assert draft is not None
    assert draft.startswith("Thank you for getting in touch about card arrival. ")
    assert draft.endswith(TEMPLATE.closing)
    quoted = split_cited(draft)[1:-1]
    assert quoted == [
        ("New cards arrive within 5 working days.", (1,)),
        ("You can track the delivery in the app under Cards.", (1,)),
        ("A delayed card arrives within 10 working days; after that we send a new card.", (2,)),
    ]
    pools = {s.number: s.sentences() for s in sources}
    assert all(text in pools[cited[0]] for text, cited in quoted)


def test_no_quoted_sentence_is_below_the_sentence_threshold() -> None:
    sources = number_sources([hit(item("arrival", intents=("card_arrival",), text=ARRIVAL))])
    draft = draft_for("when will my new card arrive", sources)
    assert draft is not None
    assert "public holidays" not in draft
    assert "track" not in draft
    assert "New cards arrive within 5 working days. [1]" in draft
    assert draft_for("exchange rate for dollars", sources) is None
    assert (
        draft_for("when will my new card arrive", sources, GroundingConfig(sentence_min_score=0.99)) is None
    )


def test_the_extractive_draft_quotes_at_most_max_quoted_sentences_best_source_first_in_its_order() -> None:
    sources = number_sources(
        [
            hit(item("other", intents=("card_arrival",), text="A card can arrive late.")),
            hit(item("arrival", intents=("card_arrival",), text=ARRIVAL)),
        ]
    )
    config = GroundingConfig(max_quoted=2, sentence_min_score=0.2)
    draft = draft_for("new card arrive track delivery app", sources, config)
    assert draft is not None
    assert [cited for _, cited in split_cited(draft)[1:-1]] == [(2,), (2,)]
    assert draft.index("New cards arrive") < draft.index("You can track")


def test_list_items_without_a_period_stay_separate_sentences_that_pass_the_guard() -> None:
    steps = "To order a new card:\nOpen the app\nTap Cards and order a new card"
    sources = number_sources([hit(item("order", intents=("card_arrival",), text=steps))])
    encoder = WordEncoder()
    query = encoder.encode(["order a new card in the app"])[0]
    draft = extractive_draft(TEMPLATE, auto(), query, sources, encoder.encode, CONFIG)
    assert draft is not None
    pieces = split_cited(draft)
    assert pieces[-1] == (TEMPLATE.closing, ())  # the closing line is not swallowed by the last quote
    assert ("Tap Cards and order a new card.", (1,)) in pieces

    def similarity(sentence: str, pool: Sequence[str]) -> float:
        vectors = encoder.encode([sentence, *pool])
        return float(np.max(vectors[1:] @ vectors[0]))

    guard = DraftGuard(TEMPLATE, PiiRedactor(), similarity)
    guarded = guard.check(draft, {1: sources[0].sentences()}, TEMPLATE.frame(auto().intent))
    assert guarded.text is not None
    assert guarded.flags == ()
    assert all(s.support in (None, 1.0) for s in guarded.sentences)
