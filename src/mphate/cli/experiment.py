"""``mphate experiment generalization|continual``: the paper's two experiments, end to end."""
from __future__ import annotations

import argparse

from mphate.cli._common import (
    add_deprecated_alias,
    add_executor_options,
    add_output_option,
    function_default,
    int_at_least,
    landmark_value,
    positive_int,
    report_failures,
    seed_int,
)

# kept here (not imported from the experiments) so that `mphate --help` does not import torch
GENERALIZATION_NETWORKS = ("vanilla", "dropout", "kernel_l1", "kernel_l2", "activity_l1", "activity_l2",
                           "random_labels", "random_pixels")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="run one of the paper's experiments (generalization, continual) end to end",
        description="Train, trace and embed the networks of one of the paper's experiments and "
        "write its figures and CSV tables. Runs on scikit-learn's bundled 8x8 digits by default, "
        "or on MNIST read from local files with --data-dir (nothing is downloaded).",
    )
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    gen = sub.add_parser(
        "generalization",
        help="8 networks (vanilla, dropout, kernel/activity L1/L2, random labels/pixels): "
        "memorisation error against visualisation variance",
        description="Train the 8 networks of the paper's generalisation experiment, trace every "
        "epoch, embed each with M-PHATE, and write generalization.png (2 x 4, coloured "
        "by most-active class, with final train / validation loss), generalization.csv "
        "(memorisation error, visualisation variance at each network's own t and at common t's), "
        "generalization_history.csv, loss and "
        "variance figures, and generalization_summary.json with Spearman's rho. Each network is "
        "one task (trained and embedded in this process, or on Dask with --workers or --scheduler), "
        "kept in DIR/cache as it finishes: a rerun does only the networks not done yet, and a network "
        "that fails is reported while the others go on.",
    )
    _common(gen, "generalization", "mphate_generalization", "training epochs (default: 300)")
    where = add_executor_options(gen, verb="train and embed each network", needs="the --data-dir files")
    _old_n_jobs(where)
    gen.add_argument("--no-cache", action="store_true", help="train and embed every network again, ignoring DIR/cache")
    gen.add_argument("--lr", type=float, help="Adam learning rate (default: 1e-3 on digits, 1e-5 on MNIST)")
    gen.add_argument("--embed-slices", type=int, metavar="N",
                     help="embed only about N evenly spaced epochs (default: all)")
    gen.add_argument("--networks", nargs="+", metavar="NAME", choices=GENERALIZATION_NETWORKS,
                     default=list(GENERALIZATION_NETWORKS),
                     help="networks to train (default: all 8): " + " ".join(GENERALIZATION_NETWORKS))
    gen.add_argument("--common-t", nargs="+", type=_positive_t, default=[10, 30, 60], metavar="T",
                     help="also embed every network at these diffusion times and correlate the "
                     "variances there, since each network's automatic t differs and the variance "
                     "falls steeply with t (default: 10 30 60)")
    gen.set_defaults(func=_run_generalization)
    cont = sub.add_parser(
        "continual",
        help="5 digit-pair tasks x 3 scenarios x 3 learners: structure kept across task switches "
        "(ARI) against forgetting",
        description="Train 9 continual learners (scenarios: incremental task / domain / class; "
        "learners: Adam, Adagrad, Adam with rehearsal) on 5 digit-pair tasks in parallel, trace "
        "every N batches, embed each with M-PHATE (interslice_knn 12), and write "
        "continual_time.png and continual_task.png (3 x 3), continual_losses.png, continual.csv "
        "(ARI across task switches and final validation loss), continual_history.csv and "
        "continual_summary.json with the correlation.",
    )
    _common(cont, "continual", "mphate_continual", "epochs per task (default: 4)")
    pool = function_default("mphate.experiments.continual", "run", "n_jobs")
    cont.add_argument("--workers", type=positive_int, default=pool, metavar="N",
                      help="networks trained at once, one process each (default: %(default)s)")
    _old_n_jobs(cont)
    cont.add_argument("--trace-every", type=int, metavar="N",
                      help="batches between traced slices (default: 1 on digits, 50 on MNIST)")
    cont.add_argument("--scenarios", nargs="+", metavar="NAME", choices=("task", "domain", "class"),
                      default=["task", "domain", "class"], help="scenarios (default: task domain class)")
    cont.add_argument("--learners", nargs="+", metavar="NAME", choices=("adam", "adagrad", "rehearsal"),
                      default=["adam", "adagrad", "rehearsal"], help="learners (default: adam adagrad rehearsal)")
    cont.set_defaults(func=_run_continual)
    parser.set_defaults(func=lambda args: _missing(parser))


def _common(parser, experiment, default_out, epochs_help) -> None:
    """The options both experiments take; defaults not written here are read from the
    experiment's ``run`` (``mphate.experiments.<experiment>.run``)."""
    def run_default(name):
        return function_default(f"mphate.experiments.{experiment}", "run", name)

    add_output_option(parser, metavar="DIR", default=default_out, help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, help=epochs_help)
    parser.add_argument("--data-dir", metavar="DIR",
                        help="MNIST files (the four IDX files, optionally .gz, or mnist.npz) instead of "
                        "the bundled digits")
    parser.add_argument("--quick", action="store_true",
                        help="tiny networks and few epochs: a smoke run, not the experiment")
    # SUPPRESS: absent unless given, so that the experiment's own default applies
    parser.add_argument("--n-landmark", type=landmark_value, default=argparse.SUPPRESS, metavar="N",
                        help="M-PHATE landmarks, or 'none' for every point (default: the experiment's setting)")
    parser.add_argument("--random-state", type=seed_int, default=run_default("seed"), metavar="SEED",
                        help="seed of the data, training and embedding (default: %(default)s)")
    add_deprecated_alias(parser, "--seed", "--random-state", dest="random_state", type=seed_int)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def _old_n_jobs(parser) -> None:
    add_deprecated_alias(parser, "--n-jobs", "--workers", dest="workers", type=positive_int,
                         why=" for experiments (it counted processes; --n-jobs means threads elsewhere)")


def _missing(parser) -> int:
    parser.print_help()
    return 2


def _check(args) -> None:
    if args.data_dir is not None:
        from pathlib import Path

        if not Path(args.data_dir).exists():
            raise FileNotFoundError(f"no MNIST data at {args.data_dir}")


def _landmarks(args) -> dict:
    """``n_landmark`` for the experiment's run when given; else nothing, and its default holds."""
    return {"n_landmark": args.n_landmark} if hasattr(args, "n_landmark") else {}


def _report(args, result) -> int:
    if not args.quiet:
        for path in result["files"].values():
            print(f"wrote {path}")
    return 0


def _run_generalization(args) -> int:
    from mphate.experiments import generalization

    _check(args)
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be positive; got {args.lr}")
    result = generalization.run(args.output, data_dir=args.data_dir, epochs=args.epochs, lr=args.lr,
                                quick=args.quick, workers=args.workers, scheduler=args.scheduler,
                                use_cache=not args.no_cache, embed_slices=args.embed_slices,
                                variants=args.networks, seed=args.random_state, common_t=args.common_t,
                                quiet=args.quiet, **_landmarks(args))
    _report(args, result)
    return report_failures("experiment generalization", result["failed"].items(),
                           len(result["rows"]) + len(result["failed"]),
                           noun="network", where="the outputs")


def _positive_t(text: str) -> int:
    return int_at_least(text, 1, "a positive integer diffusion time")


def _run_continual(args) -> int:
    from mphate.experiments import continual

    _check(args)
    if args.trace_every is not None and args.trace_every < 1:
        raise ValueError(f"--trace-every must be positive; got {args.trace_every}")
    result = continual.run(args.output, data_dir=args.data_dir, epochs=args.epochs, trace_every=args.trace_every,
                           quick=args.quick, n_jobs=args.workers, scenarios=args.scenarios,
                           learners=args.learners, seed=args.random_state, quiet=args.quiet, **_landmarks(args))
    return _report(args, result)
