"""``mphate embed PATH``: compute an M-PHATE embedding of a trace and save it as ``.npz``."""
from __future__ import annotations

from pathlib import Path

from mphate.cli._common import (
    add_estimator_options,
    add_verbosity_options,
    default_name,
    estimator_from_args,
    read_trace,
    warnings_as_messages,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="compute the M-PHATE embedding of a trace and save it (.npz)",
        description="Embed every hidden unit at every slice of a trace (store directory, .npz, "
        ".npy or reference .mat) and write the coordinates to an .npz that `mphate plot` and "
        "`mphate report` accept with --embedding.",
    )
    parser.add_argument("path", help="trace store directory, or a .npz/.npy/.mat trace file")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write the embedding (default: ./<trace name>_embedding.npz)")
    add_verbosity_options(parser)
    add_estimator_options(parser, title="embedding parameters")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mphate.traces.embedding_file import save_embedding
    from mphate.paths import ensure_parent_writable

    est = estimator_from_args(args)
    trace = read_trace(args.path)
    output = Path(args.output) if args.output else default_name(args.path, "_embedding.npz")
    ensure_parent_writable(output)  # fail before a long computation, not after
    with warnings_as_messages("embed"):
        embedding = est.fit_transform(trace)
    params = {k: v for k, v in est.get_params().items() if k != "verbose"}
    save_embedding(output, embedding, trace, params=params)
    if not args.quiet:
        print(f"wrote {output} ({embedding.shape[0]} points x {embedding.shape[1]} components)")
    return 0
