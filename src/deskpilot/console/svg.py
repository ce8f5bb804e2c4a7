"""Small charts drawn on the server as inline SVG text: a line chart over time, a sparkline, horizontal bars.

No plotting library and no script: the console's pages stay light, work without JavaScript and under a
strict Content-Security-Policy. Every chart has a fixed ``viewBox`` and ``width="100%"``, so it scales to
its column; ``role="img"`` with a ``<title>`` and an ``aria-label`` names it for screen readers. Every
piece of text is XML-escaped here (labels may carry user text: intents, actors, tenants), which is what
lets a page embed the result as ``Markup``. A missing or non-finite value is a gap in the line, never a
zero; a chart with nothing to draw says "no data yet".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.sax.saxutils import escape

X = datetime | float  # an x value: an instant, or a plain number

WIDTH, HEIGHT = 640, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 16, 30, 34
LEGEND_ROW = 18
CHAR_WIDTH = 6.4  # an estimate of one character at 11px, to lay out labels without a font
PALETTE = ("#0b6bcb", "#c25100", "#1a7f4b", "#8e44ad", "#b8860b", "#c2185b", "#00838f", "#5d4037")
FIRED = "#c62828"
INK = "#1f2328"
MUTED = "#57606a"
GRID = "#d0d7de"
NO_DATA = "no data yet"
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DAY = 86400
_TIME_STEPS = (
    *(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200),
    *(_DAY * d for d in (1, 2, 7, 14, 30, 60, 91, 182, 365)),
)


def text(value: object) -> str:
    """``value`` as XML text or attribute content: escaped, without the characters XML 1.0 forbids."""
    return escape(_INVALID_XML.sub("", str(value)), {'"': "&quot;", "'": "&#39;"})


@dataclass(frozen=True)
class Series:
    """One line: (x, y) points, y ``None`` or NaN for a gap; ``fired`` marks points (same order)."""

    label: str
    points: Sequence[tuple[X, float | None]]
    fired: Sequence[bool] = field(default_factory=tuple)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    note: str = ""  # shown after the value (a count, an interval)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _title(title: str) -> str:
    return f'<text x="8" y="18" font-size="13" font-weight="600">{text(title)}</text>'


def _x(value: X) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _open(width: float, height: float, title: str, desc: str, css: str, *, fluid: bool = True) -> list[str]:
    """The opening tag (a fluid chart fills its column; a sparkline keeps its size) and the title."""
    label = text(title)
    size = 'width="100%"' if fluid else f'width="{width:g}" height="{height:g}"'
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" viewBox="0 0 {width:g} {height:g}" '
        f'{size} preserveAspectRatio="xMidYMid meet" role="img" aria-label="{label}" '
        f'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="11" fill="{INK}">',
        f"<title>{label}</title>",
    ]
    if desc:
        parts.append(f"<desc>{text(desc)}</desc>")
    return parts


def empty_chart(title: str, *, message: str = NO_DATA, width: int = WIDTH, height: int = 90) -> str:
    """The chart's frame and title with ``message`` where the lines would be."""
    parts = _open(width, height, f"{title}: {message}", "", "chart chart-empty")
    parts += [
        _title(title),
        f'<rect x="1" y="26" width="{width - 2}" height="{height - 28}" fill="none" stroke="{GRID}" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{width / 2:g}" y="{height / 2 + 17:g}" text-anchor="middle" fill="{MUTED}">'
        f"{text(message)}</text></svg>",
    ]
    return "".join(parts)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) within [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9)
    return [round(i * step, 12) for i in range(first, math.floor(high / step + 1e-9) + 1)]


def time_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Tick instants (epoch seconds) on round seconds, minutes, hours or days (UTC)."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / max(1, count - 1)
    step = next((s for s in _TIME_STEPS if s >= raw), 365 * _DAY * math.ceil(raw / (365 * _DAY)))
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) // step) + 1)]


def time_label(span_s: float) -> Callable[[float], str]:
    """How a tick instant reads for a chart spanning ``span_s`` seconds (UTC)."""
    formats = ((600, "%H:%M:%S"), (2 * _DAY, "%H:%M"), (300 * _DAY, "%b %d"), (math.inf, "%Y-%m"))
    fmt = next(fmt for limit, fmt in formats if span_s < limit)
    return lambda x: datetime.fromtimestamp(x, UTC).strftime(fmt)


def number_label(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}" if 0.01 <= abs(value) < 1000 else f"{value:.2g}"


@dataclass(frozen=True)
class _Frame:
    """Where the data lands: the plot area in viewBox units and the data ranges it spans."""

    x_low: float
    x_high: float
    y_low: float
    y_high: float
    left: float
    right: float
    top: float
    bottom: float
    log_y: bool

    def px(self, x: X) -> float:
        return self.left + (_x(x) - self.x_low) / (self.x_high - self.x_low) * (self.right - self.left)

    def py(self, value: float) -> float:
        scaled = math.log10(value) if self.log_y else value
        return self.bottom - (scaled - self.y_low) / (self.y_high - self.y_low) * (self.bottom - self.top)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str = "",
    threshold: float | None = None,
    threshold_label: str = "threshold",
    y_format: Callable[[float], str] = number_label,
    y_range: tuple[float | None, float | None] = (None, None),
    log_y: bool = False,
    desc: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Lines over x (datetimes or numbers) with y ticks, an optional threshold line and fired markers.

    ``log_y`` draws y on a log10 scale (values ≤ 0 are gaps); ``y_range`` fixes either end of the y axis.
    """

    def ok(y: float | None) -> bool:
        return y is not None and math.isfinite(y) and (not log_y or y > 0)

    drawn = [s for s in series if any(ok(y) for _, y in s.points)]
    if not drawn:
        return empty_chart(title, width=width)
    if threshold is not None and not ok(threshold):
        threshold = None
    labels = [s.label for s in drawn] + ([threshold_label] if threshold is not None else [])
    legend = _legend_layout(labels, width) if len(labels) > 1 else []
    rows = legend[-1][1] + 1 if legend else 0
    frame = _frame(drawn, ok, threshold, y_range, log_y, width, height)
    height += LEGEND_ROW * rows
    parts = _open(width, height, title, desc, "chart chart-line")
    parts.append(_title(title))
    if y_label:
        parts.append(
            f'<text x="{frame.right:g}" y="18" text-anchor="end" fill="{MUTED}">{text(y_label)}</text>'
        )
    is_time = any(isinstance(x, datetime) for s in drawn for x, _ in s.points)
    parts += _axes(frame, y_format, is_time)
    if threshold is not None:
        y = frame.py(threshold)
        parts.append(
            f'<line class="threshold" x1="{frame.left:g}" x2="{frame.right:g}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{FIRED}" stroke-width="1.2" stroke-dasharray="6 4"/>'
        )
    for i, s in enumerate(drawn):
        parts += _line(frame, s, PALETTE[i % len(PALETTE)], ok, y_format)
    swatches = [f'stroke="{PALETTE[i % len(PALETTE)]}"' for i in range(len(drawn))]
    swatches.append(f'stroke="{FIRED}" stroke-dasharray="4 3"')
    for (x, row), label, swatch in zip(legend, labels, swatches, strict=False):
        y = frame.bottom + 36 + row * LEGEND_ROW
        parts.append(
            f'<line x1="{x:.1f}" x2="{x + 16:.1f}" y1="{y - 4:g}" y2="{y - 4:g}" {swatch} stroke-width="2"/>'
        )
        parts.append(f'<text x="{x + 20:.1f}" y="{y:g}">{text(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _frame(
    drawn: Sequence[Series],
    ok: Callable[[float | None], bool],
    threshold: float | None,
    y_range: tuple[float | None, float | None],
    log_y: bool,
    width: int,
    height: int,
) -> _Frame:
    def scaled(value: float) -> float:
        return math.log10(value) if log_y else value

    xs = [_x(x) for s in drawn for x, y in s.points if ok(y)]
    ys = [scaled(y) for s in drawn for _, y in s.points if y is not None and ok(y)]
    if threshold is not None:
        ys.append(scaled(threshold))
    pad = (max(ys) - min(ys)) * 0.05  # an automatic end leaves the line some room
    y_low = scaled(y_range[0]) if y_range[0] is not None else min(ys) - pad
    y_high = scaled(y_range[1]) if y_range[1] is not None else max(ys) + pad
    if y_high - y_low < 1e-12:
        pad = abs(y_high) * 0.1 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
    x_low, x_high = min(xs), max(xs)
    if x_high - x_low < 1e-9:
        x_low, x_high = x_low - 60, x_high + 60
    bottom = height - MARGIN_BOTTOM
    return _Frame(x_low, x_high, y_low, y_high, MARGIN_LEFT, width - MARGIN_RIGHT, MARGIN_TOP, bottom, log_y)


def _axes(frame: _Frame, y_format: Callable[[float], str], is_time: bool) -> list[str]:
    parts: list[str] = []
    if frame.log_y:
        y_ticks = [10.0**p for p in range(math.ceil(frame.y_low), math.floor(frame.y_high) + 1)]
    else:
        y_ticks = nice_ticks(frame.y_low, frame.y_high)
    for tick in y_ticks:
        y = frame.py(tick)
        parts.append(
            f'<line x1="{frame.left:g}" x2="{frame.right:g}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{frame.left - 6:g}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">'
            f"{text(y_format(tick))}</text>"
        )
    span = frame.x_high - frame.x_low
    x_ticks = time_ticks(frame.x_low, frame.x_high) if is_time else nice_ticks(frame.x_low, frame.x_high)
    x_text = time_label(span) if is_time else number_label
    bottom = frame.bottom
    for tick in x_ticks:
        x = frame.px(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom:g}" y2="{bottom + 4:g}" stroke="{MUTED}"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16:g}" text-anchor="middle" fill="{MUTED}">'
            f"{text(x_text(tick))}</text>"
        )
    parts.append(
        f'<line x1="{frame.left:g}" x2="{frame.right:g}" y1="{bottom:g}" y2="{bottom:g}" stroke="{MUTED}"/>'
    )
    return parts


def _line(
    frame: _Frame, s: Series, color: str, ok: Callable[[float | None], bool], y_format: Callable[[float], str]
) -> list[str]:
    parts: list[str] = []
    for segment in _segments(s, ok):
        if len(segment) == 1:
            x, y = segment[0]
            parts.append(f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2.5" fill="{color}"/>')
            continue
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in segment)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8" '
            'stroke-linejoin="round"/>'
        )
    for (at, value), fired in zip(s.points, s.fired, strict=False):
        if fired and value is not None and ok(value):
            parts.append(
                _fired_marker(frame.px(at), frame.py(value), f"{s.label}: fired at {y_format(value)}")
            )
    return parts


def _segments(s: Series, ok: Callable[[float | None], bool]) -> list[list[tuple[X, float]]]:
    """The runs of consecutive drawable points: a gap ends one."""
    runs: list[list[tuple[X, float]]] = [[]]
    for x, y in s.points:
        if ok(y) and y is not None:
            runs[-1].append((x, float(y)))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _fired_marker(x: float, y: float, label: str) -> str:
    a, b, c, d = x - 4.5, y - 4.5, x + 4.5, y + 4.5
    return (
        f'<g class="fired"><title>{text(label)}</title><path d="M{a:.1f},{b:.1f}L{c:.1f},{d:.1f}'
        f'M{a:.1f},{d:.1f}L{c:.1f},{b:.1f}" stroke="{FIRED}" stroke-width="2.4"/></g>'
    )


def _legend_layout(labels: Sequence[str], width: int) -> list[tuple[float, int]]:
    """(x, row) of each legend entry, wrapped to the chart's width."""
    places, x, row = [], float(MARGIN_LEFT), 0
    for label in labels:
        size = 36 + len(label) * CHAR_WIDTH
        if x > MARGIN_LEFT and x + size > width - MARGIN_RIGHT:
            x, row = float(MARGIN_LEFT), row + 1
        places.append((x, row))
        x += size
    return places


def sparkline(values: Sequence[float | None], *, label: str, width: int = 120, height: int = 30) -> str:
    """A small line of recent values (gaps kept), its last value dotted; no axes."""
    finite = [float(v) for v in values if v is not None and _finite(v)]
    parts = _open(width, height, label if finite else f"{label}: {NO_DATA}", "", "spark", fluid=False)
    if not finite:
        note = f'<text x="{width / 2:g}" y="{height / 2 + 4:g}" text-anchor="middle" fill="{MUTED}">'
        return "".join(parts) + f"{note}{NO_DATA}</text></svg>"
    low, high = (min(finite), max(finite)) if min(finite) < max(finite) else (finite[0] - 1, finite[0] + 1)
    frame = _Frame(0, max(1, len(values) - 1), low, high, 3, width - 3, 3, height - 3, False)
    for segment in _segments(Series(label, list(enumerate(values))), _finite):
        if len(segment) > 1:
            joined = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in segment)
            parts.append(
                f'<polyline points="{joined}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.5"/>'
            )
    last = max(i for i, v in enumerate(values) if _finite(v))
    x, y = frame.px(last), frame.py(float(values[last] or 0.0))
    parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{PALETTE[0]}"/></svg>')
    return "".join(parts)


def horizontal_bars(
    bars: Sequence[Bar],
    *,
    title: str,
    maximum: float | None = None,
    value_format: Callable[[float], str] = number_label,
    width: int = WIDTH,
) -> str:
    """One labelled bar per row, its value (and note) after it; ``maximum`` fixes the full length."""
    drawn = [b for b in bars if _finite(b.value)]
    if not drawn:
        return empty_chart(title, width=width)
    top = maximum if maximum is not None and maximum > 0 else max(b.value or 0.0 for b in drawn) or 1.0
    label_w = min(width * 0.38, 8 + max(len(b.label) for b in bars) * CHAR_WIDTH)
    value_w = 12 + max(len(_bar_text(b, value_format)) for b in bars) * CHAR_WIDTH
    bar_w = max(40.0, width - label_w - value_w - 8)
    row, first = 22, 30
    height = first + row * len(bars) + 6
    parts = _open(width, height, title, "", "chart chart-bars")
    parts.append(_title(title))
    for i, bar in enumerate(bars):
        y = first + i * row
        shown = text(_clip(bar.label, label_w))
        parts.append(f'<text x="{label_w - 6:.1f}" y="{y + 14}" text-anchor="end">{shown}</text>')
        parts.append(f'<rect x="{label_w:.1f}" y="{y + 3}" width="{bar_w:.1f}" height="14" fill="#eef1f4"/>')
        if _finite(bar.value) and bar.value is not None:
            length = max(0.0, min(1.0, bar.value / top)) * bar_w
            parts.append(
                f'<rect x="{label_w:.1f}" y="{y + 3}" width="{length:.1f}" height="14" fill="{PALETTE[0]}"/>'
            )
        parts.append(
            f'<text x="{label_w + bar_w + 6:.1f}" y="{y + 14}">{text(_bar_text(bar, value_format))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bar_text(bar: Bar, value_format: Callable[[float], str]) -> str:
    shown = value_format(bar.value) if _finite(bar.value) and bar.value is not None else "–"
    return f"{shown} {bar.note}".strip()


def _clip(label: str, room: float) -> str:
    most = max(4, int((room - 8) / CHAR_WIDTH))
    return label if len(label) <= most else label[: most - 1] + "…"
