"""Plumbing shared by the experiments: output folder, CSV tables, figures, slicing traces."""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from mphate.traces.trace import Trace


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def output_dir(out) -> Path:
    from mphate.paths import ensure_writable_dir

    return ensure_writable_dir(Path(out))


def write_csv(path, rows: list[dict], columns=None) -> Path:
    """Write dict rows as CSV (floats with 6 significant digits; NaN as empty)."""
    path = Path(path)
    columns = list(columns or (rows[0].keys() if rows else []))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return path


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return ""
        return f"{float(value):.6g}"
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path, payload) -> Path:
    path = Path(path)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def slice_trace(trace: Trace, slices=None, units=None) -> Trace:
    """The trace restricted to some slices and/or units (indices, in order)."""
    s = np.arange(trace.n_slices) if slices is None else np.asarray(slices, dtype=int)
    u = np.arange(trace.n_units) if units is None else np.asarray(units, dtype=int)
    data = np.asarray(trace.data)[s][:, u]
    unit_layer = None if trace.unit_layer is None else trace.unit_layer[u]
    return Trace(
        data=data,
        unit_layer=unit_layer,
        layer_names=trace.layer_names,
        steps=trace.steps[s],
        epochs=trace.epochs[s],
        scalars={k: v[s] for k, v in trace.scalars.items()},
        trace_labels=trace.trace_labels,
    )


def embed_timed(trace: Trace, *, n_landmark, interslice_knn: int, seed: int, n_jobs=None):
    """The experiments' M-PHATE embedding of every unit at every slice, the seconds it took, and
    the fitted estimator (its ``t_`` and ``t_candidates_`` go into the tables).

    ``interslice_knn`` is capped at ``n_slices - 1``, the other slices there are: a short trace
    (a quick run, or only a few embedded epochs) has fewer than the paper's setting asks for.
    ``n_jobs``: the estimator's threads (None: its own choice); they do not change the result.
    """
    from mphate.embed.estimator import MPHATE

    timer = Timer()
    est = MPHATE(n_landmark=n_landmark, interslice_knn=min(interslice_knn, trace.n_slices - 1),
                 random_state=seed, n_jobs=n_jobs)
    return est.fit_transform(trace.data), timer.seconds, est


def estimator_default(name: str):
    """The default of one :class:`mphate.MPHATE` parameter, read from the estimator rather than
    restated (the experiments' ``n_landmark``, for instance)."""
    from mphate.embed.estimator import MPHATE

    return MPHATE().get_params()[name]


def even_indices(n: int, m: int) -> np.ndarray:
    """``min(n, m)`` indices spread evenly over ``range(n)``, always including the last one."""
    if m >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, m)).astype(int))


def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (headless, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path, dpi: int = 110) -> Path:
    from mphate.plot import save_figure

    save_figure(fig, path, dpi=dpi)
    return Path(path)


def spearman(x, y) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value (NaN when undefined, e.g. fewer than 3 pairs)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), float("nan")
    result = spearmanr(x[ok], y[ok])
    return float(result.statistic), float(result.pvalue)


def markdown_table(rows: list[dict], columns: list[str], headers=None, digits: int = 3) -> str:
    headers = headers or columns
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            if isinstance(v, (float, np.floating)):
                cells.append("n/a" if not np.isfinite(v) else f"{v:.{digits}f}")
            else:
                cells.append("" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
