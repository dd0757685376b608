"""Watch training live: an embedding that grows with the run, served to a page that updates itself.

* :class:`IncrementalMPHATE` places new slices out of sample and refits now and then, each refit
  aligned to the previous picture (:mod:`mphate.live.incremental`).
* :func:`watch` serves the live page of a trace store from this process (``mphate watch PATH``
  does it from another); :class:`WatchServer` is the server itself (:mod:`mphate.live.server`).
* :func:`attach` is what ``watch=True``, ``tensorboard=`` and ``wandb=`` on the recorders call;
  :class:`PictureLogger` logs the picture to TensorBoard and W&B (:mod:`mphate.live.logging`).
"""
from mphate.live.align import SimilarityTransform, procrustes
from mphate.live.attach import LiveHandle, attach
from mphate.live.follow import StoreFollower, writer_alive
from mphate.live.incremental import Frame, IncrementalMPHATE
from mphate.live.logging import PictureLogger, render_picture
from mphate.live.server import WatchServer, watch
from mphate.live.session import LiveSession

__all__ = [
    "IncrementalMPHATE",
    "Frame",
    "SimilarityTransform",
    "procrustes",
    "watch",
    "WatchServer",
    "LiveSession",
    "StoreFollower",
    "writer_alive",
    "attach",
    "LiveHandle",
    "PictureLogger",
    "render_picture",
]
