"""The console's server-side SVG charts: well-formed, escaped, accessible, honest about gaps."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from deskpilot.console import svg

NS = {"s": "http://www.w3.org/2000/svg"}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVIL = "<script>alert(\"x\")</script> & 'quoted'"


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(markup)  # raises on anything that is not well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label")
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.get("width") == ("100%" if root.get("class") != "spark" else "120")
    title = root.find("s:title", NS)
    assert title is not None
    assert title.text
    return root


def texts(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter() if el.text]


def polylines(root: ET.Element) -> list[list[tuple[float, float]]]:
    lines = []
    for el in root.iter("{http://www.w3.org/2000/svg}polyline"):
        pairs = [p.split(",") for p in el.get("points", "").split()]
        lines.append([(float(x), float(y)) for x, y in pairs])
    return lines


def over_time(values: list[float | None]) -> list[tuple[svg.X, float | None]]:
    return [(T0 + timedelta(minutes=5 * i), v) for i, v in enumerate(values)]


def test_line_chart_is_well_formed_with_axes_threshold_and_legend() -> None:
    series = [
        svg.Series("estimated", over_time([0.9, 0.91, 0.88, 0.92])),
        svg.Series("realized", over_time([0.89, 0.9, 0.87, 0.9])),
    ]
    markup = svg.line_chart(series, title="Accuracy", threshold=0.85, threshold_label="reference")
    root = parse(markup)
    assert root.get("aria-label") == "Accuracy"
    shown = texts(root)
    assert {"estimated", "realized", "reference"} <= set(shown)
    assert "12:00" in shown  # time ticks in UTC
    assert len(polylines(root)) == 2
    assert root.find(".//s:line[@class='threshold']", NS) is not None


def test_every_label_is_escaped() -> None:
    series = [svg.Series(EVIL, over_time([1.0, 2.0]), fired=[False, True])]
    markup = svg.line_chart(series, title=EVIL, y_label=EVIL, threshold=1.5, threshold_label=EVIL, desc=EVIL)
    assert "<script>" not in markup
    root = parse(markup)
    assert root.get("aria-label") == EVIL
    assert EVIL in texts(root)
    bars = svg.horizontal_bars([svg.Bar(EVIL, 0.5, note=EVIL)], title=EVIL)
    assert "<script>" not in bars
    parse(bars)
    spark = svg.sparkline([1.0, 2.0], label=EVIL)
    assert "<script>" not in spark
    assert parse(spark).get("aria-label") == EVIL


def test_characters_xml_forbids_are_dropped() -> None:
    root = parse(svg.line_chart([svg.Series("a\x00b\x1bc", over_time([1.0, 2.0]))], title="t\x07"))
    assert root.get("aria-label") == "t"


def test_gaps_split_the_line_and_a_lone_point_is_a_dot() -> None:
    values = [1.0, 2.0, None, 3.0, math.nan, 4.0, 5.0, math.inf, 6.0]
    root = parse(svg.line_chart([svg.Series("s", over_time(values))], title="gaps"))
    lines = polylines(root)
    assert [len(line) for line in lines] == [2, 2]
    assert len(list(root.iter("{http://www.w3.org/2000/svg}circle"))) == 2  # 3.0 and 6.0 stand alone
    ys = [y for line in lines for _, y in line]
    assert all(math.isfinite(y) for y in ys)


def test_fired_points_are_marked_with_a_title() -> None:
    series = svg.Series("q", over_time([0.5, 0.01, None]), fired=[False, True, True])
    root = parse(svg.line_chart([series], title="q-values", log_y=True, threshold=0.05))
    fired = root.findall(".//s:g[@class='fired']", NS)
    assert len(fired) == 1  # the fired gap has no point to mark
    title = fired[0].find("s:title", NS)
    assert title is not None
    assert "fired" in (title.text or "")


def test_log_axis_ticks_powers_of_ten_and_drops_non_positive_values() -> None:
    series = svg.Series("q", over_time([1e-4, 0.0, 0.5]))
    root = parse(svg.line_chart([series], title="q", log_y=True, y_format=lambda v: f"{v:g}"))
    assert {"0.001", "0.01", "0.1"} <= set(texts(root))
    assert not polylines(root)  # 0 is a gap on a log axis: two lone points


@pytest.mark.parametrize(
    "series",
    [[], [svg.Series("s", [])], [svg.Series("s", over_time([None, math.nan]))]],
)
def test_nothing_to_draw_says_no_data_yet(series: list[svg.Series]) -> None:
    root = parse(svg.line_chart(series, title="Empty"))
    assert svg.NO_DATA in texts(root)
    assert "no data yet" in (root.get("aria-label") or "")


def test_one_point_and_a_flat_line_still_draw() -> None:
    one = parse(svg.line_chart([svg.Series("s", over_time([3.0]))], title="one"))
    assert len(list(one.iter("{http://www.w3.org/2000/svg}circle"))) == 1
    flat = parse(svg.line_chart([svg.Series("s", over_time([2.0, 2.0, 2.0]))], title="flat"))
    assert len(polylines(flat)) == 1


def test_numeric_x_and_fixed_y_range() -> None:
    root = parse(svg.line_chart([svg.Series("s", [(0, 0.2), (10, 0.4)])], title="n", y_range=(0.0, 1.0)))
    assert {"0", "0.4", "1", "10"} <= set(texts(root))


def test_long_legends_wrap_inside_the_view_box() -> None:
    names = [f"signal_number_{i}_with_a_long_name" for i in range(8)]
    series = [svg.Series(n, over_time([float(i), float(i + 1)])) for i, n in enumerate(names)]
    root = parse(svg.line_chart(series, title="many"))
    _, _, width, height = (float(v) for v in (root.get("viewBox") or "").split())
    assert height > svg.HEIGHT
    for el in root.iter("{http://www.w3.org/2000/svg}text"):
        assert float(el.get("y", 0)) <= height
        assert float(el.get("x", 0)) <= width


def test_sparkline_keeps_gaps_and_says_no_data() -> None:
    root = parse(svg.sparkline([1.0, None, 2.0, 3.0], label="rate"))
    assert len(polylines(root)) == 1
    empty = parse(svg.sparkline([None, math.nan], label="rate"))
    assert svg.NO_DATA in texts(empty)


def test_horizontal_bars_scale_to_the_maximum() -> None:
    bars = [svg.Bar("a", 0.5, note="(n=10)"), svg.Bar("b", 1.0), svg.Bar("c", None)]
    root = parse(svg.horizontal_bars(bars, title="agreement", maximum=1.0, value_format=lambda v: f"{v:.0%}"))
    rects = root.findall("s:rect", NS)
    track, filled = float(rects[0].get("width", 0)), float(rects[1].get("width", 0))
    assert filled == pytest.approx(track / 2, abs=0.2)
    assert "50% (n=10)" in texts(root)
    assert "–" in texts(root)
    assert svg.NO_DATA in texts(parse(svg.horizontal_bars([svg.Bar("a", None)], title="none")))


def test_ticks_are_round() -> None:
    assert svg.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(0.87, 0.92) == [0.87, 0.88, 0.89, 0.9, 0.91, 0.92]
    assert svg.nice_ticks(3, 1234) == [250, 500, 750, 1000]
    assert svg.nice_ticks(3.0, 3.0) == [3.0]
    start = T0.timestamp()
    ticks = svg.time_ticks(start + 7, start + 3600)
    assert all(t % 900 == 0 for t in ticks)
    assert ticks == sorted(ticks)
    assert start + 7 <= ticks[0]
