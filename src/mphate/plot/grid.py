"""Many runs side by side: one panel per run, shared colourings and shared colour scales.

Two outputs from the same panels: :func:`write_grid_png`, a matplotlib figure with one row of
panels per colouring (epoch, layer, most-active class), and :func:`grid_html`, a self-contained
page (no plotly, no network: each panel is drawn on a canvas by ``assets/grid.js``) with a
colouring switch over every colouring any run offers, a hover readout and a sortable table.

"Shared" means: a continuous colouring (epoch, loss, ...) maps the same value to the same
colour in every panel (one range over all runs), and a categorical one (layer, class) gives a
category the same colour everywhere (categories are the union over runs). A run that lacks a
colouring (no layer metadata, a scalar it did not log) is drawn grey in that colouring.
"""
from __future__ import annotations

import base64
import html
import json
import math
import textwrap
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from mphate.optional import require
from mphate.plot.colorings import CATEGORICAL, CONTINUOUS
from mphate.plot.palettes import CONTINUOUS as CONTINUOUS_CMAP
from mphate.plot.palettes import categorical_hex

__all__ = ["GridPanel", "SharedColoring", "shared_colorings", "write_grid_png", "grid_html"]

_PURPOSE = "the compare-runs grid"
MISSING_COLOR = "#c8c8c8"
#: colourings drawn as rows of the PNG, when at least one run offers them
PNG_COLORINGS = ("epoch", "layer", "class")


@dataclass
class GridPanel:
    """One run's panel.

    Attributes
    ----------
    name : str
    subtitle : str
        A line under the name (the run's final logged scalars).
    embedding : ndarray, shape (n_slices * n_units, 2), slice-major; None for a failed run
    n_slices, n_units : int
    epochs : ndarray, shape (n_slices,)
    unit_layer : ndarray of int, shape (n_units,), or None
    layer_names : list of str or None
    class_codes : ndarray of int, shape (n_slices, n_units), or None
        Index into ``classes`` of each unit's most-active class at each slice.
    classes : list of str or None
    scalars : dict of str -> ndarray, shape (n_slices,)
    error : str or None
        Why the run has no embedding.
    """

    name: str
    subtitle: str = ""
    embedding: np.ndarray | None = None
    n_slices: int = 0
    n_units: int = 0
    epochs: np.ndarray | None = None
    unit_layer: np.ndarray | None = None
    layer_names: list | None = None
    class_codes: np.ndarray | None = None
    classes: list | None = None
    scalars: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class SharedColoring:
    """A colouring across panels: ``values[i]`` is panel i's per-point array (n_points,) of floats
    (continuous) or codes into ``categories`` (categorical), or None where that run lacks it."""

    name: str
    label: str
    kind: str
    values: list
    categories: list | None = None
    vmin: float = 0.0
    vmax: float = 1.0


def _class_order(names):
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def _union(lists):
    return list(dict.fromkeys(item for items in lists if items for item in items))


def _categorical(name, label, panels, get_codes, categories_of) -> SharedColoring | None:
    categories = _union(categories_of(p) for p in panels if p.embedding is not None)
    if name == "class":
        categories = _class_order(categories)
    if not categories:
        return None
    position = {c: i for i, c in enumerate(categories)}
    values = []
    for p in panels:
        codes = get_codes(p) if p.embedding is not None else None
        if codes is None:
            values.append(None)
            continue
        remap = np.asarray([position[c] for c in categories_of(p)], dtype=np.int64)
        values.append(remap[np.asarray(codes).reshape(-1)])
    return SharedColoring(name, label, CATEGORICAL, values, categories)


def _continuous(name, label, panels, per_slice) -> SharedColoring | None:
    values = []
    for p in panels:
        v = per_slice(p) if p.embedding is not None else None
        values.append(None if v is None else np.repeat(np.asarray(v, dtype=float), p.n_units))
    finite = np.concatenate([v[np.isfinite(v)] for v in values if v is not None] or [np.empty(0)])
    if finite.size == 0:
        return None
    return SharedColoring(name, label, CONTINUOUS, values, vmin=float(finite.min()), vmax=float(finite.max()))


def shared_colorings(panels: list[GridPanel]) -> list[SharedColoring]:
    """Every colouring at least one run offers: epoch, layer, most-active class, then each
    logged scalar; with one colour scale (or one category list) over all runs."""
    out = [_continuous("epoch", "epoch", panels, lambda p: p.epochs)]
    out.append(_categorical("layer", "layer", panels,
                            lambda p: None if p.unit_layer is None else np.tile(p.unit_layer, p.n_slices),
                            lambda p: p.layer_names if p.unit_layer is not None else None))
    out.append(_categorical("class", "most-active class", panels, lambda p: p.class_codes, lambda p: p.classes))
    for name in _union(list(p.scalars) for p in panels if p.embedding is not None):
        out.append(_continuous(name, name.replace("_", " "), panels, lambda p, n=name: p.scalars.get(n)))
    return [c for c in out if c is not None]


# ------------------------------------------------------------------------------ the PNG
def _colors_for(col: SharedColoring, values):
    """RGBA per point under the shared scale; grey where the value is missing."""
    mcolors = require("matplotlib.colors", _PURPOSE)
    if col.kind == CATEGORICAL:
        return mcolors.to_rgba_array(categorical_hex(len(col.categories)))[values]
    cmap = require("matplotlib", _PURPOSE).colormaps[CONTINUOUS_CMAP]
    norm = mcolors.Normalize(col.vmin, col.vmax if col.vmax > col.vmin else col.vmin + 1)
    rgba = cmap(norm(np.nan_to_num(values, nan=col.vmin)))
    rgba[~np.isfinite(values)] = mcolors.to_rgba(MISSING_COLOR)
    return rgba


def _draw_panel(ax, panel: GridPanel, col: SharedColoring, values, title: str) -> None:
    from mphate.plot.static import default_alpha, default_point_size, style_axes

    ax.set_title(title, fontsize="small")
    if panel.embedding is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "failed:\n" + textwrap.fill(panel.error or "", 38), ha="center", va="center",
                fontsize="x-small", color="#b22222", transform=ax.transAxes)
        return
    emb = panel.embedding
    n = emb.shape[0]
    if values is None:
        colors, order = np.tile(np.asarray([0.78, 0.78, 0.78, 1.0]), (n, 1)), np.arange(n)
    else:
        colors = _colors_for(col, values)
        # categories in random order so none hides another; continuous values in time order
        order = np.random.default_rng(0).permutation(n) if col.kind == CATEGORICAL else np.arange(n)
    ax.scatter(emb[order, 0], emb[order, 1], c=colors[order], s=default_point_size(n),
               alpha=default_alpha(n), linewidths=0, rasterized=True)
    ax.set_aspect("equal", adjustable="datalim")
    style_axes(ax, 2)
    ax.set_xlabel("")
    ax.set_ylabel("")


def _key(subfig, col: SharedColoring, axes) -> None:
    """One colour-bar (continuous) or legend (categorical) for a whole row of panels."""
    mpl = require("matplotlib", _PURPOSE)
    if col.kind == CONTINUOUS:
        norm = mpl.colors.Normalize(col.vmin, col.vmax if col.vmax > col.vmin else col.vmin + 1)
        mappable = mpl.cm.ScalarMappable(norm=norm, cmap=CONTINUOUS_CMAP)
        bar = subfig.colorbar(mappable, ax=list(axes), shrink=0.85, aspect=25, pad=0.01)
        bar.set_label(col.label)
        bar.outline.set_visible(False)
        return
    palette = categorical_hex(len(col.categories))
    handles = [mpl.lines.Line2D([], [], linestyle="", marker="o", markersize=5, markeredgewidth=0,
                                color=palette[i], label=c) for i, c in enumerate(col.categories)]
    subfig.legend(handles=handles, title=col.label, loc="outside right center", frameon=False,
                  fontsize="x-small", title_fontsize="small", ncol=max(1, math.ceil(len(handles) / 14)))


def write_grid_png(panels: list[GridPanel], path, *, colorings=None, title: str | None = None,
                   dpi: int = 150, max_cols: int = 6, panel_size: float = 2.4):
    """The grid figure: for each colouring a block of panels (one per run, ``max_cols`` a row)
    with one shared colour-bar or legend; returns the matplotlib Figure, saved to ``path``.

    ``colorings``: SharedColorings to draw (default: those of :data:`PNG_COLORINGS` the runs
    offer, from :func:`shared_colorings`).
    """
    from mphate.plot.static import _new_figure, save_figure

    if not panels:
        raise ValueError("no panels to draw")
    if colorings is None:
        colorings = [c for c in shared_colorings(panels) if c.name in PNG_COLORINGS]
    if not colorings:
        colorings = [SharedColoring("none", "", CONTINUOUS, [None] * len(panels))]
    n_cols = min(max_cols, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = _new_figure((panel_size * n_cols + 1.6, (panel_size + 0.45) * n_rows * len(colorings) + 0.4),
                      for_saving=True)
    blocks = np.atleast_1d(fig.subfigures(len(colorings), 1))
    for block, col in zip(blocks, colorings):
        axes = block.subplots(n_rows, n_cols, squeeze=False).ravel()
        for i, panel in enumerate(panels):
            text = panel.name if block is not blocks[0] or not panel.subtitle else f"{panel.name}\n{panel.subtitle}"
            _draw_panel(axes[i], panel, col, col.values[i], text)
        for ax in axes[len(panels):]:
            ax.set_axis_off()
        if col.name != "none":
            _key(block, col, axes[: len(panels)])
            block.suptitle(f"coloured by {col.label}", fontsize="medium", x=0.01, ha="left")
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=dpi)
    return fig


# ------------------------------------------------------------------------------ the page
def _b64(array, dtype: str) -> dict:
    arr = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "b64": base64.b64encode(arr.tobytes()).decode("ascii")}


def _floats(values) -> list:
    """JSON numbers with 6 significant digits; NaN/inf as null (JSON has neither)."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in np.asarray(values, dtype=float).ravel()]


def _json_safe(value):
    """Tables hold numpy numbers and NaN: plain JSON values, NaN as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def shown_slices(n_slices: int, n_units: int, max_points: int) -> np.ndarray:
    """Slices a page panel draws: all of them, or every k-th (and the last) so that at most
    about ``max_points`` points are drawn; the PNG always draws every point."""
    stride = max(1, math.ceil(n_slices * n_units / max(1, max_points)))
    return np.unique(np.r_[np.arange(0, n_slices, stride), n_slices - 1])


def _values_payload(col: SharedColoring, values, panel: GridPanel, shown) -> dict | None:
    if values is None:
        return None
    grid = np.asarray(values).reshape(panel.n_slices, panel.n_units)
    if col.kind == CONTINUOUS:  # built from per-slice values: one per shown slice
        return {"per": "slice", "values": _floats(grid[shown, 0])}
    if col.name == "layer":  # the same at every slice: one per unit
        return {"per": "unit", "values": [int(v) for v in grid[0]]}
    dtype = "uint8" if len(col.categories) <= 255 else "uint16"
    return {"per": "point", "values": _b64(grid[shown].ravel(), dtype)}


def _panel_payload(panel: GridPanel, colorings, index: int, max_points: int) -> dict:
    entry = {"name": panel.name, "subtitle": panel.subtitle, "error": panel.error}
    if panel.embedding is None:
        return entry
    shown = shown_slices(panel.n_slices, panel.n_units, max_points)
    emb = np.asarray(panel.embedding, dtype=np.float32).reshape(panel.n_slices, panel.n_units, -1)[shown]
    entry.update(
        n_slices=panel.n_slices, n_units=panel.n_units, shown_slices=[int(s) for s in shown],
        epochs=_floats(np.asarray(panel.epochs)[shown]),
        layer_names=panel.layer_names if panel.unit_layer is not None else None,
        unit_layer=None if panel.unit_layer is None else [int(v) for v in panel.unit_layer],
        x=_b64(emb[:, :, 0].ravel(), "float32"), y=_b64(emb[:, :, 1].ravel(), "float32"),
        colorings={c.name: _values_payload(c, c.values[index], panel, shown) for c in colorings},
    )
    return entry


def _coloring_payload(col: SharedColoring) -> dict:
    entry = {"name": col.name, "label": col.label, "kind": col.kind}
    if col.kind == CATEGORICAL:
        entry.update(categories=list(col.categories), colors=categorical_hex(len(col.categories)))
    else:
        entry.update(vmin=col.vmin, vmax=col.vmax)
    return entry


def _continuous_colors(n_bins: int = 64) -> list[str]:
    """The shared continuous map as ``n_bins`` colours (bin centres), for the page's canvas."""
    mpl = require("matplotlib", _PURPOSE)
    cmap = mpl.colormaps[CONTINUOUS_CMAP]
    return [mpl.colors.to_hex(cmap((i + 0.5) / n_bins)) for i in range(n_bins)]


def _asset(name: str) -> str:
    return resources.files("mphate.plot").joinpath("assets", name).read_text(encoding="utf-8")


def _fill(template: str, replacements: dict) -> str:
    """Substitute ``{{NAME}}`` markers in one pass, so inserted text is never re-substituted."""
    out, pos = [], 0
    while (start := template.find("{{", pos)) >= 0:
        end = template.index("}}", start) + 2
        out += [template[pos:start], replacements[template[start:end]]]
        pos = end
    return "".join(out + [template[pos:]])


def grid_html(panels: list[GridPanel], *, table: dict, title: str = "M-PHATE: runs compared",
              notes=(), summary: str = "", max_points_per_panel: int = 20000, colorings=None) -> str:
    """The grid page as one self-contained HTML string.

    Parameters
    ----------
    panels : list of GridPanel, in table order
    table : dict
        ``{"columns": [{"key", "label", "kind"}], "rows": [{key: value}]}``; one row per panel,
        ``row["run"]`` being the panel's name. Sortable in the page; sorting reorders the panels.
    notes : sequence of str
        Sentences shown above the panels (e.g. that runs are comparable panel by panel only).
    summary : str
        A line under the title.
    max_points_per_panel : int
        Larger runs show every k-th slice in the page (the panel says so).
    colorings : list of SharedColoring, optional
        Default :func:`shared_colorings`.
    """
    if colorings is None:
        colorings = shared_colorings(panels)
    data = {
        "title": title, "summary": summary, "notes": list(notes),
        "colorings": [_coloring_payload(c) for c in colorings],
        "continuous_colors": _continuous_colors(), "missing_color": MISSING_COLOR,
        "panels": [_panel_payload(p, colorings, i, max_points_per_panel) for i, p in enumerate(panels)],
        "table": _json_safe(table),
    }
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return _fill(_asset("grid.html"), {"{{TITLE}}": html.escape(title), "{{CSS}}": _asset("grid.css"),
                                       "{{DATA}}": payload, "{{JS}}": _asset("grid.js")})
