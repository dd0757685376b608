"""The live picture in TensorBoard (read back with TensorBoard's own event reader) and W&B (offline)."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("plotly")

from mphate import MPHATE, Recorder  # noqa: E402
from mphate.live import PictureLogger, render_picture  # noqa: E402
from mphate.traces.synthetic import make_trace  # noqa: E402

FAST = {"estimator": MPHATE(random_state=0, n_landmark=200, interslice_knn=5, n_jobs=1), "poll_interval": 0.05}


@pytest.fixture(scope="module")
def trace():
    return make_trace(n_slices=10, n_units=30, n_trace=20, random_state=0)


def record_and_wait(rec, trace, slices):
    """Record slices one by one, each time until the live session has drawn it."""
    for s in slices:
        rec.record(s * 10, {"a": trace.data[s, :15].T, "b": trace.data[s, 15:].T}, epoch=s + 1,
                   loss=float(trace.scalars["loss"][s]))
        if s >= 1:
            deadline = time.monotonic() + 60
            while rec.live.status.get("embedded") != s + 1:
                assert time.monotonic() < deadline, rec.live.status
                time.sleep(0.02)


def test_render_picture_is_an_rgb_image(trace):
    emb = np.random.default_rng(0).standard_normal((trace.n_slices * trace.n_units, 2))
    image = render_picture(emb, trace, "layer", size=(4, 3), dpi=50)
    assert image.shape == (150, 200, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # points of several colours, not blank
    with pytest.raises(ValueError, match="tensorboard=.*wandb="):
        PictureLogger()
    with pytest.raises(ValueError, match="every_n_slices"):
        PictureLogger(tensorboard="x", every_n_slices=0)


def test_tensorboard_gets_the_picture_every_n_slices(tmp_path, trace):
    pytest.importorskip("torch.utils.tensorboard")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    logdir = tmp_path / "tb"
    rec = Recorder(tmp_path / "run.trace", tensorboard=str(logdir), log_every=3, live_options=FAST)
    try:
        record_and_wait(rec, trace, range(7))
        rec.close()  # the last picture (7 slices) is logged at the end of the run
        logger = rec.live.logger
        assert logger.logged == [3, 6, 7]
    finally:
        rec.live.stop()
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"images": 0})
    acc.Reload()
    assert "mphate/embedding" in acc.Tags()["images"]
    images = acc.Images("mphate/embedding")
    assert [im.step for im in images] == [20, 50, 60]  # the training step of the 3rd, 6th, 7th slice
    assert images[0].width == 640 and images[0].height == 480
    assert images[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"


def test_wandb_offline_gets_images_logged_on_the_training_thread(tmp_path, trace, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="mphate-test", dir=str(tmp_path), mode="offline")
    try:
        rec = Recorder(tmp_path / "run.trace", wandb=run, log_every=4, live_options=FAST)
        record_and_wait(rec, trace, range(5))
        # the 4-slice picture was drawn on the worker thread and is handed to the run by the
        # next record() on the training thread; close() hands over the final one
        rec.record(50, {"a": trace.data[5, :15].T, "b": trace.data[5, 15:].T})
        rec.close()
        assert rec.live.logger.logged[0] == 4 and rec.live.logger.logged[-1] >= 5
        assert rec.live.logger.flush() == 0  # nothing left queued
        rec.live.stop()
        run_dir = run.dir
    finally:
        run.finish()
    from pathlib import Path

    pictures = sorted(Path(run_dir).glob("media/images/mphate/embedding_*.png"))
    assert len(pictures) >= 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)
    # the offline run log (protobuf records) holds the history rows, the x axis defined for them.
    # W&B's service process writes it; on a loaded machine finish() returned while the file held
    # only its header, so wait (bounded) for the records rather than read once
    expected = (b"mphate/train_step", b"mphate/slices", b"image-file")
    log_path = next(Path(run_dir).parent.glob("run-*.wandb"))
    deadline = time.monotonic() + 60
    while not all(part in log_path.read_bytes() for part in expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = log_path.read_bytes()
    assert all(part in log for part in expected), log[:200]
