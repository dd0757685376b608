"""Shared by the two embedding runners (stdlib + numpy only: it runs in both environments).

Each runner is started as its own process by bench_reference.py. It loads IN.npz, runs
fit_transform, and writes OUT.npz with the embedding (slice-major rows), the in-process
wall time from the start of loading to the end of fit_transform, and the process's own
peak resident set size: VmHWM of /proc/self/status, the kernel's exact high-water mark of
this process's memory since it started, interpreter and imports included, children not.

Not ru_maxrss: Linux carries a forked process's pre-exec high-water mark over the exec, so a
runner started by a large parent (bench_panel.py holds its in-process grid fit, ~940 MB) read
the parent's size. A runner started from an 800 MB parent reported ru_maxrss 827 MB against a
VmHWM of 14 MB (checked 2026-12-06). Every panel peak for mphate before then was at least its
parent's size; the reference's peaks, larger than the parent's, were not affected.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np


def parse(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--params", default="{}", help="JSON dict of estimator keyword arguments")
    return ap.parse_args(argv)


def peak_rss_kb() -> float:
    """This process's own peak resident set size in KiB (VmHWM; ru_maxrss where /proc lacks it).

    mphate.runtime.peak_memory_mb reads the same field, but this module also runs under the
    reference's environment, where mphate is not installed.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def run(make_estimator, argv=None, version=""):
    args = parse(argv)
    params = json.loads(args.params)
    t_import_done = time.perf_counter()
    t0 = time.perf_counter()
    with np.load(args.inp) as f:
        trace = np.asarray(f["trace"])
    t_loaded = time.perf_counter()
    est = make_estimator(params)
    emb = np.asarray(est.fit_transform(trace))
    t1 = time.perf_counter()
    peak_kb = peak_rss_kb()
    np.savez(args.out, embedding=emb, fit_s=t1 - t0, load_s=t_loaded - t0,
             peak_rss_mb=peak_kb / 1024.0, shape=np.array(trace.shape),
             version=np.array(version), params=np.array(json.dumps(params)))
    print(f"[runner] shape={trace.shape} load+fit_transform {t1 - t0:.2f} s "
          f"peak RSS {peak_kb / 1024:.0f} MB", file=sys.stderr, flush=True)
    del t_import_done
