"""Publication-quality matplotlib figures of an M-PHATE embedding.

Library code never calls ``plt.show``. Figures that are written to a file are built on
matplotlib's Agg canvas directly (no pyplot state, works headless and in threads); figures
returned for interactive use are made through pyplot so notebooks and scripts display them.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from mphate.optional import require
from mphate.paths import ensure_parent_writable
from mphate.plot.palettes import CONTINUOUS as CONTINUOUS_CMAP
from mphate.plot.palettes import categorical_hex
from mphate.plot.colorings import (
    CATEGORICAL,
    CONTINUOUS,
    STANDARD,
    Coloring,
    check_embedding,
    coloring,
)

_PURPOSE = "plotting an M-PHATE embedding"
# integer arrays with at most this many distinct values are treated as categories
_MAX_AUTO_CATEGORIES = 20


def default_point_size(n_points: int) -> float:
    """Marker area (pt^2) that keeps structure visible from 1k to 100k+ points."""
    return float(np.clip(400.0 / math.sqrt(max(n_points, 1)), 0.3, 20.0))


def default_alpha(n_points: int) -> float:
    """Opacity that lets density show through where many points overlap."""
    return float(np.clip(1.25 - 0.15 * math.log10(max(n_points, 1)), 0.35, 0.9))


def categorical_colors(n: int) -> np.ndarray:
    """``n`` distinguishable RGBA colours, shape (n, 4) (the palette the HTML report uses too)."""
    colors = require("matplotlib.colors", _PURPOSE)
    return colors.to_rgba_array(categorical_hex(n))


def _as_coloring(c, n_points: int, kind, categories, label) -> Coloring | None:
    """Normalise the ``c`` argument of :func:`scatter` into a Coloring (or None)."""
    if c is None:
        return None
    if isinstance(c, Coloring):
        col = c
        if kind is not None and kind != col.kind:
            raise ValueError(f"kind={kind!r} conflicts with the {col.kind} colouring {col.name!r}")
        if label is not None:
            col = Coloring(col.name, label, col.values, col.kind, col.categories)
    else:
        values = np.asarray(c)
        if values.ndim != 1:
            raise ValueError(f"c must be one value per point, shape ({n_points},); got shape {values.shape}")
        if kind is None:
            kind = _guess_kind(values)
        if kind not in (CONTINUOUS, CATEGORICAL):
            raise ValueError(f"kind must be 'continuous' or 'categorical'; got {kind!r}")
        if kind == CATEGORICAL:
            if categories is not None:
                codes = values.astype(int)
                if codes.size and (codes.min() < 0 or codes.max() >= len(categories)):
                    raise ValueError("with categories=..., c must hold codes 0..len(categories)-1")
                cats = [str(x) for x in categories]
            else:
                uniq, codes = np.unique(values, return_inverse=True)
                cats = [str(x) for x in uniq]
            col = Coloring("c", label or "", codes.reshape(-1), CATEGORICAL, cats)
        else:
            col = Coloring("c", label or "", values.astype(float), CONTINUOUS)
    if len(col.values) != n_points:
        raise ValueError(
            f"colour values have length {len(col.values)} but the embedding has {n_points} points"
        )
    return col


def _guess_kind(values: np.ndarray) -> str:
    if values.dtype.kind in "OUSb":
        return CATEGORICAL
    if values.dtype.kind in "iu" and len(np.unique(values)) <= _MAX_AUTO_CATEGORIES:
        return CATEGORICAL
    return CONTINUOUS


def style_axes(ax, n_dims: int = 2) -> None:
    """Label axes "M-PHATE 1..n" and drop ticks: embedding coordinates carry no units."""
    ax.set_xlabel("M-PHATE 1")
    ax.set_ylabel("M-PHATE 2")
    ax.set_xticks([])
    ax.set_yticks([])
    if n_dims == 3:
        ax.set_zlabel("M-PHATE 3")
        ax.set_zticks([])
        for axis, pad in ((ax.xaxis, -8), (ax.yaxis, -8), (ax.zaxis, -3)):
            axis.set_pane_color((1.0, 1.0, 1.0, 0.0))
            axis.labelpad = pad  # no tick labels to clear, so pull the names in
    else:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)


def _is_3d(ax) -> bool:
    return getattr(ax, "name", "") == "3d"


def _new_figure(figsize, *, for_saving: bool):
    """A Figure on the Agg canvas when it will be saved, else a pyplot figure for display."""
    if for_saving:
        figure_mod = require("matplotlib.figure", _PURPOSE)
        agg = require("matplotlib.backends.backend_agg", _PURPOSE)
        fig = figure_mod.Figure(figsize=figsize, layout="constrained")
        agg.FigureCanvasAgg(fig)
        return fig
    plt = require("matplotlib.pyplot", _PURPOSE)
    return plt.figure(figsize=figsize, layout="constrained")


def save_figure(fig, path, *, dpi: int = 200) -> None:
    """Write ``fig`` to ``path`` (format from the suffix) with the Agg renderer."""
    path = ensure_parent_writable(path)
    agg = require("matplotlib.backends.backend_agg", _PURPOSE)
    if not isinstance(fig.canvas, agg.FigureCanvasAgg):
        # a pyplot figure may sit on a GUI canvas; render through Agg without touching pyplot
        agg.FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, facecolor="white")


def scatter(
    embedding,
    c=None,
    ax=None,
    *,
    kind: str | None = None,
    categories=None,
    label: str | None = None,
    cmap: str | None = None,
    s: float | None = None,
    alpha: float | None = None,
    legend: bool = True,
    colorbar: bool = True,
    title: str | None = None,
    shuffle: bool | None = None,
    random_state: int = 0,
    vmin: float | None = None,
    vmax: float | None = None,
    **scatter_kws,
):
    """Scatter an embedding coloured by any per-point array.

    Parameters
    ----------
    embedding : array, shape (n_points, 2) or (n_points, 3)
        A 3-column embedding is drawn on a 3-D axes (made when ``ax`` is None).
    c : array of shape (n_points,), :class:`~mphate.plot.colorings.Coloring`, or None
        Colour values: epoch, layer, unit, most-active class, per-slice loss, ... Build the
        standard ones with :func:`mphate.plot.coloring`.
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is made when None.
    kind : {"continuous", "categorical"}, optional
        How to read ``c``; guessed when None (strings, bools and integers with at most 20
        distinct values are categories).
    categories : list of str, optional
        Names of integer category codes in ``c``.
    label : str, optional
        Colour-bar or legend title.
    cmap : str, optional
        Matplotlib colour map for continuous values (default viridis).
    s, alpha : float, optional
        Marker area and opacity; defaults scale with the number of points.
    legend, colorbar : bool
        Draw a legend (categorical) or colour-bar (continuous).
    title : str, optional
    shuffle : bool, optional
        Draw points in random order so no category hides another; default True for
        categorical colourings, False otherwise (later slices drawn on top).
    random_state : int
        Seed of the drawing order.
    vmin, vmax : float, optional
        Ends of a continuous colour scale (default: the values' range); give the same to
        several panels to share one scale.
    **scatter_kws
        Passed to ``Axes.scatter``.

    Returns
    -------
    matplotlib Axes
    """
    emb = check_embedding(embedding)
    n_points, n_dims = emb.shape
    if n_dims > 3:
        raise ValueError(f"can only draw 2 or 3 columns; the embedding has {n_dims}")
    col = _as_coloring(c, n_points, kind, categories, label)
    ax = _axes_for(ax, n_dims)
    if shuffle is None:
        shuffle = col is not None and col.kind == CATEGORICAL
    order = np.random.default_rng(random_state).permutation(n_points) if shuffle else np.arange(n_points)
    kws = dict(
        s=default_point_size(n_points) if s is None else s,
        alpha=default_alpha(n_points) if alpha is None else alpha,
        linewidths=0,
        rasterized=True,  # keeps PDF/SVG exports small with 100k points
    )
    kws.update(scatter_kws)
    coords = [emb[order, d] for d in range(n_dims)]
    if col is None:
        ax.scatter(*coords, color="0.25", **kws)
    elif col.kind == CATEGORICAL:
        palette = categorical_colors(len(col.categories))
        ax.scatter(*coords, c=palette[col.values[order]], **kws)
        if legend:
            _category_legend(ax, palette, col, present=np.unique(col.values))
    else:
        _continuous_points(ax, coords, col.values[order], col.label, cmap, kws, colorbar, vmin, vmax)
    style_axes(ax, n_dims)
    if title:
        ax.set_title(title)
    return ax


def _axes_for(ax, n_dims: int):
    """``ax``, or a new figure's axes, checked to match a 2- or 3-column embedding."""
    if ax is None:
        fig = _new_figure((5.2, 4.2), for_saving=False)
        return fig.add_subplot(projection="3d" if n_dims == 3 else None)
    if n_dims == 3 and not _is_3d(ax):
        raise ValueError(
            "a 3-column embedding needs a 3-D axes (projection='3d'); pass embedding[:, :2] "
            "to draw the first two components"
        )
    if n_dims == 2 and _is_3d(ax):
        raise ValueError(
            "3-D axes given but the embedding has 2 columns; embed with n_components=3 for a 3-D view"
        )
    return ax


def _continuous_points(ax, coords, values, label, cmap, kws, colorbar, vmin=None, vmax=None):
    """Points coloured on a colour map, NaN drawn grey; the scale is the values' range unless
    ``vmin``/``vmax`` fix it (shared scales across panels)."""
    finite = np.isfinite(values)
    if vmin is None and finite.any():
        vmin = np.nanmin(values)
    if vmax is None and finite.any():
        vmax = np.nanmax(values)
    mappable = ax.scatter(*coords, c=values, cmap=cmap or CONTINUOUS_CMAP, vmin=vmin, vmax=vmax,
                          plotnonfinite=True, **kws)
    if colorbar:
        # a 3-D axes draws its z label outside the axes box: leave it room
        cb = ax.figure.colorbar(mappable, ax=ax, shrink=0.8, pad=0.1 if len(coords) == 3 else 0.02, aspect=30)
        cb.set_label(label)
        cb.outline.set_visible(False)
        cb.solids.set_alpha(1.0)  # the bar shows the map, not the points' transparency


def _category_legend(ax, palette, col: Coloring, present) -> None:
    mpl_lines = require("matplotlib.lines", _PURPOSE)
    handles = [
        mpl_lines.Line2D([], [], linestyle="", marker="o", markersize=6, markeredgewidth=0,
                         color=palette[code], label=col.categories[code])
        for code in present
    ]
    ncol = max(1, math.ceil(len(handles) / 16))
    ax.legend(handles=handles, title=col.label or None, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              frameon=False, ncol=ncol, fontsize="small", title_fontsize="small",
              handletextpad=0.2, borderaxespad=0.2)


def plot_colorings(
    embedding,
    trace,
    path=None,
    *,
    color_by=None,
    panel_size: float = 4.0,
    dpi: int = 200,
    title: str | None = None,
):
    """Side-by-side panels of one embedding in several colourings (the paper's Fig. 1).

    Parameters
    ----------
    embedding : array, shape (n_slices * n_units, 2) or (..., 3)
        Slice-major M-PHATE coordinates of ``trace``.
    trace : Trace
    path : str or Path, optional
        Write the figure there (PNG, PDF, SVG by suffix) with the Agg renderer.
    color_by : sequence of str, optional
        Colourings to show, each a name :func:`mphate.plot.coloring` accepts. Default:
        epoch, layer and most-active class, skipping (with a warning) those the trace lacks
        metadata for. A colouring asked for explicitly that the trace cannot give raises
        ValueError.
    panel_size : float
        Height of a panel in inches.
    dpi : int
        Resolution of the saved file.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib Figure (one axes per panel, plus a colour-bar axes per continuous panel).
    """
    emb = check_embedding(embedding, trace)
    if color_by is None:
        colorings = []
        for name in STANDARD:
            try:
                colorings.append(coloring(trace, name))
            except ValueError as exc:
                warnings.warn(f"{exc}; leaving that panel out", UserWarning, stacklevel=2)
    else:
        if isinstance(color_by, str):
            color_by = [color_by]
        colorings = [coloring(trace, name) for name in color_by]
    if not colorings:
        raise ValueError("no colouring to plot: color_by is empty")

    n_dims = emb.shape[1]
    # continuous panels need room for a colour-bar, categorical ones for a legend
    width = sum(panel_size * (1.25 if col.kind == CONTINUOUS else 1.35) for col in colorings)
    fig = _new_figure((width, panel_size), for_saving=path is not None)
    for i, col in enumerate(colorings):
        ax = fig.add_subplot(1, len(colorings), i + 1, projection="3d" if n_dims == 3 else None)
        scatter(emb, col, ax=ax, title=col.label[:1].upper() + col.label[1:])
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def plot_3d(
    embedding,
    c=None,
    ax=None,
    *,
    elev: float = 22.0,
    azim: float = -60.0,
    path=None,
    dpi: int = 200,
    figsize=(6.0, 5.0),
    **scatter_kws,
):
    """A 3-D view of a 3-component embedding.

    Parameters
    ----------
    embedding : array, shape (n_points, 3)
    c : array of shape (n_points,) or Coloring, optional
        As in :func:`scatter`.
    ax : matplotlib 3-D Axes, optional
    elev, azim : float
        Camera angles in degrees.
    path : str or Path, optional
        Write the figure there.
    **scatter_kws
        Passed to :func:`scatter` (kind, label, s, alpha, ...).

    Returns
    -------
    matplotlib Axes (3-D)

    Raises ValueError when the embedding does not have 3 columns.
    """
    emb = np.asarray(embedding)
    if emb.ndim != 2 or emb.shape[1] != 3:
        cols = emb.shape[1] if emb.ndim == 2 else "?"
        raise ValueError(
            f"a 3-D view needs a 3-column embedding; this one has shape {emb.shape} ({cols} "
            "columns). Embed with n_components=3 (CLI: --n-components 3)"
        )
    if ax is None:
        fig = _new_figure(figsize, for_saving=path is not None)
        ax = fig.add_subplot(projection="3d")
    scatter(emb, c, ax=ax, **scatter_kws)
    ax.view_init(elev=elev, azim=azim)
    ax.set_box_aspect((1, 1, 1), zoom=1.1)  # mplot3d leaves wide margins around the cube
    if path is not None:
        save_figure(ax.figure, path, dpi=dpi)
    return ax


def plot_entropy(
    source,
    ax=None,
    *,
    t: int | None = None,
    candidates=None,
    path=None,
    dpi: int = 200,
    figsize=(5.0, 3.2),
):
    """The von Neumann entropy curve that t="auto" reads, with the chosen t and any rival knee.

    Parameters
    ----------
    source : fitted :class:`mphate.MPHATE`, or array of shape (t_max,)
        An estimator gives its ``entropy_``, ``t_`` and ``t_candidates_``; an array is the
        entropy at t = 1..t_max (its knees are then found here).
    ax : matplotlib Axes, optional
    t : int, optional
        The t to mark; default the estimator's ``t_`` or the curve's best knee.
    candidates : list of int, optional
        Knees to mark; default the estimator's ``t_candidates_`` or the curve's own.
    path : str or Path, optional
        Write the figure there.

    Returns
    -------
    matplotlib Axes
    """
    from mphate.embed import diffusion

    entropy = getattr(source, "entropy_", source)
    entropy = np.asarray(entropy, dtype=np.float64)
    if entropy.ndim != 1 or len(entropy) < 3 or not np.isfinite(entropy).all():
        raise ValueError(
            "plot_entropy needs a fitted MPHATE or a finite entropy curve of at least 3 values; "
            f"got an array of shape {entropy.shape}"
        )
    if candidates is None:
        candidates = getattr(source, "t_candidates_", None)
        if candidates is None:
            candidates = diffusion.t_candidates(entropy)
    if t is None:
        t = getattr(source, "t_", None) or candidates[0]
    if ax is None:
        fig = _new_figure(figsize, for_saving=path is not None)
        ax = fig.add_subplot()
    times = np.arange(1, len(entropy) + 1)
    ax.plot(times, entropy, color="0.25", lw=1.5)
    for knee in candidates:
        if knee != t and 1 <= knee <= len(entropy):
            ax.axvline(knee, color="tab:orange", ls="--", lw=1)
            ax.annotate(f"other knee t={knee}", (knee, entropy[knee - 1]), xytext=(4, 8),
                        textcoords="offset points", color="tab:orange", fontsize=8)
    if 1 <= t <= len(entropy):
        ax.axvline(t, color="tab:blue", lw=1)
        ax.plot([t], [entropy[t - 1]], "o", color="tab:blue")
        ax.annotate(f"t={t}", (t, entropy[t - 1]), xytext=(4, 8), textcoords="offset points",
                    color="tab:blue", fontsize=9)
    ax.set_xlabel("diffusion time t")
    ax.set_ylabel("von Neumann entropy")
    ax.set_title("Entropy of the diffusion operator")
    if path is not None:
        save_figure(ax.figure, path, dpi=dpi)
    return ax
