"""``mphate demo``: train a small network on bundled digits, trace it, and write its report."""
from __future__ import annotations

import time

from mphate.cli._common import int_at_least


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a small network on bundled digits and write its M-PHATE report (offline)",
        description="Train a 64-128-128-128-10 LeakyReLU network with Adam on scikit-learn's "
        "bundled 8x8 digits (PyTorch, CPU), trace its three hidden layers on 100 training "
        "images (10 per class) after every epoch, embed every unit at every epoch with M-PHATE "
        "in 2-D and 3-D, and write a report folder: index.html (interactive, works offline), "
        "PNG figures, embedding.npz and the trace store (DIR/trace).",
    )
    parser.add_argument("-o", "--output", metavar="DIR", default="mphate-report",
                        help="report folder (default: %(default)s)")
    parser.add_argument("--epochs", type=_positive, default=300, metavar="N",
                        help="training epochs, one traced slice each (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed for data split, initialisation, batches and embedding (default: %(default)s)")
    parser.add_argument("--hidden", type=_positive, default=128, metavar="UNITS",
                        help="units per hidden layer (default: %(default)s)")
    parser.add_argument("--threads", type=_positive, default=None, metavar="N",
                        help="threads for training and embedding (default: one for training, the "
                        "idle cores for the embedding)")
    parser.add_argument("--no-3d", action="store_true", help="skip the 3-D embedding and view")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    return int_at_least(text, 1, "a positive integer")


def run(args) -> int:
    from mphate.cli._common import warnings_as_messages
    from mphate.experiments.demo import run_demo

    start = time.perf_counter()
    with warnings_as_messages("demo"):
        paths = run_demo(args.output, epochs=args.epochs, random_state=args.seed, quiet=args.quiet,
                         n_components_3d=not args.no_3d, hidden=args.hidden,
                         threads=args.threads)
    total = time.perf_counter() - start
    print(f"report: {paths['html'].resolve()} (open it in a browser); done in {total:.0f} s")
    return 0
