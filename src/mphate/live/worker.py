"""The live view in a child process of the training script (what ``watch=True`` starts).

Why a process and not a thread: the embedding is NumPy/SciPy work driven from Python, and a
thread of the training process holds the interpreter lock for much of it. Measured once on
the digits MLP (150 epochs, 2 cores, one torch thread, 1.2 ms steps, a quiet machine): the
live session on a background thread slowed the mean training step by 18 %, the same session
in a separate niced ``mphate watch`` process by 1.5 %. ``benchmarks/bench_live.py
--overhead`` compares the two ways (it does not separate them on a loaded machine, where a
niced worker barely runs). A child only competes for a core, which ``nice`` settles, and
cannot stall a step.

Protocol, one JSON object per line:

* parent -> child (stdin): first the spec (store path, estimator parameters, incremental
  options, watch options, picture logging), then commands ``wake`` (a slice was recorded),
  ``finish`` (the run closed: catch up, log the last picture, answer ``finished``) and
  ``stop``. End of stdin (the parent exited or was killed) stops the child too.
* child -> parent (stdout): ``ready`` (with the page's ``url``) or ``error`` (with a
  ``message``) once; then ``status`` on every change, ``picture`` when a picture was logged
  (``path`` of its PNG when the parent logs it to W&B, which must happen on the training
  thread), ``finished``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mphate.live.logging import define_wandb_axis, wandb_entry

__all__ = ["WorkerHandle", "PictureRelay", "main"]

#: seconds a new child may take to import the stack and bind its port
START_TIMEOUT = 120.0
#: seconds ``finish`` waits for the child to embed the last slices and draw the last picture
FINISH_TIMEOUT = 120.0


# ---------------------------------------------------------------------------------- parent
class PictureRelay:
    """The parent's side of picture logging: which pictures the child logged (``logged``,
    slice counts) and the W&B entries to hand to the run on the training thread."""

    def __init__(self, wandb_run=None, tag="mphate/embedding"):
        self.wandb_run, self.tag = wandb_run, tag
        self.logged: list[int] = []
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        if wandb_run is not None:
            define_wandb_axis(wandb_run)

    def add(self, event: dict) -> None:
        """A ``picture`` event from the child (reader thread)."""
        with self._lock:
            self.logged.append(int(event["n_slices"]))
            if self.wandb_run is not None and event.get("path"):
                self._pending.append(event)

    def flush(self) -> int:
        """Log the pictures the child drew since the last call to the W&B run (training thread)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for event in pending:
            self.wandb_run.log(wandb_entry(self.tag, event["path"], event["n_slices"], event["step"]))
        return len(pending)


class WorkerHandle:
    """A live session running in a child process; the interface of :class:`~mphate.live.LiveHandle`.

    Attributes
    ----------
    url : str or None
        The live page, when the child serves one.
    status : dict
        The child's latest status (slices, embedded, writer, activity, ...).
    logger : PictureRelay or None
    process : subprocess.Popen
    """

    def __init__(self, spec: dict, *, wandb_run=None, start_timeout=START_TIMEOUT):
        self.logger = None
        if spec.get("log_every"):
            self.logger = PictureRelay(wandb_run, tag=spec.get("tag", "mphate/embedding"))
        self.url, self.status = None, {}
        self._ready, self._finished = threading.Event(), threading.Event()
        self._error = None
        self._write_lock = threading.Lock()
        self._pictures_dir = None
        if wandb_run is not None:
            self._pictures_dir = tempfile.TemporaryDirectory(prefix="mphate-live-")
            spec = {**spec, "pictures": self._pictures_dir.name}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from mphate.live.worker import main; sys.exit(main())"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="mphate-live-reader", daemon=True)
        self._reader.start()
        self._send(json.dumps(spec))
        if not self._ready.wait(start_timeout) or self._error is not None:
            self._kill()
            reason = self._error or f"no answer in {start_timeout:.0f} s"
            raise ValueError(f"the live view could not start: {reason}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    # --------------------------------------------------------------- training thread
    def on_event(self, event: dict) -> None:
        """The recorder's listener: wake the child; at the end of the run, let it finish."""
        if event.get("kind") == "close":
            self.finish()
            return
        self._send("wake")
        if self.logger is not None:
            self.logger.flush()

    def finish(self, timeout: float = FINISH_TIMEOUT) -> None:
        """Wait until the child has embedded every slice and logged the last picture, then
        hand the W&B pictures to the run."""
        self._finished.clear()
        if self._send("finish"):
            self._finished.wait(timeout)
        if self.logger is not None:
            self.logger.flush()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (its page goes away; a running training keeps recording)."""
        self._send("stop")
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        if self._pictures_dir is not None:
            self._pictures_dir.cleanup()

    # --------------------------------------------------------------- plumbing
    def _send(self, line: str) -> bool:
        with self._write_lock:
            try:
                self.process.stdin.write(line + "\n")
                self.process.stdin.flush()
                return True
            except (OSError, ValueError):  # the child is gone (its status says why, if it could)
                return False

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "ready":
                self.url = event.get("url")
                self._ready.set()
            elif kind == "error":
                self._error = event.get("message", "unknown error")
                self._ready.set()
            elif kind == "status":
                self.status = event.get("status", {})
            elif kind == "picture" and self.logger is not None:
                self.logger.add(event)
            elif kind == "finished":
                self._finished.set()
        if not self._ready.is_set():
            self._error = self._error or f"the worker process exited with status {self.process.wait()}"
            self._ready.set()
        self._finished.set()

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# ---------------------------------------------------------------------------------- child
class _Emitter:
    def __init__(self, stream):
        self.stream, self.lock = stream, threading.Lock()

    def __call__(self, **event) -> None:
        with self.lock:
            self.stream.write(json.dumps(event, allow_nan=False, default=str) + "\n")
            self.stream.flush()


def _start(spec: dict, emit):
    """The session (and server) the spec asks for; returns (stop, session, logger)."""
    from mphate.embed.estimator import MPHATE
    from mphate.live.logging import PictureLogger
    from mphate.live.server import watch as serve_live
    from mphate.live.session import LiveSession

    options = dict(estimator=MPHATE(**spec["estimator"]), incremental=spec.get("incremental"),
                   poll_interval=spec.get("poll_interval", 0.5), title=spec.get("title"))
    logger = None
    if spec.get("log_every"):
        logger = PictureLogger(tensorboard=spec.get("tensorboard"), directory=spec.get("pictures"),
                               every_n_slices=spec["log_every"], color_by=spec.get("color_by", "epoch"),
                               tag=spec.get("tag", "mphate/embedding"),
                               on_picture=lambda picture: emit(event="picture", **picture))
    if spec.get("watch") is not None:
        server = serve_live(spec["path"], quiet=True, **spec["watch"], **options)
        session, stop, url = server.session, server.stop, server.url
    else:
        session = LiveSession(spec["path"], **options).start()
        stop, url = session.stop, None
    if logger is not None:
        session.on_frame.append(logger)
    emit(event="ready", url=url)
    return stop, session, logger


def _pump_status(session, emit) -> None:
    """Forward every status change to the parent (a thread of the child)."""
    version = 0
    while not session.broadcast.closed:
        _, _, new_version, status = session.broadcast.wait(10**18, version, timeout=1.0)
        if new_version > version:
            version = new_version
            emit(event="status", status=json.loads(status))


def _catch_up(session, timeout: float) -> None:
    """Wait until the session has drawn every slice in the store (or ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.wake()
        status = session.status
        n = status.get("n_slices") or 0
        if status.get("activity") == "idle" and (status.get("embedded") == n or n < 2):
            return
        time.sleep(0.05)


def main() -> int:
    emit = _Emitter(sys.stdout)
    sys.stdout = sys.stderr  # anything else printed goes to the training script's stderr
    try:
        spec = json.loads(sys.stdin.readline())
        if spec.get("nice") and hasattr(os, "nice"):
            os.nice(int(spec["nice"]))
        stop, session, logger = _start(spec, emit)
    except Exception as exc:  # one line for the parent to raise, never a traceback on its terminal
        emit(event="error", message=f"{exc}")
        return 2
    threading.Thread(target=_pump_status, args=(session, emit), daemon=True).start()
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "wake":
                session.wake()
            elif command == "finish":
                _catch_up(session, FINISH_TIMEOUT)
                if logger is not None:
                    logger.finish()
                emit(event="finished")
            elif command == "stop":
                break
    except KeyboardInterrupt:  # Ctrl-C in the training script's terminal reaches us too
        pass
    finally:
        stop()
    return 0


def worker_spec(path, *, estimator, watch, incremental=None, poll_interval=0.5, title=None, nice=None,
                tensorboard=None, log_every=None, color_by="epoch", tag="mphate/embedding") -> dict:
    """The child's spec; a clear error for anything that cannot cross to another process."""
    params = estimator.get_params()
    seed = params.get("random_state")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(
            "the live view runs in a child process, which takes an integer random_state (or None); "
            f"got {type(seed).__name__}: pass MPHATE(random_state=0), or worker='thread'"
        )
    if tensorboard is not None and not isinstance(tensorboard, (str, Path)):
        log_dir = getattr(tensorboard, "log_dir", None) or getattr(tensorboard, "logdir", None)
        if log_dir is None and hasattr(tensorboard, "get_logdir"):
            log_dir = tensorboard.get_logdir()
        if log_dir is None:
            raise ValueError(
                f"tensorboard must be a log directory or a SummaryWriter with a log_dir; got "
                f"{type(tensorboard).__name__} (or pass worker='thread')"
            )
        tensorboard = log_dir
    spec = dict(path=str(path), estimator=params, watch=watch, incremental=incremental,
                poll_interval=poll_interval, title=title, nice=nice,
                tensorboard=None if tensorboard is None else str(tensorboard),
                log_every=log_every, color_by=color_by, tag=tag)
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the live view's options must be plain values to reach its worker process: {exc}") from None
    return spec


if __name__ == "__main__":
    sys.exit(main())
