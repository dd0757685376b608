"""The per-run table (CSV and the page's), whether runs can be compared, and the Spearman rho."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

#: (key, header, kind) of each column, in order; kind "text", "int" or "float"
COLUMNS = [
    ("run", "run", "text"),
    ("status", "status", "text"),
    ("n_slices", "slices", "int"),
    ("n_units", "units", "int"),
    ("n_trace", "trace inputs", "int"),
    ("t", "t", "int"),
    ("visualization_variance", "visualization variance", "float"),
    ("intraslice", "intraslice preservation", "float"),
    ("interslice", "interslice preservation", "float"),
    ("neighbor_k", "k", "int"),
    ("task_switch_ari", "task-switch ARI", "float"),
    ("final_loss", "final loss", "float"),
    ("final_val_loss", "final val loss", "float"),
    ("memorization_error", "memorization error", "float"),
    ("seconds", "seconds", "float"),
    ("error", "error", "text"),
    ("path", "path", "text"),
]
_METRICS = ("visualization_variance", "intraslice", "interslice", "neighbor_k", "task_switch_ari",
            "final_loss", "final_val_loss", "memorization_error")


def row(result: dict) -> dict:
    """One table row from a run's result (an error result gives an error row)."""
    metrics = result.get("metrics") or {}
    out = {"run": result["name"], "path": result["path"], "seconds": result.get("seconds"),
           "error": result.get("error") or ""}
    if result.get("error"):
        out["status"] = "error"
        return out
    out["status"] = "cached" if result.get("cached") else "ok"
    out.update({k: result.get(k) for k in ("n_slices", "n_units", "n_trace", "t")})
    out.update({k: metrics.get(k) for k in _METRICS})
    return out


def _cell(value, kind):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if kind == "int":
        return str(int(value))
    if kind == "float":
        return f"{float(value):.6g}"
    return str(value)


def write_csv(rows: list[dict], path) -> Path:
    """The table as CSV: one line per run, empty cells where a value does not apply."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([key for key, _, _ in COLUMNS])
        for r in rows:
            writer.writerow([_cell(r.get(key), kind) for key, _, kind in COLUMNS])
    return path


def comparability(results: list[dict]) -> tuple[bool, str]:
    """Whether the embedded runs share one unit layout and one set of trace inputs.

    Returns (True, "") or (False, a sentence saying what differs). Trace inputs are the same
    when every run that recorded their fingerprint (the framework recorders do) has the same
    one and all runs have the same number and labels of trace inputs.
    """
    ok = [r for r in results if not r.get("error")]
    problems = []
    layouts = {(r["n_units"], tuple(r["layer_names"] or ()), _layer_sizes(r)) for r in ok}
    if len(layouts) > 1:
        counts = sorted({r["n_units"] for r in ok})
        problems.append("unit counts differ (" + ", ".join(map(str, counts)) + ")" if len(counts) > 1
                        else "their layers differ")
    shas = {r.get("trace_inputs_sha256") for r in ok if r.get("trace_inputs_sha256")}
    labels = {r.get("trace_labels_digest") for r in ok}
    if len(shas) > 1 or len(labels) > 1:
        problems.append("their trace inputs differ")
    if not problems:
        return True, ""
    return False, ("These runs are compared panel by panel only: " + " and ".join(problems)
                   + ", so their embeddings, and the numbers in the table, are not on a common footing"
                   " (no correlation across runs is computed).")


def _layer_sizes(result) -> tuple:
    layers = result.get("unit_layer")
    return () if layers is None else tuple(np.bincount(np.asarray(layers)).tolist())


def memorization_rho(rows: list[dict]) -> dict:
    """Spearman rho of visualisation variance against memorisation error across runs.

    Returns {"rho", "p", "n"} over the runs that logged both losses, or {"reason": ...} when it
    cannot be computed (fewer than 3 such runs, or one of the two constant).
    """
    from scipy.stats import spearmanr

    pairs = [(r["visualization_variance"], r["memorization_error"]) for r in rows
             if r["status"] != "error" and _finite(r.get("visualization_variance"))
             and _finite(r.get("memorization_error"))]
    if len(pairs) < 3:
        return {"reason": f"needs at least 3 runs that log loss and val_loss; {len(pairs)} do", "n": len(pairs)}
    x, y = np.asarray(pairs).T
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"reason": "the variance or the memorization error is the same in every run", "n": len(pairs)}
    rho, p = spearmanr(x, y)
    return {"rho": float(rho), "p": float(p), "n": len(pairs)}


def plain(value):
    """``value`` with numpy numbers as Python ones and NaN/inf as None, for strict JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))
