"""Many runs: embed each with the same parameters (in-process or on Dask) and compare them.

``compare_runs(runs, output, ...)`` writes the side-by-side report (page, figure, table);
``embed_runs(runs, ...)`` is its first half, the embeddings and per-run numbers, cached per
run; ``run_tasks(fn, jobs, workers=/scheduler=)`` is the executor under both, usable for any
module-level function (training runs, for instance). Nothing here imports Dask until
``workers`` or ``scheduler`` is given (``pip install "mphate[dask]"``).
"""
from mphate.runs.compare import Comparison, compare_runs, embed_runs
from mphate.runs.executor import TaskFailure, run_tasks
from mphate.runs.specs import RunSpec, resolve_runs

__all__ = ["compare_runs", "embed_runs", "Comparison", "run_tasks", "TaskFailure", "RunSpec", "resolve_runs"]
