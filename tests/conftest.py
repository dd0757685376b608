"""Shared fixtures: one tiny demo report, used by the demo tests and the browser test."""
from __future__ import annotations

import pytest

# a few seconds: 30 epochs (> the default interslice_knn of 25), 3 x 16 hidden units, 300 landmarks
DEMO = dict(epochs=30, hidden=16, n_landmark=300, dpi=40)
DEMO_UNITS = 3 * DEMO["hidden"]
DEMO_POINTS = DEMO["epochs"] * DEMO_UNITS


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory):
    """``run_demo`` at tiny size: its returned paths (report files and "trace")."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("plotly")
    from mphate.experiments.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo") / "report", quiet=True, **DEMO)
