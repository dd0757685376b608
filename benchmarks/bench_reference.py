"""Speed, memory and neighbourhood preservation of mphate against the reference M-PHATE.

The reference is PyPI `m-phate`, installed in its own environment by
benchmarks/reference_env.sh (.bench-venv/); it is never a dependency of mphate and only its
public API is called. Each embedding runs in a separate process (see _measure.py for what
is measured); the figures are reported as ratios against the reference measured in the
same run.

    bash benchmarks/reference_env.sh                          # once
    .venv/bin/python benchmarks/bench_reference.py            # real trace -> docs/benchmarks.md
    .venv/bin/python benchmarks/bench_reference.py --skip-reference   # reuse cached reference
    .venv/bin/python benchmarks/bench_reference.py --scaling  # + scaling table
    .venv/bin/python benchmarks/bench_reference.py --quick    # small smoke run, no docs

The real trace is recorded by benchmarks/record_digits_trace.py (a PyTorch MLP on
scikit-learn's digits) if benchmarks/data/digits_trace.npz is missing.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _measure import run_measured  # noqa: E402

DATA = os.path.join(HERE, "data")
OUT = os.path.join(HERE, "out")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
REF_PY = os.path.join(ROOT, ".bench-venv", "bin", "python")
OUR_PY = os.path.join(ROOT, ".venv", "bin", "python")
RUNNER = {"reference": os.path.join(HERE, "_run_reference.py"),
          "mphate": os.path.join(HERE, "_run_mphate.py")}
PYTHON = {"reference": REF_PY, "mphate": OUR_PY}

# M-PHATE as the paper states it; the same for both implementations.
PAPER = dict(n_components=2, intraslice_knn=2, interslice_knn=25, decay=5, t="auto", gamma=0,
             n_landmark=4000)
KS = (10, 40)
SPACES = ("normalized", "raw")
SCALING_SIZES = [(100, 512), (300, 384), (300, 1024), (1000, 1024), (1000, 2048)]
KEEP_MARKER = "<!-- hand-written below this line: kept when bench_reference.py rewrites the page -->"
MPHATE_SRC = None  # --src: measure mphate from another checkout's src/ (e.g. a clean worktree)
GOAL_SPEEDUP, GOAL_MEM = 30.0, 0.25
GOAL_SCALING_S, GOAL_SCALING_MB = 180.0, 8000.0


# ---------------------------------------------------------------------------- helpers
def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def parse_stages(log_text: str, method: str) -> dict:
    """Stage timings from each implementation's own verbose log."""
    stages = {}
    if method == "reference":
        for name, sec in re.findall(r"Calculated (.+?) in ([0-9.]+) seconds", log_text):
            stages[name.strip()] = float(sec)
    else:
        for name, sec in re.findall(r"\[mphate\] (.+?): ([0-9.]+) s$", log_text, re.M):
            stages[name.strip()] = float(sec)
    return stages


STAGE_GROUPS = {  # both logs grouped into the same four stages (+ the rest)
    "kernel": {"reference": ["multislice kernel"], "mphate": ["kernel"]},
    "landmarks (spectral clustering, landmark operator)": {
        "reference": ["graph and diffusion operator"],
        "mphate": ["spectral coordinates", "landmark clustering", "landmark operator",
                   "diffusion operator (all points)"]},
    "t selection + potential": {
        "reference": ["optimal t", "diffusion potential"],
        "mphate": ["eigendecomposition", "diffusion time", "potential"]},
    "MDS (classical + metric)": {
        "reference": ["classical MDS", "metric MDS"],
        "mphate": ["classical MDS", "metric MDS"]},
}
TOTAL_STAGE = {"reference": "M-PHATE", "mphate": "total"}


def group_stages(res: dict) -> dict:
    st, m = res.get("stages") or {}, res["method"]
    out = {g: sum(st.get(n, 0.0) for n in names[m]) for g, names in STAGE_GROUPS.items()}
    total = st.get(TOTAL_STAGE[m]) if TOTAL_STAGE[m] else sum(st.values())
    if total is not None:
        out["other"] = max(0.0, total - sum(out.values()))
        out["total (own log)"] = total
    return out


#: environment variables these machines set for old OpenBLAS builds; they select slower kernels
#: for a current NumPy (bench_panel.py --native-blas measures mphate without them as well)
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def run_method(method: str, trace_path: str, tag: str, seed: int, timeout: float,
               mem_cap_mb: float | None, overrides: dict | None = None, env_drop=()) -> dict:
    """Embed trace_path with one implementation in its own process; cache the result.

    ``env_drop``: environment variables removed for that process (all of them together).
    """
    os.makedirs(OUT, exist_ok=True)
    emb_path = os.path.join(OUT, f"{tag}.npz")
    log_path = os.path.join(OUT, f"{tag}.log")
    # threads: each implementation's own default way of using the cores. The reference's
    # n_jobs=-1 runs joblib workers on all cores; mphate's default (n_jobs=None) runs BLAS on
    # the idle cores only, since busy-waiting BLAS threads on a shared core run several times
    # slower than one thread.
    params = dict(PAPER, **(overrides or {}), random_state=seed, verbose=1,
                  n_jobs=-1 if method == "reference" else None)
    cmd = [PYTHON[method], RUNNER[method], trace_path, emb_path, "--params", json.dumps(params)]
    if os.path.exists(emb_path):
        os.remove(emb_path)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for name in env_drop:
        env.pop(name, None)
    if method == "mphate" and MPHATE_SRC:
        env["PYTHONPATH"] = MPHATE_SRC  # ahead of the editable install in .venv
    load1 = os.getloadavg()[0]
    print(f"  {method}: running ({rel(trace_path)}, timeout {timeout:.0f} s) ...", flush=True)
    m = run_measured(cmd, log_path, timeout=timeout, env=env, mem_cap_mb=mem_cap_mb)
    with open(log_path) as f:
        log_text = f.read()
    res = dict(method=method, tag=tag, input=rel(trace_path), input_sha=sha256(trace_path),
               params=params, date=_dt.datetime.now().isoformat(timespec="seconds"),
               loadavg_1min_before=load1, command=" ".join(shlex.quote(c) for c in
                                                             [rel(cmd[0]), rel(cmd[1])] + cmd[2:]),
               log=rel(log_path), env_dropped=list(env_drop), **m)
    if m["returncode"] == 0 and os.path.exists(emb_path):
        with np.load(emb_path) as f:
            res.update(status="ok", fit_s=float(f["fit_s"]), load_s=float(f["load_s"]),
                       peak_mb=float(f["peak_rss_mb"]), version=str(f["version"]),
                       shape=[int(v) for v in f["shape"]], embedding=rel(emb_path))
    elif m["timed_out"]:
        res.update(status=f"did not finish in {timeout / 60:.0f} min (stopped)")
    elif m.get("mem_capped"):
        res.update(status=f"stopped at the {mem_cap_mb / 1024:.0f} GB memory cap")
    else:
        tail = log_text.strip().splitlines()[-3:]
        res.update(status=f"failed (exit {m['returncode']}): " + " | ".join(tail)[-300:])
    res["stages"] = parse_stages(log_text, method)
    if method == "mphate":
        res["mphate_commit"] = versions().get("mphate commit", "?")
    with open(os.path.join(OUT, f"{tag}.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"  {method}: {res['status']}  " + (
        f"fit {res['fit_s']:.1f} s, process {res['wall_s']:.1f} s, peak RSS {res['peak_mb']:.0f} MB"
        f" (tree {res['tree_peak_mb']:.0f} MB)" if res["status"] == "ok" else
        f"after {res['wall_s']:.0f} s, tree peak {res['tree_peak_mb']:.0f} MB"), flush=True)
    return res


def cached(tag: str, trace_path: str, overrides: dict | None = None) -> dict | None:
    path = os.path.join(OUT, f"{tag}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        res = json.load(f)
    want = dict(PAPER, **(overrides or {}))
    if res.get("input_sha") != sha256(trace_path) or {k: res["params"].get(k) for k in want} != want:
        return None
    if res.get("status") == "ok" and not os.path.exists(os.path.join(ROOT, res["embedding"])):
        return None
    if res["method"] == "mphate" and res.get("mphate_commit") != versions().get("mphate commit"):
        return None
    res["cached"] = True
    return res


#: the eight preservation numbers of the panel tables, in their column order
KINDS = ("intraslice", "interslice")
CELLS = tuple(f"{'z' if space == 'normalized' else 'raw'} {kind[:5]} k{k}"
              for space in SPACES for k in KS for kind in KINDS)


def cells_of(scores: dict) -> list[float]:
    """:func:`preservation`'s dict as the eight numbers, in :data:`CELLS` order."""
    return [scores[f"{space}/k={k}"][kind] for space in SPACES for k in KS for kind in KINDS]


def preservation_cells(embedding: np.ndarray, trace: np.ndarray, ks=KS) -> list[float]:
    """The eight numbers (:data:`CELLS` order) of an embedding (N, d) of a trace (S, U, F);
    for each space, intra and inter at each k of ``ks`` in turn."""
    from mphate.metrics import neighbor_preservation

    out = []
    for space in SPACES:
        for k in ks:
            scores = neighbor_preservation(embedding, trace, k, space=space)
            out += [scores[kind] for kind in KINDS]
    return out


#: which definition of neighbourhood preservation stored results were scored with: cached
#: results scored otherwise are scored again (ties counted since 2026-12-07, mphate.metrics)
PRESERVATION_METRIC = "ties counted (2026-12-07)"


def preservation(res: dict, trace: np.ndarray) -> dict:
    from mphate.metrics import neighbor_preservation
    with np.load(os.path.join(ROOT, res["embedding"])) as f:
        emb = np.asarray(f["embedding"], dtype=np.float64)
    n_bad = int((~np.isfinite(emb)).any(axis=1).sum())
    if n_bad:
        res["status"] = f"embedding has NaN/inf in {n_bad} of {len(emb)} rows"
        return {}
    out = {}
    for space in SPACES:
        for k in KS:
            d = neighbor_preservation(emb, trace, k, space=space)
            out[f"{space}/k={k}"] = d
    return out


def versions() -> dict:
    v = {}
    try:
        with open(os.path.join(ROOT, ".bench-venv", "versions.txt")) as f:
            want = ("m-phate", "phate", "graphtools", "numpy", "scipy", "scikit-learn")
            v["reference env"] = ", ".join(
                ln.strip() for ln in f if ln.split("==")[0].lower() in want)
    except OSError:
        v["reference env"] = "(benchmarks/reference_env.sh not run)"
    out = subprocess.run(
        [OUR_PY, "-c", "import importlib.metadata as m, sys; print(', '.join("
                       "f'{p}=={m.version(p)}' for p in ('mphate','numpy','scipy','scikit-learn',"
                       "'threadpoolctl')) + ', python ' + sys.version.split()[0])"],
        capture_output=True, text=True)
    v["our env"] = out.stdout.strip()
    repo = os.path.dirname(MPHATE_SRC) if MPHATE_SRC else ROOT
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
        v["mphate commit"] = commit + (" (+ uncommitted changes in src/)" if dirty else "")
    except OSError:
        pass
    return v


def processor() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> str:
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except OSError:
        mem = float("nan")
    return f"{os.cpu_count()} cores ({processor()}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def fmt_s(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


# ---------------------------------------------------------------------------- real trace
def ensure_real_trace(path: str) -> None:
    if not os.path.exists(path):
        print(f"recording {rel(path)} ...", flush=True)
        subprocess.run([OUR_PY, os.path.join(HERE, "record_digits_trace.py"), "--out", path],
                       check=True)


QUICK_OVERRIDES = dict(n_landmark=500)  # the smoke run still exercises the landmark path


def quick_trace(src: str, dst: str) -> None:
    with np.load(src) as f:
        x = f["trace"]
    np.savez(dst, trace=np.ascontiguousarray(x[::6, ::4]))  # 50 slices x 96 units


def bench_real(args, trace_path: str, tag: str, overrides: dict | None = None
               ) -> tuple[list[str], dict]:
    with np.load(trace_path) as f:
        trace = np.asarray(f["trace"])
    print(f"trace {rel(trace_path)}: {trace.shape}", flush=True)
    ref = (cached(f"{tag}_reference", trace_path, overrides)
           if args.skip_reference or args.reuse else None)
    if ref is None:
        if args.skip_reference:
            print("  no cached reference result for this trace: running it", flush=True)
        ref = run_method("reference", trace_path, f"{tag}_reference", args.seed,
                         args.ref_timeout, args.mem_cap_gb * 1024, overrides)
    else:
        print(f"  reference: cached from {ref['date']} ({ref['log']})", flush=True)
    ours = cached(f"{tag}_mphate", trace_path, overrides) if args.reuse else None
    if ours is None:
        ours = run_method("mphate", trace_path, f"{tag}_mphate", args.seed, args.ref_timeout,
                          args.mem_cap_gb * 1024, overrides)
    else:
        print(f"  mphate: cached from {ours['date']} ({ours['mphate_commit']})", flush=True)
    if tag == "digits":  # the brief's name for the reference's figures
        with open(os.path.join(OUT, "reference.json"), "w") as f:
            json.dump(ref, f, indent=1)
    pres = {}
    for r in (ref, ours):
        if r["status"] == "ok":
            t0 = time.perf_counter()
            p = preservation(r, trace)
            if p:
                pres[r["method"]] = p
                print(f"  preservation of {r['method']} computed in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
            else:
                print(f"  {r['method']}: {r['status']}: no preservation", flush=True)
    for r in (ref, ours):
        if r["method"] in pres:
            r["preservation"] = pres[r["method"]]
            r["preservation_metric"] = PRESERVATION_METRIC
            with open(os.path.join(OUT, f"{r['tag']}.json"), "w") as f:
                json.dump({k: v for k, v in r.items() if k != "cached"}, f, indent=1)
    lines = real_table(ref, ours, pres)
    print("\n".join(lines), flush=True)
    return lines, dict(reference=ref, mphate=ours, preservation=pres)


def real_table(ref, ours, pres) -> list[str]:
    L = [f"**Problem:** {r['method']}: {r['status']}" for r in (ref, ours) if r["status"] != "ok"]
    L += ["" if L else None]
    L = [x for x in L if x is not None]
    L += ["| | reference m-phate | mphate | ratio (reference / mphate) | goal |",
         "|---|---:|---:|---:|---|"]

    def row(name, key, fmt, goal, ratio=True):
        a, b = ref.get(key), ours.get(key)
        if a is None or b is None:
            L.append(f"| {name} | {a if a is not None else ref['status']} | "
                     f"{b if b is not None else ours['status']} | | {goal} |")
            return
        r = f"{a / b:.1f}x" if ratio else ""
        L.append(f"| {name} | {fmt(a)} | {fmt(b)} | {r} | {goal} |")

    row("load + fit_transform, s", "fit_s", fmt_s, f">= {GOAL_SPEEDUP:.0f}x faster")
    row("whole process (start, imports, fit, write), s", "wall_s", fmt_s, "")
    row("CPU time, user + system (process and reaped workers), s", "cpu_s", fmt_s, "")
    row("mean 1-min load average during the run (cores: %d)" % os.cpu_count(), "load_mean",
        lambda x: f"{x:.1f}", "", ratio=False)
    row("peak RSS of the process, MB", "peak_mb", lambda x: f"{x:.0f}",
        f"<= 1/{1 / GOAL_MEM:.0f} (ratio >= {1 / GOAL_MEM:.0f}x)")
    row("peak RSS, process + workers (polled), MB", "tree_peak_mb", lambda x: f"{x:.0f}", "")
    if ref.get("stages") and ours.get("stages"):
        gr, go = group_stages(ref), group_stages(ours)
        L += ["", "Where the time goes (each implementation's own verbose log, grouped):", "",
              "| stage | reference m-phate, s | mphate, s | ratio |", "|---|---:|---:|---:|"]
        for g in gr:
            a, b = gr[g], go.get(g, 0.0)
            L.append(f"| {g} | {a:.1f} | {b:.1f} | "
                     + (f"{a / b:.1f}x" if b > 0.05 else "") + " |")
    if "reference" in pres and "mphate" in pres:
        L += ["", "Neighbourhood preservation (higher is better; goal: mphate >= reference - 0.01):",
              "", "| reference space | k | kind | reference m-phate | mphate | difference |",
              "|---|---:|---|---:|---:|---:|"]
        for space in SPACES:
            for k in KS:
                key = f"{space}/k={k}"
                for kind in ("intraslice", "interslice"):
                    a = pres["reference"][key][kind]
                    b = pres["mphate"][key][kind]
                    flag = "" if b >= a - 0.01 else " (below)"
                    L.append(f"| {space} | {k} | {kind} | {a:.3f} | {b:.3f} | {b - a:+.3f}{flag} |")
    return L


# ---------------------------------------------------------------------------- scaling
def scaling_trace(S: int, U: int, seed: int) -> str:
    """A real trace of S epochs x U hidden units (three layers of about U / 3 units each):
    the digits MLP of record_digits_trace.py, widened, recorded once and cached as float16."""
    if (S, U) == (300, 384):
        path = os.path.join(DATA, "digits_trace.npz")
        ensure_real_trace(path)
        return path
    path = os.path.join(DATA, f"digits_{S}x{U}.npz")
    if not os.path.exists(path):
        widths = [U // 3 + (1 if i < U % 3 else 0) for i in range(3)]
        print(f"recording {rel(path)} ({S} epochs, hidden {widths}) ...", flush=True)
        subprocess.run([OUR_PY, os.path.join(HERE, "record_digits_trace.py"), "--epochs", str(S),
                        "--hidden", ",".join(map(str, widths)), "--seed", str(seed), "--float16",
                        "--out", path], check=True)
    return path


def bench_scaling(args) -> tuple[list[str], list]:
    os.makedirs(DATA, exist_ok=True)
    rows = []
    sizes = SCALING_SIZES if not args.quick else [(30, 64), (60, 128)]
    if args.sizes:
        sizes = [tuple(int(v) for v in z.split("x")) for z in args.sizes.split(",")]
    ov = QUICK_OVERRIDES if args.quick else None
    for S, U in sizes:
        path = scaling_trace(S, U, args.seed)
        print(f"scaling {S} slices x {U} units x 100 ({S * U} points)", flush=True)
        ours = cached(f"scaling_{S}x{U}_mphate", path, ov) if args.reuse else None
        if ours is None:
            ours = run_method("mphate", path, f"scaling_{S}x{U}_mphate", args.seed,
                              args.scaling_timeout, args.mem_cap_gb * 1024, ov)
        else:
            print(f"  mphate: cached from {ours['date']} ({ours['mphate_commit']})", flush=True)
        ref = None
        if not args.skip_reference_scaling:
            ref = (cached(f"scaling_{S}x{U}_reference", path, ov)
                   if not args.rerun_scaling_reference else None)
            if ref is None:
                ref = run_method("reference", path, f"scaling_{S}x{U}_reference", args.seed,
                                 args.ref_timeout, args.mem_cap_gb * 1024, ov)
            else:
                print(f"  reference: cached from {ref['date']}", flush=True)
        rows.append((S, U, ours, ref))
    L = ["| slices x units | points | mphate time, s | mphate peak RSS, MB | "
         "reference time, s | reference peak RSS, MB | time ratio | memory ratio |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for S, U, o, r in rows:
        ot = fmt_s(o["fit_s"]) if o["status"] == "ok" else f"{o['status']} after {o['wall_s']:.0f} s"
        if o.get("cached"):
            ot += f" (cached {o['date'][:16]})"
        om = f"{o['peak_mb']:.0f}" if o["status"] == "ok" else f"(>= {o['tree_peak_mb']:.0f})"
        if r is None:
            rt = rm = tr = mr = "not run"
        elif r["status"] == "ok":
            rt, rm = fmt_s(r["fit_s"]), f"{r['peak_mb']:.0f}"
            tr = f"{r['fit_s'] / o['fit_s']:.1f}x" if o["status"] == "ok" else ""
            mr = f"{r['peak_mb'] / o['peak_mb']:.1f}x" if o["status"] == "ok" else ""
        else:
            rt = f"{r['status']} after {r['wall_s']:.0f} s"
            rm = f"(>= {r['tree_peak_mb']:.0f} when stopped)"
            tr = mr = "n/a"
        if r is not None and r.get("cached"):
            rt += f" (cached {r['date'][:16]})"
        L.append(f"| {S} x {U} | {S * U:,} | {ot} | {om} | {rt} | {rm} | {tr} | {mr} |")
    print("\n".join(L), flush=True)
    return L, rows


# ---------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=os.path.join(DATA, "digits_trace.npz"))
    ap.add_argument("--skip-reference", action="store_true",
                    help="reuse the last reference result cached in benchmarks/out/")
    ap.add_argument("--scaling", action="store_true", help="also run the scaling table")
    ap.add_argument("--scaling-only", action="store_true", help="only the scaling table")
    ap.add_argument("--skip-reference-scaling", action="store_true",
                    help="in the scaling table, run mphate only")
    ap.add_argument("--rerun-scaling-reference", action="store_true",
                    help="rerun the reference in the scaling table even where a cached result "
                         "for the same trace exists (it takes about an hour)")
    ap.add_argument("--quick", action="store_true", help="small smoke run; writes no docs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-timeout", type=float, default=1200.0,
                    help="seconds before a run is stopped (default 20 min)")
    ap.add_argument("--mem-cap-gb", type=float, default=10.0,
                    help="stop a run whose process tree exceeds this RSS (default 10 GB, so the "
                         "shared 24 GB machine is never exhausted)")
    ap.add_argument("--scaling-timeout", type=float, default=None,
                    help="seconds before an mphate scaling run is stopped (default: --ref-timeout)")
    ap.add_argument("--sizes", default=None, help="scaling sizes, e.g. 1000x1024,1000x2048")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse any cached result in benchmarks/out/ for the same trace, "
                         "parameters and (for mphate) commit; run only what is missing")
    ap.add_argument("--doc", default=DOC, help="page to write the report into ('' for none)")
    ap.add_argument("--src", default=None,
                    help="import mphate from this src/ folder instead of the working tree "
                         "(e.g. a `git worktree` of a commit, to measure committed code only)")
    args = ap.parse_args(argv)
    if args.scaling_timeout is None:
        args.scaling_timeout = args.ref_timeout
    global MPHATE_SRC
    if args.src:
        MPHATE_SRC = os.path.abspath(args.src)
        sys.path.insert(0, MPHATE_SRC)  # the metrics too come from that checkout
    if not os.path.exists(REF_PY) and not (args.skip_reference and args.scaling_only):
        sys.exit("no reference environment: run `bash benchmarks/reference_env.sh` first")
    command = ".venv/bin/python benchmarks/bench_reference.py" + "".join(
        " " + a for a in (argv if argv is not None else sys.argv[1:]))
    started = _dt.datetime.now()
    t0 = time.perf_counter()
    ensure_real_trace(args.trace)
    real_lines, real = [], None
    if not args.scaling_only:
        if args.quick:
            qpath = os.path.join(DATA, "digits_trace_quick.npz")
            quick_trace(args.trace, qpath)
            real_lines, real = bench_real(args, qpath, "quick", QUICK_OVERRIDES)
        else:
            real_lines, real = bench_real(args, args.trace, "digits")
    scal_lines = []
    if args.scaling or args.scaling_only:
        scal_lines, _ = bench_scaling(args)
    report = make_report(args, command, started, time.perf_counter() - t0, real_lines, real,
                         scal_lines)
    path = args.doc if not args.quick else os.path.join(OUT, "benchmarks-quick.md")
    if not path:  # --doc '': the tables above and benchmarks/out/*.json are the record
        return
    if args.scaling_only and os.path.exists(path) and not args.quick:
        path = os.path.join(OUT, "benchmarks-scaling.md")
    kept = ""
    if os.path.exists(path):  # a hand-written part below the marker survives regeneration
        with open(path) as f:
            old = f.read()
        if KEEP_MARKER in old:
            kept = "\n" + old[old.index(KEEP_MARKER):]
    with open(path, "w") as f:
        f.write(report + kept)
    print(f"\nwrote {rel(path)}")


def make_report(args, command, started, total_s, real_lines, real, scal_lines) -> str:
    v = versions()
    L = ["# Benchmarks: mphate against the reference M-PHATE", "",
         "Produced by `benchmarks/bench_reference.py`; regenerate with",
         "", "```", "bash benchmarks/reference_env.sh   # once: the reference in .bench-venv/",
         command, "```", "",
         f"- date: {started.isoformat(timespec='minutes')} (whole run {total_s / 60:.1f} min)",
         f"- machine: {machine()}; no GPU",
         f"- reference environment (.bench-venv, PyPI m-phate, public API only): {v['reference env']}",
         f"- our environment (.venv): {v['our env']}; mphate at {v.get('mphate commit', '?')}"
         + (" (imported from a clean `git worktree add --detach DIR COMMIT` checkout, via --src)"
            if MPHATE_SRC else ""),
         "- parameters for both" + (" (the paper's M-PHATE defaults)" if not args.quick else
                                      " (the paper's defaults but fewer landmarks: smoke run)")
         + ": " + ", ".join(f"{k}={v_!r}" for k, v_ in
                           dict(PAPER, **(QUICK_OVERRIDES if args.quick else {})).items())
         + f", random_state={args.seed}, verbose=1; threads: reference n_jobs=-1 (all cores),"
         " mphate n_jobs=None (its default: BLAS threads on the idle cores)", "",
         "How it is measured: each embedding runs in its own fresh process "
         "(`benchmarks/_run_reference.py` under .bench-venv, `benchmarks/_run_mphate.py` under "
         ".venv). *load + fit_transform* is that process's own wall time from starting to read "
         "the trace file to the end of `fit_transform`. *Peak RSS of the process* is the "
         "kernel's high-water mark for that process alone (VmHWM of `/proc/self/status` at "
         "its end), interpreter start and imports included. The reference also starts joblib "
         "worker processes, which that figure cannot see, so the sum of RSS over the process and "
         "all its descendants, polled every 0.1 s, is shown as well (an upper bound: shared "
         "pages count once per process). Ratios are reference / mphate, both measured in the "
         "same run unless marked cached. The machine is shared with other work, so single "
         "timings carry some noise (the 1-minute load average before each run is kept in "
         "benchmarks/out/*.json).", ""]
    if real is not None:
        ref, ours = real["reference"], real["mphate"]
        shape = ours.get("shape") or ref.get("shape")
        L += ["## Real trace", "",
              f"`{ref['input']}`: {shape[0]} slices x {shape[1]} units x {shape[2]} trace "
              "inputs, recorded by `benchmarks/record_digits_trace.py` (a PyTorch MLP "
              "64-128-128-128-10, LeakyReLU 0.1, Adam, learning scikit-learn's digits for 300 "
              "epochs; the three hidden Linear layers' outputs before the nonlinearity on 100 "
              "fixed training inputs, 10 per class, after every epoch)."
              + (f" The reference's figures are cached from {ref['date']}." if ref.get("cached")
                 else "")
              + (f" mphate's figures are cached from {ours['date']}." if ours.get("cached")
                 else "")
              + (" Both were measured in the same run." if ours.get("cached") and ref.get("cached")
                 and ours["date"][:13] == ref["date"][:13] else ""), ""]
        L += real_lines
        L += ["", "The reference space of *normalized* is the z-scored trace that M-PHATE embeds; "
              "*raw* is the raw activations. Both embeddings are in slice-major row order "
              "(row = slice * n_units + unit): the reference returns that order too "
              "(checked by `benchmarks/check_reference_order.py`).", ""]
        for r in (ref, ours):
            if r.get("stages"):
                L.append(f"Raw stage log of {r['method']} (s): "
                         + "; ".join(f"{k} {v_:.2f}" for k, v_ in r["stages"].items()) + ".")
                L.append("")
    if scal_lines:
        L += ["## Scaling", "",
              "Real traces: the digits MLP of `benchmarks/record_digits_trace.py` with three "
              "hidden layers of about units / 3 each, trained for as many epochs as there are "
              "slices and traced after every epoch on the same 100 inputs (recorded once into "
              "benchmarks/data/digits_SxU.npz, float16; 300 x 384 is the trace above). "
              "Wider layers give denser intraslice kernels (about 60 neighbours a unit at 384 "
              "units, 200-350 at 2,048). mphate's goal at 1,000 x 2,048: under "
              f"{GOAL_SCALING_S / 60:.0f} minutes and under {GOAL_SCALING_MB / 1000:.0f} GB on "
              f"this {os.cpu_count()}-core machine. A run is stopped after "
              f"{args.scaling_timeout / 60:.0f} minutes (mphate) or {args.ref_timeout / 60:.0f} "
              "minutes (reference), or when its process tree passes "
              f"{args.mem_cap_gb:.0f} GB (the machine has 24 GiB shared with other work). Times "
              "are load + fit_transform; memory is the process's peak RSS (for a stopped run, "
              "the polled process-tree RSS when it was stopped). The reference's rows are reused "
              "from an earlier run of this script on the same traces where marked cached "
              "(`--rerun-scaling-reference` measures them again, about an hour); the real-trace "
              "comparison above is always measured in the same run.", ""]
        L += scal_lines
        L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
