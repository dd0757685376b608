"""Lazy imports of optional dependencies with a clear message when they are missing."""
from __future__ import annotations

import importlib

_EXTRAS = {
    "torch": "torch",
    "keras": "keras",
    "matplotlib": "plot",
    "plotly": "plot",
    "tqdm": "progress",
    "lightning": "lightning",
    "pytorch_lightning": "lightning",
    "umap": "compare",
    "dask": "dask",
    "distributed": "dask",
    "xarray": "arrays",
    "zarr": "arrays",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
}


def require(module: str, purpose: str):
    """Import ``module`` or raise ImportError saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top)
        hint = f'pip install "mphate[{extra}]"' if extra else f"pip install {top}"
        raise ImportError(f"{purpose} needs the optional package '{top}', which is not installed: {hint}") from exc
