"""One line from a training script: ``watch=True`` (and ``tensorboard=``, ``wandb=``) on a recorder.

:func:`attach` starts a :class:`~mphate.live.session.LiveSession` on the recorder's store in
the training process, on a background thread at lowered priority with a one-thread embedding,
and subscribes to the recorder: after each slice it only wakes the session and hands queued W&B
pictures to the run, so a training step pays microseconds (docs/live.md has the measurement).
The recorders reach this module through ``mphate.optional.require`` only when asked to, so
capture itself never depends on the live view.
"""
from __future__ import annotations

from mphate.embed.estimator import MPHATE
from mphate.live.logging import PictureLogger
from mphate.live.server import DEFAULT_PORT, store_path
from mphate.live.server import watch as serve_live
from mphate.live.session import LiveSession

__all__ = ["attach", "LiveHandle"]

#: the live worker's nice increment (Linux): training threads get the cores first
WORKER_NICE = 10


class LiveHandle:
    """What :func:`attach` started: ``server`` (or None), ``session``, ``logger`` (or None).

    Attributes
    ----------
    url : str or None
        The live page, when ``watch`` was asked for.
    """

    def __init__(self, server, session, logger):
        self.server, self.session, self.logger = server, session, logger

    @property
    def url(self):
        return None if self.server is None else self.server.url

    def on_event(self, event: dict) -> None:
        """The recorder's listener (training thread): wake the session, deliver pictures."""
        self.session.wake()
        if self.logger is not None:
            if event.get("kind") == "close":
                self.logger.finish()
            else:
                self.logger.flush()

    def stop(self) -> None:
        """Stop the page and the session (a running training keeps recording)."""
        if self.server is not None:
            self.server.stop()
        else:
            self.session.stop()


def _watch_options(watch) -> dict:
    """``watch`` as WatchServer options: True, a port number, or a dict of options."""
    if watch is True:
        return {}
    if isinstance(watch, int) and not isinstance(watch, bool):
        return {"port": watch}
    if isinstance(watch, dict):
        return dict(watch)
    raise ValueError(f"watch must be True, a port number or a dict of options (port, host, ...); got {watch!r}")


def attach(recorder, *, watch=False, tensorboard=None, wandb=None, log_every=10, color_by="epoch",
           options=None) -> LiveHandle:
    """Start the live view and/or picture logging for ``recorder`` (it must record to a path).

    Parameters
    ----------
    recorder : Recorder (or anything with ``path`` and ``add_listener``)
    watch : bool, int or dict
        Serve the live page: True (port 8050, or a free one if taken), a port, or options of
        :func:`mphate.live.server.watch` (port, host, open_browser, estimator, incremental...).
    tensorboard, wandb, log_every, color_by
        See :class:`~mphate.live.logging.PictureLogger` (``log_every`` is its every_n_slices).
    options : dict, optional
        Options of the live session (estimator, incremental, poll_interval, title, nice);
        ``watch``'s dict may give them too.
    """
    path = store_path(recorder)
    logger = None
    if tensorboard is not None or wandb is not None:
        logger = PictureLogger(tensorboard=tensorboard, wandb=wandb, every_n_slices=log_every, color_by=color_by)
    options = {**(options or {}), **(_watch_options(watch) if watch else {})}
    options.setdefault("estimator", MPHATE(random_state=0, n_jobs=1))  # one thread: the cores are training's
    options.setdefault("nice", WORKER_NICE)
    server = None
    if watch:
        server = serve_live(path, port=options.pop("port", DEFAULT_PORT), **options)
        session = server.session
    elif logger is not None:
        session = LiveSession(path, **{k: v for k, v in options.items() if k in _SESSION_OPTIONS}).start()
    else:
        raise ValueError("attach needs watch=True, tensorboard=... or wandb=...")
    if logger is not None:
        session.on_frame.append(logger)
    handle = LiveHandle(server, session, logger)
    recorder.add_listener(handle.on_event)
    return handle


_SESSION_OPTIONS = ("estimator", "incremental", "poll_interval", "title", "nice")
