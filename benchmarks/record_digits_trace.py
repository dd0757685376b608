"""Record a real M-PHATE trace: a small PyTorch MLP learning scikit-learn's digits.

Network 64-128-128-128-10 (hidden widths set by --hidden), LeakyReLU(0.1), Adam. After every epoch the outputs of the
three hidden Linear layers (before the nonlinearity, as in the paper's scripts) are
recorded on 100 fixed trace inputs (10 per class, fixed seed, drawn from the training
set) with plain torch forward hooks.

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
    import torch
    from torch import nn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)  # pixel values are 0..16 -> [0, 1]
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)

    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), n_per_class, replace=False)
                          for c in range(10)])
    Xtrace, ytrace = torch.from_numpy(Xtr[idx]), ytr[idx]

    widths = [64, *hidden_sizes]
    hidden = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    layers = []
    for linear in hidden:
        layers += [linear, nn.LeakyReLU(0.1)]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lossf = nn.CrossEntropyLoss()

    captured: list = [None] * len(hidden)

    def make_hook(i):
        def hook(_mod, _inp, out):
            captured[i] = out.detach().cpu().numpy()
        return hook

    Xtr_t, ytr_t = torch.from_numpy(Xtr), torch.from_numpy(ytr).long()
    Xva_t, yva_t = torch.from_numpy(Xva), torch.from_numpy(yva).long()
    n_units = sum(h.out_features for h in hidden)
    trace = np.empty((epochs, n_units, len(idx)), dtype=np.float32)
    loss_hist = np.empty(epochs)
    val_hist = np.empty(epochs)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(Xtr_t), generator=gen)
        for s in range(0, len(perm), batch_size):
            b = perm[s:s + batch_size]
            opt.zero_grad()
            lossf(model(Xtr_t[b]), ytr_t[b]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            loss_hist[ep] = lossf(model(Xtr_t), ytr_t).item()
            val_hist[ep] = lossf(model(Xva_t), yva_t).item()
            handles = [h.register_forward_hook(make_hook(i)) for i, h in enumerate(hidden)]
            try:
                model(Xtrace)
            finally:
                for hd in handles:
                    hd.remove()
        # (n_trace, units) per layer -> (units, n_trace), layers concatenated
        trace[ep] = np.concatenate([c.T for c in captured], axis=0)
        if verbose and (ep % 50 == 0 or ep == epochs - 1):
            with torch.no_grad():
                acc = (model(Xva_t).argmax(1) == yva_t).float().mean().item()
            print(f"epoch {ep + 1:4d}  loss {loss_hist[ep]:.4f}  val_loss {val_hist[ep]:.4f}"
                  f"  val_acc {acc:.3f}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    layer = np.concatenate([np.full(h.out_features, i) for i, h in enumerate(hidden)])
    return dict(trace=trace, layer=layer, digit=np.asarray(ytrace), loss=loss_hist,
                val_loss=val_hist)


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
