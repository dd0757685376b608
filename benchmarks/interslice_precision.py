"""How exact are the interslice distances? float32 on raw vs centred unit histories, per panel run.

A unit's history (its z-scored response vectors at every slice) lies close together far from
the origin: ``|x|^2 = n_trace`` for every point while neighbouring slices are a small distance
apart. The ``|x|^2 + |y|^2 - 2 x.y`` expansion in float32 then loses most of that distance.
Since e7e513b the kernel centres each unit's history first (``mphate.embed.kernel._unit_slab``).
This prints, for every recorded panel trace, the interslice bandwidth and the worst interslice
affinity of the first ``--units`` units, each computed in float32 from raw histories (the old
way) and from centred ones (the kernel's way), against float64 on centred histories.

    .venv/bin/python benchmarks/interslice_precision.py [--units 32] [--threads 2]

The raw float32 error depends on the BLAS path, and so on the thread count of the pass (on the
SGD 0.1 run: 4.5e-4 of the bandwidth on one thread, 4.3e-3 on two).

Takes about a minute on two cores (the panel traces: ``benchmarks/record_panel.py``).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import record_panel  # noqa: E402

from mphate.embed import kernel  # noqa: E402
from mphate.runtime import parallel_map  # noqa: E402
from mphate.embed.normalize import zscore_units  # noqa: E402

KNN = 25  # the estimator's interslice_knn


def _raw_slab(features: np.ndarray, u0: int, u1: int) -> np.ndarray:
    """Units u0..u1 as unit-major histories, not centred (before e7e513b)."""
    return np.ascontiguousarray(features[:, u0:u1].transpose(1, 0, 2))


def _bandwidth(sq_of_chunk, n_units: int, n_slices: int, n_threads: int) -> float:
    """The kernel's bandwidth pass (same chunks, same threads) over ``sq_of_chunk(u0, u1)``."""
    medians = np.empty(n_units)

    def work(bounds):
        u0, u1 = bounds
        kth = np.sqrt(kernel.kth_neighbor_distance(sq_of_chunk(u0, u1), KNN).astype(np.float64))
        medians[u0:u1] = np.median(kth, axis=1)

    parallel_map(work, kernel._chunks_of(n_units, 4 * 2 * n_slices * n_slices), n_threads)
    return kernel.mean_bandwidth(medians)


def measure(features: np.ndarray, n_check: int, n_threads: int) -> dict:
    n_slices, n_units, _ = features.shape
    raw = _bandwidth(lambda a, b: kernel.batched_sq_distances(_raw_slab(features, a, b)),
                     n_units, n_slices, n_threads)
    centred = kernel.interslice_bandwidth(features, KNN, n_threads)
    exact = _bandwidth(lambda a, b: kernel.batched_sq_distances(
        kernel._unit_slab(features, a, b).astype(np.float64)), n_units, n_slices, n_threads)
    check = min(n_check, n_units)
    sq_exact = kernel.batched_sq_distances(kernel._unit_slab(features, 0, check).astype(np.float64))
    affinity_exact = np.exp(-sq_exact / exact**2)
    errors = {}
    for name, slab, eps in (("raw", _raw_slab(features, 0, check), raw),
                            ("centred", kernel._unit_slab(features, 0, check), centred)):
        affinity = np.exp(-kernel.batched_sq_distances(slab).astype(np.float64) / eps**2)
        errors[name] = float(np.abs(affinity - affinity_exact).max())
    return dict(raw=(raw - exact) / exact, centred=(centred - exact) / exact,
                raw_affinity=errors["raw"], centred_affinity=errors["centred"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=32, help="units whose affinities are checked")
    ap.add_argument("--threads", type=int, default=2,
                    help="worker threads of the bandwidth pass (the raw error depends on them: the "
                         "fits on this machine use 2)")
    args = ap.parse_args(argv)
    print("| run | bandwidth, raw float32 | bandwidth, centred float32 | worst affinity error, raw | "
          "worst affinity error, centred |")
    print("|---|---:|---:|---:|---:|")
    for name, (label, *_rest) in record_panel.PANEL.items():
        path = record_panel.trace_path(name)
        if not os.path.exists(path):
            print(f"| {label} | not recorded ({path}) | | | |")
            continue
        with np.load(path) as f:
            features = zscore_units(np.asarray(f["trace"], dtype=np.float32))
        m = measure(features, args.units, args.threads)
        print(f"| {label} | {m['raw']:+.1e} | {m['centred']:+.1e} | {m['raw_affinity']:.1e} | "
              f"{m['centred_affinity']:.1e} |", flush=True)
    print("\n(bandwidths: relative error against float64; affinities: largest absolute error over "
          f"the first {args.units} units' slice pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
