"""A self-contained HTML chart of per-language recall, raw model beside the product's ranking.

Plain inline SVG, no scripts and nothing fetched, so the file opens offline and can be attached
to an issue; no plotting library is needed for a grouped bar chart.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.evaluation_scenarios import Comparison

RAW_COLOUR, CORRECTED_COLOUR = "#9e9e9e", "#1f6fb2"
BAR, GAP, HEIGHT, LEFT, TOP, BOTTOM = 14, 12, 220, 44, 30, 36


def scenario_svg(title: str, comparison: Comparison, metric: str = "recall@1") -> str:
    """Grouped bars per question language (and `all`): raw grey, corrected blue."""
    rows = [
        (lang, comparison.raw.by_language[lang][metric], metrics[metric])
        for lang, metrics in comparison.corrected.by_language.items()
    ]
    rows.append(("all", comparison.raw.overall[metric], comparison.corrected.overall[metric]))
    group = 2 * BAR + GAP
    width = LEFT + group * len(rows) + GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{TOP + HEIGHT + BOTTOM}"'
        f' role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = TOP + HEIGHT * (1 - tick)
        parts.append(
            f'<line x1="{LEFT - 4}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    for i, (lang, raw, corrected) in enumerate(rows):
        x = LEFT + GAP + i * group
        for j, (value, colour, name) in enumerate(
            ((raw, RAW_COLOUR, "raw"), (corrected, CORRECTED_COLOUR, "corrected"))
        ):
            h = HEIGHT * value
            parts.append(
                f'<rect x="{x + j * BAR}" y="{TOP + HEIGHT - h:.1f}" width="{BAR - 1}"'
                f' height="{h:.1f}" fill="{colour}"><title>{escape(lang)} {name}'
                f" {metric} {value:.3f}</title></rect>"
            )
        weight = ' font-weight="bold"' if lang == "all" else ""
        parts.append(
            f'<text x="{x + BAR}" y="{TOP + HEIGHT + 14}" text-anchor="middle"{weight}>'
            f"{escape(lang)}</text>"
            f'<text x="{x + BAR}" y="{TOP + HEIGHT + 28}" text-anchor="middle" fill="#555">'
            f"{corrected - raw:+.2f}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def write_chart(path: Path, results: dict[str, Comparison], metric: str = "recall@1") -> Path:
    """One chart per scenario in one HTML page; returns the path written."""
    legend = (
        f'<p><span style="color:{RAW_COLOUR}">&#9632;</span> raw model (every ranking correction'
        f' off) &nbsp; <span style="color:{CORRECTED_COLOUR}">&#9632;</span> as configured;'
        " under each language: the difference.</p>"
    )
    charts = "\n".join(
        f"<figure>{scenario_svg(f'{name}: {metric} per question language', c, metric)}"
        f"<figcaption>{c.corrected.queries} questions, k={c.corrected.k}</figcaption></figure>"
        for name, c in results.items()
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kbchat eval: {escape(metric)}</title></head>"
        f"<body><h1>kbchat eval: {escape(metric)}</h1>{legend}\n{charts}\n</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
