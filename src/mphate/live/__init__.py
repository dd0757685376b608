"""Watch training live: an embedding that grows with the run, served to a page that updates itself.

* :class:`IncrementalMPHATE` places new slices out of sample and refits now and then, each refit
  aligned to the previous picture (:mod:`mphate.live.incremental`).
"""
from mphate.live.align import SimilarityTransform, procrustes
from mphate.live.incremental import Frame, IncrementalMPHATE

__all__ = ["IncrementalMPHATE", "Frame", "SimilarityTransform", "procrustes"]
