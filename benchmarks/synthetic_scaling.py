"""Synthetic traces for the scaling table (numpy only; used by bench_reference.py --scaling).

A trace of shape (n_slices, n_units, n_trace) whose units behave like hidden units over
training: all units start near one shared pattern, then split hierarchically into 2, 4,
8, 16 lineages at successive moments (each split a smooth sigmoid ramp over slices), while
every pattern and every unit drifts along its own smooth random process (a few
low-frequency Fourier modes over slices), with a per-unit scale that grows over training
and a little independent noise. Generated slice chunk by slice chunk, float32, so a
1,000 x 2,048 x 100 trace needs ~0.8 GB and no more than that plus a chunk.

    .venv/bin/python benchmarks/synthetic_scaling.py 1000 2048 OUT.npz [--seed 0]
"""
from __future__ import annotations

import argparse

import numpy as np


def make_scaling_trace(n_slices: int, n_units: int, n_trace: int = 100, seed: int = 0,
                       n_levels: int = 4, n_modes: int = 3, chunk: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    F = n_trace
    leaf = rng.permutation(np.arange(n_units) % (2 ** n_levels))  # balanced lineages
    base = rng.standard_normal(F)
    # split directions: level l has 2**l groups, each with its own offset direction
    split_dirs = [rng.standard_normal((2 ** l, F)) * 1.2 for l in range(1, n_levels + 1)]
    split_time = np.linspace(0.08, 0.6, n_levels)  # fraction of training at each split
    split_width = 0.04
    # smooth random processes: shared, per lineage (finest level), per unit
    freqs = np.arange(1, n_modes + 1)
    shared_a = rng.standard_normal((n_modes, F)) * 0.6
    shared_p = rng.uniform(0, 2 * np.pi, n_modes)
    lin_a = rng.standard_normal((2 ** n_levels, n_modes, F)) * 0.4
    lin_p = rng.uniform(0, 2 * np.pi, (2 ** n_levels, n_modes))
    unit_a = (rng.standard_normal((n_units, n_modes, F)) * 0.25).astype(np.float32)
    unit_p = rng.uniform(0, 2 * np.pi, (n_units, n_modes))
    unit_off = (rng.standard_normal((n_units, F)) * 0.5).astype(np.float32)
    scale0 = rng.uniform(0.5, 1.5, n_units)
    growth = rng.uniform(0.0, 2.0, n_units)

    out = np.empty((n_slices, n_units, F), dtype=np.float32)
    tt = np.linspace(0.0, 1.0, n_slices)
    for s0 in range(0, n_slices, chunk):
        t = tt[s0:s0 + chunk]                                           # (c,)
        c = len(t)
        phase = 2 * np.pi * t[:, None] * freqs[None, :]                 # (c, m)
        shared = np.einsum("cm,mf->cf", np.sin(phase + shared_p), shared_a) + base
        lin = np.einsum("clm,lmf->clf", np.sin(phase[:, None, :] + lin_p[None]), lin_a)
        cen = shared[:, None, :] + lin                                  # (c, leaves, F)
        for l, dirs in enumerate(split_dirs, start=1):
            ramp = 1.0 / (1.0 + np.exp(-(t - split_time[l - 1]) / split_width))
            grp = np.arange(2 ** n_levels) >> (n_levels - l)
            cen += ramp[:, None, None] * dirs[grp][None]
        uw = np.sin(phase[:, None, :] + unit_p[None]).astype(np.float32)  # (c, U, m)
        x = cen[:, leaf].astype(np.float32)                              # (c, U, F)
        x += np.einsum("cum,umf->cuf", uw, unit_a)
        x += unit_off[None]
        x *= (scale0[None, :] * (1.0 + growth[None, :] * t[:, None])).astype(np.float32)[..., None]
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(0.1)
        out[s0:s0 + c] = x
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n_slices", type=int)
    ap.add_argument("n_units", type=int)
    ap.add_argument("out")
    ap.add_argument("--n-trace", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    np.savez(a.out, trace=make_scaling_trace(a.n_slices, a.n_units, a.n_trace, a.seed))


if __name__ == "__main__":
    main()
