"""The HTML report in a real browser: Debian's Chromium driven by Playwright, network cut off."""
from __future__ import annotations

import numpy as np
import pytest
from browser_helpers import launch, open_offline, require_browser

sync_api = require_browser("plotly")

from plot_helpers import fake_embedding, synthetic_trace  # noqa: E402

from mphate.plot.html import report_html  # noqa: E402
from mphate.plot.palettes import TAB10  # noqa: E402

N_SLICES, LAYERS = 30, (40, 40, 20)
N_UNITS = sum(LAYERS)
N_POINTS = N_SLICES * N_UNITS  # 3000


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    trace = synthetic_trace(n_slices=N_SLICES, layer_sizes=LAYERS, n_classes=10, per_class=3)
    # the SVG page also shows a bare trace: no layers, no class labels, no loss logged
    bare = synthetic_trace(n_slices=N_SLICES, layer_sizes=LAYERS, layers=False, labels=False)
    bare.scalars = {}
    folder = tmp_path_factory.mktemp("report")
    paths = {"webgl": folder / "webgl.html", "svg": folder / "svg.html"}
    # WebGL is what large real runs get; SVG (small runs) lets the test count drawn markers
    paths["webgl"].write_text(report_html(fake_embedding(trace), trace, title="browser test", webgl=True,
                                          embedding_3d=fake_embedding(trace, 3)), encoding="utf-8")
    paths["svg"].write_text(report_html(fake_embedding(bare), bare, title="bare", webgl=False), encoding="utf-8")
    return trace, paths


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def idle(page):
    page.evaluate("() => window.mphateReport.whenIdle()")


def points_shown(page):
    return page.evaluate("() => window.mphateReport.pointsShown()")


def point_colors(page):
    """Marker colours of the non-empty point traces."""
    return set(page.evaluate("""() => document.getElementById('embedding').data
        .filter(t => String(t.uid).startsWith('points-') && t.x.length > 0)
        .map(t => t.marker.color)"""))


def trace_length(page, uid):
    return page.evaluate(f"""() => {{
        const t = document.getElementById('embedding').data.find(t => t.uid === '{uid}');
        return t ? t.x.length : null; }}""")


def test_webgl_report(browser, reports):
    trace, paths = reports
    page, blocked, errors = open_offline(browser, paths["webgl"])
    try:
        # rendered: every point of every slice, drawn with WebGL into a non-blank canvas
        assert points_shown(page) == N_POINTS
        assert page.evaluate("() => document.querySelectorAll('#embedding canvas').length") > 0
        types = page.evaluate("() => [...new Set(document.getElementById('embedding')._fullData.map(t => t.type))]")
        assert "scattergl" in types
        from io import BytesIO

        from PIL import Image

        shot = np.asarray(Image.open(BytesIO(page.locator("#embedding").screenshot())).convert("RGB"))
        assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 100, "the plot area looks blank"
        assert page.locator("#loss-curves .scatterlayer .trace").count() == 3  # loss, val loss, marker
        assert "3,000 points" in page.text_content("#summary")

        # colouring switch: epoch (value bins of a sequential map + colour-bar) -> layer
        epoch_colors = point_colors(page)
        assert len(epoch_colors) > 10 and page.locator("#embedding .colorbar").count() == 1
        page.select_option("#color-by", "layer")
        idle(page)
        assert point_colors(page) == set(TAB10[:3])
        legend = page.locator("#embedding .legendtext").all_text_contents()
        assert legend == ["dense_1", "dense_2", "dense_3"]
        assert page.locator("#embedding .colorbar").count() == 0
        assert points_shown(page) == N_POINTS
        # a legend click hides that layer everywhere, the current slice included
        page.locator("#embedding .legendtoggle").nth(1).click()
        idle(page)
        assert trace_length(page, "current") == N_UNITS - LAYERS[1]
        assert page.evaluate("() => document.getElementById('embedding')._fullData"
                             ".find(t => t.uid === 'points-1').visible") == "legendonly"
        page.locator("#embedding .legendtoggle").nth(1).click()
        idle(page)
        assert trace_length(page, "current") == N_UNITS
        page.select_option("#color-by", "class")
        idle(page)
        assert page.locator("#embedding .legendtext").all_text_contents() == [str(c) for c in range(10)]

        # time slider: Home shows only the first slice, arrows reveal slices and trajectories
        page.focus("#time-slider")
        page.keyboard.press("Home")
        idle(page)
        assert points_shown(page) == N_UNITS
        assert trace_length(page, "trajectories") is None
        assert trace_length(page, "current") == N_UNITS
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        idle(page)
        assert points_shown(page) == 6 * N_UNITS
        assert trace_length(page, "trajectories") == N_UNITS * 7  # 6 positions + a gap per unit
        assert "slice 6 of 30" in page.text_content("#time-label")
        marker_x = page.evaluate("""() => document.getElementById('loss-curves').data
            .find(t => t.uid === 'loss-now').x[0]""")
        assert marker_x == trace.epochs[5]

        # hover a point of the current slice: the tooltip names layer, unit, epoch and loss
        x, y = page.evaluate("""() => {
            const gd = document.getElementById('embedding'), L = gd._fullLayout, box = gd.getBoundingClientRect();
            const t = gd.data.find(t => t.uid === 'current');
            return [box.left + L._size.l + L.xaxis.l2p(t.x[0]), box.top + L._size.t + L.yaxis.l2p(t.y[0])]; }""")
        page.mouse.move(x, y)
        page.wait_for_selector("#tooltip:not([hidden])", timeout=5000)
        tip = page.text_content("#tooltip")
        assert "dense_" in tip and "unit" in tip and "epoch" in tip and "loss" in tip

        # play advances the slider by itself, pause stops it
        page.click("#play")
        page.wait_for_function("() => window.mphateReport.state.k >= 9", timeout=20_000)
        page.click("#play")
        idle(page)
        k = page.evaluate("() => window.mphateReport.state.k")
        assert points_shown(page) == (k + 1) * N_UNITS
        assert int(page.input_value("#time-slider")) == k

        # the 3-D view keeps the slider's slice
        page.select_option("#view", "1")
        idle(page)
        assert "scatter3d" in page.evaluate("() => document.getElementById('embedding')._fullData.map(t => t.type)")
        assert points_shown(page) == (k + 1) * N_UNITS
        assert errors == [] and blocked == []
    finally:
        page.context.close()


def test_svg_report_of_a_bare_trace_draws_every_marker(browser, reports):
    _, paths = reports
    page, blocked, errors = open_offline(browser, paths["svg"])
    try:
        options = page.locator("#color-by option").all_text_contents()
        assert options == ["epoch"]  # no layer, class or loss colouring to offer
        assert "No loss was logged" in page.text_content("#loss-curves")
        assert page.is_hidden("#view-control")
        markers = "() => document.querySelectorAll('#embedding .scatterlayer path.point').length"
        # every point of every slice, plus the current (last) slice drawn again on top
        assert page.evaluate(markers) == N_POINTS + N_UNITS
        page.evaluate("() => window.mphateReport.setSlice(9)")
        idle(page)
        assert page.evaluate(markers) == 10 * N_UNITS + N_UNITS
        assert errors == [] and blocked == []
    finally:
        page.context.close()


def test_demo_report(browser, demo_report):
    """The report `mphate demo` writes (tiny size): real training, real embedding, offline page."""
    from conftest import DEMO, DEMO_POINTS, DEMO_UNITS

    page, blocked, errors = open_offline(browser, demo_report["html"])
    try:
        assert points_shown(page) == DEMO_POINTS
        assert f"{DEMO_POINTS:,} points" in page.text_content("#summary")
        markers = "() => document.querySelectorAll('#embedding .scatterlayer path.point').length"
        assert page.evaluate(markers) == DEMO_POINTS + DEMO_UNITS  # SVG: every marker, current slice on top
        values = page.eval_on_selector_all("#color-by option", "els => els.map(e => e.value)")
        assert values[:3] == ["epoch", "layer", "class"]
        assert {"loss", "val_loss", "val_accuracy"} <= set(values)
        assert page.locator("#loss-curves .scatterlayer .trace").count() == 3  # loss, val loss, marker

        # colouring switch
        page.select_option("#color-by", "layer")
        idle(page)
        assert page.locator("#embedding .legendtext").all_text_contents() == ["dense_1", "dense_2", "dense_3"]
        assert point_colors(page) == set(TAB10[:3])
        page.select_option("#color-by", "class")
        idle(page)
        assert page.locator("#embedding .legendtext").all_text_contents() == [str(c) for c in range(10)]
        assert points_shown(page) == DEMO_POINTS

        # time slider
        page.focus("#time-slider")
        page.keyboard.press("Home")
        idle(page)
        assert points_shown(page) == DEMO_UNITS
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        idle(page)
        assert points_shown(page) == 3 * DEMO_UNITS
        assert f"slice 3 of {DEMO['epochs']}" in page.text_content("#time-label")
        assert page.evaluate(markers) == 3 * DEMO_UNITS + DEMO_UNITS

        # the demo computes a 3-D embedding too
        assert page.is_visible("#view-control")
        page.select_option("#view", "1")
        idle(page)
        assert "scatter3d" in page.evaluate("() => document.getElementById('embedding')._fullData.map(t => t.type)")
        assert points_shown(page) == 3 * DEMO_UNITS
        assert errors == [] and blocked == []
    finally:
        page.context.close()
