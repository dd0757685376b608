"""How long does a sweep of runs take to embed: in-process, and on 1, 2, ... local Dask workers?

Writes ``--runs`` synthetic trace stores (``mphate.traces.synthetic.make_trace``, each
``--slices`` x ``--units`` x ``--trace``), then embeds all of them with
:func:`mphate.runs.embed_runs` (no cache, so every run is computed):

* ``in-process``: one after the other in this process, the estimator's own thread choice;
* ``workers=N`` for each N of ``--workers``: a fresh ``LocalCluster`` of N single-threaded
  processes, each embedding with cores/N threads, startup included in the wall time.

For each it prints the wall time, the wall time per run, the mean time one task took on its
worker, and the overhead: the wall time less the tasks' time shared over the workers (cluster
startup, imports on fresh workers, results coming back). ``--demo-size`` also times one run the size of ``mphate demo`` (300 x 384 x 100)
in-process on one thread: the unit of the 1,000-run arithmetic in docs/scaling.md. The load
average is printed before and after: on a shared machine the numbers move with it.

    .venv/bin/python benchmarks/bench_runs.py [--runs 6] [--workers 1 2] [--demo-size] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mphate.runs import embed_runs
from mphate.traces.store import TraceStore
from mphate.traces.synthetic import make_trace


def write_runs(folder: Path, n: int, n_slices: int, n_units: int, n_trace: int) -> list[Path]:
    paths = []
    for i in range(n):
        trace = make_trace(n_slices, n_units, n_trace, random_state=i)
        path = folder / f"run{i:03d}.trace"
        sizes = np.bincount(trace.unit_layer).tolist()
        with TraceStore.create(path, trace.layer_names, sizes, n_trace, trace_labels=trace.trace_labels,
                               fsync=False) as store:
            for s in range(n_slices):
                store.append(trace.data[s], step=s + 1, epoch=s + 1,
                             scalars={k: v[s] for k, v in trace.scalars.items()})
        paths.append(path)
    return paths


def timed(paths, params, **where) -> dict:
    start = time.perf_counter()
    results = embed_runs(paths, quiet=True, **where, **params)
    wall = time.perf_counter() - start
    failed = [r["error"] for r in results if r.get("error")]
    if failed:
        raise SystemExit(f"a run failed: {failed[0]}")
    task = [r["seconds"] for r in results]
    # what the wall time holds beyond the tasks themselves, spread over the workers: cluster
    # startup, imports on fresh workers, shipping results back, and the client's own work
    overhead = wall - sum(task) / where.get("workers", 1)
    return {"wall_s": wall, "per_run_s": wall / len(paths), "task_mean_s": float(np.mean(task)),
            "task_max_s": float(np.max(task)), "overhead_s": overhead}


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--trace", type=int, default=100)
    parser.add_argument("--n-landmark", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--demo-size", action="store_true", help="also time one 300 x 384 x 100 run on one thread")
    parser.add_argument("--json", metavar="OUT", help="write the numbers here")
    args = parser.parse_args(argv)

    params = {"n_landmark": args.n_landmark, "random_state": 0}
    info = {"python": sys.version.split()[0], "machine": platform.machine(), "cores": os.cpu_count(),
            "runs": args.runs, "size": [args.slices, args.units, args.trace], "params": params,
            "load_before": load()}
    print(f"{args.runs} runs of {args.slices} slices x {args.units} units x {args.trace} trace inputs "
          f"({args.slices * args.units:,} points), n_landmark={args.n_landmark}; {os.cpu_count()} cores; "
          f"load average {info['load_before']}", flush=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_runs(Path(tmp), args.runs, args.slices, args.units, args.trace)
        rows["in-process"] = timed(paths, params)
        print_row("in-process", rows["in-process"])
        for n in args.workers:
            rows[f"workers={n}"] = timed(paths, params, workers=n)
            print_row(f"workers={n}", rows[f"workers={n}"])
        if args.demo_size:
            (Path(tmp) / "demo").mkdir()
            demo = write_runs(Path(tmp) / "demo", 1, 300, 384, 100)
            rows["demo-size, 1 thread"] = timed(demo, {**params, "n_jobs": 1})
            print_row("demo-size, 1 thread", rows["demo-size, 1 thread"])
    info["load_after"] = load()
    print(f"load average after: {info['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": rows}, indent=1) + "\n")
    return 0


def print_row(name: str, row: dict) -> None:
    print(f"  {name:<22} wall {row['wall_s']:7.1f} s   per run {row['per_run_s']:6.2f} s   "
          f"one task {row['task_mean_s']:6.2f} s (max {row['task_max_s']:.2f})   "
          f"overhead {row['overhead_s']:5.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
