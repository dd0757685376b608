"""Colour palettes shared by the matplotlib figures and the HTML report, so both agree."""
from __future__ import annotations

import colorsys

# matplotlib's tab10 and tab20 (Tableau), the usual qualitative maps of scientific figures
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
         "#ff9896", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2",
         "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"]
# sequential map for continuous values (epoch, loss): matplotlib "viridis" == plotly "Viridis"
CONTINUOUS = "viridis"


def categorical_hex(n: int) -> list[str]:
    """``n`` distinguishable colours as "#rrggbb": tab10, tab20, then spaced hues."""
    if n <= 10:
        return TAB10[:n]
    if n <= 20:
        return TAB20[:n]
    out = []
    for i in range(n):
        # alternate lightness so neighbouring hues stay apart when there are many categories
        r, g, b = colorsys.hls_to_rgb(i / n, 0.45 if i % 2 else 0.62, 0.65)
        out.append("#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255)))
    return out
