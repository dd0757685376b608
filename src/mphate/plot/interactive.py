"""Interactive plotly figures of an M-PHATE embedding (for notebooks and dashboards).

The self-contained HTML report (:mod:`mphate.plot.report`) has its own small viewer with a time
slider; this module gives a plain plotly ``Figure`` to embed anywhere plotly runs.
"""
from __future__ import annotations

import numpy as np

from mphate.optional import require
from mphate.plot.colorings import CATEGORICAL, Coloring, check_embedding, coloring
from mphate.plot.palettes import categorical_hex
from mphate.plot.static import default_alpha
from mphate.traces.trace import Trace

_PURPOSE = "an interactive (plotly) M-PHATE figure"
# above this many points a 2-D plot uses WebGL (Scattergl); SVG slows down past ~10k markers
WEBGL_THRESHOLD = 5000


def unit_names(trace: Trace) -> list[str]:
    """Readable name of each unit: "<layer> #<index within layer>" (or "unit <i>")."""
    if trace.unit_layer is None:
        return [f"unit {u}" for u in range(trace.n_units)]
    within = np.zeros(trace.n_units, dtype=int)
    seen: dict[int, int] = {}
    for u, layer in enumerate(trace.unit_layer):
        within[u] = seen.get(int(layer), 0)
        seen[int(layer)] = within[u] + 1
    return [f"{trace.layer_names[layer]} #{k}" for layer, k in zip(trace.unit_layer, within)]


def hover_data(trace: Trace) -> tuple[np.ndarray, str]:
    """Per-point hover columns and the plotly ``hovertemplate`` that shows them.

    Returns
    -------
    customdata : object ndarray, shape (n_points, n_fields)
        Unit name, global unit index, epoch, then each per-slice scalar.
    hovertemplate : str
    """
    names = np.asarray(unit_names(trace), dtype=object)
    cols = [
        np.tile(names, trace.n_slices),
        np.tile(np.arange(trace.n_units), trace.n_slices),
        np.repeat(np.asarray(trace.epochs, dtype=float), trace.n_units),
    ]
    lines = ["%{customdata[0]} (unit %{customdata[1]})", "epoch %{customdata[2]:.4g}"]
    for name, values in trace.scalars.items():
        lines.append(f"{name} %{{customdata[{len(cols)}]:.4g}}")
        cols.append(np.repeat(values, trace.n_units))
    customdata = np.empty((trace.n_slices * trace.n_units, len(cols)), dtype=object)
    for j, col in enumerate(cols):
        customdata[:, j] = col
    return customdata, "<br>".join(lines) + "<extra></extra>"


def plotly_figure(
    embedding,
    trace: Trace,
    color_by: str | Coloring = "epoch",
    *,
    webgl: bool | None = None,
    marker_size: float | None = None,
    opacity: float | None = None,
    title: str | None = None,
):
    """A plotly Figure of the embedding with hover showing unit, layer, epoch and scalars.

    Parameters
    ----------
    embedding : array, shape (n_slices * n_units, 2) or (..., 3)
        Slice-major M-PHATE coordinates of ``trace``; 3 columns give a 3-D scene.
    trace : Trace
    color_by : str or Coloring
        Any name :func:`mphate.plot.coloring` accepts ("epoch", "layer", "class", "unit",
        "loss", ...). Categorical colourings get one trace (and legend entry) per category.
    webgl : bool, optional
        Use ``Scattergl`` for 2-D; default when there are more than 5000 points.
    marker_size, opacity : float, optional
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
    """
    go = require("plotly.graph_objects", _PURPOSE)
    emb = check_embedding(embedding, trace)
    n_points, n_dims = emb.shape
    col = color_by if isinstance(color_by, Coloring) else coloring(trace, color_by)
    if webgl is None:
        webgl = n_points > WEBGL_THRESHOLD
    if n_dims == 3:
        scatter_cls = go.Scatter3d
    else:
        scatter_cls = go.Scattergl if webgl else go.Scatter
    size = marker_size or float(np.clip(600.0 / np.sqrt(n_points), 2.0, 8.0))
    customdata, hovertemplate = hover_data(trace)

    def points(mask, **marker):
        xyz = dict(zip("xyz", (emb[mask, d] for d in range(n_dims))))
        return scatter_cls(
            mode="markers", customdata=customdata[mask], hovertemplate=hovertemplate,
            opacity=opacity or default_alpha(n_points),
            marker=dict(size=size if n_dims == 2 else size * 0.6, **marker), **xyz,
        )

    fig = go.Figure()
    if col.kind == CATEGORICAL:
        palette = categorical_hex(len(col.categories))
        for code, name in enumerate(col.categories):
            mask = col.values == code
            if mask.any():
                trace_ = points(mask, color=palette[code])
                trace_.name = name
                fig.add_trace(trace_)
        fig.update_layout(legend=dict(title=dict(text=col.label), itemsizing="constant"))
    else:
        fig.add_trace(points(
            np.ones(n_points, bool), color=col.values, colorscale="Viridis",
            colorbar=dict(title=dict(text=col.label)), showscale=True,
        ))
        fig.data[0].name = col.label
    axis = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    if n_dims == 3:
        fig.update_layout(scene=dict(
            xaxis=dict(title=dict(text="M-PHATE 1"), **axis),
            yaxis=dict(title=dict(text="M-PHATE 2"), **axis),
            zaxis=dict(title=dict(text="M-PHATE 3"), **axis),
        ))
    else:
        fig.update_xaxes(title_text="M-PHATE 1", **axis)
        fig.update_yaxes(title_text="M-PHATE 2", **axis)
    fig.update_layout(template="simple_white", title=title, hovermode="closest")
    return fig
