"""``mphate report PATH``: a report folder (interactive HTML, PNG figures, embedding) for a trace."""
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
        "report",
        help="write a report folder: interactive HTML page, PNG figures and the embedding",
        description="Embed a trace (store directory, .npz, .npy or reference .mat) in 2-D and "
        "3-D and write a folder with index.html (interactive, works offline), colorings.png, "
        "one PNG per colouring, 3d.png, entropy.png (how t was chosen) and embedding.npz. Give "
        "--embedding (and --embedding-3d) from `mphate embed` to skip the computation.",
    )
    parser.add_argument("path", help="trace store directory, or a .npz/.npy/.mat trace file")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="folder to write (default: ./<trace name>_report)")
    parser.add_argument("--title", help="page and figure title (default: M-PHATE: <trace name>)")
    parser.add_argument("--embedding", metavar="FILE", help="2-D embedding .npz from `mphate embed`")
    parser.add_argument("--embedding-3d", metavar="FILE", help="3-D embedding .npz (mphate embed --n-components 3)")
    parser.add_argument("--no-3d", action="store_true", help="skip the 3-D embedding and view")
    parser.add_argument("--dpi", type=int, default=200, help="resolution of the PNGs (default: %(default)s)")
    add_verbosity_options(parser)
    add_estimator_options(parser, notes={"n_components": "the 3-D view is computed as well unless --no-3d"})
    parser.set_defaults(func=run)


def run(args) -> int:
    from mphate.traces.embedding_file import load_embedding
    from mphate.paths import ensure_writable_dir
    from mphate.plot.report import write_report

    if args.no_3d and args.embedding_3d:
        raise ValueError("--no-3d and --embedding-3d contradict each other; drop one of them")
    trace = read_trace(args.path)
    out_dir = ensure_writable_dir(Path(args.output) if args.output else default_name(args.path, "_report"))
    title = args.title or f"M-PHATE: {default_name(args.path, '')}"

    embedding_3d = load_embedding(args.embedding_3d, trace, key=_key_3d(args.embedding_3d)) if args.embedding_3d else None
    params = est = None
    with warnings_as_messages("report"):
        if args.embedding:
            embedding = load_embedding(args.embedding, trace)
        else:
            est = estimator_from_args(args)
            embedding = est.fit_transform(trace)
            params = {k: v for k, v in est.get_params().items() if k != "verbose"}
            if embedding_3d is None and embedding.shape[1] != 3 and not args.no_3d:
                # same estimator: the kernel and landmarks of the 2-D fit are reused
                embedding_3d = est.set_params(n_components=3).fit_transform(trace)
        paths = write_report(embedding, trace, out_dir, title=title, embedding_3d=embedding_3d,
                             dpi=args.dpi, params=params, estimator=est)
    if not args.quiet:
        for path in paths.values():
            print(f"wrote {path}")
    print(f"open {paths['html']} in a browser")
    return 0


def _key_3d(path) -> str:
    """A report's embedding.npz keeps its 3-D view as "embedding_3d"; `mphate embed` writes "embedding"."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            return "embedding_3d" if "embedding_3d" in getattr(npz, "files", ()) else "embedding"
    except (OSError, ValueError, AttributeError):
        return "embedding"  # load_embedding gives the clear message
