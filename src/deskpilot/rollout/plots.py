"""The shadow report's figures as PNG bytes, drawn like the evaluation report's (Figure + Agg, no pyplot).

Intent names come from data and are drawn literally (a ``$`` never starts mathtext).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deskpilot.evaluation.plots import COLORS, figure_png, new_figure, short_label
from deskpilot.rollout.report import IntentAgreement, RouteMatrix, ShiftStats

MAX_INTENTS = 20


def agreement_by_intent_chart(rows: Sequence[IntentAgreement], *, limit: int = MAX_INTENTS) -> bytes:
    """Horizontal bars of the agreement rate of the ``limit`` least agreed intents, worst at the top, with
    their 95% Wilson intervals."""
    worst = list(rows[:limit])
    fig = new_figure(6.6, max(2.0, 0.28 * len(worst) + 1.1))
    ax = fig.add_subplot()
    if not worst:
        ax.text(0.5, 0.5, "no intent with enough comparisons", ha="center", va="center")
        ax.set_axis_off()
        return figure_png(fig)
    positions = np.arange(len(worst))
    rates = np.array([row.agreement.rate or 0.0 for row in worst])
    intervals = np.array([row.agreement.interval for row in worst])
    errors = np.vstack([rates - intervals[:, 0], intervals[:, 1] - rates]).clip(min=0.0)
    ax.barh(positions, rates, color=COLORS[0], xerr=errors, error_kw={"ecolor": "#555555", "capsize": 2})
    names = [f"{short_label(row.intent)} (n={row.agreement.n})" for row in worst]
    ax.set_yticks(positions, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of requests where the challenger chose the champion's intent")
    ax.set_title(f"Agreement by champion intent, least agreed {len(worst)} of {len(rows)}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def confidence_shift_histogram(shift: ShiftStats) -> bytes:
    """Requests per bin of challenger − champion confidence, with the mean and median marked."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(5.8, 3.6)
    ax = fig.add_subplot()
    edges = np.array(shift.edges)
    ax.bar(edges[:-1], shift.counts, width=np.diff(edges), align="edge", color=COLORS[0], edgecolor="white")
    ax.axvline(0.0, color="#888888", linewidth=1)
    ax.axvline(shift.mean, color=COLORS[1], linestyle="--", linewidth=1.2, label=f"mean {shift.mean:+.3f}")
    ax.axvline(
        shift.median, color="#2ca02c", linestyle=":", linewidth=1.2, label=f"median {shift.median:+.3f}"
    )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(float(edges[0]), float(edges[-1]))
    ax.set_xlabel("confidence shift (challenger − champion)")
    ax.set_ylabel("requests")
    ax.set_title("Confidence shift", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return figure_png(fig)


def route_change_heatmap(routes: RouteMatrix) -> bytes:
    """The 2×2 route matrix; the changed cells carry the colour, the unchanged ones are grey."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    cells = np.array(routes.cells(), dtype=float)
    total = max(routes.total, 1)
    fig = new_figure(4.4, 3.6)
    ax = fig.add_subplot()
    changed = np.ma.masked_array(cells, mask=np.eye(2, dtype=bool))
    peak = max(float(changed.max() or 0.0), 1.0)
    unchanged = np.ma.masked_array(np.ones_like(cells), mask=~np.eye(2, dtype=bool))
    ax.imshow(unchanged, cmap=ListedColormap(["#e6e6e6"]))
    ax.imshow(changed, cmap=colormaps["YlOrRd"], vmin=0, vmax=peak)
    for r in range(2):
        for c in range(2):
            count = int(cells[r, c])
            dark = r != c and count > 0.6 * peak
            ax.text(
                c,
                r,
                f"{count:,}\n{count / total:.1%}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if dark else "black",
            )
    ax.set_xticks([0, 1], ["auto", "human"])
    ax.set_yticks([0, 1], ["auto", "human"])
    ax.set_xlabel("challenger route")
    ax.set_ylabel("champion route")
    ax.set_title(f"Route changes: {routes.changed:,} of {routes.total:,}", fontsize=10)
    return figure_png(fig)
