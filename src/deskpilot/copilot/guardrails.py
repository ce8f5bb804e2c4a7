"""Output guardrails: every sentence of a draft must be supported by a source it cites, or it goes.

Checked on every draft, the extractive one included: citations name real sources; a claim's support (the
cosine similarity of the sentence and the best sentence of the sources it cites) reaches ``min_support``;
no blocked topic; nothing of the system prompt leaks; no PII; a maximum length. A sentence that fails is
removed and the reason flagged; a draft left with no supported claim is no draft at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from deskpilot.copilot.prompts import ReplyTemplate
from deskpilot.data.pii import PiiRedactor
from deskpilot.retrieval.passages import split_sentences

NO_ANSWER = "NO_ANSWER"
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_LEADING_CITATIONS = re.compile(r"^((?:\[\d+(?:\s*,\s*\d+)*\]\s*)+)")
_WORD = re.compile(r"[a-z0-9]+")
LEAK_SHINGLE = 6  # words in a row shared with the system prompt that count as leaking it

SupportFn = Callable[[str, Sequence[str]], float]
"""(sentence, the cited sources' sentences) → the best cosine similarity."""


@dataclass(frozen=True)
class GuardConfig:
    min_support: float = 0.6
    max_chars: int = 1200
    max_sentences: int = 6


@dataclass(frozen=True)
class CheckedSentence:
    text: str  # without its citation markers
    citations: tuple[int, ...]
    support: float | None  # None: a courtesy sentence, needing no source
    kept: bool
    flag: str | None = None


@dataclass(frozen=True)
class GuardedDraft:
    text: str | None
    citations: tuple[int, ...]
    sentences: tuple[CheckedSentence, ...]
    flags: tuple[str, ...] = field(default=())

    @property
    def grounded_share(self) -> float:
        """Share of the claims (non-courtesy sentences) offered that were supported and kept."""
        claims = [s for s in self.sentences if s.support is not None or s.flag == "uncited"]
        return sum(s.kept for s in claims) / len(claims) if claims else 0.0


class DraftGuard:
    def __init__(
        self,
        template: ReplyTemplate,
        redactor: PiiRedactor,
        support: SupportFn,
        config: GuardConfig | None = None,
    ) -> None:
        self.template = template
        self.redactor = redactor
        self.support = support
        self.config = config or GuardConfig()
        # the prompt as sent (its {max_sentences} filled in), and as written
        sent = template.system.format(max_sentences=self.config.max_sentences)
        self._leak_shingles = _shingles(sent) | _shingles(template.system)

    def check(
        self, draft: str, sources: Mapping[int, Sequence[str]], exempt: Collection[str] = ()
    ) -> GuardedDraft:
        """``sources`` maps each citation number offered to that source's sentences; ``exempt`` lists exact
        sentences that need no source (the template's own opening and closing for this ticket)."""
        raw = draft.strip()
        if not raw or raw.upper().startswith(NO_ANSWER):
            return GuardedDraft(None, (), (), ("no_answer",))
        flags: list[str] = []
        checked: list[CheckedSentence] = []
        frame = {_bare(sentence) for sentence in exempt}
        for text, cited in split_cited(raw):
            checked.append(self._sentence(text, cited, sources, frame))
        kept = [s for s in checked if s.kept]
        kept, cut = _within(kept, self.config.max_chars, self.config.max_sentences)
        if cut:
            flags.append("truncated")
            checked = [
                s
                if s.kept is False or s in kept
                else CheckedSentence(s.text, s.citations, s.support, False, "length")
                for s in checked
            ]
        flags += sorted({s.flag for s in checked if s.flag is not None and s.flag != "length"})
        if not any(s.support is not None for s in kept):
            return GuardedDraft(None, (), tuple(checked), (*flags, "no_supported_claim"))
        text = " ".join(_render(s) for s in kept)
        redacted = self.redactor.redact(text)
        if redacted != text:
            flags.append("pii_redacted")
        citations = tuple(sorted({n for s in kept for n in s.citations}))
        return GuardedDraft(redacted, citations, tuple(checked), tuple(flags))

    def _sentence(
        self,
        text: str,
        cited: tuple[int, ...],
        sources: Mapping[int, Sequence[str]],
        frame: Collection[str] = (),
    ) -> CheckedSentence:
        for name, pattern in self.template.blocked_topics.items():
            if pattern.search(text):
                return CheckedSentence(text, cited, None, False, f"blocked_topic:{name}")
        if self._leaks(text):
            return CheckedSentence(text, cited, None, False, "prompt_leak")
        if _bare(text) in frame or self.template.is_courtesy(text):
            return CheckedSentence(text, (), None, True)
        valid = tuple(n for n in cited if n in sources)
        if not valid:
            return CheckedSentence(text, cited, 0.0, False, "uncited" if not cited else "bad_citation")
        pool = [sentence for n in valid for sentence in sources[n]]
        verbatim = _bare(text) in {_bare(sentence) for sentence in pool}
        score = 1.0 if verbatim else self.support(text, pool)
        if score < self.config.min_support:
            return CheckedSentence(text, valid, score, False, "unsupported")
        return CheckedSentence(text, valid, score, True)

    def _leaks(self, text: str) -> bool:
        return bool(_shingles(text) & self._leak_shingles)


def split_cited(draft: str) -> list[tuple[str, tuple[int, ...]]]:
    """Sentences with the citation numbers attached to them, markers removed from the text.

    "Cards arrive in 5 days [1]." and "Cards arrive in 5 days. [1]" both cite 1 for that sentence.
    """
    pieces: list[tuple[str, tuple[int, ...]]] = []
    for raw in split_sentences(draft.replace("\n", " ")):
        sentence = raw
        leading = _LEADING_CITATIONS.match(sentence)
        if leading and pieces:
            text, cited = pieces[-1]
            pieces[-1] = (text, cited + _numbers(leading.group(1)))
            sentence = sentence[leading.end() :].strip()
            if not sentence:
                continue
        numbers = _numbers(sentence)
        text = " ".join(_CITATION.sub(" ", sentence).split())
        text = re.sub(r"\s+([.!?,;:])", r"\1", text)
        if text:
            pieces.append((text, numbers))
        elif pieces:
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + numbers)
    return [(text, tuple(dict.fromkeys(cited))) for text, cited in pieces]


def _bare(sentence: str) -> str:
    """A sentence without its final punctuation: a quoted list item gains a period in a draft."""
    return sentence.rstrip(" .!?:;,")


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for group in _CITATION.findall(text) for n in group.split(","))


def _render(sentence: CheckedSentence) -> str:
    if not sentence.citations:
        return sentence.text
    marks = "".join(f"[{n}]" for n in sentence.citations)
    body = sentence.text
    if body and body[-1] in ".!?":
        return f"{body[:-1]} {marks}{body[-1]}"
    return f"{body} {marks}"


def _within(
    sentences: list[CheckedSentence], max_chars: int, max_sentences: int
) -> tuple[list[CheckedSentence], bool]:
    kept: list[CheckedSentence] = []
    length = 0
    for sentence in sentences:
        size = len(_render(sentence)) + (1 if kept else 0)
        if len(kept) >= max_sentences or length + size > max_chars:
            return kept, True
        kept.append(sentence)
        length += size
    return kept, False


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + LEAK_SHINGLE]) for i in range(len(words) - LEAK_SHINGLE + 1)}
