"""The per-run task: read one run's trace where it runs, embed it, score it.

:func:`embed_run` is what a Dask worker executes (or the client itself, without Dask). It is
given the run's *path*, never its trace, so the activations travel from the disk to the
worker that embeds them and nowhere else; what it sends back is the embedding (2 floats a
point), the per-point codes the colourings need and a few numbers.
"""
from __future__ import annotations

import hashlib
import os
import socket
import time
import warnings

import numpy as np

from mphate.runs.specs import content_digest, run_key

#: metric settings (part of the cache key): neighbour count, and task-switch ARI k-means seeds
DEFAULT_OPTIONS = {"neighbor_k": 10, "ari_seeds": 20}


def _where() -> str:
    """The Dask worker's address when running on one, else host and process id."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _read(path: str):
    """(trace, sha256 of the trace inputs or None): a store is opened strictly, so a torn slice
    file is an error naming it rather than a quietly shorter run."""
    from mphate.traces.io import load_trace
    from mphate.traces.store import TraceStore, is_trace_store

    if is_trace_store(path):
        with TraceStore.open(path, strict=True) as store:
            return store.to_trace(), store.trace_inputs_sha256
    return load_trace(path), None


def _labels_digest(trace) -> str:
    digest = hashlib.blake2b(f"{trace.n_trace}|".encode(), digest_size=12)
    if trace.trace_labels is not None:
        digest.update(np.asarray(trace.trace_labels).astype(str).tobytes())
    return digest.hexdigest()


def final_value(values) -> float:
    """The last finite value of a per-slice scalar (NaN when there is none)."""
    values = np.asarray(values, dtype=float)
    finite = np.flatnonzero(np.isfinite(values))
    return float(values[finite[-1]]) if finite.size else float("nan")


def task_switches(task, epochs) -> list[tuple[int, int]]:
    """(before, after) slice pairs for each change of the logged ``task`` scalar.

    ``before`` is the last slice of the old task; ``after`` the first slice of the new task at
    least one epoch later (the continual-learning experiment's "one task-epoch after"), or the
    new task's last slice when it is shorter than that.
    """
    task = np.asarray(task, dtype=float)
    epochs = np.asarray(epochs, dtype=float)
    pairs = []
    for i in range(1, len(task)):
        if not (np.isfinite(task[i - 1]) and np.isfinite(task[i])) or task[i] == task[i - 1]:
            continue
        after = i
        while after + 1 < len(task) and task[after + 1] == task[i] and epochs[after] < epochs[i - 1] + 1:
            after += 1
        pairs.append((i - 1, after))
    return pairs


def _switch_ari(embedding, trace, n_seeds: int) -> tuple[float, int]:
    from mphate.metrics import task_switch_ari

    if "task" not in trace.scalars or trace.n_units < 4:
        return float("nan"), 0
    pairs = task_switches(trace.scalars["task"], trace.epochs)
    if not pairs:
        return float("nan"), 0
    n = trace.n_units
    ks = range(3, min(9, n))
    scores = [task_switch_ari(embedding[b * n:(b + 1) * n], embedding[a * n:(a + 1) * n],
                              k_range=ks, n_seeds=n_seeds) for b, a in pairs]
    return float(np.mean(scores)), len(pairs)


def run_metrics(embedding, trace, options: dict) -> dict:
    """The paper's per-run quantities for one embedded run.

    Returns a dict: ``visualization_variance``; ``intraslice`` and ``interslice`` (mean
    neighbourhood preservation, z-scored space) with the ``neighbor_k`` used (the option,
    capped below the unit and slice counts); ``task_switch_ari`` (NaN unless a ``task`` scalar
    changes) and ``n_task_switches``; ``final_loss``, ``final_val_loss`` and
    ``memorization_error`` = final val_loss - final loss (NaN where not logged).
    """
    from mphate.metrics import neighbor_preservation, visualization_variance

    out = {"visualization_variance": visualization_variance(embedding, trace.n_slices)}
    k = min(int(options["neighbor_k"]), trace.n_units - 1, trace.n_slices - 1)
    if k >= 1:
        out.update(neighbor_preservation(embedding, trace, k=k), neighbor_k=k)
    else:
        out.update(intraslice=float("nan"), interslice=float("nan"), neighbor_k=0)
    out["task_switch_ari"], out["n_task_switches"] = _switch_ari(embedding, trace, int(options["ari_seeds"]))
    loss = final_value(trace.scalars.get("loss", []))
    val_loss = final_value(trace.scalars.get("val_loss", []))
    out.update(final_loss=loss, final_val_loss=val_loss, memorization_error=val_loss - loss)
    return out


def _describe(trace) -> dict:
    """What the grid needs besides the embedding: layout, time, scalars, most-active classes."""
    from mphate.plot.colorings import most_active_class_per_unit

    codes = classes = None
    if trace.trace_labels is not None:
        codes, classes = most_active_class_per_unit(trace)
        codes, classes = codes.astype(np.int16), [str(c) for c in classes]
    return {
        "n_slices": trace.n_slices, "n_units": trace.n_units, "n_trace": trace.n_trace,
        "layer_names": None if trace.unit_layer is None else list(trace.layer_names),
        "unit_layer": None if trace.unit_layer is None else np.asarray(trace.unit_layer, dtype=np.int32),
        "epochs": np.asarray(trace.epochs, dtype=float), "steps": np.asarray(trace.steps, dtype=np.int64),
        "scalars": {k: np.asarray(v, dtype=float) for k, v in trace.scalars.items()},
        "class_codes": codes, "classes": classes, "trace_labels_digest": _labels_digest(trace),
    }


def embed_run(name: str, path: str, params: dict, options: dict, params_key: str) -> dict:
    """Embed one run and score it; never raises for a bad run (the error is in the result).

    Parameters
    ----------
    name : str
        The run's display name (carried through, not part of the cache key).
    path : str
        Its trace store or trace file, read here.
    params : dict
        :class:`mphate.MPHATE` parameters (``verbose`` is forced to 0: many runs at once would
        interleave their stage lines).
    options : dict
        Metric settings, as :data:`DEFAULT_OPTIONS`.
    params_key : str
        Fingerprint of ``params`` and ``options`` (:func:`mphate.runs.specs.params_digest`).

    Returns
    -------
    dict with "name", "path", "key" (content and parameters, computed as the trace is read),
    "worker", "seconds", "warnings" and either "error" (one line) or the embedding
    ``(n_slices * n_units, 2)`` float32, "t", "metrics" (:func:`run_metrics`) and the fields of
    the trace description (layout, epochs, steps, scalars, most-active class codes).
    """
    from mphate.embed.estimator import MPHATE

    start = time.perf_counter()
    result = {"name": name, "path": path, "key": None, "worker": _where(), "warnings": []}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result["key"] = run_key(content_digest(path), params_key)
            trace, inputs_sha = _read(path)
            est = MPHATE(**{**params, "verbose": 0})
            embedding = est.fit_transform(trace).astype(np.float32)
            result.update(_describe(trace), embedding=embedding, t=int(est.t_),
                          metrics=run_metrics(embedding, trace, options), trace_inputs_sha256=inputs_sha)
        result["warnings"] = list(dict.fromkeys(str(w.message) for w in caught))
    except Exception as exc:  # a bad run is a row in the table, not the end of the sweep
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result["error"] = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    result["seconds"] = time.perf_counter() - start
    return result
