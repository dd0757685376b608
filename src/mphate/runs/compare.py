"""Compare training runs: one M-PHATE embedding per run, a grid of panels and a table.

:func:`embed_runs` embeds (or takes from the cache) every run; :func:`compare_runs` adds the
table, the grid figure and the page. Both run in-process by default, or on Dask with
``workers=N`` (a LocalCluster) or ``scheduler=ADDRESS`` (an existing cluster).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from mphate.runs.cache import load_result, save_result
from mphate.runs.executor import TaskFailure, check_executor, run_tasks, threads_per_task
from mphate.runs.specs import content_digest, params_digest, resolve_runs, run_key
from mphate.runs.table import COLUMNS, comparability, memorization_rho, plain, row, write_csv
from mphate.runs.task import DEFAULT_OPTIONS, embed_run, final_value

__all__ = ["Comparison", "embed_runs", "compare_runs"]


def embedding_params(mphate_params: dict, workers=None) -> dict:
    """The full MPHATE parameter set every run is embedded with (``verbose`` left out).

    Defaults are the estimator's, except ``random_state=0`` (a comparison should be
    reproducible, and a cached result is only meaningful for a fixed seed) and ``n_jobs``,
    which with ``workers`` shares the cores among the local worker processes.
    """
    from mphate.embed.estimator import MPHATE

    params = dict(mphate_params)
    if params.get("n_components", 2) != 2:
        raise ValueError(f"compare-runs draws 2-D panels: n_components must be 2, got {params['n_components']!r}")
    params.setdefault("random_state", 0)
    if params.get("n_jobs") is None:
        params["n_jobs"] = threads_per_task(workers)
    try:
        full = MPHATE(**params).get_params()
    except TypeError as exc:
        names = ", ".join(sorted(MPHATE().get_params()))
        raise ValueError(f"unknown embedding parameter ({exc}); MPHATE takes: {names}") from None
    full.pop("verbose", None)
    return full


def _result_of(value, spec) -> dict:
    """A task's return value as a result dict; a lost task (TaskFailure) as an error result."""
    if isinstance(value, TaskFailure):
        return {"name": spec.name, "path": spec.path, "key": None, "error": value.message, "warnings": []}
    return {**value, "name": spec.name, "path": spec.path, "cached": False}


def embed_runs(runs, *, cache_dir=None, workers=None, scheduler=None, quiet: bool = False,
               use_cache: bool = True, options=None, **mphate_params) -> list[dict]:
    """Embed every run with the same parameters, one task per run; failures become error results.

    Parameters
    ----------
    runs : list of paths, or dict name -> path
        Trace stores or trace files (.npz, .npy, .mat). Names default to the file names.
    cache_dir : path, optional
        Where each finished run is saved as it arrives, keyed by the run's content and the
        parameters; runs found there are not embedded again. None: no cache.
    workers : int, optional
        Embed on a new Dask LocalCluster of this many processes.
    scheduler : str, optional
        Embed on the Dask cluster whose scheduler is at this address (its workers must see
        the runs' paths).
    quiet : bool
        No progress bar.
    use_cache : bool
        False recomputes every run (and refreshes the cache).
    options : dict, optional
        Metric settings (:data:`mphate.runs.task.DEFAULT_OPTIONS`).
    **mphate_params
        :class:`mphate.MPHATE` parameters (see :func:`embedding_params`).

    Returns
    -------
    list of result dicts, in the order of ``runs`` (see :func:`mphate.runs.task.embed_run`),
    each with ``cached`` True when it came from the cache; an error result has "error".
    """
    check_executor(workers, scheduler)
    specs = resolve_runs(runs)
    params = embedding_params(mphate_params, workers)
    options = {**DEFAULT_OPTIONS, **(options or {})}
    # threads do not change the result, so they are not part of the key
    params_key = params_digest({**{k: v for k, v in params.items() if k != "n_jobs"}, "options": options})
    results: list = [None] * len(specs)
    todo = []
    for i, spec in enumerate(specs):
        cached = None
        if cache_dir is not None and use_cache:
            cached = load_result(cache_dir, run_key(content_digest(spec.path), params_key))
        if cached is not None:
            results[i] = {**cached, "name": spec.name, "path": spec.path, "cached": True}
        else:
            todo.append(i)

    def on_done(j, value):
        i = todo[j]
        results[i] = _result_of(value, specs[i])
        if cache_dir is not None:
            save_result(results[i], cache_dir)  # now, so a crash later loses nothing done

    run_tasks(embed_run, [(specs[i].name, specs[i].path, params, options, params_key) for i in todo],
              labels=[specs[i].name for i in todo], workers=workers, scheduler=scheduler,
              on_done=on_done, quiet=quiet, desc="embedding runs", already_done=len(specs) - len(todo))
    return results


@dataclass
class Comparison:
    """What :func:`compare_runs` made.

    Attributes
    ----------
    results : list of dict
        One per run, in the order given (see :func:`embed_runs`).
    rows : list of dict
        The table, one row per run (keys: :data:`mphate.runs.table.COLUMNS`).
    comparable : bool
        Whether all embedded runs share one unit layout and one set of trace inputs.
    note : str
        What differs when they do not ("" otherwise).
    rho : dict
        Spearman rho of visualisation variance against memorisation error: {"rho", "p", "n"},
        or {"reason", ...} when it was not computed.
    paths : dict of str -> Path
        "csv" (runs.csv), "summary" (summary.json), "png" (grid.png; absent above
        :data:`PNG_MAX_RUNS` runs), "html" (index.html).
    """

    results: list
    rows: list
    comparable: bool
    note: str
    rho: dict
    paths: dict = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "error")


def _subtitle(scalars: dict, limit: int = 4) -> str:
    """The run's final logged scalars, losses first: "loss 0.0312 · val loss 0.41"."""
    names = sorted(scalars, key=lambda n: (n not in ("loss", "val_loss"), n != "loss"))
    parts = []
    for name in names:
        value = final_value(scalars[name])
        if math.isfinite(value):
            parts.append(f"{name.replace('_', ' ')} {value:.3g}")
    return " · ".join(parts[:limit])


def _panel(result: dict):
    from mphate.plot.grid import GridPanel

    if result.get("error"):
        return GridPanel(result["name"], error=result["error"])
    return GridPanel(
        result["name"], subtitle=_subtitle(result["scalars"]), embedding=result["embedding"],
        n_slices=int(result["n_slices"]), n_units=int(result["n_units"]), epochs=result["epochs"],
        unit_layer=result.get("unit_layer"), layer_names=result.get("layer_names"),
        class_codes=result.get("class_codes"), classes=result.get("classes"), scalars=result["scalars"])


def _summary_line(comparison: Comparison, params: dict) -> str:
    n = len(comparison.rows)
    cached = sum(1 for r in comparison.rows if r["status"] == "cached")
    done = n - comparison.n_failed
    text = f"{n} run{'s' if n != 1 else ''}: {done} embedded" + (f" ({cached} from the cache)" if cached else "")
    text += f", {comparison.n_failed} failed. M-PHATE " + ", ".join(
        f"{k}={params[k]}" for k in ("t", "gamma", "intraslice_knn", "interslice_knn", "decay", "n_landmark",
                                     "random_state"))
    rho = comparison.rho
    if "rho" in rho:
        text += (f". Spearman rho of visualization variance against memorization error (val loss - loss): "
                 f"{rho['rho']:.3f} (p = {rho['p']:.3g}, {rho['n']} runs)")
    elif rho.get("n"):
        text += f". Spearman rho not computed: {rho['reason']}"
    return text + "."


def _write_summary(comparison: Comparison, params: dict, options: dict, path: Path) -> Path:
    """summary.json: parameters, comparability, rho, and per run its row, where it ran and any
    warnings (the table keeps only numbers; nothing said during a run is dropped)."""
    runs = [{**r, "worker": res.get("worker"), "warnings": res.get("warnings", []), "key": res.get("key")}
            for r, res in zip(comparison.rows, comparison.results)]
    data = {"params": params, "options": options, "comparable": comparison.comparable, "note": comparison.note,
            "rho": comparison.rho, "runs": runs}
    text = json.dumps(plain(data), indent=1, default=str, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


#: runs up to which grid.png has a row block per colouring (epoch, layer, class); above it,
#: epoch only; above PNG_MAX_RUNS no PNG (one figure of thousands of axes helps no one; the
#: page shows every run)
PNG_ALL_COLORINGS_UP_TO = 12
PNG_MAX_RUNS = 200


def _write_png(panels, path: Path, paths: dict, *, title: str, dpi: int) -> None:
    import warnings

    from mphate.plot.grid import PNG_COLORINGS, shared_colorings, write_grid_png

    if len(panels) > PNG_MAX_RUNS:
        warnings.warn(f"{len(panels)} runs are too many for one figure (at most {PNG_MAX_RUNS}); "
                      "grid.png is not written, index.html shows every run", UserWarning, stacklevel=3)
        return
    names = PNG_COLORINGS if len(panels) <= PNG_ALL_COLORINGS_UP_TO else ("epoch",)
    colorings = [c for c in shared_colorings(panels) if c.name in names]
    write_grid_png(panels, path, colorings=colorings or None, title=title, dpi=dpi)
    paths["png"] = path


def compare_runs(runs, output, *, workers=None, scheduler=None, title: str | None = None,
                 quiet: bool = False, use_cache: bool = True, dpi: int = 150,
                 max_points_per_panel: int = 20000, options=None, **mphate_params) -> Comparison:
    """Embed each run with the same parameters and write a side-by-side report into ``output``.

    Parameters
    ----------
    runs : list of paths, or dict name -> path
        Trace stores or trace files; names default to the file names without suffix.
    output : path
        Folder (created) for ``index.html`` (one panel per run, shared colourings and colour
        scales, sortable table), ``grid.png`` (rows epoch | layer | most-active class),
        ``runs.csv``, ``summary.json`` and ``cache/`` (one file per embedded run). grid.png
        has a block per colouring up to 12 runs, epoch only above that, and is left out above
        200 runs (the page shows them all).
    workers, scheduler : optional
        Dask: ``workers=N`` starts a LocalCluster of N processes, ``scheduler=ADDRESS`` uses a
        running cluster; each run's embedding is one task, reading its trace on the worker.
        Neither: the runs are embedded one after the other in this process.
    title : str, optional
        Page and figure title.
    quiet : bool
        No progress bar.
    use_cache : bool
        False embeds every run again, even those in ``output/cache``.
    dpi : int
        Resolution of grid.png.
    max_points_per_panel : int
        Runs with more points show every k-th slice in the page (the PNG shows all).
    options : dict, optional
        Metric settings: ``neighbor_k`` (default 10) and ``ari_seeds`` (default 20).
    **mphate_params
        :class:`mphate.MPHATE` parameters, the same for every run (``random_state`` defaults
        to 0; ``n_components`` must be 2).

    Returns
    -------
    Comparison. A run that fails (unreadable, torn, too short for the parameters) is an error
    row in the table and a "failed" panel; the other runs are unaffected.
    """
    from mphate.optional import require
    from mphate.paths import ensure_writable_dir
    from mphate.plot.grid import grid_html

    if int(max_points_per_panel) < 100:
        raise ValueError(f"max_points_per_panel must be at least 100, got {max_points_per_panel!r}")
    check_executor(workers, scheduler)
    params = embedding_params(mphate_params, workers)
    require("matplotlib", "compare-runs (its grid figure and page)")  # now, not after the embeddings
    out = ensure_writable_dir(output)  # before any work, so a bad folder costs nothing
    options = {**DEFAULT_OPTIONS, **(options or {})}
    results = embed_runs(runs, cache_dir=out / "cache", workers=workers, scheduler=scheduler, quiet=quiet,
                         use_cache=use_cache, options=options, **mphate_params)
    rows = [row(r) for r in results]
    comparable, note = comparability(results)
    rho = memorization_rho(rows) if comparable else {"reason": "runs not comparable", "n": 0}
    comparison = Comparison(results, rows, comparable, note, rho)
    paths = comparison.paths
    paths["csv"] = write_csv(rows, out / "runs.csv")
    paths["summary"] = _write_summary(comparison, params, options, out / "summary.json")
    panels = [_panel(r) for r in results]
    title = title or "M-PHATE: runs compared"
    _write_png(panels, out / "grid.png", paths, title=title, dpi=dpi)
    table = {"columns": [{"key": k, "label": label, "kind": kind} for k, label, kind in COLUMNS], "rows": rows}
    page = grid_html(panels, table=table, title=title, notes=[note] if note else [],
                     summary=_summary_line(comparison, params), max_points_per_panel=int(max_points_per_panel))
    paths["html"] = out / "index.html"
    paths["html"].write_text(page, encoding="utf-8")
    return comparison
