"""``mphate compare PATH``: the paper's Table 1, M-PHATE against other embeddings of a trace."""
from __future__ import annotations

import argparse

from mphate.cli._common import add_output_option, estimator_defaults, function_default, landmark_value, seed_int

_RUN = ("mphate.experiments.compare", "run")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="the paper's Table 1: neighbourhood preservation of M-PHATE and other methods",
        description="Embed a trace with M-PHATE, PHATE on the flattened trace (our implementation "
        "of PHATE's published method), diffusion maps, Isomap and t-SNE on the flattened trace "
        "and on the multislice graph's geodesic distances, and umap-learn's AlignedUMAP when "
        "installed; score intraslice and interslice neighbourhood preservation (in the z-scored "
        "and in the raw activation space) and time; write compare_table.csv, compare_scores.csv, "
        "compare_summary.json and the figure compare.png. Methods that need all pairwise "
        "distances, or that are too slow at full size, run on an evenly spaced subsample of "
        "slices and units, which the output says; every method is scored on that subsample.",
    )
    parser.add_argument("path", help="trace store directory or .npz/.npy/.mat trace file; or 'digits' "
                        "to train the generalisation experiment's vanilla network on the bundled digits "
                        "(300 epochs, traced every 3) and compare on its trace")
    add_output_option(parser, metavar="DIR", default="mphate_compare", help="output folder (default: %(default)s)")
    parser.add_argument("--methods", metavar="M", nargs="+",
                        help="methods to run (default: all): mphate phate dm isomap tsne dm_graph "
                        "isomap_graph tsne_graph aligned_umap")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 40], metavar="K",
                        help="neighbourhood sizes (default: 10 40)")
    parser.add_argument("--max-points", type=int, default=6000, metavar="N",
                        help="size of the subsample for the methods that cannot take the full trace "
                        "(default: %(default)s)")
    phate_landmarks = function_default("mphate.embed.flat", "phate_flattened", "n_landmark")
    parser.add_argument("--n-landmark", type=landmark_value, default=argparse.SUPPRESS, metavar="N",
                        help="landmarks for M-PHATE and PHATE, or 'none' for every point (default: "
                        f"each one's own, {estimator_defaults()['n_landmark']} and {phate_landmarks})")
    parser.add_argument("--epochs", type=int, default=300,
                        help="with 'digits': training epochs (default: %(default)s)")
    parser.add_argument("--trace-every", type=int, default=3, metavar="N",
                        help="with 'digits': epochs between slices (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="with 'digits': a tiny network (a smoke run, not the experiment)")
    parser.add_argument("--random-state", type=seed_int, default=function_default(*_RUN, "random_state"),
                        metavar="SEED", help="seed of every method and, with 'digits', of the training "
                        "(default: %(default)s, so reruns give the same table)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mphate.cli._common import read_trace
    from mphate.experiments import compare
    from mphate.paths import ensure_writable_dir

    for k in args.k:
        if k < 1:
            raise ValueError(f"--k values must be positive; got {k}")
    if args.max_points < 100:
        raise ValueError(f"--max-points must be at least 100; got {args.max_points}")
    out = ensure_writable_dir(args.output)  # fail before a long computation, not after
    if args.path == "digits":
        trace = compare.digits_trace(args.epochs, args.trace_every, seed=args.random_state, quick=args.quick)
        from mphate.traces.io import save_npz

        save_npz(trace, out / "digits_trace.npz")
    else:
        trace = read_trace(args.path)
    result = compare.run(trace, out, methods=args.methods, ks=tuple(args.k), max_points=args.max_points,
                         n_landmark=_landmarks(args, trace), random_state=args.random_state, quiet=args.quiet)
    if not args.quiet:
        for name, path in result["files"].items():
            print(f"wrote {path}")
    return 0


def _landmarks(args, trace):
    """``compare.run``'s n_landmark: None means each method's own default there, so 'none' (no
    landmarks) becomes the number of points, which both methods read as every point its own."""
    if not hasattr(args, "n_landmark"):
        return None
    return trace.n_slices * trace.n_units if args.n_landmark is None else args.n_landmark
