"""``mphate compare-runs RUN... -o DIR``: one embedding per run, side by side, with a table."""
from __future__ import annotations

import sys
from pathlib import Path

from mphate.cli._common import (
    add_estimator_options,
    add_executor_options,
    add_output_option,
    given_estimator_params,
    positive_int,
    report_failures,
    warnings_as_messages,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare-runs",
        help="embed several runs with the same parameters and show them side by side",
        description="Embed each run (a trace store or .npz/.npy/.mat trace file) with M-PHATE, "
        "the same parameters for all, and write DIR/index.html (one panel per run, shared "
        "colourings and colour scales, a sortable table), DIR/grid.png, DIR/runs.csv "
        "(visualization variance, intraslice/interslice neighbourhood preservation, task-switch "
        "ARI, final losses, memorization error per run), DIR/summary.json and DIR/cache/ (a "
        "rerun embeds only runs not done yet). A run that fails is an error row; the others "
        "are kept. --workers or --scheduler run each embedding as a Dask task.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="trace store or trace file; NAME=PATH names the run (default: the file name)")
    add_output_option(parser, metavar="DIR", default="compare-runs",
                      help="folder to write (default: %(default)s)")
    add_executor_options(parser)
    parser.add_argument("--title", help="page and figure title (default: M-PHATE: runs compared)")
    parser.add_argument("--dpi", type=positive_int, default=150, help="resolution of grid.png (default: %(default)s)")
    parser.add_argument("--max-points-per-panel", type=positive_int, default=20000, metavar="N",
                        help="runs with more points show every k-th slice in the page; the PNG "
                        "shows all (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="embed every run again, ignoring DIR/cache")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or file list")
    add_estimator_options(parser, exclude=("n_components",), defaults={"random_state": 0},
                          notes={"random_state": "fixed, so that a cached run means the same picture"})
    parser.set_defaults(func=run)


def parse_runs(items):
    """RunSpecs from the RUN arguments: a path, or NAME=PATH when the whole text is no path."""
    from mphate.runs import RunSpec, resolve_runs

    named, unnamed = {}, []
    for i, item in enumerate(items):
        name, sep, path = item.partition("=")
        if sep and name and not Path(item).exists() and Path(path).exists():
            named[i] = (name, path)
        else:
            unnamed.append((i, item))
    auto = resolve_runs([p for _, p in unnamed]) if unnamed else []
    specs = dict(named)
    specs.update({i: (spec.name, spec.path) for (i, _), spec in zip(unnamed, auto)})
    return resolve_runs([RunSpec(*specs[i]) for i in range(len(items))])


def run(args) -> int:
    from mphate.runs import compare_runs

    runs = parse_runs(args.runs)
    with warnings_as_messages("compare-runs"):
        comparison = compare_runs(
            runs, args.output, workers=args.workers, scheduler=args.scheduler, title=args.title,
            quiet=args.quiet, use_cache=not args.no_cache, dpi=args.dpi,
            max_points_per_panel=args.max_points_per_panel, **given_estimator_params(args))
    if not args.quiet:
        for result in comparison.results:
            for message in result.get("warnings", []):
                print(f"mphate compare-runs: warning: run {result['name']}: {message}", file=sys.stderr)
        if comparison.note:
            print(f"mphate compare-runs: note: {comparison.note}", file=sys.stderr)
        for path in comparison.paths.values():
            print(f"wrote {path}")
    status = report_failures("compare-runs", [(r["run"], r["error"]) for r in comparison.rows
                                              if r["status"] == "error"], len(comparison.rows))
    print(f"open {comparison.paths['html']} in a browser")
    return status
