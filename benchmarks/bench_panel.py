"""The benchmark panel: mphate against the reference on every panel run, and t on a grid.

Issue #11's panel (benchmarks/record_panel.py: pre/post-activation MLPs, Adam and SGD at
learning rates an order apart, a CNN with channels as units, a 1,024-unit run, a continual
run). For each run, in one invocation:

* the reference (PyPI m-phate in .bench-venv/) and mphate with the paper's parameters
  (``PAPER`` in bench_reference.py, ``t="auto"``, ``random_state=0``), each in its own process
  (benchmarks/_measure.py): time, peak memory, the t each chose (read from its own log), and
  the eight preservation numbers (z-scored and raw space, k = 10 and 40, intra and inter);
* mphate at fixed t on a grid (5..100) with the same landmarks (one fit, then
  ``set_params(t=...)``: the pipeline reruns only the diffusion time and the embedding), in
  this process, scored by intraslice and interslice k = 10 in the z-scored space: where the
  automatic t lands against the best fixed t on the grid. The entropy curve and the knee
  candidates of that fit are saved for studying t rules offline.

Results go to benchmarks/out/panel.json (and panel_NAME_*.{json,npz,log}); the table is written
between the panel markers of docs/benchmarks.md (below bench_reference.py's keep marker, so
both scripts can rewrite their part).

    .venv/bin/python benchmarks/record_panel.py              # once: record the panel (~10 min)
    .venv/bin/python benchmarks/bench_panel.py               # everything (~30-40 min, 2 cores)
    .venv/bin/python benchmarks/bench_panel.py --only cnn --no-grid
    .venv/bin/python benchmarks/bench_panel.py --reuse       # keep cached runs (same trace,
                                                             # parameters and mphate commit)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_reference as br  # noqa: E402
from record_panel import PANEL, array_digest, trace_path  # noqa: E402

T_GRID = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100)
PANEL_START, PANEL_END = "<!-- panel:start -->", "<!-- panel:end -->"
T_TOLERANCE = 0.01  # issue #11: t="auto" within this of the best fixed t, intra and inter k10


def chosen_t(res: dict) -> int | None:
    """The t an implementation chose, from its own verbose log."""
    try:
        with open(os.path.join(br.ROOT, res["log"])) as f:
            text = f.read()
    except (OSError, KeyError):
        return None
    pattern = r"Automatically selected t = (\d+)" if res["method"] == "reference" else r"\bt = (\d+)"
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


def t_grid(trace: np.ndarray, t_auto: int | None, seed: int, n_jobs: int | None, grid=T_GRID) -> dict:
    """mphate at each fixed t of ``grid`` (and at t="auto") with one set of landmarks.

    Returns {"t": [...], "intraslice": [...], "interslice": [...], "auto": {...},
    "entropy": [...], "t_candidates": [...], "seconds": float}; the scores are k = 10 in the
    z-scored space.
    """
    from mphate import MPHATE
    from mphate.metrics import neighbor_preservation

    start = time.perf_counter()
    estimator = MPHATE(**dict(br.PAPER, random_state=seed, n_jobs=n_jobs))
    embedding = estimator.fit_transform(trace)
    auto = dict(t=int(estimator.t_), **neighbor_preservation(embedding, trace, 10),
                # the search's (intra, inter) at k = 10 and 40 for each candidate t, to compare with the grid
                t_scores={str(t): list(v) for t, v in sorted(estimator.t_scores_.items())})
    rows = {"t": [], "intraslice": [], "interslice": []}
    for t in grid:
        embedding = estimator.set_params(t=int(t)).fit_transform(trace)
        scores = neighbor_preservation(embedding, trace, 10)
        rows["t"].append(int(t))
        for kind in ("intraslice", "interslice"):
            rows[kind].append(float(scores[kind]))
        print(f"    t = {t:3d}: intra {scores['intraslice']:.3f}  inter {scores['interslice']:.3f}", flush=True)
    if t_auto is not None and auto["t"] != t_auto:
        print(f"    note: the in-process fit chose t = {auto['t']}, the measured run {t_auto}", flush=True)
    return dict(rows, auto=auto, entropy=[float(v) for v in estimator.entropy_],
                t_candidates=[int(v) for v in estimator.t_candidates_],
                seconds=time.perf_counter() - start)


def t_verdict(grid: dict) -> dict:
    """How far t="auto" is from the best fixed t on the grid (>= 0 is better).

    Intraslice and interslice preservation pull t in opposite directions on real runs (the
    best intra t and the best inter t are far apart), so "the best fixed t" is the grid's t
    with the largest intra + inter; the gaps are auto's intra and inter minus that t's. The
    separate bests are kept to show the trade-off.
    """
    intra, inter = np.asarray(grid["intraslice"]), np.asarray(grid["interslice"])
    best = int(np.argmax(intra + inter))
    auto = grid["auto"]
    return dict(best_t=grid["t"][best], best_t_intra=float(intra[best]), best_t_inter=float(inter[best]),
                intra_gap=auto["intraslice"] - float(intra[best]),
                inter_gap=auto["interslice"] - float(inter[best]),
                best_intra=float(intra.max()), best_intra_t=grid["t"][int(np.argmax(intra))],
                best_inter=float(inter.max()), best_inter_t=grid["t"][int(np.argmax(inter))])


def bench_run(name: str, args) -> dict:
    label, what, _ = PANEL[name]
    path = trace_path(name)
    if not os.path.exists(path):
        sys.exit(f"{br.rel(path)} is missing: run `.venv/bin/python benchmarks/record_panel.py --only {name}` first")
    with np.load(path) as f:
        trace = np.asarray(f["trace"])
    print(f"{name} ({label}): trace {trace.shape}", flush=True)
    out = dict(name=name, label=label, what=what, shape=list(trace.shape), trace=br.rel(path),
               trace_digest=array_digest(trace))
    for method in ("reference", "mphate"):
        tag = f"panel_{name}_{method}"
        res = br.cached(tag, path) if args.reuse else None
        if res is None:
            res = br.run_method(method, path, tag, args.seed, args.ref_timeout, args.mem_cap_gb * 1024)
        else:
            print(f"  {method}: cached from {res['date']}", flush=True)
        if res["status"] == "ok" and res.get("preservation_metric") != br.PRESERVATION_METRIC:
            # not yet scored, or scored with an earlier definition of the metric
            res["preservation"] = br.preservation(res, trace)
            res["preservation_metric"] = br.PRESERVATION_METRIC
            with open(os.path.join(br.OUT, f"{tag}.json"), "w") as f:
                json.dump({k: v for k, v in res.items() if k != "cached"}, f, indent=1)
        res["t"] = chosen_t(res)
        out[method] = {k: res.get(k) for k in ("status", "fit_s", "wall_s", "peak_mb", "tree_peak_mb",
                                               "load_mean", "t", "preservation", "log", "date")}
    if args.native_blas:
        # mphate once more, with the machine's OpenBLAS overrides removed (its NumPy's own kernels)
        tag = f"panel_{name}_mphate_native_blas"
        res = br.cached(tag, path) if args.reuse else None
        if res is None or res.get("env_dropped") != list(br.OPENBLAS_OVERRIDES):
            print(f"  mphate without {', '.join(br.OPENBLAS_OVERRIDES)}:", flush=True)
            res = br.run_method("mphate", path, tag, args.seed, args.ref_timeout, args.mem_cap_gb * 1024,
                                env_drop=br.OPENBLAS_OVERRIDES)
        res["t"] = chosen_t(res) if res["status"] == "ok" else None
        out["mphate_native_blas"] = {k: res.get(k) for k in ("status", "fit_s", "peak_mb", "t", "date")}
    if not args.no_grid:
        print("  mphate on the t grid:", flush=True)
        out["grid"] = t_grid(trace, out["mphate"]["t"], args.seed, args.grid_jobs)
        out["t_verdict"] = t_verdict(out["grid"])
    return out


# ---------------------------------------------------------------------------- the table
def _num(x, fmt="{:.3f}"):
    return "" if x is None else fmt.format(x)


def panel_tables(results: list[dict]) -> list[str]:
    L = ["| run | points | ref t | ref time, s | ref peak, MB | mphate t | mphate time, s | mphate peak, MB "
         "| speed-up | memory ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    speedups = []
    for r in results:
        ref, ours = r["reference"], r["mphate"]
        S, U = r["shape"][:2]
        if ref["status"] == "ok" and ours["status"] == "ok":
            speed, mem = ref["fit_s"] / ours["fit_s"], ref["peak_mb"] / ours["peak_mb"]
            speedups.append(speed)
            ratios = f"{speed:.1f}x | {mem:.1f}x"
        else:
            ratios = " | "
        L.append(f"| {r['label']} | {S} x {U} = {S * U:,} | {_num(ref['t'], '{}')} | "
                 f"{_num(ref['fit_s'], '{:.1f}') or ref['status']} | {_num(ref['peak_mb'], '{:.0f}')} | "
                 f"{_num(ours['t'], '{}')} | {_num(ours['fit_s'], '{:.1f}') or ours['status']} | "
                 f"{_num(ours['peak_mb'], '{:.0f}')} | {ratios} |")
    if speedups:
        L += ["", f"Median speed-up over the panel: {np.median(speedups):.1f}x (goal: >= 30x).", ""]
    native = [r for r in results if r.get("mphate_native_blas", {}).get("status") == "ok"
              and r["reference"]["status"] == "ok"]
    if native:
        names = " and ".join(f"`{v}`" for v in br.OPENBLAS_OVERRIDES)
        L += [f"mphate again without {names} (the machine sets them for old OpenBLAS builds; the "
              "reference keeps them), against the same reference times:", "",
              "| run | mphate t | mphate time, s | speed-up |", "|---|---:|---:|---:|"]
        native_speedups = []
        for r in native:
            n = r["mphate_native_blas"]
            native_speedups.append(r["reference"]["fit_s"] / n["fit_s"])
            L.append(f"| {r['label']} | {_num(n['t'], '{}')} | {n['fit_s']:.1f} | {native_speedups[-1]:.1f}x |")
        L += ["", f"Median: {np.median(native_speedups):.1f}x.", ""]
    L += ["Preservation, mphate minus reference (each cell: the difference; **bold** where mphate is "
          "more than 0.01 below); z = z-scored space, raw = raw activations:", "",
          "| run | z intra k10 | z intra k40 | z inter k10 | z inter k40 | raw intra k10 | raw intra k40 "
          "| raw inter k10 | raw inter k40 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ref, ours = r["reference"].get("preservation"), r["mphate"].get("preservation")
        if not ref or not ours:
            L.append(f"| {r['label']} | (missing) |||||||| ")
            continue
        cells = []
        for space in br.SPACES:
            for kind in ("intraslice", "interslice"):
                for k in br.KS:
                    key = f"{space}/k={k}"
                    a, b = ref[key][kind], ours[key][kind]
                    cell = f"{b:.3f} / {a:.3f} ({b - a:+.3f})"
                    cells.append(f"**{cell}**" if b < a - 0.01 else cell)
        L.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    L += ["", "(cells: mphate / reference (difference))", ""]
    grids = [r for r in results if "grid" in r]
    if grids:
        L += [f"Where `t=\"auto\"` lands (mphate, same landmarks, z-scored k = 10), against the grid "
              f"{list(T_GRID)}: the best fixed t is the grid's t with the largest intraslice + "
              f"interslice; gaps are auto's numbers minus that t's (goal: within {T_TOLERANCE}). The "
              f"last two columns are the grid's best of each alone, to show the trade-off.", "",
              "| run | auto t (entropy knees) | auto intra / inter | best fixed t | its intra / inter "
              "| gaps | best intra alone (t) | best inter alone (t) |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in grids:
            g, v = r["grid"], r["t_verdict"]

            def gap(x):
                return f"**{x:+.3f}**" if x < -T_TOLERANCE else f"{x:+.3f}"
            L.append(f"| {r['label']} | {g['auto']['t']} ({', '.join(map(str, g['t_candidates']))}) | "
                     f"{g['auto']['intraslice']:.3f} / {g['auto']['interslice']:.3f} | {v['best_t']} | "
                     f"{v['best_t_intra']:.3f} / {v['best_t_inter']:.3f} | "
                     f"{gap(v['intra_gap'])} / {gap(v['inter_gap'])} | "
                     f"{v['best_intra']:.3f} ({v['best_intra_t']}) | {v['best_inter']:.3f} ({v['best_inter_t']}) |")
    return L


def write_doc(doc: str, lines: list[str]) -> None:
    with open(doc) as f:
        page = f.read()
    block = PANEL_START + "\n" + "\n".join(lines) + "\n" + PANEL_END
    if PANEL_START in page and PANEL_END in page:
        page = page[: page.index(PANEL_START)] + block + page[page.index(PANEL_END) + len(PANEL_END):]
    else:
        if br.KEEP_MARKER not in page:
            page += "\n" + br.KEEP_MARKER + "\n"
        head, tail = page.split(br.KEEP_MARKER, 1)
        page = head + br.KEEP_MARKER + "\n## The panel of real runs (issue #11)\n\n" + block + "\n" + tail
    with open(doc, "w") as f:
        f.write(page)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=list(PANEL), help="this run only (repeatable)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse cached runs in benchmarks/out/ (same trace, parameters, mphate commit)")
    ap.add_argument("--no-grid", action="store_true", help="skip the fixed-t grid")
    ap.add_argument("--grid-jobs", type=int, default=None, help="n_jobs of the grid fits (default: mphate's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-timeout", type=float, default=900.0, help="seconds before a run is stopped")
    ap.add_argument("--mem-cap-gb", type=float, default=10.0)
    ap.add_argument("--doc", default=br.DOC, help="page to write the table into ('' for none)")
    ap.add_argument("--native-blas", action="store_true",
                    help="also time mphate without the machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE "
                         "(never changed for the reference, tests or CI)")
    args = ap.parse_args(argv)
    if not os.path.exists(br.REF_PY):
        sys.exit("no reference environment: run `bash benchmarks/reference_env.sh` first")
    names = args.only or list(PANEL)
    started = _dt.datetime.now()
    t0 = time.perf_counter()
    results = [bench_run(name, args) for name in names]
    header = (f"Measured {started:%Y-%m-%d %H:%M} by `.venv/bin/python benchmarks/bench_panel.py"
              + "".join(" " + a for a in (argv if argv is not None else sys.argv[1:]))
              + f"` in {(time.perf_counter() - t0) / 60:.0f} min; {br.machine()}; "
              + "; ".join(f"{k}: {v}" for k, v in br.versions().items())
              + ". Times are load + fit_transform in each implementation's own process, "
                "memory its peak RSS; both with `random_state=0` and the paper's parameters. "
              + "Traces (sha256 of the float32 trace, first 12 hex digits; traces recorded on "
                "another processor can differ): "
              + ", ".join(f"{r['name']} {r['trace_digest']}" for r in results) + ".")
    lines = [header, ""] + panel_tables(results)
    print("\n".join(lines), flush=True)
    os.makedirs(br.OUT, exist_ok=True)
    out_path = os.path.join(br.OUT, "panel.json" if not args.only else f"panel-{'-'.join(names)}.json")
    with open(out_path, "w") as f:
        json.dump(dict(command=header, results=results), f, indent=1)
    print(f"wrote {br.rel(out_path)}")
    if args.doc and not args.only:
        write_doc(args.doc, lines)
        print(f"wrote {br.rel(args.doc)}")


if __name__ == "__main__":
    main()
