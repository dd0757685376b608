"""``mphate demo``: train a small network on bundled digits, trace it, and write its report."""
from __future__ import annotations

import time

from mphate.cli._common import (
    add_deprecated_alias,
    add_estimator_options,
    function_default,
    given_estimator_params,
    positive_int,
    seed_int,
)

_RUN_DEMO = ("mphate.experiments.demo", "run_demo")
# the demo sets these itself: 2-D and 3-D (--no-3d), its own seed, threads, and -q
_DEMO_OWN = ("n_components", "random_state", "n_jobs", "verbose")


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
    parser.add_argument("-o", "--output", metavar="DIR", default=_default("out_dir"),
                        help="report folder (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=_default("epochs"), metavar="N",
                        help="training epochs, one traced slice each (default: %(default)s)")
    parser.add_argument("--random-state", type=seed_int, default=_default("random_state"), metavar="SEED",
                        help="seed of the data split, initialisation, batches, trace inputs and "
                        "embedding: a rerun draws the same picture (default: %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=_default("hidden"), metavar="UNITS",
                        help="units per hidden layer (default: %(default)s)")
    parser.add_argument("--n-jobs", type=positive_int, default=_default("threads"), metavar="N",
                        help="threads for training and embedding (default: one for training, the "
                        "idle cores for the embedding)")
    parser.add_argument("--no-3d", action="store_true", help="skip the 3-D embedding and view")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")
    add_deprecated_alias(parser, "--seed", "--random-state", dest="random_state", type=seed_int)
    add_deprecated_alias(parser, "--threads", "--n-jobs", dest="n_jobs", type=positive_int)
    add_estimator_options(parser, exclude=_DEMO_OWN, title="embedding parameters",
                          defaults={"n_landmark": _default("n_landmark")},
                          notes={"interslice_knn": "lowered to epochs - 1 for 25 epochs or fewer"})
    parser.set_defaults(func=run)


def _default(name: str):
    """``run_demo``'s default for ``name``: the command line does not restate it."""
    return function_default(*_RUN_DEMO, name)


def run(args) -> int:
    from mphate.cli._common import warnings_as_messages
    from mphate.experiments.demo import run_demo

    given = given_estimator_params(args)
    kwargs = {"n_landmark": given.pop("n_landmark")} if "n_landmark" in given else {}
    mphate_params = {name: value for name, value in given.items() if name not in _DEMO_OWN}
    start = time.perf_counter()
    with warnings_as_messages("demo"):
        paths = run_demo(args.output, epochs=args.epochs, random_state=args.random_state, quiet=args.quiet,
                         n_components_3d=not args.no_3d, hidden=args.hidden, threads=args.n_jobs,
                         mphate_params=mphate_params or None, **kwargs)
    total = time.perf_counter() - start
    print(f"report: {paths['html'].resolve()} (open it in a browser); done in {total:.0f} s")
    return 0

