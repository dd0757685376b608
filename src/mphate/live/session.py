"""The live view's worker: follow a store, embed what lands, publish frames and a status line.

One background thread does everything slow (reading slices, the incremental embedding,
building each frame's JSON once); the web server's threads only hand the latest bytes to each
page (:class:`Broadcast`), so any number of viewers cost one embedding.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from mphate.embed.estimator import MPHATE
from mphate.live.follow import StoreFollower, StoreUpdate
from mphate.live.incremental import IncrementalMPHATE
from mphate.plot.html import report_data, script_safe_json
from mphate.traces.trace import Trace

__all__ = ["Broadcast", "LiveSession"]


class Broadcast:
    """The latest frame and status, as bytes, with a version each; readers wait for news.

    A slow page never holds up the others or the embedding: it is simply handed the latest
    frame when it is ready for one (frames in between are skipped, each frame being the whole
    picture).
    """

    def __init__(self):
        self._changed = threading.Condition()
        self.frame, self.frame_version = b"", 0
        self.status, self.status_version = b"", 0
        self.closed = False

    def publish(self, *, frame: bytes | None = None, status: bytes | None = None) -> None:
        with self._changed:
            if frame is not None:
                self.frame, self.frame_version = frame, self.frame_version + 1
            if status is not None:
                self.status, self.status_version = status, self.status_version + 1
            self._changed.notify_all()

    def wait(self, frame_version: int, status_version: int, timeout: float) -> tuple:
        """Block until something is newer than the given versions, or ``timeout`` seconds.

        Returns ``(frame_version, frame, status_version, status)`` as they are now.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self.closed or self.frame_version > frame_version or self.status_version > status_version,
                timeout,
            )
            return self.frame_version, self.frame, self.status_version, self.status

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


def _frame_status(frame) -> dict:
    """What the status line says of a :class:`~mphate.live.incremental.Frame`."""
    return {"kind": frame.kind, "seconds": round(frame.seconds, 3), "residual": frame.residual,
            "reason": frame.reason}


def _finite(value):
    return float(value) if value is not None and math.isfinite(value) else None


class LiveSession:
    """Follow the store at ``path`` in a background thread and publish the growing embedding.

    Parameters
    ----------
    path : str or Path
        Trace store directory (it may not exist yet: the session waits for it).
    estimator : MPHATE, optional
        Embedding parameters (default ``MPHATE(random_state=0)``).
    incremental : dict, optional
        Options of :class:`~mphate.live.IncrementalMPHATE` (refit_growth, refit_every, ...).
    poll_interval : float, default 0.5
        Seconds between looks at the store (:meth:`wake` looks at once).
    title : str, optional
        Page title (default: "M-PHATE live: <store name>").
    nice : int, optional
        Lower the worker thread's scheduling priority by this much (Linux), so that a
        training loop in the same process keeps its cores first.

    Attributes
    ----------
    broadcast : Broadcast
    on_frame : list of callables
        Each is called as ``fn(embedding, trace, frame)`` on the worker thread after every new
        frame (:mod:`mphate.live.logging` uses it); an exception is reported in the status line,
        never raised.
    """

    def __init__(self, path, *, estimator=None, incremental=None, poll_interval=0.5, title=None, nice=None):
        self.path = Path(path)
        self.estimator = estimator if estimator is not None else MPHATE(random_state=0)
        if not isinstance(self.estimator, MPHATE):
            raise ValueError(f"estimator must be an MPHATE instance; got {type(self.estimator).__name__}")
        self.incremental_options = dict(incremental or {})
        IncrementalMPHATE(self.estimator, **self.incremental_options)._check_params()  # fail now
        self.poll_interval = float(poll_interval)
        self.title = title or f"M-PHATE live: {self.path.name or self.path}"
        self.nice = nice
        self.broadcast = Broadcast()
        self.on_frame: list = []
        self._follower = StoreFollower(self.path)
        self._model = self._new_model()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._frames = 0
        self._meta_key = None
        self._status: dict = {"state": "starting", "store": str(self.path), "frames": 0}
        self._publish_status()

    def _new_model(self) -> IncrementalMPHATE:
        return IncrementalMPHATE(self.estimator, **self.incremental_options)

    # ------------------------------------------------------------------ thread
    def start(self) -> "LiveSession":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mphate-live", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the store now (a recorder in this process calls it after each slice)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.broadcast.close()

    @property
    def status(self) -> dict:
        return dict(self._status)

    def _run(self) -> None:
        if self.nice and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            try:  # on Linux a thread id names just this thread
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(self.nice))
            except OSError:
                pass
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # keep serving whatever happens to one poll
                self._set_status(activity="error", message=f"{type(exc).__name__}: {exc}")
                traceback.print_exc(file=sys.stderr)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    # ------------------------------------------------------------------ one poll
    def step(self) -> None:
        """Poll the store once: embed new slices, publish a frame and the status."""
        update = self._follower.poll()
        if not update.exists:
            self._set_status(state="waiting", writer="none", activity="idle",
                             message=update.error or f"waiting for a trace store at {self.path}")
            return
        if update.reset:
            self._model, self._meta_key = self._new_model(), None
        self._set_status(state="following", **self._store_fields(update))
        new = update.new_data if update.new_data is not None else np.empty((0,))
        if len(new):
            self._embed(new)
        if update.writer == "gone":
            self._final_refit()
        self._maybe_publish_frame(update)
        self._set_status(activity="idle")

    def _store_fields(self, update: StoreUpdate) -> dict:
        store = update.store
        last = store.n_slices - 1
        notes = []
        if update.torn_tail:
            notes.append("the last slice is half-written (being written now, or its writer died mid-write)")
        if update.problem:
            notes.append(update.problem)
        if update.error:
            notes.append(update.error)
        return dict(n_slices=store.n_slices, writer=update.writer, message="; ".join(notes),
                    last_step=int(store.steps[last]) if last >= 0 else None,
                    last_epoch=_finite(store.epochs[last]) if last >= 0 else None)

    def _embed(self, new: np.ndarray) -> None:
        model = self._model
        due = model.refit_due(len(new))
        what = f"refitting {model.n_slices_ + len(new)} slices ({due})" if due else f"placing {len(new)} new slice(s)"
        self._set_status(activity="fitting", message=what)
        model.partial_fit(new)
        if model.last_frame_ is not None:
            self._set_status(last_frame=_frame_status(model.last_frame_), message="")

    def _final_refit(self) -> None:
        """The run stopped (finished, crashed or killed): replace the slices placed out of
        sample since the last fit by a full fit, so the picture it leaves is the best one."""
        model = self._model
        if not model.out_of_sample_slices_:
            return
        self._set_status(activity="fitting", message=f"the run stopped: refitting all {model.n_slices_} slices")
        model.refit(reason="the run stopped")
        self._set_status(last_frame=_frame_status(model.last_frame_), message="")

    # ------------------------------------------------------------------ frames
    def _trace(self, store) -> Trace:
        n = self._model.n_slices_
        epochs = store.epochs[:n]
        return Trace(
            data=self._model.data_, unit_layer=store.unit_layer, layer_names=list(store.layer_names),
            steps=store.steps[:n], epochs=None if np.isnan(epochs).all() else epochs,
            scalars=store.scalars(range(n)), trace_labels=store.trace_labels,
        )

    def _maybe_publish_frame(self, update: StoreUpdate) -> None:
        model = self._model
        if model.last_frame_ is None:
            return  # nothing drawn yet (fewer slices than a fit needs)
        trace = self._trace(update.store)
        key = (model.n_slices_, len(model.frames_), json.dumps({k: v.tolist() for k, v in trace.scalars.items()}))
        if key == self._meta_key:
            return  # nothing new: no slice, no late scalar
        self._meta_key = key
        payload = report_data(model.embedding_, trace, title=self.title, webgl=True)
        frame = model.last_frame_
        self._frames += 1
        payload["live"] = {"frame": self._frames, "kind": frame.kind, "residual": frame.residual,
                           "n_slices": model.n_slices_}
        self.broadcast.publish(frame=script_safe_json(payload).encode())
        self._set_status(frames=self._frames, embedded=model.n_slices_)
        for callback in list(self.on_frame):
            try:
                callback(model.embedding_, trace, frame)
            except Exception as exc:  # a logger's failure must not stop the view
                self._set_status(message=f"{getattr(callback, '__name__', 'logger')} failed: {exc}")

    # ------------------------------------------------------------------ status
    def _set_status(self, **fields) -> None:
        changed = {k: v for k, v in fields.items() if self._status.get(k) != v}
        if not changed:
            return
        self._status.update(changed)
        self._publish_status()

    def _publish_status(self) -> None:
        self._status["time"] = time.time()  # this machine's clock: when the page was told
        self.broadcast.publish(status=json.dumps(self._status, allow_nan=False).encode())
