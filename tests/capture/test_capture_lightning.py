"""PyTorch Lightning capture callback: records during Trainer.fit and resumes from checkpoints."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
with warnings.catch_warnings():  # Lightning's own deprecation noise at import
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")

from mphate.capture import LightningTraceCallback, select_trace_inputs  # noqa: E402
from mphate.traces.datasets import load_digits_split  # noqa: E402
from mphate.traces.store import TraceStore  # noqa: E402

nn, F = torch.nn, torch.nn.functional
# Lightning advises on data loader workers etc. and torch deprecates an API Lightning uses
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore:.*LeafSpec")


class DigitsNet(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(64, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = load_digits_split()
    X, y = torch.tensor(X[:512]), torch.tensor(y[:512])
    X_trace, y_trace = select_trace_inputs(X, y, n_per_class=2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=128)
    return loader, X_trace, y_trace


def make_trainer(tmp_path, callback, max_epochs):
    return pl.Trainer(
        max_epochs=max_epochs, callbacks=[callback], default_root_dir=tmp_path, logger=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
        enable_checkpointing=False,
    )


def test_fit_records_every_epoch_with_metrics(tmp_path, data):
    loader, X_trace, y_trace = data
    model = DigitsNet()
    callback = LightningTraceCallback(X_trace, tmp_path / "run", labels=y_trace)
    trainer = make_trainer(tmp_path, callback, max_epochs=3)
    trainer.fit(model, loader)
    trace = TraceStore.open(tmp_path / "run").to_trace()
    assert trace.layer_names == ["fc1", "fc2"]
    np.testing.assert_array_equal(trace.steps, [4, 8, 12])  # 4 batches per epoch
    np.testing.assert_array_equal(trace.epochs, [1, 2, 3])
    assert np.isfinite(trace.scalars["train_loss"]).all()
    with torch.no_grad():
        direct = torch.cat([model.fc1(X_trace), model(X_trace)], dim=1).T.numpy()
    np.testing.assert_allclose(trace.data[-1], direct, rtol=1e-4, atol=1e-5)
    assert model.training and all(not m._forward_hooks for m in model.modules())


class SaveAfterEpoch(pl.Callback):
    def __init__(self, path, epoch):
        self.path, self.epoch = path, epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.epoch:
            trainer.save_checkpoint(self.path)


def test_resume_from_a_checkpoint_continues_the_same_store(tmp_path, data):
    loader, X_trace, y_trace = data
    options = dict(labels=y_trace, every_n_steps=2, every_n_epochs=None)
    callback = LightningTraceCallback(X_trace, tmp_path / "run", **options)
    trainer = make_trainer(tmp_path, callback, max_epochs=2)
    trainer.callbacks.append(SaveAfterEpoch(tmp_path / "epoch1.ckpt", epoch=1))
    trainer.fit(DigitsNet(), loader)
    first = TraceStore.open(tmp_path / "run").to_trace()
    np.testing.assert_array_equal(first.steps, [2, 4, 6, 8])

    # a new process resumes from the epoch-1 checkpoint: the slices of the abandoned epoch 2
    # are dropped, and the resumed training is appended to the same store
    callback = LightningTraceCallback(X_trace, tmp_path / "run", **options)
    trainer = make_trainer(tmp_path, callback, max_epochs=3)
    with pytest.warns(UserWarning, match="dropping trace slices recorded after step 4"):
        trainer.fit(DigitsNet(), loader, ckpt_path=tmp_path / "epoch1.ckpt")
    after = TraceStore.open(tmp_path / "run").to_trace()
    np.testing.assert_array_equal(after.steps, [2, 4, 6, 8, 10, 12])
    np.testing.assert_array_equal(after.data[:2], first.data[:2])
    assert callback.recorder.run_id == TraceStore.open(tmp_path / "run").run_id


def test_watch_option_serves_the_run_live_from_the_callback(tmp_path, data):
    """The callback takes the recorder's live options: watch= starts the page with the first
    recorded epoch, it embeds every epoch, and the fit's end reads as the writer gone."""
    pytest.importorskip("plotly")
    import json
    import time
    import urllib.request

    from mphate import MPHATE

    loader, X_trace, y_trace = data
    estimator = MPHATE(random_state=0, n_landmark=100, interslice_knn=2, n_jobs=1)
    callback = LightningTraceCallback(X_trace, tmp_path / "watched.trace", labels=y_trace,
                                      watch={"port": 0, "quiet": True, "poll_interval": 0.05,
                                             "estimator": estimator})
    make_trainer(tmp_path, callback, max_epochs=4).fit(DigitsNet(), loader)
    live = callback.recorder.live
    try:
        assert live is not None and live.url.startswith("http://127.0.0.1:")

        def status():
            with urllib.request.urlopen(live.url + "status.json", timeout=10) as response:
                return json.loads(response.read())

        deadline = time.monotonic() + 60
        while not (status().get("embedded") == 4 and status()["writer"] == "gone"):
            assert time.monotonic() < deadline, status()
            time.sleep(0.05)
        assert status()["n_slices"] == 4
    finally:
        live.stop()
