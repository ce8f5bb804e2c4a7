"""Paragraphs and sentences of an article, the units a grounded reply quotes and cites.

Sentence splitting is a regular expression plus a short list of abbreviations: enough for support prose
("e.g.", "i.e.", "approx.", "U.S.", decimals such as "1.5", amounts such as "$2.50"), with no model to load.
"""

from __future__ import annotations

import re

from deskpilot.retrieval.items import KnowledgeItem

# A candidate boundary: terminal punctuation (plus closing quotes or brackets), whitespace, then something
# that can start a sentence. A lowercase next word never starts one, which settles "e.g. the card".
_BOUNDARY = re.compile(r"([.!?]+[\"'”’)\]]*)[ \t]+(?=[\"'“‘(\[]*[A-Z0-9£$€])")
_LAST_WORD = re.compile(r"(\S+)$")
_INITIALS = re.compile(r"^[(\[\"']*(?:[A-Za-z]\.){2,}$")  # U.S., e.g., i.e.
_INITIAL = re.compile(r"^[(\[\"']*[A-Z]\.$")  # a single capital: a middle initial, "Plan B." is rarer
# Never the end of a sentence, whatever follows.
_ABBREVIATIONS = frozenset(
    {
        "e.g.", "i.e.", "eg.", "ie.", "cf.", "vs.", "approx.", "appr.", "incl.", "excl.", "esp.", "min.",
        "max.", "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "inc.", "ltd.", "co.", "corp.",
        "dept.", "est.", "jan.", "feb.", "mar.", "apr.", "jun.", "jul.", "aug.", "sep.", "sept.", "oct.",
        "nov.", "dec.", "mon.", "tue.", "wed.", "thu.", "fri.", "sat.", "sun.", "ref.", "tel.", "acc.",
    }
)  # fmt: skip
# Abbreviations that only continue into a number ("No. 5", "p. 12"); before a word they end a sentence.
_BEFORE_NUMBER = frozenset({"no.", "nos.", "nr.", "p.", "pp.", "vol.", "art.", "fig.", "sec.", "ch."})
# Often the last word of a sentence: "... at 9 a.m. Transfers ..." splits.
_MAY_END = frozenset({"a.m.", "p.m.", "etc."})


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, trimmed, in order; a line break always ends one.

    Line breaks count as boundaries because the article converters join soft-wrapped lines and keep only
    meaningful ones (list items, explicit breaks), each of which should be quotable alone.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _BOUNDARY.finditer(line):
            end = match.end(1)
            if _continues(line[start:end], line[match.end() :]):
                continue
            _append(sentences, line[start:end])
            start = match.end()
        _append(sentences, line[start:])
    return sentences


def _continues(before: str, after: str) -> bool:
    """Whether the period ending ``before`` belongs to an abbreviation rather than ending a sentence."""
    if not before.endswith("."):
        return False
    found = _LAST_WORD.search(before)
    word = found.group(1) if found else ""
    bare = word.lstrip("([\"'").lower()
    if bare in _MAY_END:
        return False
    if bare in _ABBREVIATIONS or _INITIALS.match(word) or _INITIAL.match(word):
        return True
    return bare in _BEFORE_NUMBER and after[:1].isdigit()


def _append(sentences: list[str], piece: str) -> None:
    piece = piece.strip()
    if piece:
        sentences.append(piece)


def split_paragraphs(text: str) -> list[str]:
    """Blocks of ``text`` separated by blank lines, trimmed, empty ones dropped."""
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def article_passages(item: KnowledgeItem) -> list[str]:
    """An item's body as paragraphs (the readers separate them with blank lines), without its title."""
    return split_paragraphs(item.text)
