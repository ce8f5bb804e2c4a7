"""What both reports (evaluation and rollout) share: number formats, Markdown-safe cells, inline images,
the Jinja environment (HTML autoescaped) and atomic file writes."""

from __future__ import annotations

import base64
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from deskpilot.evaluation.bootstrap import Interval


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def number(value: float | None, digits: int | None = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}" if digits is not None else f"{value:.3g}"


def signed(value: float | None, digits: int | None = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+,.{digits}f}" if digits is not None else f"{value:+.3g}"


def thousands(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def percent(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}%}"


def interval(value: Interval | None, digits: int | None = 3) -> str:
    if value is None:
        return "n/a"
    point = number(value.value, digits)
    if not (_finite(value.value) and _finite(value.low) and _finite(value.high)):
        return point
    return f"{point} [{number(value.low, digits)}, {number(value.high, digits)}]"


_MD_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "`": "\\`",
        "*": "\\*",
        "[": "\\[",
        "]": "\\]",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
    }
)


def markdown_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: one line, no pipes, no HTML, no emphasis or links."""
    return " ".join(str(value).split()).translate(_MD_ESCAPES)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


FILTERS: dict[str, Callable[..., str]] = {
    "num": number,
    "signed": signed,
    "pct": percent,
    "thousands": thousands,
    "interval": interval,
    "md": markdown_cell,
}


def template_environment(package: str, filters: dict[str, Any]) -> jinja2.Environment:
    """Templates under ``package``/templates: HTML autoescaped, undefined names an error, our filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(filters)
    return env


def atomic_write(path: Path, text: str) -> None:
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            temporary = Path(handle.name)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(0o644)  # a temporary file starts private; a report is meant to be read
        temporary.replace(path)
    except BaseException:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise
