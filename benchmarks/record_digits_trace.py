"""Record a real M-PHATE trace: a small PyTorch MLP learning scikit-learn's digits.

Network 64-128-128-128-10 (hidden widths set by --hidden), LeakyReLU(0.1), Adam, trained by
mphate's one training loop (mphate.experiments.training, as the demo and the experiments are).
After every epoch the outputs of the three hidden Linear layers (before the nonlinearity, as in
the paper's scripts) are recorded on 100 fixed trace inputs (10 per class, fixed seed, drawn
from the training set) with mphate's TorchRecorder.

Writes benchmarks/data/digits_trace.npz with
  trace     (n_epochs, n_units, 100) float32 (or float16)  slice = epoch, unit = hidden unit,
            feature = input; n_units = 384 by default
  layer     (n_units,)  int   which hidden layer (0, 1, 2, ...) each unit belongs to
  digit     (100,)  int   class of each trace input
  loss, val_loss (n_epochs,) float  mean train / validation cross-entropy after each epoch

Usage:  .venv/bin/python benchmarks/record_digits_trace.py [--epochs 300] [--hidden 128,128,128]
            [--float16] [--out PATH]
(the scaling table's real traces: e.g. --epochs 1000 --hidden 683,683,682 --float16)
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def record(epochs: int = 300, lr: float = 1e-4, batch_size: int = 64, seed: int = 0,
           n_per_class: int = 10, verbose: bool = True, hidden_sizes=(128, 128, 128)) -> dict:
    """Train and trace the network with mphate's own training loop (mphate.experiments.training)."""
    import torch

    from mphate.capture import TorchRecorder
    from mphate.experiments.training import evaluate, load_data, make_mlp, torch_threads, train

    data = load_data(None, seed)  # the digits, 80/20 stratified split seeded by seed
    # 10 per class in the order drawn (not sorted, unlike select_trace_inputs): the order the
    # cached benchmark traces were recorded in
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(data.y_train == c), n_per_class, replace=False)
                          for c in range(10)])
    model = make_mlp(data.n_inputs, hidden_sizes, 10, activation="leaky_relu", seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train).long()
    X_val, y_val = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val).long()
    loss_hist, val_hist = np.empty(epochs), np.empty(epochs)
    t0 = time.perf_counter()

    def after_epoch(epoch):
        loss_hist[epoch - 1] = evaluate(model, X, y)[0]
        val_loss, val_acc = evaluate(model, X_val, y_val)
        val_hist[epoch - 1] = val_loss
        rec.record(step=epoch, epoch=epoch)
        if verbose and ((epoch - 1) % 50 == 0 or epoch == epochs):
            print(f"epoch {epoch:4d}  loss {loss_hist[epoch - 1]:.4f}  val_loss {val_loss:.4f}"
                  f"  val_acc {val_acc:.3f}  ({time.perf_counter() - t0:.1f} s)", flush=True)

    with torch_threads(min(2, os.cpu_count() or 1)), \
            TorchRecorder(model, data.X_train[idx], layers=model.hidden_names) as rec:
        train(model, opt, X, y, epochs=epochs, batch_size=batch_size,
              generator=torch.Generator().manual_seed(seed), on_epoch=after_epoch)
        trace = rec.to_trace()
    return dict(trace=np.asarray(trace.data, dtype=np.float32), layer=np.asarray(trace.unit_layer, dtype=np.int64),
                digit=data.y_train[idx], loss=loss_hist, val_loss=val_hist)


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", default="128,128,128",
                    help="widths of the hidden layers, comma-separated (units = their sum)")
    ap.add_argument("--float16", action="store_true", help="store the trace as float16 (half the file)")
    ap.add_argument("--out", default=os.path.join(here, "data", "digits_trace.npz"))
    args = ap.parse_args(argv)
    hidden_sizes = tuple(int(w) for w in args.hidden.split(","))
    res = record(args.epochs, args.lr, args.batch_size, args.seed, hidden_sizes=hidden_sizes)
    if args.float16:
        res["trace"] = res["trace"].astype(np.float16)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, **res)
    print(f"wrote {args.out}: trace {res['trace'].shape} {res['trace'].dtype}")


if __name__ == "__main__":
    main()
