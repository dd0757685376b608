"""``mphate watch PATH``: a live view of a trace store while another process records into it."""
from __future__ import annotations

from mphate.cli._common import add_estimator_options, estimator_from_args, positive_float, positive_int


def _port(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535 (0: any free port), not {text!r}")
    return value


def _fraction_or_none(text: str):
    return None if text.lower() == "none" else positive_float(text)


def add_parser(subparsers) -> None:
    from mphate.live.server import DEFAULT_PORT

    parser = subparsers.add_parser(
        "watch",
        help="serve a live view of a trace store that is being recorded (a page that updates itself)",
        description="Follow a trace store while a training run writes it, embed each new slice "
        "as it lands (out of sample, with an aligned refit now and then) and serve a page "
        "that grows with the run: the report's viewer plus a status line (slices so far, the "
        "last epoch and step, fitting or idle, the writer training or stopped). The store may "
        "not exist yet; the view survives the trainer stopping and resumes when a resumed run "
        "appends. Everything is served from this machine. Stop with Ctrl-C.",
    )
    parser.add_argument("path", help="trace store directory (need not exist yet)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: %(default)s, this machine only; "
                        "0.0.0.0 lets other machines connect)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help="port (default: %(default)s; 0: any free port)")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument("--poll-interval", type=positive_float, default=0.5, metavar="S",
                        help="seconds between looks at the store (default: %(default)s)")
    live = parser.add_argument_group("update rule (docs/live.md)")
    live.add_argument("--refit-growth", type=_fraction_or_none, default=0.25, metavar="F",
                      help="refit when the trace grew by this fraction since the last fit, or "
                      "'none' (default: %(default)s)")
    live.add_argument("--refit-every", type=positive_int, default=None, metavar="N",
                      help="also refit every N slices (default: off)")
    live.add_argument("--refit-tolerance", type=_fraction_or_none, default=0.05, metavar="D",
                      help="refit when new slices preserve neighbourhoods this much worse than "
                      "the last fit, or 'none' (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no address line on stderr")
    parser.add_argument("--log-requests", action="store_true", help="log every HTTP request to stderr")
    add_estimator_options(parser, exclude=("verbose",), defaults={"random_state": 0},
                          notes={"random_state": "fixed, so successive refits look alike"},
                          title="embedding parameters")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mphate.live.server import WatchServer

    estimator = estimator_from_args(args, verbose=0)
    incremental = dict(refit_growth=args.refit_growth, refit_every=args.refit_every,
                       refit_tolerance=args.refit_tolerance)
    server = WatchServer(args.path, host=args.host, port=args.port, estimator=estimator,
                         incremental=incremental, poll_interval=args.poll_interval,
                         verbose=args.log_requests)
    # the address goes to stdout even with -q: a script that started us on port 0 needs it
    print(f"mphate watch: serving {args.path} at {server.url}", flush=True)
    if not args.quiet and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"mphate watch: listening on {args.host}: other machines can see this run", flush=True)
    if args.open:
        server.open_browser()
    server.serve_forever()
    return 0
