"""Report figures as PNG bytes, drawn with matplotlib's Agg renderer.

Figures are built from ``matplotlib.figure.Figure`` directly, never through pyplot, so no global figure
registry or GUI backend is touched and rendering is safe from any thread. matplotlib itself is imported
inside the functions: importing this module costs nothing.

Every text that comes from data (labels, model names) is drawn literally: a ``$`` never starts mathtext.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from deskpilot.evaluation.breakdown import ClassScore, Confusion, ReliabilityBin

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
COLORS = ("#1f77b4", "#ff7f0e")  # challenger, champion: the same two everywhere in a report
MAX_HEATMAP_CLASSES = 20
MAX_BAR_CLASSES = 30
LABEL_CHARS = 32


@dataclass(frozen=True)
class ReliabilitySeries:
    name: str
    bins: Sequence[ReliabilityBin]


@dataclass(frozen=True)
class CurveSeries:
    """One model's coverage–precision curve and where its routing threshold puts it on that curve."""

    name: str
    coverage: Sequence[float]
    precision: Sequence[float]
    operating_point: tuple[float, float] | None = None  # (coverage, precision) at the model's threshold
    threshold: float | None = None


def reliability_diagram(series: Sequence[ReliabilitySeries]) -> bytes:
    """Accuracy against mean confidence per bin (top) and the share of rows per bin (bottom)."""
    fig = new_figure(5.6, 5.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle="--", color="#888888", linewidth=1, label="perfect calibration")
    width = 1.0 / 15 / max(len(series), 1)
    for i, one in enumerate(series):
        if not one.bins:
            continue
        color = COLORS[i % len(COLORS)]
        confidence = [b.mean_confidence for b in one.bins]
        accuracy = [b.accuracy for b in one.bins]
        total = sum(b.n for b in one.bins)
        sizes = [12 + 240 * b.n / total for b in one.bins]  # marker area grows with the bin's share of rows
        top.plot(
            confidence, accuracy, color=color, linewidth=1, marker="o", markersize=4, label=literal(one.name)
        )
        top.scatter(confidence, accuracy, s=sizes, color=color, alpha=0.8, zorder=3)
        centers = np.array([(b.low + b.high) / 2 for b in one.bins])
        offset = (i - (len(series) - 1) / 2) * width
        bottom.bar(centers + offset, [b.n / total for b in one.bins], width=width, color=color)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    top.set_title("Reliability: accuracy vs confidence")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("confidence (calibrated top probability)")
    bottom.set_ylabel("share of rows")
    bottom.grid(alpha=0.3)
    return figure_png(fig)


def coverage_precision_curve(
    series: Sequence[CurveSeries], *, target_precision: float | None = None
) -> bytes:
    """Precision of the auto-routed share against the share routed, with each model's operating point."""
    fig = new_figure(5.6, 4.2)
    ax = fig.add_subplot()
    low = 1.0
    for i, one in enumerate(series):
        color = COLORS[i % len(COLORS)]
        ax.plot(one.coverage, one.precision, color=color, label=literal(one.name))
        if len(one.precision):
            low = min(low, float(np.nanmin(np.asarray(one.precision, dtype=float))))
        if one.operating_point is not None and all(np.isfinite(one.operating_point)):
            cov, prec = one.operating_point
            threshold = "" if one.threshold is None else f" (threshold {one.threshold:.3f})"
            ax.plot(
                [cov], [prec], marker="o", markersize=8, color=color, markeredgecolor="black", linestyle=""
            )
            ax.annotate(
                f"coverage {cov:.1%}{threshold}",
                (cov, prec),
                textcoords="offset points",
                xytext=(-8, -14 - 12 * i),
                ha="right",
                fontsize=8,
                color=color,
            )
    if target_precision is not None:
        ax.axhline(target_precision, color="#d62728", linestyle=":", linewidth=1.2)
        ax.annotate(
            f"target precision {target_precision:.0%}",
            (0.01, target_precision),
            textcoords="offset points",
            xytext=(0, 4),
            fontsize=8,
            color="#d62728",
        )
        low = min(low, target_precision)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(max(0.0, low - 0.05), 1.01)
    ax.set_xlabel("coverage (share routed automatically)")
    ax.set_ylabel("precision of the auto-routed share")
    ax.set_title("Coverage vs precision")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(loc="lower left", fontsize=8)
    return figure_png(fig)


def heatmap_classes(confusions: Sequence[Confusion], limit: int = MAX_HEATMAP_CLASSES) -> list[str]:
    """The classes of the largest confusions, in the order they first appear, at most ``limit``."""
    chosen: list[str] = []
    for confusion in confusions:
        pair = [c for c in (confusion.truth, confusion.predicted) if c not in chosen]
        if len(chosen) + len(pair) > limit:
            break
        chosen += pair
    return chosen


def confusion_heatmap(
    matrix: np.ndarray,
    labels: Sequence[str],
    confusions: Sequence[Confusion],
    *,
    limit: int = MAX_HEATMAP_CLASSES,
) -> bytes:
    """Counts among the classes involved in the top confusions only, so 77+ classes stay readable.

    Off-diagonal cells carry the colour scale; correct answers (the diagonal) are grey, with their count,
    so a big class does not wash out the mistakes.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator

    chosen = heatmap_classes(confusions, limit)
    index = {label: i for i, label in enumerate(labels)}
    rows = [index[c] for c in chosen]
    sub = matrix[np.ix_(rows, rows)].astype(float) if rows else np.zeros((0, 0))
    k = len(chosen)
    side = max(3.0, 0.42 * k)
    fig = new_figure(side + 3.2, side + 2.3)
    ax = fig.add_subplot()
    if k == 0:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center")
        ax.set_axis_off()
        return figure_png(fig)
    off = sub.copy()
    np.fill_diagonal(off, 0)
    peak = max(float(off.max()), 1.0)
    image = ax.imshow(np.ma.masked_equal(off, 0), cmap=colormaps["YlOrRd"], vmin=0, vmax=peak, aspect="equal")
    diagonal = np.full_like(sub, np.nan)
    np.fill_diagonal(diagonal, 1.0)
    ax.imshow(np.ma.masked_invalid(diagonal), cmap=ListedColormap(["#e6e6e6"]), aspect="equal")
    font = 7 if k > 12 else 8
    for r, c in zip(*np.nonzero(sub), strict=True):
        count = str(int(sub[r, c]))
        if r == c:
            ax.text(c, r, count, ha="center", va="center", fontsize=font, color="#555555", style="italic")
        else:
            dark = off[r, c] > 0.6 * peak
            ax.text(c, r, count, ha="center", va="center", fontsize=font, color="white" if dark else "black")
    names = [short_label(label) for label in chosen]
    ax.set_xticks(range(k), names, rotation=50, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="#d0d0d0", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    total = len(labels)
    ax.set_title(f"Top confusions: {k} of {total} classes (correct answers in grey)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.6, label="misclassified messages", ticks=MaxNLocator(integer=True))
    return figure_png(fig)


def per_class_f1_chart(scores: Sequence[ClassScore], *, limit: int = MAX_BAR_CLASSES) -> bytes:
    """Horizontal bars of F1 for the ``limit`` worst classes, worst at the top."""
    worst = sorted(scores, key=lambda s: (s.f1, -s.support, s.label))[:limit]
    fig = new_figure(6.4, max(2.0, 0.26 * len(worst) + 1.0))
    ax = fig.add_subplot()
    positions = np.arange(len(worst))
    ax.barh(positions, [s.f1 for s in worst], color=COLORS[0])
    ax.set_yticks(positions, [f"{short_label(s.label)} (n={s.support})" for s in worst], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(f"Per-class F1, worst {len(worst)} of {len(scores)}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot), laid out with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes, quantized to a 256-colour palette: a third of the size, and no visible difference."""
    from PIL import Image

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # a label in a script the bundled fonts lack is drawn as boxes; that is no reason to fail a report
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def literal(text: str) -> str:
    """Text drawn as written: an escaped ``$`` never opens mathtext."""
    return text.replace("$", r"\$")


def short_label(label: str) -> str:
    text = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
    return literal(text)


__all__ = [
    "CurveSeries",
    "ReliabilitySeries",
    "confusion_heatmap",
    "coverage_precision_curve",
    "figure_png",
    "heatmap_classes",
    "literal",
    "new_figure",
    "per_class_f1_chart",
    "reliability_diagram",
    "short_label",
]
