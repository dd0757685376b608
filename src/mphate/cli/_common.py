"""What the sub-commands share: the embedding options, reading the trace, warnings as one-line messages."""
from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path


def int_at_least(text: str, minimum: int, expected: str) -> int:
    """``text`` as an integer of at least ``minimum``: the core of an argparse ``type=`` function.

    Anything else, a non-number included, raises ArgumentTypeError "must be <expected>, not
    '<text>'", which argparse prints as that option's error.
    """
    try:
        value = int(text)
    except ValueError:
        value = None  # not a number: the same message as a number out of range
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}")
    return value


def add_embedding_arguments(parser, *, n_components_default) -> None:
    """The MPHATE parameters as options (defaults: the estimator's, i.e. the paper's)."""
    group = parser.add_argument_group("embedding parameters (used when the embedding is computed)")
    group.add_argument("--n-components", type=int, choices=(2, 3), default=n_components_default,
                       help="dimensions of the embedding (default: %(default)s)" if n_components_default
                       else "dimensions of the embedding (default: 2, or 3 for a 3-D view)")
    group.add_argument("--t", type=_t_value, default=None, metavar="T",
                       help="diffusion time: a positive integer or 'auto' (default: auto)")
    group.add_argument("--gamma", type=float, default=None,
                       help="potential: 0 square root (M-PHATE default), 1 log (PHATE)")
    group.add_argument("--intraslice-knn", type=int, default=None, metavar="K",
                       help="neighbours for the within-slice kernel bandwidth (default: 2)")
    group.add_argument("--interslice-knn", type=int, default=None, metavar="K",
                       help="neighbours for the across-slice kernel bandwidth (default: 25)")
    group.add_argument("--decay", type=float, default=None, help="alpha of the within-slice kernel (default: 5)")
    # SUPPRESS: absent unless given, since "none" (no landmarks) is itself a value
    group.add_argument("--n-landmark", type=_landmark_value, default=argparse.SUPPRESS, metavar="N",
                       help="landmarks to compress the diffusion to, or 'none' (default: 4000)")
    group.add_argument("--spectral-stride", type=_stride_value, default=None, metavar="K",
                       help="compute the landmarks' spectral coordinates on every K-th slice, or "
                            "'auto' (default: auto, which is 1 under 20,000 points)")
    group.add_argument("--random-state", type=int, default=0, metavar="SEED",
                       help="seed, so reruns give the same picture (default: %(default)s)")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def _t_value(text: str):
    if text == "auto":
        return "auto"
    return int_at_least(text, 1, "'auto' or a positive integer")


def _stride_value(text: str):
    if text == "auto":
        return "auto"
    return int_at_least(text, 1, "'auto' or a positive integer")


def _landmark_value(text: str):
    if text.lower() in ("none", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'none', not {text!r}") from None


_PARAMS = ("t", "gamma", "intraslice_knn", "interslice_knn", "decay", "spectral_stride")


def estimator_from_args(args, n_components: int):
    """An MPHATE configured from the command-line options that were given."""
    from mphate.embed.estimator import MPHATE

    params = {name: getattr(args, name) for name in _PARAMS if getattr(args, name, None) is not None}
    if hasattr(args, "n_landmark"):
        params["n_landmark"] = args.n_landmark
    return MPHATE(n_components=n_components, random_state=args.random_state,
                  verbose=0 if args.quiet else 1, **params)


def read_trace(path):
    """The trace at ``path``; FileNotFoundError naming it when nothing is there."""
    from mphate.traces.io import as_trace

    if not Path(path).exists():
        raise FileNotFoundError(f"no trace at {path}: the path does not exist")
    return as_trace(Path(path))


def default_name(path, suffix: str) -> Path:
    """``./<trace name><suffix>``: beside the user, not inside a possibly read-only store."""
    stem = Path(path).resolve().name
    for ext in (".npz", ".npy", ".mat"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return Path(stem + suffix)


@contextmanager
def warnings_as_messages(command: str):
    """Show library warnings (e.g. a colouring left out) as one line each, not with source lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            # a refit (the 3-D view of a report) repeats the 2-D fit's warnings: show each once
            for message in dict.fromkeys(str(w.message) for w in caught):
                print(f"mphate {command}: warning: {message}", file=sys.stderr)
