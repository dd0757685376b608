"""Run our M-PHATE (mphate.MPHATE) on IN.npz -> OUT.npz.

    .venv/bin/python benchmarks/_run_mphate.py IN.npz OUT.npz [--params JSON]
Rows of the embedding are slice-major (row = slice * n_units + unit).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mphate import MPHATE  # noqa: E402

from _child_common import run  # noqa: E402


def make(params):
    return MPHATE(**params)


if __name__ == "__main__":
    from importlib.metadata import version
    run(make, version="mphate " + version("mphate"))
