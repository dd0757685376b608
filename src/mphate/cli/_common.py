"""What the sub-commands share: one option vocabulary, reading the trace, warnings as one-line messages.

The vocabulary: every command spells the same thing the same way. ``--random-state`` is the
seed, ``-o/--output`` what is written, ``--n-jobs`` threads, ``--workers N`` / ``--scheduler
ADDRESS`` processes (a local Dask cluster, or a running one: :func:`add_executor_options`),
``--n-landmark`` is parsed by :func:`landmark_value` everywhere, ``-q/--quiet``
silences progress lines. Old spellings stay as hidden aliases (:func:`add_deprecated_alias`)
that print one deprecation line on stderr.

The MPHATE parameters are listed once, in :data:`ESTIMATOR_OPTIONS`: one option per estimator
parameter, named ``--<param with dashes>``, its default read from ``MPHATE().get_params()``.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


# ------------------------------------------------------------------ value parsers (argparse type=)
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


def positive_int(text: str) -> int:
    return int_at_least(text, 1, "a positive integer")


def seed_int(text: str) -> int:
    """A seed that must be a number (a training run's, where 'none' has no meaning)."""
    return int_at_least(text, 0, "a non-negative integer")


def _float_in(text: str, low: float, high: float, expected: str, *, open_low=False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not (low < value if open_low else low <= value) or not value <= high:
        raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}")
    return value


def positive_float(text: str) -> float:
    return _float_in(text, 0.0, float("inf"), "a positive number", open_low=True)


def _gamma_value(text: str) -> float:
    return _float_in(text, -1.0, 1.0, "a number in [-1, 1]")


def _auto_or_positive(text: str):
    if text == "auto":
        return "auto"
    return int_at_least(text, 1, "'auto' or a positive integer")


def _t_value(text: str):
    if text in ("auto", "knee"):
        return text
    return int_at_least(text, 1, "'auto', 'knee' or a positive integer")


def _is_none(text: str) -> bool:
    return text.lower() == "none"


def landmark_value(text: str):
    """``--n-landmark``, on every command: an integer >= 2, or 'none' (or 0) for no landmarks."""
    if _is_none(text) or text == "0":
        return None
    return int_at_least(text, 2, "an integer >= 2 or 'none'")


def seed_value(text: str):
    """``--random-state``: a non-negative integer, or 'none' (a fresh draw each run)."""
    if _is_none(text):
        return None
    return int_at_least(text, 0, "a non-negative integer or 'none'")


def _threads_value(text: str):
    if _is_none(text):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a number of threads, -1 (all cores) or 'none', not {text!r}")
    return value


def _t_max_value(text: str) -> int:
    return int_at_least(text, 3, "an integer >= 3")


# ------------------------------------------------------------------ the estimator's options
@dataclass(frozen=True)
class EstimatorOption:
    """One MPHATE parameter as a command-line option ``--<param with dashes>``.

    ``type`` parses the text (None: an on/off switch ``--x/--no-x``); the default is never
    written here, it is read from the estimator when the option is added.
    """

    param: str
    type: object
    metavar: str | None
    help: str
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.param.replace("_", "-")


ESTIMATOR_OPTIONS = [
    EstimatorOption("n_components", int, None, "dimensions of the embedding", choices=(2, 3)),
    EstimatorOption("intraslice_knn", positive_int, "K", "neighbours that set each point's kernel bandwidth within its slice"),
    EstimatorOption("interslice_knn", positive_int, "K", "neighbours that set the bandwidth between one unit's slices"),
    EstimatorOption("decay", positive_float, "ALPHA", "alpha of the within-slice alpha-decay kernel"),
    EstimatorOption("t", _t_value, "T",
                    "diffusion time: a positive integer; 'auto', the candidate whose picture "
                    "keeps the trace's neighbourhoods best; or 'knee', the knee of the von Neumann entropy"),
    EstimatorOption("gamma", _gamma_value, "G", "potential, in [-1, 1]: 0 square root (M-PHATE), 1 log (PHATE)"),
    EstimatorOption("normalize", None, None,
                    "z-score each unit's activations across the trace inputs at each slice "
                    "(--no-normalize: use them raw)"),
    EstimatorOption("n_landmark", landmark_value, "N",
                    "landmarks the diffusion is compressed to, or 'none' to run on every point"),
    EstimatorOption("n_svd", positive_int, "K", "spectral coordinates used to cluster points into landmarks"),
    EstimatorOption("spectral_stride", _auto_or_positive, "K",
                    "compute the landmarks' spectral coordinates on every K-th slice, or 'auto': "
                    "1 under 20,000 points"),
    EstimatorOption("mds", str, None, "multidimensional scaling: metric (SMACOF) or classic",
                    choices=("metric", "classic")),
    EstimatorOption("mds_max_iter", positive_int, "N", "most SMACOF iterations"),
    EstimatorOption("mds_tol", positive_float, "TOL", "SMACOF stops when the stress falls by less than this fraction"),
    EstimatorOption("t_max", _t_max_value, "T", "largest t that t='auto' considers"),
    EstimatorOption("random_state", seed_value, "SEED",
                    "seed of the landmarks and MDS; 'none' draws a new picture each run, so give "
                    "an integer (e.g. --random-state 0) for reproducible pictures"),
    EstimatorOption("n_jobs", _threads_value, "N",
                    "threads; -1 all cores; 'none': one thread under 20,000 points, otherwise "
                    "the cores idle when the fit starts"),
    EstimatorOption("device", str, "DEVICE",
                    "where the stages after the kernel run: cpu (NumPy), torch (PyTorch on the CPU), cuda, "
                    "cuda:N or mps"),
]

# MPHATE parameters that are not options named after them, and what stands in for each
NOT_AN_OPTION = {
    "verbose": "-q/--quiet (0) and -v/--verbose (2); otherwise 1, one timed line per stage",
}


def estimator_defaults() -> dict:
    from mphate.embed.estimator import MPHATE

    return MPHATE().get_params()


def show_default(value) -> str:
    """A default as the user would type it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def add_estimator_options(parser, *, exclude=(), notes=None, defaults=None, title=None):
    """Add one option per MPHATE parameter (less ``exclude``), in an argument group.

    Each option's default is the estimator's and ``--help`` says it. ``defaults`` overrides it
    where a command's own function has another (``run_demo``'s ``n_landmark``, say: read from
    that function, not restated); ``notes`` maps a parameter to a command's own remark, shown
    after the default. Returns the group.
    """
    defaults = {**estimator_defaults(), **(defaults or {})}
    notes = notes or {}
    group = parser.add_argument_group(title or "embedding parameters (used when the embedding is computed)")
    for option in ESTIMATOR_OPTIONS:
        if option.param in exclude:
            continue
        default = defaults[option.param]
        note = f"; {notes[option.param]}" if option.param in notes else ""
        help_text = f"{option.help} (default: {show_default(default)}{note})".replace("%", "%%")
        if option.type is None:
            group.add_argument(option.flag, dest=option.param, action=_Switch, default=default, help=help_text)
        else:
            group.add_argument(option.flag, dest=option.param, action=_Given, type=option.type, default=default,
                               metavar=option.metavar, choices=option.choices, help=help_text)
    return group


def add_verbosity_options(parser) -> None:
    """``-q/--quiet`` and ``-v/--verbose``: the estimator's ``verbose`` 0 or 2 (otherwise 1)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("-v", "--verbose", dest="verbosity", action="count", default=0,
                        help="also the CPU time of each stage")


def given_estimator_params(args) -> dict:
    """The estimator parameters given on the command line (not their defaults)."""
    given = getattr(args, _GIVEN, set())
    return {name: getattr(args, name) for name in given if name in estimator_defaults()}


def estimator_from_args(args, **overrides):
    """An MPHATE configured from the options (each absent one at the estimator's default)."""
    from mphate.embed.estimator import MPHATE

    if getattr(args, "quiet", False) and getattr(args, "verbosity", 0):
        raise ValueError("-q and -v contradict each other; drop one of them")
    params = {name: getattr(args, name) for name in estimator_defaults() if hasattr(args, name)}
    params["verbose"] = 0 if getattr(args, "quiet", False) else 1 + min(getattr(args, "verbosity", 0), 1)
    params.update(overrides)
    return MPHATE(**params)


# ------------------------------------------------------------------ option actions
_GIVEN = "_given_options"  # namespace attribute: the dests set from the command line


def _note_given(namespace, dest) -> None:
    given = getattr(namespace, _GIVEN, None)
    if given is None:
        given = set()
        setattr(namespace, _GIVEN, given)
    given.add(dest)


class _Given(argparse.Action):
    """Store the value and remember that it was given (a command may pass only those on)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _note_given(namespace, self.dest)


class _Switch(argparse.Action):
    """``--x`` / ``--no-x``: on or off, remembered as given."""

    def __init__(self, option_strings, dest, **kwargs):
        negated = ["--no-" + flag[2:] for flag in option_strings if flag.startswith("--")]
        super().__init__([*option_strings, *negated], dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith("--no-"))
        _note_given(namespace, self.dest)

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


class _Deprecated(argparse.Action):
    """An old spelling: does what ``new`` does, after one line on stderr saying so."""

    def __init__(self, option_strings, dest, *, new, why="", **kwargs):
        self.new, self.why = new, why
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated{self.why}; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)
        _note_given(namespace, self.dest)


def add_deprecated_alias(parser, old: str, new: str, *, dest: str, why: str = "", **kwargs) -> None:
    """Keep ``old`` working as a hidden alias of the option ``new`` (same ``dest``).

    ``kwargs`` (``type``, ``nargs``...) should match ``new``'s; the alias has no default of its
    own, so ``new``'s applies. ``why`` (", it counted processes") is added to the warning.
    """
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, why=why, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **kwargs)


def add_executor_options(parser, *, verb: str = "embed", needs: str = "the runs' paths"):
    """``--workers N`` / ``--scheduler ADDRESS`` (one or the other): where each run's task goes,
    as :func:`mphate.runs.run_tasks` takes them; neither runs them in this process.

    ``verb`` says what each task does ("embed", "train and embed"), ``needs`` what the
    cluster's workers must be able to read. Returns the mutually exclusive group.
    """
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help=f"{verb} on a local Dask cluster of N worker processes (pip install \"mphate[dask]\")")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help=f"{verb} on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786); its "
                       f"workers must see {needs}")
    return where


def report_failures(command: str, failed, total: int, *, noun: str = "run", where: str = "the report") -> int:
    """Say on stderr which of ``total`` tasks failed (``failed``: (name, one-line error) pairs);
    0 when none did, else 1 (the exit status)."""
    failed = list(failed)
    if not failed:
        return 0
    messages = {message for _, message in failed}
    if len(failed) == total and len(messages) == 1:
        print(f"mphate {command}: error: every {noun} failed: {messages.pop()}", file=sys.stderr)
    else:
        for name, message in failed:
            print(f"mphate {command}: error: {noun} {name}: {message}", file=sys.stderr)
        print(f"mphate {command}: {len(failed)} of {total} {noun}s failed; the others "
              f"are in {where} (rerun to retry only those)", file=sys.stderr)
    return 1


def add_output_option(parser, *, metavar: str, help: str, default=None) -> None:
    """``-o/--output``, with ``--out`` kept as a deprecated alias."""
    parser.add_argument("-o", "--output", metavar=metavar, default=default, help=help)
    add_deprecated_alias(parser, "--out", "-o/--output", dest="output", metavar=metavar)


# ------------------------------------------------------------------ reading and writing
def read_trace(path):
    """The trace at ``path``; FileNotFoundError "no trace at PATH" when nothing is there."""
    from mphate.traces.io import as_trace

    return as_trace(Path(path))  # load_trace checks that the path exists, and says so


def default_name(path, suffix: str) -> Path:
    """``./<trace name><suffix>``: beside the user, not inside a possibly read-only store."""
    stem = Path(path).resolve().name
    for ext in (".npz", ".npy", ".mat"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return Path(stem + suffix)


def function_default(module: str, function: str, parameter: str):
    """The default of ``parameter`` in ``module.function``'s signature (read, not restated)."""
    import importlib
    import inspect

    func = getattr(importlib.import_module(module), function)
    return inspect.signature(func).parameters[parameter].default


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
