"""Plotting an M-PHATE embedding: matplotlib figures, plotly figures and colourings.

Importing this package needs neither matplotlib nor plotly; they are imported when a
function that draws is called (install them with ``pip install "mphate[plot]"``).

>>> from mphate.plot import coloring, scatter, plot_colorings
>>> ax = scatter(embedding, coloring(trace, "layer"))          # doctest: +SKIP
>>> fig = plot_colorings(embedding, trace, "colorings.png")    # doctest: +SKIP
"""
from mphate.plot.colorings import (
    Coloring,
    available_colorings,
    coloring,
    epoch_per_point,
    layer_per_point,
    most_active_class_per_point,
    most_active_class_per_unit,
    scalar_per_point,
    unit_per_point,
)
from mphate.plot.interactive import plotly_figure
from mphate.plot.static import plot_3d, plot_colorings, plot_entropy, save_figure, scatter

__all__ = [
    "Coloring",
    "available_colorings",
    "coloring",
    "epoch_per_point",
    "layer_per_point",
    "most_active_class_per_point",
    "most_active_class_per_unit",
    "scalar_per_point",
    "unit_per_point",
    "scatter",
    "plot_colorings",
    "plot_3d",
    "plot_entropy",
    "save_figure",
    "plotly_figure",
]
