"""One line from a training script: ``watch=True`` (and ``tensorboard=``, ``wandb=``) on a recorder.

:func:`attach` starts a :class:`~mphate.live.session.LiveSession` on the recorder's store in
a child process of the training script (:mod:`mphate.live.worker`; at lowered priority, with a
one-thread embedding, ending with the script) and subscribes to the recorder: after each slice
it only writes one line to the child and hands finished W&B pictures to the run, so a training
step pays microseconds. A thread of the training process instead (``worker="thread"``) shares
its interpreter lock: on the digits MLP that cost 18 % of each step, a separate process 1.5 %
(:mod:`mphate.live.worker` says how it was measured).
The recorders reach this module through ``mphate.optional.require`` only when asked to, so
capture itself never depends on the live view.
"""
from __future__ import annotations

import sys

from mphate.embed.estimator import MPHATE
from mphate.live.logging import PictureLogger, _wandb_run
from mphate.live.server import DEFAULT_PORT, store_path
from mphate.live.server import watch as serve_live
from mphate.live.session import LiveSession
from mphate.live.worker import WorkerHandle, worker_spec

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

    @property
    def status(self) -> dict:
        return self.session.status

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
           options=None):
    """Start the live view and/or picture logging for ``recorder`` (it must record to a path).

    Parameters
    ----------
    recorder : Recorder (or anything with ``path`` and ``add_listener``)
    watch : bool, int or dict
        Serve the live page: True (port 8050, or a free one if taken), a port, or options of
        :func:`mphate.live.server.watch` (port, host, open_browser, ...).
    tensorboard, wandb, log_every, color_by
        See :class:`~mphate.live.logging.PictureLogger` (``log_every`` is its every_n_slices).
    options : dict, optional
        Options of the live session (estimator, incremental, poll_interval, title, nice) and
        ``worker``: "process" (default) runs the session in a child process of this one (it
        ends with it), "thread" on a background thread of this process. ``watch``'s dict may
        give them too.

    Returns
    -------
    WorkerHandle (worker="process") or LiveHandle (worker="thread"): ``url``, ``status``,
    ``logger``, ``stop()``.
    """
    path = store_path(recorder)
    if not watch and tensorboard is None and wandb is None:
        raise ValueError("attach needs watch=True, tensorboard=... or wandb=...")
    options = {**(options or {}), **(_watch_options(watch) if watch else {})}
    worker = options.pop("worker", "process")
    if worker not in ("process", "thread"):
        raise ValueError(f"worker must be 'process' or 'thread'; got {worker!r}")
    options.setdefault("estimator", MPHATE(random_state=0, n_jobs=1))  # one thread: the cores are training's
    options.setdefault("nice", WORKER_NICE)
    if worker == "process":
        handle = _attach_process(path, watch, tensorboard, wandb, log_every, color_by, options)
    else:
        handle = _attach_thread(path, watch, tensorboard, wandb, log_every, color_by, options)
    recorder.add_listener(handle.on_event)
    return handle


def _attach_process(path, watch, tensorboard, wandb, log_every, color_by, options) -> WorkerHandle:
    watch_options = None
    quiet = options.pop("quiet", False)
    if watch:
        watch_options = {k: options.pop(k) for k in ("port", "host", "open_browser") if k in options}
        watch_options.setdefault("port", DEFAULT_PORT)
    unknown = set(options) - set(_SESSION_OPTIONS)
    if unknown:
        raise ValueError(f"unknown live-view options {sorted(unknown)}; known: "
                         f"{sorted(_SESSION_OPTIONS + ('port', 'host', 'open_browser', 'quiet', 'worker'))}")
    logging = tensorboard is not None or wandb is not None
    wandb_run = _wandb_run(wandb)
    spec = worker_spec(path, watch=watch_options, tensorboard=tensorboard, log_every=log_every if logging else None,
                       color_by=color_by, **options)
    handle = WorkerHandle(spec, wandb_run=wandb_run)
    if watch and not quiet:
        print(f"mphate: watching {path} live at {handle.url}", file=sys.stderr, flush=True)
    return handle


def _attach_thread(path, watch, tensorboard, wandb, log_every, color_by, options) -> LiveHandle:
    logger = None
    if tensorboard is not None or wandb is not None:
        logger = PictureLogger(tensorboard=tensorboard, wandb=wandb, every_n_slices=log_every, color_by=color_by)
    server = None
    if watch:
        server = serve_live(path, port=options.pop("port", DEFAULT_PORT), **options)
        session = server.session
    else:
        session = LiveSession(path, **{k: v for k, v in options.items() if k in _SESSION_OPTIONS}).start()
    if logger is not None:
        session.on_frame.append(logger)
    return LiveHandle(server, session, logger)


_SESSION_OPTIONS = ("estimator", "incremental", "poll_interval", "title", "nice")
