"""watch=True from a training script: the page is served from the training process, off its thread."""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import warnings

import numpy as np
import pytest

pytest.importorskip("plotly")
torch = pytest.importorskip("torch")

from mphate import MPHATE, Recorder, TorchRecorder  # noqa: E402

FAST = {"port": 0, "quiet": True, "poll_interval": 0.05,
        "estimator": MPHATE(random_state=0, n_landmark=100, interslice_knn=3, n_jobs=1)}


def status(rec):
    with urllib.request.urlopen(rec.live.url + "status.json", timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_torch_recorder_watch_serves_the_growing_run(tmp_path, worker):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 6))
    inputs = torch.randn(10, 8)
    rec = TorchRecorder(model, inputs, tmp_path / "run.trace", labels=np.arange(10) % 2,
                        watch={**FAST, "worker": worker})
    try:
        if worker == "process":  # the session runs in a child of this process, not beside training
            assert rec.live.process.pid != os.getpid() and rec.live.alive
        assert rec.live.url.startswith("http://127.0.0.1:")
        assert status(rec)["state"] == "waiting"  # nothing recorded yet: the store does not exist
        for step in range(5):
            with torch.no_grad():
                model[0].weight.add_(0.1 * torch.randn_like(model[0].weight))
            rec.record(step=step, loss=1.0 / (step + 1))
        deadline = time.monotonic() + 60
        while status(rec).get("embedded") != 5:
            assert time.monotonic() < deadline, status(rec)
            time.sleep(0.05)
        assert status(rec)["writer"] == "alive" and rec.live.status["frames"] >= 1
        assert rec.live.status["n_slices"] == 5
        rec.close()
        deadline = time.monotonic() + 30
        while status(rec)["writer"] != "gone":  # closed: the page says the run stopped, and stays up
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        rec.live.stop()


def test_listeners_never_break_recording_and_watch_needs_a_path(tmp_path):
    rec = Recorder(tmp_path / "run.trace")
    events = []
    rec.add_listener(events.append)
    rec.add_listener(lambda event: 1 / 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec.record(0, {"a": np.ones((4, 3))})
        rec.record(1, {"a": np.ones((4, 3)) * 2})
        rec.log(val_loss=0.3)
        rec.close()
    assert [e["kind"] for e in events] == ["slice", "slice", "scalars", "close"]
    assert events[1] == {"kind": "slice", "index": 1, "step": 1}
    failures = [w for w in caught if "listener failed" in str(w.message)]
    assert len(failures) == 1  # reported once, and the slices are all there
    assert rec.n_slices == 2
    with pytest.raises(ValueError, match="without a store on disk"):
        Recorder(None, watch=True)
    with pytest.raises(ValueError, match="watch must be True, a port number or a dict"):
        Recorder(tmp_path / "other.trace", watch="yes")


def test_keras_callback_takes_the_same_options(tmp_path):
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported
    pytest.importorskip("keras")
    from mphate.capture import KerasTraceCallback

    callback = KerasTraceCallback(np.zeros((6, 4), dtype=np.float32), tmp_path / "k.trace", watch=FAST)
    try:
        assert callback.live is not None and callback.live.url.startswith("http://127.0.0.1:")
    finally:
        callback.live.stop()


KILLED_TRAINER = """
import sys, numpy as np
from mphate import MPHATE, Recorder
rec = Recorder(sys.argv[1], watch={"port": 0, "quiet": True, "estimator": MPHATE(random_state=0, n_jobs=1)})
rec.record(0, {"a": np.ones((4, 3))})
print(rec.live.process.pid, flush=True)
input()  # wait to be killed
"""


def test_the_live_worker_ends_with_a_killed_training_process(tmp_path):
    import signal
    import subprocess

    trainer = subprocess.Popen([sys.executable, "-c", KILLED_TRAINER, str(tmp_path / "run.trace")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child = int(trainer.stdout.readline())
        os.kill(child, 0)  # the worker is running
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(10)
        deadline = time.monotonic() + 30
        while True:  # it sees its stdin close and stops: no server left behind
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # a zombie until init reaps it counts as gone
            state = open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] if os.path.exists(f"/proc/{child}/stat") else "Z"
            if state == "Z":
                break
            assert time.monotonic() < deadline, "the live worker outlived its training process"
            time.sleep(0.1)
    finally:
        trainer.kill()


def test_the_live_worker_needs_options_that_cross_to_a_process(tmp_path):
    estimator = MPHATE(random_state=np.random.default_rng(0))
    with pytest.raises(ValueError, match="integer random_state"):
        Recorder(tmp_path / "a.trace", watch={"port": 0, "quiet": True, "estimator": estimator})
    with pytest.raises(ValueError, match="worker must be 'process' or 'thread'"):
        Recorder(tmp_path / "b.trace", watch={"port": 0, "worker": "fork"})
    with pytest.raises(ValueError, match="unknown live-view options"):
        Recorder(tmp_path / "c.trace", watch={"port": 0, "colour": "red"})
