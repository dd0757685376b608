"""The M-PHATE algorithm, stage by stage (NumPy, SciPy and scikit-learn only).

Pipeline order, one module per stage::

    normalize -> kernel -> landmarks -> diffusion -> mds      (pipeline.py runs them in turn)

:class:`~mphate.embed.estimator.MPHATE` is the scikit-learn style estimator over that
pipeline; docs/architecture.md draws it and states what each stage caches.
"""
from mphate.embed.estimator import MPHATE

__all__ = ["MPHATE"]
