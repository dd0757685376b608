"""The self-contained interactive HTML page of an M-PHATE report.

One file, no network: plotly.js (from the installed ``plotly`` package), the viewer's own
JavaScript and CSS, and the data as JSON are all inlined. Coordinates and per-point codes
travel as base64 little-endian typed arrays (float32 / uint8 ...) inside that JSON, which is
about 2.7 bytes per coordinate instead of ~10 for decimal text, and decodes without parsing.
"""
from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources

import numpy as np

from mphate.optional import require
from mphate.plot.colorings import CATEGORICAL, available_colorings, check_embedding, coloring
from mphate.plot.interactive import WEBGL_THRESHOLD, unit_names
from mphate.plot.palettes import categorical_hex
from mphate.traces.trace import Trace

_PURPOSE = "the interactive HTML report"
# colourings the viewer offers, in menu order; per-slice scalars are appended after them
_VIEWER_COLORINGS = ("epoch", "layer", "class")


def _b64(array: np.ndarray, dtype: str) -> dict:
    arr = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "b64": base64.b64encode(arr.tobytes()).decode("ascii")}


def _floats(values) -> list:
    """Per-slice/per-unit floats as JSON numbers (6 significant digits), NaN/inf as null."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _code_dtype(n_categories: int) -> str:
    return "uint8" if n_categories <= 255 else "uint16" if n_categories <= 65535 else "int32"


def _coloring_payload(trace: Trace, name: str) -> dict:
    col = coloring(trace, name)
    entry = {"name": col.name, "label": col.label, "kind": col.kind}
    if col.kind == CATEGORICAL:
        entry["categories"] = col.categories
        entry["colors"] = categorical_hex(len(col.categories))
    if name == "epoch":
        entry.update(per="slice", values=_floats(trace.epochs))
    elif name == "layer":
        entry.update(per="unit", values=[int(v) for v in trace.unit_layer])
    elif name in trace.scalars:
        entry.update(per="slice", values=_floats(trace.scalars[name]))
    else:  # most-active class changes per point
        entry.update(per="point", values=_b64(col.values, _code_dtype(len(col.categories))))
    if col.kind != CATEGORICAL:
        finite = col.values[np.isfinite(col.values)]
        entry["cmin"] = float(finite.min()) if finite.size else 0.0
        entry["cmax"] = float(finite.max()) if finite.size else 1.0
    return entry


def _view_payload(name: str, emb: np.ndarray) -> dict:
    return {
        "name": name,
        "dims": int(emb.shape[1]),
        "coords": [_b64(emb[:, d], "float32") for d in range(emb.shape[1])],
        "range": [[float(emb[:, d].min()), float(emb[:, d].max())] for d in range(emb.shape[1])],
    }


def report_data(embedding, trace: Trace, *, title: str = "M-PHATE", embedding_3d=None,
                webgl: bool | None = None) -> dict:
    """The JSON payload the viewer reads.

    Parameters
    ----------
    embedding : array, shape (n_slices * n_units, 2) or (..., 3)
        The view shown first.
    trace : Trace
    embedding_3d : array, shape (n_slices * n_units, 3), optional
        A second, 3-D view the page can switch to.
    webgl : bool, optional
        Draw 2-D views with WebGL; default above 5000 points.
    """
    emb = check_embedding(embedding, trace)
    views = [_view_payload(f"{emb.shape[1]}-D", emb)]
    if embedding_3d is not None:
        emb3 = check_embedding(embedding_3d, trace, n_components=3)
        if emb.shape[1] != 3:
            views.append(_view_payload("3-D", emb3))
    n_points = emb.shape[0]
    offered = [n for n in available_colorings(trace) if n in _VIEWER_COLORINGS or n in trace.scalars]
    scalars = {k: _floats(v) for k, v in trace.scalars.items() if np.isfinite(v).any()}
    curves = [k for k in scalars if "loss" in k.lower()] or list(scalars)
    return {
        "title": title,
        "n_slices": trace.n_slices,
        "n_units": trace.n_units,
        "n_trace": trace.n_trace,
        "layer_names": list(trace.layer_names) if trace.unit_layer is not None else None,
        "unit_names": unit_names(trace),
        "epochs": _floats(trace.epochs),
        "steps": [int(s) for s in np.asarray(trace.steps)],
        "scalars": scalars,
        "curves": curves,
        "colorings": [_coloring_payload(trace, n) for n in offered],
        "views": views,
        "continuous_colors": _continuous_colors(),
        "continuous_scale": "Viridis",
        "webgl": bool(n_points > WEBGL_THRESHOLD if webgl is None else webgl),
    }


def _continuous_colors(n_bins: int = 64) -> list[str]:
    """Colours of the viewer's value bins for continuous colourings: Viridis at bin centres."""
    colors = require("plotly.colors", _PURPOSE)
    return colors.sample_colorscale("Viridis", list((np.arange(n_bins) + 0.5) / n_bins))


def _asset(name: str) -> str:
    return resources.files("mphate.plot").joinpath("assets", name).read_text(encoding="utf-8")


def script_safe_json(data: dict) -> str:
    """``data`` as compact JSON that can sit inside a ``<script>`` element (or an SSE line)."""
    # "</" inside a <script> would end it early (a layer named "</script>"); "<\/" is the same JSON
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


_OFFLINE_FOOTER = "Works offline: everything is in this file."
_LIVE_FOOTER = "Served by <code>mphate watch</code> from this machine; nothing is loaded from the network."


def _fill(page: str, replacements: dict) -> str:
    """Replace every ``{{NAME}}`` in one pass, so text inside an inserted part (plotly.js, the
    data) is never substituted again."""
    out, pos = [], 0
    while True:
        start = page.find("{{", pos)
        if start < 0:
            out.append(page[pos:])
            break
        end = page.index("}}", start) + 2
        out.append(page[pos:start])
        out.append(replacements[page[start:end]])
        pos = end
    return "".join(out)


def _page(title: str, data_json: str, *, plotly: str, status: str = "", after: str = "",
          footer: str = _OFFLINE_FOOTER) -> str:
    return _fill(_asset("report.html"), {
        "{{TITLE}}": html.escape(title),
        "{{CSS}}": _asset("viewer.css"),
        "{{STATUS}}": status,
        "{{PLOTLY}}": plotly,
        "{{DATA}}": data_json,
        "{{VIEWERJS}}": _asset("viewer.js"),
        "{{AFTER}}": after,
        "{{FOOTER}}": footer,
    })


def report_html(embedding, trace: Trace, *, title: str = "M-PHATE", embedding_3d=None,
                webgl: bool | None = None) -> str:
    """The whole report page as one HTML string (see :func:`report_data` for parameters)."""
    offline = require("plotly.offline", _PURPOSE)
    data = report_data(embedding, trace, title=title, embedding_3d=embedding_3d, webgl=webgl)
    return _page(title, script_safe_json(data), plotly=f"<script>\n{offline.get_plotlyjs()}\n</script>")


def plotly_js() -> str:
    """The plotly.js bundle of the installed ``plotly`` package (what every page draws with)."""
    return require("plotly.offline", _PURPOSE).get_plotlyjs()


#: where the live page loads plotly.js from (its server serves it: nothing from the network)
LIVE_PLOTLY_PATH = "plotly.min.js"


def live_page_html(title: str = "M-PHATE live") -> str:
    """The page ``mphate watch`` serves: the report's viewer, empty until the first frame,
    a status line, and the script that takes frames and status from the server's event
    stream (``events``) and hands each frame to the viewer's ``update``."""
    status = _asset("live_status.html")
    after = f"<script>\n{_asset('live.js')}\n</script>"
    return _page(title, "null", plotly=f'<script src="{LIVE_PLOTLY_PATH}"></script>', status=status,
                 after=after, footer=_LIVE_FOOTER)
