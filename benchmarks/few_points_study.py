"""Landmark seeding on traces with few points per landmark: random points or k-means++.

Below ``mphate.embed.landmarks.FEW_POINTS_PER_LANDMARK`` (5) points per landmark the landmarks'
k-means starts from k-means++ seeding. This script measures that choice against random seeding,
with the reference on the same traces and seeds: the panel's CNN run (3.6 points per landmark)
and six traces cut from the other panel runs down to 4.8 or fewer points per landmark (every
6th or 3rd slice, or every 4th or 8th unit, keeping at least 50 slices for interslice k = 40):

* the reference (PyPI m-phate, .bench-venv/) in its own process at each seed
  (bench_reference.run_method; cached in benchmarks/out/few_*_reference_s*.json);
* mphate in this process at each seed, once with each seeding (the seeding rule patched for
  the comparison), ``n_jobs=1`` so that the numbers do not depend on the machine's load;
* the eight preservation numbers of each (z-scored and raw space, k = 10 and 40, intra and
  inter), printed as mphate minus reference.

    .venv/bin/python benchmarks/record_panel.py          # once: the panel traces
    .venv/bin/python benchmarks/few_points_study.py      # 7 traces x 3 seeds (~45 min, 2 cores)
    .venv/bin/python benchmarks/few_points_study.py --only cnn --seeds 0
    .venv/bin/python benchmarks/few_points_study.py --table   # the last results as markdown

Results: benchmarks/out/few_points.json. The table in docs/benchmarks.md ("Few points per
landmark") comes from this script.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_reference as br  # noqa: E402
from record_panel import trace_path  # noqa: E402

CUT_DIR = os.path.join(HERE, "data", "few_points")
#: name -> (panel run, slice step, unit step)
CUTS = {
    "cnn": ("cnn", 1, 1),
    "post_adam": ("post_adam", 6, 1),
    "pre_adam": ("pre_adam", 6, 1),
    "sgd_01": ("sgd_01", 3, 1),
    "sgd_001": ("sgd_001", 3, 1),
    "continual": ("continual", 1, 4),
    "wide": ("wide", 1, 8),
}
SEEDINGS = ("random", "k-means++")
CELLS = [f"{space}/k={k}/{kind}" for space in br.SPACES for k in br.KS for kind in ("intraslice", "interslice")]


def cut_trace(name: str) -> str:
    """The trace for ``name``: a panel trace, or every n-th slice / unit of one (written once)."""
    run, slice_step, unit_step = CUTS[name]
    if slice_step == unit_step == 1:
        return trace_path(run)
    os.makedirs(CUT_DIR, exist_ok=True)
    path = os.path.join(CUT_DIR, f"{name}.npz")
    if not os.path.exists(path):
        with np.load(trace_path(run)) as f:
            trace = np.ascontiguousarray(f["trace"][::slice_step, ::unit_step])
        np.savez(path, trace=trace)
    return path


def reference_cells(name: str, path: str, trace: np.ndarray, seed: int, timeout: float) -> list[float] | None:
    tag = f"few_{name}_reference_s{seed}"
    res = br.cached(tag, path)
    if res is None or res.get("params", {}).get("random_state") != seed:
        res = br.run_method("reference", path, tag, seed, timeout, mem_cap_mb=None)
    if res.get("status") != "ok":
        print(f"  reference {name} seed {seed}: {res.get('status')}", flush=True)
        return None
    with np.load(os.path.join(br.ROOT, res["embedding"])) as f:
        return br.preservation_cells(np.asarray(f["embedding"], dtype=np.float64), trace)


def mphate_cells(trace: np.ndarray, seed: int, seeding: str) -> tuple[list[float], int]:
    from mphate import MPHATE
    from mphate.embed import landmarks

    rule = landmarks.landmark_seeding
    landmarks.landmark_seeding = lambda n_points, n_landmark: seeding
    try:
        est = MPHATE(**dict(br.PAPER, random_state=seed, n_jobs=1)).fit(trace)
    finally:
        landmarks.landmark_seeding = rule
    return br.preservation_cells(est.embedding_, trace), int(est.t_)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=list(CUTS), help="this trace only (repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ref-timeout", type=float, default=900.0)
    ap.add_argument("--table", action="store_true",
                    help="print the markdown table of benchmarks/out/few_points.json and stop")
    args = ap.parse_args(argv)
    if args.table:
        with open(os.path.join(br.OUT, "few_points.json")) as f:
            rows = json.load(f)["rows"]
        summarize(rows)
        print(markdown_table(rows))
        return
    started = time.perf_counter()
    rows = []
    for name in args.only or list(CUTS):
        path = cut_trace(name)
        with np.load(path) as f:
            trace = np.asarray(f["trace"])
        n_points = trace.shape[0] * trace.shape[1]
        print(f"{name}: {trace.shape[0]} x {trace.shape[1]} = {n_points} points "
              f"({n_points / br.PAPER['n_landmark']:.1f} per landmark)", flush=True)
        for seed in args.seeds:
            reference = reference_cells(name, path, trace, seed, args.ref_timeout)
            for seeding in SEEDINGS:
                ours, t = mphate_cells(trace, seed, seeding)
                row = dict(trace=name, shape=list(trace.shape), seed=seed, seeding=seeding, t=t,
                           mphate=dict(zip(CELLS, ours)),
                           reference=None if reference is None else dict(zip(CELLS, reference)))
                rows.append(row)
                if reference is not None:
                    diff = [a - b for a, b in zip(ours, reference)]
                    print(f"  seed {seed} {seeding:10s} t={t:3d} worst {min(diff):+.3f} sum {sum(diff):+.3f}  "
                          + " ".join(f"{d:+.3f}" for d in diff), flush=True)
    summarize(rows)
    print(markdown_table(rows))
    os.makedirs(br.OUT, exist_ok=True)
    with open(os.path.join(br.OUT, "few_points.json"), "w") as f:
        json.dump(dict(command=" ".join(["benchmarks/few_points_study.py"] + (argv or sys.argv[1:])),
                       minutes=(time.perf_counter() - started) / 60, cells=CELLS, rows=rows), f, indent=1)


LABELS = {"cnn": "CNN", "post_adam": "post-act Adam", "pre_adam": "pre-act Adam", "sgd_01": "SGD 0.1",
          "sgd_001": "SGD 0.01", "continual": "continual", "wide": "wide"}


def _ordinal(n: int) -> str:
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10 if n % 100 not in (11, 12, 13) else 0, 'th')}"


def markdown_table(rows) -> str:
    """Per trace: each seeding's worst cell and sum of the eight differences, seed by seed."""
    def cell(values, bold):
        return " / ".join(f"**{v:+.3f}**" if bold and v < -0.01 else f"{v:+.3f}" for v in values)

    lines = ["| trace (points per landmark) | random: worst cell by seed | k-means++: worst cell | "
             "random: sum of the 8 differences | k-means++: sum |", "|---|---|---|---|---|"]
    for name in CUTS:
        mine = [r for r in rows if r["trace"] == name and r["reference"]]
        if not mine:
            continue
        _, slice_step, unit_step = CUTS[name]
        cut = (f", every {_ordinal(slice_step)} slice" if slice_step > 1 else "") + (
            f", every {_ordinal(unit_step)} unit" if unit_step > 1 else "")
        n_slices, n_units = mine[0]["shape"][:2]
        worst, total = {}, {}
        for seeding in SEEDINGS:
            diffs = [[r["mphate"][c] - r["reference"][c] for c in CELLS]
                     for r in sorted(mine, key=lambda r: r["seed"]) if r["seeding"] == seeding]
            worst[seeding], total[seeding] = [min(d) for d in diffs], [sum(d) for d in diffs]
        lines.append(f"| {LABELS[name]}: {n_slices} x {n_units}{cut} "
                     f"({n_slices * n_units / br.PAPER['n_landmark']:.1f}) | {cell(worst['random'], True)} | "
                     f"{cell(worst['k-means++'], True)} | {cell(total['random'], False)} | "
                     f"{cell(total['k-means++'], False)} |")
    return "\n".join(lines)


def summarize(rows):
    """Per seeding: runs with a cell more than 0.01 below the reference, and the mean worst cell."""
    for seeding in SEEDINGS:
        worst = [min(row["mphate"][c] - row["reference"][c] for c in CELLS)
                 for row in rows if row["seeding"] == seeding and row["reference"]]
        if worst:
            print(f"{seeding}: {len(worst)} runs, {sum(w < -0.01 for w in worst)} with a cell more than "
                  f"0.01 below the reference, mean worst cell {np.mean(worst):+.4f}")


if __name__ == "__main__":
    main()
