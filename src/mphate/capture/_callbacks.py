"""What the Keras and Lightning trace callbacks share.

Both callbacks subclass their framework's ``Callback``, so defining them at import time would
import the framework: :func:`build_on_first_use` defers that to the first time
``TraceCallback`` is looked up. Both also attach the framework's logged metrics to every slice:
:func:`numeric_scalars` keeps the ones that are single numbers.
"""
from __future__ import annotations

import numpy as np

from mphate.capture.recorder import to_numpy


def build_on_first_use(module_name: str, build):
    """A module ``__getattr__`` that returns ``build()`` for ``TraceCallback``, built once.

    Assign it to the module's ``__getattr__`` (PEP 562); other missing names raise
    AttributeError as usual.
    """
    built = None

    def __getattr__(name):
        nonlocal built
        if name == "TraceCallback":
            if built is None:
                built = build()
            return built
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


def numeric_scalars(metrics) -> dict:
    """The entries of ``metrics`` (loss, accuracy, val_loss, ...) that are single numbers, as floats.

    Values may be framework tensors; entries that are not numbers, or hold more than one,
    are left out rather than refused, since frameworks log other things there too.
    """
    scalars = {}
    for key, value in (metrics or {}).items():
        try:
            array = np.asarray(to_numpy(value), dtype=float)
        except (TypeError, ValueError):
            continue
        if array.size == 1:
            scalars[str(key)] = float(array.reshape(()))
    return scalars
