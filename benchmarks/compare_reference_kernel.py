"""Our multislice kernel against the reference's, entry by entry, on one trace.

The reference's kernel comes from its public API only: ``m_phate.M_PHATE(...).fit(trace)``
in the reference's own environment (.bench-venv), then the fitted estimator's ``graph.kernel``
(a graphtools graph's documented attribute), saved as a SciPy sparse matrix. Ours is
``mphate.embed.kernel.multislice_kernel`` of the z-scored trace, with stored blocks.

    .venv/bin/python benchmarks/compare_reference_kernel.py TRACE.npz

Prints both kernels' non-zeros and mass, intraslice (same slice) and interslice (same unit)
apart, and the largest entry difference of each part. A few minutes for 25,600 points (the
reference fits its landmarks too).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE_PYTHON = os.path.join(ROOT, ".bench-venv", "bin", "python")

_REFERENCE_CHILD = """
import sys, warnings
import numpy as np, scipy.sparse as sp
warnings.filterwarnings("ignore")
import m_phate
trace = np.load(sys.argv[1])["trace"]
est = m_phate.M_PHATE(n_components=2, intraslice_knn=2, interslice_knn=25, decay=5, t=50, gamma=0,
                      n_landmark=4000, random_state=0, n_jobs=-1, verbose=0)
est.fit(trace)
sp.save_npz(sys.argv[2], sp.csr_matrix(est.graph.kernel))
"""


def reference_kernel(trace_path: str) -> sp.csr_matrix:
    if not os.path.exists(REFERENCE_PYTHON):
        sys.exit(f"no reference environment at {REFERENCE_PYTHON}: run `bash benchmarks/reference_env.sh`")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "kernel.npz")
        subprocess.run([REFERENCE_PYTHON, "-c", _REFERENCE_CHILD, trace_path, out], check=True)
        return sp.load_npz(out).tocsr()


def parts(kernel: sp.spmatrix, n_units: int) -> dict:
    """Entries of a slice-major kernel split into intraslice and interslice ones."""
    coo = kernel.tocoo()
    same_slice = (coo.row // n_units) == (coo.col // n_units)
    same_unit = (coo.row % n_units) == (coo.col % n_units)
    return {"intraslice": coo.data[same_slice], "interslice": coo.data[same_unit & ~same_slice],
            "neither": coo.data[~same_slice & ~same_unit]}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit(__doc__)
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from mphate.embed.kernel import multislice_kernel
    from mphate.embed.normalize import zscore_units

    with np.load(argv[0]) as f:
        trace = np.asarray(f["trace"], dtype=np.float32)
    n_units = trace.shape[1]
    ours_kernel = multislice_kernel(zscore_units(trace), store_blocks=True)
    ours = ours_kernel.to_sparse().tocsr()
    theirs = reference_kernel(os.path.abspath(argv[0]))
    print(f"trace {trace.shape}; our interslice bandwidth {ours_kernel.interslice_eps:.6g}")
    print("| kernel | intraslice nnz | intraslice sum | interslice nnz | interslice sum | other nnz |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, matrix in (("reference", theirs), ("mphate", ours)):
        p = parts(matrix, n_units)
        print(f"| {name} | {len(p['intraslice'])} | {p['intraslice'].sum():.1f} | {len(p['interslice'])} | "
              f"{p['interslice'].sum():.1f} | {len(p['neither'])} |")
    diff = parts((theirs - ours).tocsr(), n_units)
    for part in ("intraslice", "interslice"):
        values = np.abs(diff[part])
        print(f"largest {part} difference: {values.max() if len(values) else 0.0:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
