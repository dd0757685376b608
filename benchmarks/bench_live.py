"""The live view's incremental embedding on a real run, replayed slice by slice.

Replays the 300 x 384 digits trace (benchmarks/record_digits_trace.py: a 64-128-128-128-10
MLP, one slice per epoch) into :class:`mphate.live.IncrementalMPHATE` one slice at a time, as
``mphate watch`` does while a run trains, and measures

* the time to add one slice out of sample (median, 90th percentile, max; refits excluded, as
  the goal states: <= 0.5 s median, <= 2 s max on 2 cores),
* every refit: why it ran, its time, and the Procrustes residual of its alignment to the
  previous frame (extend frames have residual 0: their old points do not move),
* after the last slice, neighbourhood preservation (k = 10, z-scored space, intra and inter)
  of the extended embedding against a full fit of all 300 slices (goal: within 0.02),
* the same for a "stale" replay that never refits after slice 150, to show what refits buy,
* and, for both, the same once the run stops: the live view then refits the slices placed out
  of sample since the last fit (``IncrementalMPHATE.refit``).

With ``--overhead``, instead: what ``watch=True`` costs a training loop. The digits MLP is
trained for ``--epochs`` epochs (one slice per epoch) in this process, without
``watch``, with ``watch=True`` (the live session in a child process, the default) and with
``watch={"worker": "thread"}`` (on a thread of this process), interleaved, three times each,
one torch thread, and the optimiser steps are timed. The live session embeds meanwhile
(niced, one thread).

    .venv/bin/python benchmarks/bench_live.py [--trace PATH.npz] [--slices 300] [--n-jobs 2]
        [--no-stale] [--json OUT] [--incremental '{"refit_growth": 0.2, "warm_slack": null}']
    .venv/bin/python benchmarks/bench_live.py --overhead [--epochs 150] [--json OUT]

The trace is recorded (about 90 s) into --trace when that file is missing. Timings on a
machine other processes use are noisy: rerun on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from mphate import MPHATE
from mphate.live import IncrementalMPHATE
from mphate.metrics import neighbor_preservation

DEFAULT_TRACE = Path(os.environ.get("TMPDIR", "/tmp")) / "mphate-bench" / "digits_trace.npz"


def load_trace(path: Path, n_slices: int) -> np.ndarray:
    if not path.exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from record_digits_trace import record

        print(f"recording the digits trace into {path} (about 90 s)", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **record(epochs=max(300, n_slices), verbose=False))
    with np.load(path) as npz:
        return np.asarray(npz["trace"][:n_slices], dtype=np.float32)


def replay(data: np.ndarray, estimator: MPHATE, stop_refits_after=None, options=None
           ) -> tuple[IncrementalMPHATE, list]:
    """Feed ``data`` slice by slice; returns the estimator and one record per frame.

    ``options``: keyword arguments of IncrementalMPHATE (the update rule's knobs)."""
    inc = IncrementalMPHATE(estimator, **(options or {}))
    records = []
    for s in range(len(data)):
        if stop_refits_after is not None and s == stop_refits_after:
            inc.refit_growth = inc.refit_tolerance = None
        inc.partial_fit(data[s])
        frame = inc.last_frame_
        if frame is None or frame.n_slices != s + 1:
            continue
        records.append(dict(n_slices=frame.n_slices, kind=frame.kind, extend_s=frame.extend_seconds,
                            refit_s=frame.refit_seconds, residual=frame.residual,
                            oos_error=frame.oos_error, reason=frame.reason, layout=frame.layout,
                            stress=frame.stress))
        if frame.kind == "refit":
            residual = "-" if frame.residual is None else f"{frame.residual:.3f}"
            stress = "" if not frame.stress else " stress warm {warm:.4f} / cold {cold:.4f},".format(**frame.stress)
            print(f"  refit at {frame.n_slices:3d} slices: {frame.refit_seconds:5.2f} s, {frame.layout} layout,"
                  f"{stress} residual {residual} ({frame.reason})", flush=True)
    return inc, records


def summarise(records: list) -> dict:
    # the out-of-sample placement alone: every frame's extension part (a refit frame's too)
    extend = np.array([r["extend_s"] for r in records if r["n_slices"] > records[0]["n_slices"]])
    residuals = [r["residual"] for r in records if r["kind"] == "refit" and r["residual"] is not None]
    return {
        "extend_median_s": float(np.median(extend)),
        "extend_p90_s": float(np.percentile(extend, 90)),
        "extend_max_s": float(extend.max()),
        "n_refits": sum(r["kind"] == "refit" for r in records),
        "refit_total_s": float(sum(r["refit_s"] for r in records)),
        "residual_median": float(np.median(residuals)) if residuals else None,
        "residual_max": float(np.max(residuals)) if residuals else None,
        "last_refit_at": max(r["n_slices"] for r in records if r["kind"] == "refit"),
    }


def train(epochs: int, store: Path, watch: str) -> dict:
    """Train the digits MLP for ``epochs`` epochs, one slice per epoch; time every step.

    ``watch``: "off", or the live worker ("process" or "thread") of ``watch=True``.
    """
    import torch

    from mphate import TorchRecorder, select_trace_inputs
    from mphate.traces.datasets import load_digits_split

    torch.manual_seed(0)
    X_train, y_train, _, _ = load_digits_split()
    X_trace, y_trace = select_trace_inputs(X_train, y_train)
    widths = [64, 128, 128, 128]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.LeakyReLU(0.1)]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    X, y = torch.from_numpy(X_train), torch.from_numpy(y_train)
    rec = TorchRecorder(model, X_trace, store, labels=y_trace, layers=["0", "2", "4"], fsync=False,
                        watch={"port": 0, "quiet": True, "worker": watch} if watch != "off" else False)
    steps, record_s = [], []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for batch in torch.randperm(len(X)).split(64):
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[batch]), y[batch]).backward()
            opt.step()
            steps.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rec.record(step=epoch, epoch=epoch)
        record_s.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    status = dict(rec.live.status) if rec.live else {}
    rec.close()
    if rec.live:
        rec.live.stop()
    steps = np.array(steps)
    return {"watch": watch, "step_median_ms": 1e3 * float(np.median(steps)), "step_mean_ms": 1e3 * float(steps.mean()),
            "step_p90_ms": 1e3 * float(np.percentile(steps, 90)), "record_median_ms": 1e3 * float(np.median(record_s)),
            "train_s": total, "frames": status.get("frames"), "embedded": status.get("embedded")}


def overhead(epochs: int, repeats: int = 3) -> dict:
    import tempfile

    import torch

    torch.set_num_threads(1)
    results = {}
    modes = ("off", "process", "thread") * repeats  # interleaved: background load hits all alike
    with tempfile.TemporaryDirectory() as tmp:
        for index, watch in enumerate(modes):
            run = train(epochs, Path(tmp) / f"run{index}.trace", watch)
            print(json.dumps(run), flush=True)
            results.setdefault(watch, []).append(run)
    plain = np.median([r["step_mean_ms"] for r in results["off"]])
    for worker in ("process", "thread"):
        watched = np.median([r["step_mean_ms"] for r in results[worker]])
        results[f"step_mean_overhead_{worker}"] = float(watched / plain - 1)
        embedded = [r["embedded"] for r in results[worker]]
        print(f"mean step {plain:.3f} ms without, {watched:.3f} ms with watch=True on a {worker} worker: "
              f"{100 * results[f'step_mean_overhead_{worker}']:+.1f} % (slices embedded by the end: {embedded})",
              flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--no-stale", action="store_true", help="skip the replay without late refits")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--incremental", type=json.loads, default={}, metavar="JSON",
                        help='IncrementalMPHATE options of the replays, e.g. \'{"refit_growth": 0.2}\'')
    parser.add_argument("--overhead", action="store_true", help="measure what watch=True costs a training step")
    parser.add_argument("--epochs", type=int, default=150, help="epochs of each --overhead run")
    args = parser.parse_args(argv)
    if args.overhead:
        results = overhead(args.epochs)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    data = load_trace(args.trace, args.slices)
    print(f"trace {data.shape}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"n_jobs={args.n_jobs}", flush=True)

    def estimator():
        return MPHATE(random_state=0, n_jobs=args.n_jobs)

    start = time.perf_counter()
    full = estimator().fit_transform(data)
    full_s = time.perf_counter() - start
    reference = neighbor_preservation(full, data, k=10)
    print(f"full fit of {len(data)} slices: {full_s:.1f} s, preservation {reference}", flush=True)
    results = {"trace": list(data.shape), "n_jobs": args.n_jobs, "incremental": args.incremental,
               "full_fit_s": full_s, "full": reference}
    runs = [("live", None)] + ([] if args.no_stale else [("stale", len(data) // 2)])
    for name, stop in runs:
        print(f"{name} replay" + (f" (no refit after slice {stop})" if stop else ""), flush=True)
        inc, records = replay(data, estimator(), stop, args.incremental)
        summary = summarise(records)
        summary["preservation"] = neighbor_preservation(inc.embedding_, data, k=10)
        summary["minus_full"] = {k: summary["preservation"][k] - reference[k] for k in reference}
        # what the live view shows once the run stops: the out-of-sample tail refitted
        start = time.perf_counter()
        inc.refit(reason="the run stopped")
        summary["stop_refit_s"] = time.perf_counter() - start
        summary["stop_refit_residual"] = inc.last_frame_.residual
        summary["after_stop"] = neighbor_preservation(inc.embedding_, data, k=10)
        summary["after_stop_minus_full"] = {k: summary["after_stop"][k] - reference[k] for k in reference}
        results[name] = summary
        results[name + "_frames"] = records
        print(json.dumps(summary, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
