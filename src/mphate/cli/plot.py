"""``mphate plot PATH``: a publication-quality image of a trace's M-PHATE embedding."""
from __future__ import annotations

from pathlib import Path

from mphate.cli._common import (
    add_estimator_options,
    add_verbosity_options,
    default_name,
    estimator_from_args,
    given_estimator_params,
    read_trace,
    warnings_as_messages,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a trace's embedding coloured by epoch, layer and most-active class (PNG)",
        description="Draw the M-PHATE embedding of a trace (store directory, .npz, .npy or "
        "reference .mat) as side-by-side panels, one per colouring. The embedding is computed "
        "unless --embedding gives one saved by `mphate embed`.",
    )
    parser.add_argument("path", help="trace store directory, or a .npz/.npy/.mat trace file")
    parser.add_argument("--embedding", metavar="FILE", help="embedding .npz from `mphate embed` (default: compute it)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="image to write, .png/.pdf/.svg (default: ./<trace name>_mphate.png)")
    parser.add_argument("--color-by", metavar="NAMES",
                        help="comma-separated colourings: epoch, layer, class (most-active class), unit, "
                        "or a logged scalar such as loss (default: epoch,layer,class, those the trace has)")
    parser.add_argument("--3d", dest="three_d", action="store_true",
                        help="3-D panels: needs a 3-component embedding (computed with 3 unless --embedding is given)")
    parser.add_argument("--dpi", type=int, default=200, help="resolution of the image (default: %(default)s)")
    add_verbosity_options(parser)
    add_estimator_options(parser, notes={"n_components": "3 with --3d"})
    parser.set_defaults(func=run)


def run(args) -> int:
    from mphate.traces.embedding_file import load_embedding
    from mphate.paths import ensure_parent_writable
    from mphate.plot.static import plot_colorings

    n_components = given_estimator_params(args).get("n_components", 3 if args.three_d else args.n_components)
    if args.three_d and n_components != 3:
        raise ValueError(f"--3d draws a 3-D view but --n-components {n_components} was asked for; drop one of them")
    est = estimator_from_args(args, n_components=n_components)  # bad parameters fail before reading
    trace = read_trace(args.path)
    suffix = "_mphate_3d.png" if args.three_d else "_mphate.png"
    output = ensure_parent_writable(Path(args.output) if args.output else default_name(args.path, suffix))
    color_by = [name.strip() for name in args.color_by.split(",") if name.strip()] if args.color_by else None
    with warnings_as_messages("plot"):
        if args.embedding:
            embedding = load_embedding(args.embedding, trace)
            if args.three_d and embedding.shape[1] != 3:
                raise ValueError(
                    f"--3d needs a 3-component embedding, but {args.embedding} has {embedding.shape[1]} "
                    f"columns; compute one with: mphate embed {args.path} --n-components 3"
                )
        else:
            embedding = est.fit_transform(trace)
        plot_colorings(embedding, trace, output, color_by=color_by, dpi=args.dpi)
    print(f"wrote {output}")
    return 0
