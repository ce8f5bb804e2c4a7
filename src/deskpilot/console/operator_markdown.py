"""The stored model card and evaluation report (Markdown) as safe HTML: a tiny subset, every text escaped.

Headings, paragraphs, flat lists, pipe tables, fenced code, inline code and bold; anything else stays
text. No raw HTML ever passes (the documents' ``&lt;`` entities and backslash escapes are read as the
characters they stand for, then escaped again), and links are shown as their text without an ``href``.
Heading levels are renumbered from ``base`` in the order the document uses them, so the page's outline
has no gaps whatever the document's.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator

from markupsafe import Markup, escape

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_INLINE = re.compile(r"\\(.)|`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]*)\]\([^)]*\)")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def inline(text: str) -> Markup:
    """One line of Markdown: code spans, bold, link text, escapes; everything escaped."""
    out: list[str] = []
    last = 0
    for match in _INLINE.finditer(text):
        out.append(_plain(text[last : match.start()]))
        literal, code, bold, link = match.groups()
        if literal is not None:
            out.append(str(escape(literal)))
        elif code is not None:
            out.append(f"<code>{escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline(bold)}</strong>")
        else:
            out.append(str(inline(link or "")))
        last = match.end()
    out.append(_plain(text[last:]))
    return Markup("".join(out))


def _plain(text: str) -> str:
    return str(escape(html.unescape(text)))


def render_markdown(document: str, *, base: int = 3, name: str = "the document") -> Markup:
    """``document`` as HTML blocks, headings starting at ``<h{base}>``; its tables are named after ``name``
    (each scrolls on its own, a landmark with a unique name)."""
    lines = document.replace("\r\n", "\n").split("\n")
    levels = sorted({len(m.group(1)) for line in lines if (m := _HEADING.match(line))})
    rank = {level: min(6, base + i) for i, level in enumerate(levels)}
    tables = (f"Table {n} of {name}" for n in itertools.count(1))
    return Markup("\n".join(_blocks(lines, rank, tables)))


def _blocks(lines: list[str], rank: dict[int, int], tables: Iterator[str]) -> Iterator[str]:
    i, paragraph = 0, list[str]()
    while i < len(lines):
        line = lines[i]
        starts_block = not line.strip() or line.lstrip().startswith(("```", "|", "#")) or _BULLET.match(line)
        if paragraph and starts_block:
            yield f"<p>{inline(' '.join(paragraph))}</p>"
            paragraph = []
        if line.lstrip().startswith("```"):
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```")), len(lines)
            )
            yield f"<pre><code>{escape(chr(10).join(lines[i + 1 : end]))}</code></pre>"
            i = end + 1
        elif heading := _HEADING.match(line):
            level = rank[len(heading.group(1))]
            yield f"<h{level}>{inline(heading.group(2))}</h{level}>"
            i += 1
        elif line.lstrip().startswith("|"):
            end = next((j for j in range(i, len(lines)) if not lines[j].lstrip().startswith("|")), len(lines))
            yield _table(lines[i:end], next(tables))
            i = end
        elif _BULLET.match(line):
            end = next((j for j in range(i, len(lines)) if not _BULLET.match(lines[j])), len(lines))
            ordered = lines[i].lstrip()[:1].isdigit()
            items = "".join(f"<li>{inline(_item(row))}</li>" for row in lines[i:end])
            yield f"<{'ol' if ordered else 'ul'}>{items}</{'ol' if ordered else 'ul'}>"
            i = end
        else:
            if line.strip():
                paragraph.append(line.strip())
            i += 1
    if paragraph:
        yield f"<p>{inline(' '.join(paragraph))}</p>"


def _item(line: str) -> str:
    match = _BULLET.match(line)
    return match.group(1) if match else line


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body.removeprefix("|")
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [cell.strip() for cell in _CELL_SPLIT.split(body)]


def _table(rows: list[str], label: str) -> str:
    """A pipe table: the row before the ``---`` rule is the header, unless it is empty (a key-value table)."""
    rule = next((k for k, row in enumerate(rows) if _RULE.match(row)), None)
    aligns = [cell.endswith(":") for cell in _cells(rows[rule])] if rule is not None else []
    head = [row for row in rows[:rule] if any(_cells(row))] if rule is not None else []
    body = rows[rule + 1 :] if rule is not None else rows
    out = [
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{escape(label)}">'
        '<table class="doc-table">'
    ]
    for row in head:
        cells = "".join(f'<th scope="col">{inline(cell)}</th>' for cell in _cells(row))
        out.append(f"<thead><tr>{cells}</tr></thead>")
    out.append("<tbody>")
    numeric = ' class="num"'
    for row in body:
        cells = "".join(
            f"<td{numeric if k < len(aligns) and aligns[k] else ''}>{inline(cell)}</td>"
            for k, cell in enumerate(_cells(row))
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)
