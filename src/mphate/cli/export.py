"""``mphate export STORE --zarr OUT``: a trace as a zarr group, for tools that read zarr."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a trace as a zarr group (xarray, zarr and other tools read it)",
        description="Write a trace store (or .npz/.npy/.mat trace file) as a zarr group holding "
        "one array, 'activation' (slice, unit, trace_input), with coordinates epoch, step, each "
        "logged scalar, layer and label, readable with xarray.open_zarr(OUT). A store is "
        "copied chunk by chunk, so memory stays small for large runs.",
    )
    parser.add_argument("path", metavar="STORE", help="trace store directory, or a .npz/.npy/.mat trace file")
    parser.add_argument("--zarr", metavar="OUT", required=True, help="zarr directory to create")
    parser.add_argument("--zarr-format", type=int, choices=(2, 3), default=2,
                        help="zarr format; 2 is what most readers understand (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mphate.traces.arrays import export_zarr

    source = Path(args.path)
    if not source.exists():
        raise FileNotFoundError(f"no trace at {source}")
    out = export_zarr(source, args.zarr, overwrite=args.overwrite, zarr_format=args.zarr_format,
                      progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {out}")
    return 0
