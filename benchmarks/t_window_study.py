"""Which diffusion times keep every preservation number within 0.01 of the reference?

For each panel run (record_panel.py) and each held-out run (holdout_runs.py) whose reference
embedding is in benchmarks/out (bench_panel.py / holdout_runs.py write them; seed_study.py
for other seeds), mphate is fitted with ``t="auto"``, and the picture its search drew at each
candidate t gets its eight preservation numbers (z-scored and raw, k = 10 and 40, intra and
inter), compared with the reference's. It prints, per run, the t that
auto chose, its worst cell, the grid's t whose worst cell is no more than 0.01 below, and
the worst cell along the grid; and, for a few ties of the search's rule
(:func:`mphate.embed.t_search.choose_t`) applied to the search's own scores, how many runs
each puts more than 0.01 below the reference.

    .venv/bin/python benchmarks/t_window_study.py [--only NAME,...] [--seeds 0,1,2] [--json OUT] [--reuse]

About 1 min per run on two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from mphate.embed.t_search import TIE, choose_t

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_reference as br  # noqa: E402
import holdout_runs  # noqa: E402
import record_panel  # noqa: E402

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
    """One fit with ``t="auto"``; the eight cells of the picture the search drew at each
    candidate t (the same kernel, landmarks, spectrum and layouts the fit chose among)."""
    from mphate import MPHATE

    with np.load(trace_path) as f:
        trace = np.asarray(f["trace"], dtype=np.float32)
    with np.load(reference_path) as f:
        reference = br.preservation_cells(np.asarray(f["embedding"], dtype=np.float64), trace)
    est = MPHATE(random_state=seed).fit(trace)
    entry = {"reference": reference, "auto_t": int(est.t_), "auto": br.preservation_cells(est.embedding_, trace),
             "t_scores": {int(t): list(v) for t, v in est.t_scores_.items()}, "grid": {}}
    to_points = est.landmark_operator_.point_to_landmark
    for t, layout in sorted(est._state.layouts.items()):
        entry["grid"][t] = br.preservation_cells(np.asarray(to_points @ layout), trace)
    return entry


def worst(cells, reference) -> float:
    return float((np.asarray(cells) - np.asarray(reference)).min())


#: ties of choose_t tried on the search's own scores, (k = 10 sum, k = 40 sum)
TIES = [(0.005, 0.005), (0.005, 0.01), (0.005, 0.015), (0.01, 0.01), (0.01, 0.015), (0.01, 0.02),
        (0.005, float("inf")), (0.01, float("inf"))]


def rule_picks(entry: dict, tie) -> int:
    """The t :func:`mphate.embed.t_search.choose_t` takes from the search's own scores
    (the scored subsample: what the fit sees) with ``tie``; inf: that sum is ignored."""
    return choose_t({int(t): v for t, v in entry["t_scores"].items()}, tie=tie)


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
    grid = sorted({t for e in results.values() for t in e["grid"]})
    print("\n| run | auto t | auto's worst cell | t with no cell more than 0.01 below | worst cell at "
          + " / ".join(f"t = {t}" for t in grid) + " |")
    print("|---|---:|---:|---|---|")
    for name, e in results.items():
        ref = e["reference"]
        along = {t: worst(c, ref) for t, c in e["grid"].items()}
        safe = [t for t in grid if t in along and along[t] >= -MARGIN]
        print(f"| {name} | {e['auto_t']} | {worst(e['auto'], ref):+.3f} | {', '.join(map(str, safe)) or 'none'} | "
              + " / ".join(f"{along[t]:+.3f}" if t in along else "-" for t in grid) + " |")
    print("\nchoose_t's ties on the search's own scores (cases more than 0.01 below the reference, and where;"
          f" the default is {TIE}):")
    for tie in TIES:
        picks = {name: rule_picks(e, tie) for name, e in results.items()}
        bad = {n: (t, worst(results[n]["grid"][t], results[n]["reference"])) for n, t in picks.items()
               if worst(results[n]["grid"][t], results[n]["reference"]) < -MARGIN}
        print(f"- tie {tie}: {len(bad)} of {len(picks)}" + (": " + ", ".join(
            f"{n} (t = {t}, {w:+.3f})" for n, (t, w) in bad.items()) if bad else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
