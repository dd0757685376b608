"""`mphate watch`'s server without a browser: the event stream, two viewers, a port in use, no store yet."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("plotly")

from mphate import MPHATE, Recorder  # noqa: E402
from mphate.cli import main  # noqa: E402
from mphate.live import WatchServer  # noqa: E402
from mphate.traces.synthetic import make_trace  # noqa: E402

OPTIONS = dict(estimator=MPHATE(random_state=0, n_landmark=200, interslice_knn=5), poll_interval=0.05)


@pytest.fixture(scope="module")
def trace():
    return make_trace(n_slices=12, n_units=30, n_trace=20, random_state=0)


def record(rec, trace, slices):
    for s in slices:
        rec.record(s, {"a": trace.data[s, :15].T, "b": trace.data[s, 15:].T}, epoch=s + 1,
                   loss=float(trace.scalars["loss"][s]))


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class EventReader(threading.Thread):
    """Reads one /events stream into a list of (event, data) pairs."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.response = urllib.request.urlopen(url + "events", timeout=60)
        self.events = []

    def run(self):
        kind = None
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((kind, json.loads(line[6:])))
        except (OSError, ValueError):
            pass

    def frames(self):
        return [data for kind, data in self.events if kind == "frame"]

    def statuses(self):
        return [data for kind, data in self.events if kind == "status"]


def test_two_viewers_a_late_one_and_the_waiting_page(tmp_path, trace):
    path = tmp_path / "run.trace"
    with WatchServer(path, port=0, **OPTIONS) as server:
        url = server.url
        assert url.startswith("http://127.0.0.1:")
        status, page = get(url)
        assert status == 200 and b'id="live-status"' in page and b"https://" not in page.split(b"<footer")[0]
        assert get(url + "plotly.min.js")[1].startswith(b"/**")  # plotly.js, served from here
        assert get(url + "frame.json")[0] == 204  # no frame before the store exists
        first = EventReader(url)
        first.start()
        # no store yet: the page is told it is waiting for one
        wait_for(lambda: any(s["state"] == "waiting" and "waiting for a trace store" in s["message"]
                             for s in first.statuses()), what="a waiting status")
        with Recorder(path, trace_labels=trace.trace_labels) as rec:
            record(rec, trace, range(6))
            wait_for(lambda: first.frames() and first.frames()[-1]["n_slices"] == 6, what="a frame of 6 slices")
            # a viewer that connects mid-run gets the whole picture at once
            late = EventReader(url)
            late.start()
            wait_for(late.frames, what="the late viewer's first frame")
            assert late.frames()[0]["n_slices"] == 6
            record(rec, trace, range(6, 9))
            for reader in (first, late):  # both viewers see the run grow
                wait_for(lambda r=reader: r.frames()[-1]["n_slices"] == 9, what="9 slices")
            assert json.loads(get(url + "status.json")[1])["writer"] == "alive"
        wait_for(lambda: first.statuses()[-1]["writer"] == "gone", what="the writer gone")
        frame = first.frames()[-1]
        assert frame["live"]["frame"] >= 2 and len(frame["views"][0]["coords"]) == 2
        assert {c["name"] for c in frame["colorings"]} >= {"epoch", "layer", "class", "loss"}
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get(url + "nothing-here")


def test_a_port_in_use_is_one_clear_error(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=rf"port {port} .* already in use.*--port 0"):
            WatchServer(tmp_path / "run.trace", port=port)
        assert main(["watch", str(tmp_path / "run.trace"), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mphate watch: error: port" in err and "--port" in err


def test_watch_cli_options_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["watch", str(tmp_path), "--port", "70000"])
    assert "port number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="refit_growth"):
        WatchServer(tmp_path, port=0, incremental={"refit_growth": -1})


def test_late_scalars_update_the_picture_without_new_slices(tmp_path, trace):
    path = tmp_path / "run.trace"
    with WatchServer(path, port=0, **OPTIONS) as server, Recorder(path) as rec:
        record(rec, trace, range(4))
        wait_for(lambda: (json.loads(get(server.url + "status.json")[1]).get("embedded") == 4), what="4 slices")
        rec.log(val_loss=0.5)  # known after the slice: the page's curves and colourings get it
        frame = wait_for(lambda: "val_loss" in json.loads(get(server.url + "frame.json")[1] or b"{}").get("scalars", {}),
                         what="val_loss in the frame")
        assert frame


def test_a_stopped_run_is_refitted_so_its_last_picture_is_a_full_fit(tmp_path, trace):
    path = tmp_path / "run.trace"
    options = {**OPTIONS, "incremental": {"refit_growth": None, "refit_tolerance": None}}
    with WatchServer(path, port=0, **options) as server:
        with Recorder(path) as rec:
            record(rec, trace, range(2))  # the first fit
            wait_for(lambda: server.session.status.get("embedded") == 2, what="the first fit")
            record(rec, trace, range(2, 7))  # placed out of sample while the writer is alive
            wait_for(lambda: server.session.status.get("embedded") == 7, what="7 slices")
            assert server.session.status["last_frame"]["kind"] == "extend"
        # the writer is gone: the slices placed out of sample are fitted with the rest
        status = wait_for(lambda: (s := server.session.status)["last_frame"]["reason"] == "the run stopped" and s,
                          what="the final refit")
        assert status["writer"] == "gone" and status["last_frame"]["kind"] == "refit"
        frame = wait_for(lambda: (f := json.loads(get(server.url + "frame.json")[1]))["live"]["kind"] == "refit" and f,
                         what="the refit frame")
        assert frame["live"]["n_slices"] == 7
