"""``mphate`` command line: a thin shell over the library.

Each sub-command lives in its own module with ``add_parser(subparsers)`` registering it and
setting ``func``; importing heavy dependencies is deferred to the command's run function. The
options every command shares, and their names, are in :mod:`mphate.cli._common`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# module name under mphate.cli for each sub-command, in help order; a new command is a module
# with add_parser(subparsers) and one more name here
_COMMAND_MODULES = [
    "demo",
    "info",
    "embed",
    "plot",
    "report",
    "compare",
    "compare_runs",
    "export",
    "experiment",
    "watch",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mphate", description="Multislice PHATE: see how a network's hidden units learn."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"mphate.cli.{name}").add_parser(sub)
    return parser


def _version() -> str:
    from mphate import __version__

    return f"mphate {__version__}"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError, ImportError, KeyError) as exc:
        # user-facing problems: one clear line, no traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mphate {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mphate {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
