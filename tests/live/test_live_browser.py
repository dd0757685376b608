"""The live view end to end in a real browser (Chromium driven by Playwright).

A training subprocess (PyTorch, TorchRecorder) writes a store; ``mphate watch`` runs in another
subprocess; the page's point count grows from frame to frame without a reload; killing the
trainer shows "stopped" with no server error; a resumed trainer brings the updates back.

Set MPHATE_SCREENSHOT_DIR to keep the page's screenshot there (docs/images/live.png is one).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from browser_helpers import VIEWPORT, cut_off_network, launch, require_browser

sync_api = require_browser("plotly", "torch")

UNITS = 32  # two hidden layers of 16

TRAINER = textwrap.dedent(
    """
    import sys, time, torch
    from mphate import TorchRecorder, select_trace_inputs
    from mphate.traces.datasets import load_digits_split

    path, epochs, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
    torch.manual_seed(0)
    torch.set_num_threads(1)
    X_train, y_train, _, _ = load_digits_split()
    X_trace, y_trace = select_trace_inputs(X_train, y_train, n_per_class=3)
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.LeakyReLU(0.1),
                                torch.nn.Linear(16, 16), torch.nn.LeakyReLU(0.1), torch.nn.Linear(16, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    X, y = torch.from_numpy(X_train), torch.from_numpy(y_train)
    rec = TorchRecorder(model, X_trace, path, labels=y_trace, layers=["0", "2"], resume=resume, fsync=False)
    first = rec.n_slices
    for epoch in range(first + 1, first + epochs + 1):
        for batch in torch.randperm(len(X)).split(256):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[batch]), y[batch])
            loss.backward()
            opt.step()
        rec.record(step=epoch, epoch=epoch, loss=loss.item())
        print("slice", rec.n_slices, flush=True)
        time.sleep(0.25)
    print("done", flush=True)
    time.sleep(3600)  # keep the store open, as a run still training would, until killed
    """
)


def start_trainer(path, epochs, resume=False):
    return subprocess.Popen([sys.executable, "-c", TRAINER, str(path), str(epochs), "resume" if resume else "new"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_line(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"{prefix!r} never came; stderr: {proc.stderr.read()}")


@pytest.fixture
def watch_server(tmp_path):
    store = tmp_path / "run.trace"
    server = subprocess.Popen(
        [sys.executable, "-m", "mphate", "watch", str(store), "--port", "0", "--n-landmark", "200",
         "--interslice-knn", "5", "--poll-interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = wait_line(server, "mphate watch: serving").split(" at ")[1].strip()
    yield store, url, server
    server.send_signal(signal.SIGINT)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_live_page_grows_survives_the_trainer_and_resumes(watch_server, tmp_path):
    store, url, server = watch_server
    trainers = []
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=VIEWPORT)
        # nothing from the network: every asset comes from the watch server
        blocked, errors = cut_off_network(page, allow=url)
        try:
            page.goto(url)
            page.wait_for_function("() => document.getElementById('live-writer').textContent.includes('waiting')")
            page.evaluate("() => { window.__sameDocument = 42; }")  # a reload would lose it
            trainers.append(start_trainer(store, 30))

            def shown():
                return page.evaluate("() => window.mphateReport.pointsShown()")

            page.wait_for_function("() => window.mphateLive.frames() >= 1 && window.mphateReport.pointsShown() > 0",
                                   timeout=90_000)
            first_frames, first_points = page.evaluate("() => window.mphateLive.frames()"), shown()
            assert first_points % UNITS == 0
            page.wait_for_function(f"() => window.mphateReport.pointsShown() > {first_points}", timeout=90_000)
            assert page.evaluate("() => window.mphateLive.frames()") > first_frames
            assert page.evaluate("() => window.__sameDocument") == 42  # grew without a reload
            page.wait_for_function("() => document.getElementById('live-writer').textContent === 'training'")
            wait_line(trainers[0], "done")
            page.wait_for_function(f"() => window.mphateReport.pointsShown() === {30 * UNITS}", timeout=90_000)
            assert "30 slices" in page.text_content("#live-slices")
            assert "epoch 30" in page.text_content("#live-last")
            screenshot(page, tmp_path)

            # the trainer dies: the page says so, the server goes on
            trainers[0].kill()
            trainers[0].wait(30)
            page.wait_for_function("() => document.getElementById('live-writer').textContent === 'stopped'",
                                   timeout=30_000)
            assert server.poll() is None

            # a resumed run appends, and the page follows again
            trainers.append(start_trainer(store, 6, resume=True))
            page.wait_for_function(f"() => window.mphateReport.pointsShown() === {36 * UNITS}", timeout=120_000)
            page.wait_for_function("() => document.getElementById('live-writer').textContent === 'training'")
            assert page.evaluate("() => window.__sameDocument") == 42
            assert errors == [] and blocked == []
        finally:
            for trainer in trainers:
                trainer.kill()
                trainer.wait(30)
            browser.close()
    server.send_signal(signal.SIGINT)
    server.wait(20)
    err = server.stderr.read()
    assert "Traceback" not in err and "error" not in err.lower().replace("interrupted", ""), err


def screenshot(page, tmp_path):
    shot = tmp_path / "live.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
    keep = os.environ.get("MPHATE_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "live.png")
