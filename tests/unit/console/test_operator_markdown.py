"""The model card and report Markdown as safe HTML: the subset it renders, and nothing raw getting through."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from deskpilot.console.operator_markdown import inline, render_markdown

REPORT = r"""# Evaluation report: models:/triage/2

Evaluation report generated 2026-03-01 by DeskPilot. The plots are in `report.html` next to this file.

## Challenger

| | |
|---|---|
| model | models:/triage/2 |
| note | a \| pipe &lt;script&gt;alert(1)&lt;/script&gt; and \*stars\* |

#### Gate decision: **PASS**

| rule | measured | limit |
|---|---:|---|
| accuracy | 0.9100 | >= 0.85 |

- first <b>item</b>
- second [a link](javascript:alert(1))

1. one
2. two

```
<script>raw()</script>
```
"""


def parse(html: str) -> ET.Element:
    return ET.fromstring(f"<div>{html}</div>")  # well-formed: every tag closed, every text escaped


def test_headings_are_renumbered_from_the_base_without_gaps() -> None:
    html = str(render_markdown(REPORT, base=3))
    levels = [int(n) for n in re.findall(r"<h(\d)>", html)]
    assert levels == [3, 4, 5]  # the document's #, ## and #### become h3, h4, h5
    assert "<h5>Gate decision: <strong>PASS</strong></h5>" in html


def test_nothing_raw_gets_through() -> None:
    html = str(render_markdown(REPORT))
    parse(html)
    assert "<script>" not in html
    assert "<b>" not in html
    assert "href" not in html
    assert "javascript:" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the report's entities, shown as text once
    assert "&amp;lt;" not in html
    assert "&lt;script&gt;raw()&lt;/script&gt;" in html
    assert "&lt;b&gt;item&lt;/b&gt;" in html
    assert "a link" in html


def test_tables_keep_escaped_pipes_alignment_and_skip_an_empty_header() -> None:
    root = parse(str(render_markdown(REPORT, name="the report")))
    tables = root.findall(".//table")
    assert len(tables) == 2
    first, second = tables
    assert first.find("thead") is None  # "| | |": a key-value table has no header
    cells = [td.text or "" for td in first.iter("td")]
    assert cells[3].startswith("a | pipe <script>")  # the escaped pipe stayed in its cell
    assert "*stars*" in "".join(first.find(".//tr[2]/td[2]").itertext())  # type: ignore[union-attr]
    headers = [th.get("scope") for th in second.iter("th")]
    assert headers == ["col", "col", "col"]
    assert [td.get("class") for td in second.iter("td")] == [None, "num", None]
    regions = [div.get("aria-label") for div in root.iter("div") if div.get("role") == "region"]
    assert regions == ["Table 1 of the report", "Table 2 of the report"]
    assert all(div.get("tabindex") == "0" for div in root.iter("div") if div.get("role") == "region")


def test_lists_code_and_paragraphs() -> None:
    root = parse(str(render_markdown(REPORT)))
    assert [li.text for li in root.findall("./ol/li")] == ["one", "two"]
    assert len(root.findall("./ul/li")) == 2
    code = root.find("./pre/code")
    assert code is not None
    assert code.text == "<script>raw()</script>"
    paragraph = root.find("./p")
    assert paragraph is not None
    assert paragraph.find("code") is not None


def test_inline_escapes_every_piece() -> None:
    assert (
        str(inline("**<i>x</i>** `<y>` \\*z\\*"))
        == "<strong>&lt;i&gt;x&lt;/i&gt;</strong> <code>&lt;y&gt;</code> *z*"
    )
    assert str(inline("\"quoted\" & 'single'")) == "&#34;quoted&#34; &amp; &#39;single&#39;"


def test_an_unclosed_fence_and_empty_input_do_not_break() -> None:
    assert str(render_markdown("")) == ""
    root = parse(str(render_markdown("text\n```\n<tail>")))
    assert root.find("./pre/code") is not None
