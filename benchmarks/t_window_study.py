"""Which diffusion times keep every preservation number within 0.01 of the reference?

For each panel run (record_panel.py) and each held-out run (holdout_runs.py) whose reference
embedding is in benchmarks/out (bench_panel.py / holdout_runs.py write them), mphate is fitted
with ``t="auto"`` and then refitted at each t of a grid (the refits reuse the kernel,
landmarks and spectrum), and each picture's eight preservation numbers (z-scored and raw, k =
10 and 40, intra and inter) are compared with the reference's. It prints, per run, the t that
auto chose, its worst cell, the grid's t whose worst cell is no more than 0.01 below, and
the worst cell along the grid; and, for a few rules of choosing t from the grid's own
intra + inter scores (z, k = 10, what the t search maximises), how many runs each rule puts
more than 0.01 below the reference.

    .venv/bin/python benchmarks/t_window_study.py [--only NAME,...] [--json OUT]

About 1.5 min per run on two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from mphate.embed.t_search import smallest_within

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_reference as br  # noqa: E402
import holdout_runs  # noqa: E402
import record_panel  # noqa: E402

GRID = (12, 17, 25, 35, 50, 71, 100)
MARGIN = 0.01


def runs(seeds=(0,)) -> dict:
    """case -> (trace path, reference embedding path, seed), for the cases whose reference exists.

    A case is a run at one seed: seed 0 is the run's name, seed s > 0 ``name@s`` (the
    reference's embeddings at other seeds: seed_study.py for the panel, holdout_runs.py for the
    held-out runs it ran at several seeds).
    """
    out = {}
    for seed in seeds:
        suffix = "" if seed == 0 else f"@{seed}"
        for name in record_panel.PANEL:
            ref = (f"panel_{name}_reference.npz" if seed == 0 else f"seed_{name}_reference_s{seed}.npz")
            out[name + suffix] = (record_panel.trace_path(name), os.path.join(HERE, "out", ref), seed)
        for name in holdout_runs.HOLDOUT:
            ref = f"holdout_{name}_reference" + ("" if seed == 0 else f"_s{seed}") + ".npz"
            out[name + suffix] = (os.path.join(holdout_runs.HOLDOUT_DIR, f"{name}.npz"),
                                  os.path.join(HERE, "out", ref), seed)
    return {k: v for k, v in out.items() if os.path.exists(v[0]) and os.path.exists(v[1])}


def study(trace_path: str, reference_path: str, seed: int = 0) -> dict:
    from mphate import MPHATE

    with np.load(trace_path) as f:
        trace = np.asarray(f["trace"], dtype=np.float32)
    with np.load(reference_path) as f:
        reference = br.preservation_cells(np.asarray(f["embedding"], dtype=np.float64), trace)
    est = MPHATE(random_state=seed).fit(trace)
    entry = {"reference": reference, "auto_t": int(est.t_), "auto": br.preservation_cells(est.embedding_, trace),
             "t_scores": {int(t): list(v) for t, v in est.t_scores_.items()}, "grid": {}}
    for t in GRID:
        est.set_params(t=t).fit(trace)
        entry["grid"][t] = br.preservation_cells(est.embedding_, trace)
    return entry


def worst(cells, reference) -> float:
    return float((np.asarray(cells) - np.asarray(reference)).min())


def z10_sums(grid: dict) -> dict:
    """{t: z intra + inter k10} of the grid's pictures (what the t search maximises)."""
    return {t: cells[0] + cells[1] for t, cells in grid.items()}


def median_of_flat_top(scores: dict, tie: float) -> int:
    """The median t among those within ``tie`` of the best score."""
    top = max(scores.values())
    flat = sorted(t for t, value in scores.items() if value >= top - tie)
    return flat[len(flat) // 2]


RULES = {  # name -> t from {t: cells} of the grid
    "largest z intra+inter k10, smallest t within 0.005 (the t search's rule)":
        lambda g: smallest_within(z10_sums(g), 0.005),
    "largest z intra+inter k10 and k40, smallest t within 0.005":
        lambda g: smallest_within({t: sum(c[:4]) for t, c in g.items()}, 0.005),
    "largest log(intra) + log(inter), z k10, smallest t within 0.01":
        lambda g: smallest_within({t: np.log(c[0]) + np.log(c[1]) for t, c in g.items()}, 0.01),
    "median t of those within 0.005 of the largest z intra+inter k10":
        lambda g: median_of_flat_top(z10_sums(g), 0.005),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (cases whose reference exists)")
    ap.add_argument("--json", default=os.path.join(HERE, "out", "t_window_study.json"))
    ap.add_argument("--reuse", action="store_true", help="keep the cases already in --json")
    args = ap.parse_args(argv)
    available = runs(tuple(int(s) for s in args.seeds.split(",")))
    only = [n for n in args.only.split(",") if n]
    names = [n for n in available if not only or n.split("@")[0] in only]
    results = {}
    if args.reuse and os.path.exists(args.json):
        with open(args.json) as f:
            results = {n: e for n, e in json.load(f).items() if n in names}
        for e in results.values():
            e["grid"] = {int(t): c for t, c in e["grid"].items()}
    for name in names:
        if name in results:
            continue
        results[name] = study(*available[name])
        print(f"{name}: auto t = {results[name]['auto_t']}", flush=True)
        with open(args.json, "w") as f:
            json.dump(results, f)
    print("\n| run | auto t | auto's worst cell | grid t with no cell more than 0.01 below | worst cell at "
          + " / ".join(f"t = {t}" for t in GRID) + " |")
    print("|---|---:|---:|---|---|")
    for name, e in results.items():
        ref = e["reference"]
        along = {t: worst(c, ref) for t, c in e["grid"].items()}
        safe = [t for t, w in along.items() if w >= -MARGIN]
        print(f"| {name} | {e['auto_t']} | {worst(e['auto'], ref):+.3f} | {', '.join(map(str, safe)) or 'none'} | "
              + " / ".join(f"{along[t]:+.3f}" for t in GRID) + " |")
    print("\nRules applied to the grid's pictures (runs more than 0.01 below the reference, and where):")
    for rule, choose in RULES.items():
        picks = {name: choose(e["grid"]) for name, e in results.items()}
        bad = {n: (t, worst(results[n]["grid"][t], results[n]["reference"])) for n, t in picks.items()
               if worst(results[n]["grid"][t], results[n]["reference"]) < -MARGIN}
        print(f"- {rule}: {len(bad)} of {len(picks)}" + (": " + ", ".join(
            f"{n} (t = {t}, {w:+.3f})" for n, (t, w) in bad.items()) if bad else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
