"""Deprecated: the experiments' training moved to public modules.

:mod:`mphate.experiments.training` (data, network, the one training loop, parallel runs),
:mod:`mphate.experiments.generalization` (``train_generalization``) and
:mod:`mphate.experiments.continual` (``train_continual``). This module only forwards to them
(``benchmarks/knee_study.py`` still imports it); delete it once nothing does.
"""
from __future__ import annotations

import warnings

from mphate.experiments.continual import LEARNERS, SCENARIOS, TASKS, train_continual  # noqa: F401
from mphate.experiments.generalization import (  # noqa: F401
    GENERALIZATION_VARIANTS,
    generalization_inputs,
    train_generalization,
)
from mphate.experiments.training import Data, load_data, make_mlp, run_parallel, trace_inputs  # noqa: F401

warnings.warn(
    "mphate.experiments._train is deprecated: import from mphate.experiments.training, "
    "mphate.experiments.generalization or mphate.experiments.continual",
    DeprecationWarning,
    stacklevel=2,
)
