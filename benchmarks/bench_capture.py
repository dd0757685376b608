"""How much does recording a trace slow training down?

Measures, for the paper's MNIST network (784-128-128-128-10, batch 256, 60 000 examples, one
slice per epoch), a small CNN on 28x28 images, and the continual-learning network
(784-400-400-10, one slice per batch):

* one training epoch (or one step, for per-batch recording),
* the cost of one slice: running the 100 trace inputs through the hooked model
  (``activations``) and writing the slice durably to a trace store (``fsync=True``), without
  fsync, and to memory,

and prints the overhead as a fraction of training time. Each measurement is a median; the
recording variants take turns slice by slice so that background load hits them alike. Data are random (MNIST's shapes);
only timing matters here. Pass ``--mnist DIR`` to train on real MNIST files instead.

    .venv/bin/python benchmarks/bench_capture.py [--quick] [--device cpu|cuda] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mphate.capture import TorchRecorder, select_trace_inputs


def mnist_like(n, image_shape, device, mnist_dir=None):
    if mnist_dir:
        from mphate.traces.datasets import load_mnist

        X, y, _, _ = load_mnist(mnist_dir, flatten=len(image_shape) == 1)
        X, y = X[:n], y[:n]
        X = torch.tensor(X).reshape(len(X), *image_shape)
        return X.to(device), torch.tensor(y).to(device)
    g = torch.Generator().manual_seed(0)
    X = torch.rand((n, *image_shape), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return X.to(device), y.to(device)


def paper_mlp():
    return nn.Sequential(
        nn.Linear(784, 128), nn.LeakyReLU(0.1),
        nn.Linear(128, 128), nn.LeakyReLU(0.1),
        nn.Linear(128, 128), nn.LeakyReLU(0.1),
        nn.Linear(128, 10),
    )


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def continual_mlp():
    return nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model, X, y, batch, n_steps, device):
    """Median seconds of one optimiser step (forward, backward, Adam update)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    model.train()
    times = []
    n = len(X)
    for i in range(n_steps + 3):
        start = (i * batch) % max(n - batch, 1)
        xb, yb = X[start : start + batch], y[start : start + batch]
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        sync(device)
        if i >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_epoch(model, X, y, batch, device):
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for start in range(0, len(X), batch):
        opt.zero_grad()
        F.cross_entropy(model(X[start : start + batch]), y[start : start + batch]).backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def time_slices(model, X_trace, y_trace, n_slices, device):
    """Median seconds per slice: hooks + forward only, then full records to disk and memory.

    The four measurements take turns slice by slice, so background load on a shared machine
    hits them alike.
    """
    with tempfile.TemporaryDirectory() as tmp:
        recorders = {
            "record_disk_fsync_s": TorchRecorder(model, X_trace, Path(tmp) / "fsync", labels=y_trace, fsync=True),
            "record_disk_nofsync_s": TorchRecorder(model, X_trace, Path(tmp) / "nofsync", labels=y_trace, fsync=False),
            "record_memory_s": TorchRecorder(model, X_trace, None, labels=y_trace),
        }
        probe = recorders["record_memory_s"]
        probe.activations()  # warm-up
        times = {"activations_s": [], **{key: [] for key in recorders}}
        for step in range(n_slices):
            sync(device)
            t0 = time.perf_counter()
            probe.activations()
            sync(device)
            times["activations_s"].append(time.perf_counter() - t0)
            for key, rec in recorders.items():
                sync(device)
                t0 = time.perf_counter()
                rec.record(step=step, epoch=step, loss=0.5)
                sync(device)
                times[key].append(time.perf_counter() - t0)
        results = {key: statistics.median(values) for key, values in times.items()}
        results["n_units"] = probe.to_trace().n_units
        for rec in recorders.values():
            rec.close()
    return results


def run_case(name, make_model, image_shape, n_train, batch, per, args, device):
    torch.manual_seed(0)
    model = make_model().to(device)
    X, y = mnist_like(n_train, image_shape, device, args.mnist)
    X_trace, y_trace = select_trace_inputs(X, y.cpu().numpy(), n_per_class=10, random_state=0)
    steps_per_epoch = int(np.ceil(n_train / batch))
    step_s = time_steps(model, X, y, batch, args.steps, device)
    row = {"case": name, "n_train": n_train, "batch": batch, "steps_per_epoch": steps_per_epoch, "step_s": step_s}
    if per == "epoch":
        row["epoch_s"] = time_epoch(model, X, y, batch, device) if args.full_epoch else step_s * steps_per_epoch
        row["epoch_measured"] = bool(args.full_epoch)
        row["baseline_s"] = row["epoch_s"]
    else:
        row["baseline_s"] = step_s
    row.update(time_slices(model, X_trace, y_trace, args.slices, device))
    row["recorded_every"] = per
    for key in ("record_disk_fsync_s", "record_disk_nofsync_s", "record_memory_s"):
        row[key.replace("_s", "_overhead")] = row[key] / row["baseline_s"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a small shared machine, waking idle "
                             "worker threads after each fsync costs more than the work itself)")
    parser.add_argument("--mnist", default=None, help="directory with MNIST files (default: random data)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-full-epoch", dest="full_epoch", action="store_false",
                        help="estimate the epoch from timed steps instead of running one")
    args = parser.parse_args(argv)
    args.steps = 10 if args.quick else 40
    args.slices = 5 if args.quick else 25
    if args.threads and args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n_train = 6000 if args.quick else 60000
    cases = [
        ("paper MLP 784-128-128-128-10, slice per epoch", paper_mlp, (784,), n_train, 256, "epoch"),
        ("CNN 2 conv + 2 dense on 28x28, slice per epoch", small_cnn, (1, 28, 28), n_train, 256, "epoch"),
        ("continual MLP 784-400-400-10, slice per batch", continual_mlp, (784,), n_train, 128, "step"),
    ]
    rows = [run_case(*case, args, device) for case in cases]
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    print(f"# capture overhead ({env['device']}, {env['cpu_threads']} torch threads, torch {env['torch']})")
    print("| case | units | training per slice | activations | record, fsync | record, no fsync | record, memory | overhead (fsync) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = f"{r['baseline_s']:.3g} s ({'epoch' if r['recorded_every'] == 'epoch' else 'step'})"
        print(
            f"| {r['case']} | {r['n_units']} | {base} | {r['activations_s'] * 1e3:.2f} ms | "
            f"{r['record_disk_fsync_s'] * 1e3:.2f} ms | {r['record_disk_nofsync_s'] * 1e3:.2f} ms | "
            f"{r['record_memory_s'] * 1e3:.2f} ms | {100 * r['record_disk_fsync_overhead']:.2f} % |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
