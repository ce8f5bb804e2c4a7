"""Markdown and HTML to plain text for retrieval: what a reader sees, with paragraph breaks as blank lines.

Deliberately small rather than a full renderer: help-center prose needs headings, emphasis, links, lists and
code blocks flattened, and nothing here should ever fail on odd markup. Within a paragraph, soft-wrapped
lines are joined; list items and explicit line breaks stay on lines of their own, so that each can be quoted
alone.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)(.*?)(?:\s+#+)?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(?:\s*\1){2,}\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+")
_TABLE_SEPARATOR = re.compile(r"^\s*\|\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")

_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REFERENCE_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS_STAR = re.compile(r"\*(?=\S)(.+?)(?<=\S)\*")
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![\w])_(?=\S)(.+?)(?<=\S)_(?![\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


@dataclass(frozen=True)
class Converted:
    """A document as plain text; ``heading`` is its first heading (a title candidate), or ``None``.

    ``leading_heading`` says whether that heading is the document's first block, so that a caller who uses
    it as the title can drop it from the body instead of repeating it.
    """

    text: str
    heading: str | None
    leading_heading: bool


def markdown_to_text(source: str) -> Converted:
    """Markdown (CommonMark-ish, with tables and raw inline HTML tolerated) as plain text."""
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks = _MarkdownBlocks()
    for index, line in enumerate(lines):
        blocks.feed(line, lines[index + 1] if index + 1 < len(lines) else "")
    blocks.close()
    paragraphs = [_join(block) for block in blocks.blocks]
    return Converted("\n\n".join(p for p in paragraphs if p), blocks.heading, blocks.leading)


class _MarkdownBlocks:
    """Line-by-line state: the finished blocks, the open one, an open code fence, the first heading."""

    def __init__(self) -> None:
        self.blocks: list[list[str]] = []
        self.current: list[str] = []
        self.heading: str | None = None
        self.leading = False
        self.fence: str | None = None

    def close(self) -> None:
        if self.current:
            self.blocks.append(self.current)
        self.current = []

    def feed(self, line: str, next_line: str) -> None:
        opened = _FENCE.match(line) if self.fence is None else None
        heading_text = None if self.fence is not None else _heading(line, next_line, self.current)
        if self.fence is not None:
            self._in_fence(line)
        elif opened:
            self.close()
            self.fence = opened.group(1)
        elif not line.strip() or _RULE.match(line) or _SETEXT_UNDERLINE.match(line):
            self.close()
        elif heading_text is not None:
            self._add_heading(_inline(heading_text))
        elif not (_REFERENCE_DEFINITION.match(line) or _TABLE_SEPARATOR.match(line)):
            self._add_line(_QUOTE.sub("", line))

    def _add_line(self, content: str) -> None:
        bullet = _BULLET.match(content)
        if bullet:
            self.current.append("\n" + _inline(bullet.group(1)))
        elif content.lstrip().startswith("|"):
            cells = [_inline(c) for c in content.strip().strip("|").split("|")]
            self.current.append("\n" + "; ".join(c for c in cells if c))
        elif text := _inline(content):
            self.current.append(text)

    def _in_fence(self, line: str) -> None:
        if self.fence is not None and line.strip().startswith(self.fence):
            self.fence = None
            self.close()
        elif line.strip():
            self.current.append("\n" + line.strip())

    def _add_heading(self, text: str) -> None:
        self.close()
        if not text:
            return
        if self.heading is None:
            self.heading, self.leading = text, not self.blocks
        self.blocks.append([text])


def _heading(line: str, next_line: str, current: list[str]) -> str | None:
    atx = _ATX_HEADING.match(line)
    if atx:
        return atx.group(1)
    if not current and line.strip() and _SETEXT_UNDERLINE.match(next_line) and not _BULLET.match(line):
        return line.strip()
    return None


def _inline(text: str) -> str:
    """Inline Markdown to text: links keep their words, emphasis and code keep their content."""
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REFERENCE_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(lambda m: m.group(2).strip(), text)
    text = _STRONG.sub(r"\2", text)
    text = _EMPHASIS_STAR.sub(r"\1", text)
    text = _EMPHASIS_UNDERSCORE.sub(r"\1", text)
    text = _STRIKE.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _ESCAPE.sub(r"\1", text)
    text = text.rstrip("\\")
    return _SPACES.sub(" ", html.unescape(text)).strip()


def _join(block: list[str]) -> str:
    """Soft-wrapped lines join with a space; list items and code lines (marked with a leading newline) keep
    their own line."""
    out = ""
    for piece in block:
        if piece.startswith("\n"):
            out = f"{out}\n{piece[1:]}" if out else piece[1:]
        else:
            out = f"{out} {piece}" if out else piece
    return "\n".join(line.strip() for line in out.split("\n") if line.strip())


_DROP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
_PARAGRAPH = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "blockquote", "pre",
        "ul", "ol", "dl", "table", "form", "fieldset", "figure", "figcaption", "details", "summary", "hr",
        "h1", "h2", "h3", "h4", "h5", "h6", "body", "html",
    }
)  # fmt: skip
_LINE = frozenset({"li", "br", "tr", "dt", "dd", "caption"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


class _TextExtractor(HTMLParser):
    """Collects visible text with block breaks; remembers ``<title>`` and the first ``<h1>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self.h1: str | None = None
        self.h1_leading = False
        self._drop_depth = 0
        self._in_title = False
        self._title_parts: list[str] = []
        self._h1_parts: list[str] | None = None
        self._h1_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _DROP:
            self._drop_depth += 1
        elif tag in _PARAGRAPH:
            self.parts.append("\n\n")
        elif tag in _LINE:
            self.parts.append("\n")
        if tag == "h1" and not self._h1_done and self._h1_parts is None:
            self.h1_leading = not "".join(self.parts).strip()
            self._h1_parts = []
        elif tag in {"td", "th"}:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LINE:
            self.parts.append("\n")
        elif tag in _PARAGRAPH:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            self.title = _SPACES.sub(" ", " ".join("".join(self._title_parts).split())) or self.title
        elif tag in _DROP:
            self._drop_depth = max(0, self._drop_depth - 1)
        elif tag in _PARAGRAPH:
            self.parts.append("\n\n")
        if tag == "h1" and self._h1_parts is not None and not self._h1_done:
            self.h1 = " ".join("".join(self._h1_parts).split()) or None
            self._h1_done = self.h1 is not None
            self._h1_parts = None if self._h1_done else self._h1_parts

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
            return
        if self._drop_depth:
            return
        self.parts.append(data)
        if self._h1_parts is not None:
            self._h1_parts.append(data)


def html_to_text(source: str) -> Converted:
    """HTML as plain text with the standard library parser; ``heading`` is ``<title>``, else the first h1."""
    parser = _TextExtractor()
    parser.feed(source)
    parser.close()
    raw = "".join(parser.parts)
    paragraphs = []
    for chunk in re.split(r"\n\s*\n", raw):
        lines = [_SPACES.sub(" ", line).strip() for line in chunk.split("\n")]
        text = "\n".join(line for line in lines if line)
        if text:
            paragraphs.append(text)
    heading = parser.title or parser.h1
    leading = parser.h1 is not None and parser.h1_leading and heading == parser.h1
    return Converted("\n\n".join(paragraphs), heading, leading)


def drop_leading_heading(converted: Converted, title: str) -> str:
    """The body without its first block when that block is the heading now used as the title."""
    if not converted.leading_heading or converted.heading is None:
        return converted.text
    first, _, rest = converted.text.partition("\n\n")
    if first.strip() == converted.heading.strip() and converted.heading.strip() == title.strip():
        return rest
    return converted.text
