"""Run the reference M-PHATE (PyPI m-phate) on IN.npz -> OUT.npz.

Run it with the reference's own environment only:
    .bench-venv/bin/python benchmarks/_run_reference.py IN.npz OUT.npz [--params JSON]
Only the public API is used: m_phate.M_PHATE(**params).fit_transform(trace).
Its rows come out slice-major (row = slice * n_units + unit); see check_reference_order.py.
"""
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore")

import m_phate  # noqa: E402

from _child_common import run  # noqa: E402


def make(params):
    return m_phate.M_PHATE(**params)


if __name__ == "__main__":
    from importlib.metadata import version
    run(make, version="m-phate " + version("m-phate"))
