"""``mphate watch``: a local web server that shows a training run's embedding as it grows.

The standard library's ``ThreadingHTTPServer`` and server-sent events (SSE): no dependency,
nothing to install, and one-way pushes are all a view needs (docs/live.md weighs the
alternatives). Routes:

======================  ====================================================================
``/``                   the page: the report's viewer, a status line, the event-stream client
``/plotly.min.js``      plotly.js from the installed ``plotly`` package (no CDN)
``/events``             SSE: ``status`` and ``frame`` events, the latest of each on connect
``/frame.json``         the latest frame (the viewer's whole payload); 204 before the first
``/status.json``        the latest status
======================  ====================================================================
"""
from __future__ import annotations

import errno
import sys
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mphate.live.session import LiveSession
from mphate.plot.html import LIVE_PLOTLY_PATH, live_page_html, plotly_js

__all__ = ["WatchServer", "watch", "DEFAULT_PORT"]

DEFAULT_PORT = 8050
#: an SSE comment this often keeps proxies from closing an idle stream and finds dead pages
KEEPALIVE_SECONDS = 15.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "mphate-watch"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.server.watch.verbose:
            super().log_message(format, *args)

    def do_GET(self):  # noqa: N802 - http.server's naming
        route = self.path.split("?", 1)[0]
        watch: WatchServer = self.server.watch
        if route in ("/", "/index.html"):
            self._send(watch.page, "text/html; charset=utf-8")
        elif route == "/" + LIVE_PLOTLY_PATH:
            self._send(watch.plotly, "application/javascript; charset=utf-8", cache=True)
        elif route == "/events":
            self._events(watch)
        elif route == "/frame.json":
            frame = watch.session.broadcast.frame
            if frame:
                self._send(frame, "application/json")
            else:
                self.send_response(HTTPStatus.NO_CONTENT)
                self.send_header("Content-Length", "0")
                self.end_headers()
        elif route == "/status.json":
            self._send(watch.session.broadcast.status, "application/json")
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "mphate watch serves /, /events, /frame.json and /status.json")

    def _send(self, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _events(self, watch) -> None:
        """Stream status and frame events until the page goes away or the server stops."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        broadcast = watch.session.broadcast
        frame_seen = status_seen = 0
        try:
            self.wfile.write(b"retry: 1000\n\n")  # reconnect after 1 s if the stream drops
            while not broadcast.closed and not watch.stopping:
                frame_version, frame, status_version, status = broadcast.wait(
                    frame_seen, status_seen, KEEPALIVE_SECONDS)
                chunks = []
                if status_version > status_seen and status:
                    chunks.append(b"event: status\ndata: " + status + b"\n\n")
                if frame_version > frame_seen and frame:
                    chunks.append(b"event: frame\ndata: " + frame + b"\n\n")
                frame_seen, status_seen = frame_version, status_version
                self.wfile.write(b"".join(chunks) or b": keep-alive\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page was closed or reloaded: its stream ends here, others go on


class WatchServer:
    """Serve the live view of the trace store at ``path``.

    Parameters
    ----------
    path : str or Path
        Trace store directory; it need not exist yet (the page says it is waiting).
    host : str, default "127.0.0.1"
        Interface to listen on: this machine only by default. "0.0.0.0" lets other machines
        connect (anyone who can reach the port then sees the run).
    port : int, default 8050
        0 takes any free port (see :attr:`url`).
    estimator, incremental, poll_interval, title, nice
        See :class:`~mphate.live.session.LiveSession`.
    verbose : bool
        Log every request to stderr.

    Use :meth:`start` (background threads, returns at once) or :meth:`serve_forever`
    (blocks; Ctrl-C stops it), then :meth:`stop`; also a context manager.
    """

    def __init__(self, path, *, host="127.0.0.1", port=DEFAULT_PORT, estimator=None, incremental=None,
                 poll_interval=0.5, title=None, nice=None, verbose=False):
        self.session = LiveSession(path, estimator=estimator, incremental=incremental,
                                   poll_interval=poll_interval, title=title, nice=nice)
        self.verbose = verbose
        self.stopping = False
        self.page = live_page_html(self.session.title).encode()
        self.plotly = plotly_js().encode()
        self._httpd = _bind(host, int(port))
        self._httpd.watch = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    @property
    def path(self) -> Path:
        return self.session.path

    def start(self) -> "WatchServer":
        """Start following the store and serving, on daemon threads."""
        self.session.start()
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="mphate-watch-http", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until interrupted (KeyboardInterrupt propagates after a clean stop)."""
        self.session.start()
        try:
            self._httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and following; every open page's stream ends."""
        if self.stopping:
            return
        self.stopping = True
        self.session.stop()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
        self._httpd.server_close()

    def open_browser(self) -> None:
        webbrowser.open(self.url)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an open page must not keep the process alive


def _bind(host: str, port: int) -> _Server:
    """The listening server, or one clear error for a port in use or a host not found."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    try:
        return _Server((host, port), _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {port} on {host} is already in use (another `mphate watch`, or another "
                f"server); choose another with --port N, or --port 0 for any free port"
            ) from None
        if exc.errno == errno.EACCES:
            raise ValueError(f"no permission to listen on port {port}; ports below 1024 need root: "
                             f"choose --port {DEFAULT_PORT}") from None
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def watch(store, *, host="127.0.0.1", port=DEFAULT_PORT, open_browser=False, quiet=False, **options) -> WatchServer:
    """Start the live view of a trace store in this process, on background threads.

    Parameters
    ----------
    store : str, Path, TraceStore, or a recorder (Recorder, TorchRecorder, a trace callback)
        What to follow; a recorder is followed through its store path (it must have one).
    port : int, default 8050
        When it is taken, any free port is used instead (with a warning): a busy port must
        not stop a training run. 0 takes any free port.
    open_browser : bool
        Open the page in the default browser.
    quiet : bool
        Do not print the page's address to stderr.
    **options
        Passed to :class:`WatchServer` (estimator, incremental, poll_interval, title, nice).

    Returns
    -------
    WatchServer, started; ``.url`` is the page, ``.stop()`` ends it.
    """
    path = store_path(store)
    try:
        server = WatchServer(path, host=host, port=port, **options)
    except ValueError as exc:
        if "already in use" not in str(exc) or port == 0:
            raise
        import warnings

        warnings.warn(f"{exc}; serving the live view on a free port instead", RuntimeWarning, stacklevel=2)
        server = WatchServer(path, host=host, port=0, **options)
    server.start()
    if not quiet:
        print(f"mphate: watching {path} live at {server.url}", file=sys.stderr, flush=True)
    if open_browser:
        server.open_browser()
    return server


def store_path(store) -> Path:
    """The store directory of a path, a TraceStore or a recorder."""
    if isinstance(store, (str, Path)) or hasattr(store, "__fspath__"):
        return Path(store)
    for holder in (store, getattr(store, "recorder", None)):
        path = getattr(holder, "path", None)
        if path is not None:
            return Path(path)
    raise ValueError(
        f"cannot watch a {type(store).__name__} without a store on disk: record into a path "
        f"(e.g. TorchRecorder(model, X_trace, 'runs/mlp.trace')) and watch that"
    )
