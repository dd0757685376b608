"""PyTorch capture: real small training runs whose traces match activations computed directly."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from mphate.capture import TorchRecorder, select_trace_inputs  # noqa: E402
from mphate.traces.datasets import load_digits_split  # noqa: E402
from mphate.traces.store import TraceStore  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only add noise on a 2-core machine


@pytest.fixture(scope="module")
def digits():
    X, y, _, _ = load_digits_split()
    X, y = torch.tensor(X), torch.tensor(y)
    X_trace, y_trace = select_trace_inputs(X, y, n_per_class=4, random_state=0)
    return X, y, X_trace, y_trace


def make_mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 24), nn.LeakyReLU(0.1), nn.Dropout(0.5),
        nn.Linear(24, 16), nn.LeakyReLU(0.1),
        nn.Linear(16, 10),
    )


def make_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 6 * 6, 10),
    )


def train_epoch(model, X, y, lr=0.05, batch=128, on_step=None, step0=0):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    step = step0
    for start in range(0, len(X), batch):
        opt.zero_grad()
        loss = F.cross_entropy(model(X[start : start + batch]), y[start : start + batch])
        loss.backward()
        opt.step()
        step += 1
        if on_step:
            on_step(step, loss.item())
    return step, loss.item()


def mlp_direct(model, x):
    """Pre-activation outputs of the three Linear layers, by hand, without dropout (eval)."""
    l1, l2, l3 = model[0], model[3], model[5]
    h1 = x @ l1.weight.T + l1.bias
    h2 = F.leaky_relu(h1, 0.1) @ l2.weight.T + l2.bias
    h3 = F.leaky_relu(h2, 0.1) @ l3.weight.T + l3.bias
    return [h1, h2, h3]


def cnn_direct(model, x):
    """Per-channel spatial means of both convolutions and the Linear output, by hand (eval BN)."""
    conv1, bn, conv2, fc = model[0], model[1], model[3], model[6]
    c1 = F.conv2d(x, conv1.weight, conv1.bias, padding=1)
    b = F.batch_norm(c1, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)
    c2 = F.conv2d(F.relu(b), conv2.weight, conv2.bias)
    out = F.relu(c2).flatten(1) @ fc.weight.T + fc.bias
    return [c1.mean(dim=(2, 3)), c2.mean(dim=(2, 3)), out]


def no_hooks_left(model):
    return all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("make_model, direct, reshape", [(make_mlp, mlp_direct, None), (make_cnn, cnn_direct, (1, 8, 8))])
def test_trace_of_a_real_training_run_matches_direct_computation(tmp_path, digits, make_model, direct, reshape):
    X, y, X_trace, y_trace = digits
    if reshape:
        X, X_trace = X.reshape(-1, *reshape), X_trace.reshape(-1, *reshape)
    model = make_model()
    expected, step = [], 0
    with TorchRecorder(model, X_trace, tmp_path / "run", labels=y_trace) as rec:
        assert rec.layer_names == [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        for epoch in range(1, 4):
            step, loss = train_epoch(model, X, y, step0=step)
            assert model.training
            rec.record(step=step, epoch=epoch, loss=loss)
            assert model.training, "the model must be back in train mode after recording"
            assert no_hooks_left(model)
            with torch.no_grad():
                model.eval()
                expected.append(torch.cat(direct(model, X_trace), dim=1).T.numpy())
                model.train()
    trace = TraceStore.open(tmp_path / "run").to_trace()
    assert trace.data.shape == (3,) + expected[0].shape
    np.testing.assert_allclose(trace.data, np.stack(expected), rtol=1e-4, atol=1e-5)
    assert not np.allclose(trace.data[0], trace.data[-1])  # training really changed the units
    np.testing.assert_array_equal(trace.trace_labels, y_trace)
    assert np.isfinite(trace.scalars["loss"]).all()
    assert no_hooks_left(model)


def test_every_module_keeps_its_own_mode_and_user_hooks_survive(digits):
    _, _, X_trace, _ = digits
    model = make_mlp()
    model.train()
    model[2].eval()  # a user froze the dropout on purpose
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    rec = TorchRecorder(model, X_trace)
    modes = [m.training for m in model.modules()]
    rec.record()
    assert [m.training for m in model.modules()] == modes
    assert len(model[0]._forward_hooks) == 1 and seen == [len(X_trace)]


def test_records_without_gradients_and_in_chunks(digits):
    _, _, X_trace, _ = digits
    model = make_mlp()
    whole = TorchRecorder(model, X_trace)
    chunked = TorchRecorder(model, X_trace, batch_size=7)
    whole.record()
    chunked.record()
    np.testing.assert_allclose(whole.to_trace().data, chunked.to_trace().data, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_every_n_steps_during_training(tmp_path, digits):
    X, y, X_trace, _ = digits
    model = make_mlp()
    rec = TorchRecorder(model, X_trace, every_n_steps=4)
    train_epoch(model, X, y, on_step=lambda s, loss: rec.maybe_record(s, epoch=s / 12, loss=loss))
    np.testing.assert_array_equal(rec.to_trace().steps, [4, 8, 12])  # 12 batches per epoch


def test_layers_by_name_by_type_and_unit_reductions(digits):
    _, _, X_trace, _ = digits
    cnn = make_cnn()
    x = X_trace.reshape(-1, 1, 8, 8)
    by_name = TorchRecorder(cnn, x, layers=["1", "2"]).activations()  # BatchNorm and ReLU outputs
    assert by_name["1"].shape == (len(x), 4)
    by_type = TorchRecorder(cnn, x, layer_types=(nn.ReLU,)).activations()
    assert list(by_type) == ["2", "4"]
    flat = TorchRecorder(cnn, x, layers=["0"], unit_reduce="flatten").activations()["0"]
    maxed = TorchRecorder(cnn, x, layers=["0"], unit_reduce="max").activations()["0"]
    assert flat.shape == (len(x), 4 * 8 * 8)
    np.testing.assert_allclose(maxed, flat.reshape(len(x), 4, 64).max(axis=2), rtol=1e-6)


def test_sequence_output_of_a_linear_layer_averages_over_positions():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5))
    x = torch.randn(4, 7, 3)  # (batch, positions, features)
    units = TorchRecorder(model, x).activations()["0"]
    np.testing.assert_allclose(units, model(x).mean(dim=1).detach().numpy(), rtol=1e-5, atol=1e-6)


# --- bad input: clear errors, nothing written ---------------------------------------------


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class DictBlock(nn.Module):
    def forward(self, x):
        return {"features": x * 2}


def test_unknown_module_names_list_the_available_ones(digits):
    _, _, X_trace, _ = digits
    with pytest.raises(ValueError, match=r"unknown module name\(s\) 'fc9'.*available: 0 \(Linear\), 1 \(LeakyReLU\)"):
        TorchRecorder(make_mlp(), X_trace, layers=["0", "fc9"])


def test_tuple_and_dict_outputs_are_explained_and_can_be_picked(tmp_path):
    x = torch.randn(5, 6, 3)
    with pytest.raises(ValueError, match=r"'rnn' \(GRU\) returned a tuple, not a tensor.*lambda out: out\[0\]"):
        TorchRecorder(TupleNet(), x, tmp_path / "a", layers=["rnn"]).record()
    assert not (tmp_path / "a").exists()
    picked = TorchRecorder(TupleNet(), x, layers={"rnn": lambda out: out[0]}, channel_dims={"rnn": -1})
    picked.record()
    assert picked.to_trace().data.shape == (1, 4, 5)
    model = nn.Sequential(DictBlock())
    with pytest.raises(ValueError, match=r"returned a dict.*out\['key'\]"):
        TorchRecorder(model, torch.randn(5, 3), layers=["0"]).record()


def test_trace_inputs_of_the_wrong_shape(tmp_path, digits):
    _, _, X_trace, _ = digits
    model = make_mlp()
    rec = TorchRecorder(model, X_trace, tmp_path / "run")
    rec.record(step=1)
    wrong = TorchRecorder(model, X_trace.reshape(-1, 8, 8), tmp_path / "other")
    with pytest.raises(ValueError, match=r"trace inputs \(shape \(40, 8, 8\).*failed.*shaped like a training batch"):
        wrong.record(step=2)
    assert model.training and no_hooks_left(model)
    with pytest.raises(ValueError, match="labels must have shape"):
        TorchRecorder(model, X_trace, labels=np.zeros(3))
    with pytest.raises(ValueError, match="at least one example"):
        TorchRecorder(model, X_trace[:0])
    assert TraceStore.open(tmp_path / "run").n_slices == 1


def test_resume_with_different_unit_counts_or_inputs_is_refused(tmp_path, digits):
    _, _, X_trace, y_trace = digits
    first = TorchRecorder(make_mlp(), X_trace, tmp_path / "run", labels=y_trace)
    first.record(step=1)
    first.close()
    before = (tmp_path / "run" / "index.jsonl").read_bytes()
    wider = nn.Sequential(nn.Linear(64, 30), nn.ReLU(), nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 10))
    resumed = TorchRecorder(wider, X_trace, tmp_path / "run", labels=y_trace, resume=True)
    with pytest.raises(ValueError, match="does not match the trace store"):
        resumed.record(step=2)
    resumed.close()
    with pytest.raises(ValueError, match="other trace inputs"):
        TorchRecorder(make_mlp(), X_trace + 1, tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="already holds a trace store"):
        TorchRecorder(make_mlp(), X_trace, tmp_path / "run")
    assert (tmp_path / "run" / "index.jsonl").read_bytes() == before


# --- a training process killed with SIGKILL ------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from torch import nn
    from torch.nn import functional as F
    from mphate.capture import TorchRecorder, select_trace_inputs
    from mphate.traces.datasets import load_digits_split

    store, ckpts = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, y, _, _ = load_digits_split()
    X, y = torch.tensor(X), torch.tensor(y)
    X_trace, y_trace = select_trace_inputs(X, y, n_per_class=3)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = TorchRecorder(model, X_trace, store, labels=y_trace)
    for epoch in range(1, 100000):
        for start in range(0, len(X), 256):
            opt.zero_grad()
            loss = F.cross_entropy(model(X[start:start + 256]), y[start:start + 256])
            loss.backward()
            opt.step()
        # the weights behind slice k are saved before slice k, so every slice can be checked
        torch.save(model.state_dict(), f"{ckpts}/tmp.pt")
        os.replace(f"{ckpts}/tmp.pt", f"{ckpts}/{epoch}.pt")
        rec.record(step=epoch, epoch=epoch, loss=loss.item())
    """
)


def slices_on_disk(path):
    try:
        return TraceStore.open(path).n_slices
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_training_keeps_completed_slices_and_resume_appends(tmp_path, digits):
    store, ckpts = tmp_path / "run", tmp_path / "ckpt"
    ckpts.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(store), str(ckpts)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while slices_on_disk(store) < 4:
            if proc.poll() is not None:
                pytest.fail(f"worker exited early: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "worker recorded too slowly"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    X, y, _, _ = digits
    X_trace, y_trace = select_trace_inputs(X, y, n_per_class=3)
    reader = TraceStore.open(store)  # strict: a killed writer never looks like corruption
    n = reader.n_slices
    assert n >= 4
    trace = reader.to_trace()
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    for k in range(n):  # slice k was recorded after epoch k + 1
        model.load_state_dict(torch.load(ckpts / f"{k + 1}.pt"))
        with torch.no_grad():
            h = X_trace @ model[0].weight.T + model[0].bias
            out = F.relu(h) @ model[2].weight.T + model[2].bias
        np.testing.assert_allclose(trace.data[k], torch.cat([h, out], 1).T.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(trace.steps, np.arange(1, n + 1))

    # resume from the last checkpoint: appends after the completed slices
    resumed = TorchRecorder(model, X_trace, store, labels=y_trace, resume=True, run_id=reader.run_id)
    assert resumed.n_slices == n
    resumed.record(step=n + 1, epoch=n + 1)
    resumed.close()
    after = TraceStore.open(store).to_trace()
    assert after.n_slices == n + 1
    np.testing.assert_array_equal(after.data[:n], trace.data)
    np.testing.assert_array_equal(after.steps, np.arange(1, n + 2))


def test_plain_recorder_takes_tensors_of_any_precision_and_tensor_scalars():
    from mphate.capture import Recorder

    rec = Recorder()
    half = torch.tensor([[1.5, -2.0], [0.25, 4.0], [3.0, 0.5]], dtype=torch.bfloat16, requires_grad=True)
    rec.record(0, {"a": half * 1}, loss=torch.tensor(0.25), epoch=torch.tensor(1.0))
    trace = rec.to_trace()
    assert trace.data.dtype == np.float32
    np.testing.assert_array_equal(trace.data[0], half.detach().float().numpy().T)
    assert trace.scalars["loss"][0] == 0.25 and trace.epochs[0] == 1.0
