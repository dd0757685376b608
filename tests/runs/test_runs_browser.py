"""`mphate compare-runs` on three real digits MLP runs (no regulariser, weight decay, dropout),
and its page in a real browser: Debian's Chromium driven by Playwright, network cut off."""
from __future__ import annotations

import pytest
from browser_helpers import launch, open_offline, require_browser

sync_api = require_browser("torch", "matplotlib")

from runs_helpers import record_digits_runs  # noqa: E402

from mphate.cli import main  # noqa: E402

NAMES = ["plain", "weight-decay", "dropout"]
EPOCHS, UNITS = 20, 64  # two hidden layers of 32


@pytest.fixture(scope="session")
def digits_comparison(tmp_path_factory):
    """Three runs recorded with TorchRecorder, compared on the command line: the output folder."""
    folder = tmp_path_factory.mktemp("digits-runs")
    runs = record_digits_runs(folder, epochs=EPOCHS)
    out = folder / "compare"
    argv = ["compare-runs", *(str(runs[n]) for n in NAMES), "-o", str(out), "--interslice-knn", "10",
            "--n-landmark", "300", "--dpi", "60", "-q"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def page(digits_comparison):
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        page, blocked, errors = open_offline(browser, digits_comparison / "index.html", timeout=30_000)
        yield page
        assert errors == [] and blocked == []
        browser.close()


def canvas_colors(page, name):
    """Distinct non-white colours drawn on a run's canvas."""
    return page.evaluate(f"""() => {{
        const c = document.querySelector('.panel[data-run="{name}"] canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 750) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
        return seen.size; }}""")


def column(page, key):
    index = page.evaluate(f"""() => [...document.querySelectorAll('#runs-table th')]
        .findIndex(th => th.dataset.key === '{key}')""")
    assert index >= 0, f"no column {key}"
    return page.locator(f"#runs-table tbody tr td:nth-child({index + 1})").all_text_contents()


def test_one_panel_per_run_with_its_final_losses(page, digits_comparison):
    assert page.evaluate("() => window.mphateGrid.panelOrder()") == NAMES
    for name in NAMES:
        panel = page.locator(f'.panel[data-run="{name}"]')
        assert panel.locator("h3").text_content() == name
        subtitle = panel.locator(".subtitle").text_content()
        assert subtitle.startswith("loss ") and "val loss" in subtitle
        assert page.evaluate(f"() => window.mphateGrid.pointsDrawn('{name}')") == EPOCHS * UNITS
        assert canvas_colors(page, name) > 20, f"panel {name} looks blank"
    assert page.locator(".note").count() == 0  # same network, same trace inputs: comparable
    assert "3 embedded" in page.text_content("#summary") and "Spearman rho" in page.text_content("#summary")
    assert (digits_comparison / "grid.png").stat().st_size > 10_000


def test_colourings_are_shared(page):
    options = page.eval_on_selector_all("#color-by option", "els => els.map(e => e.value)")
    assert options[:3] == ["epoch", "layer", "class"] and {"loss", "val_loss"} <= set(options)
    assert page.locator("#key .colorbar").count() == 1  # epoch: one colour bar for all panels
    page.select_option("#color-by", "layer")
    assert page.locator("#key .key-item").all_text_contents() == ["dense_1", "dense_2"]
    layer_colors = canvas_colors(page, "plain")
    page.select_option("#color-by", "class")
    assert page.locator("#key .key-item").all_text_contents() == [str(c) for c in range(10)]
    assert canvas_colors(page, "plain") != layer_colors
    # hover a drawn point: its run, unit and epoch
    left, top = page.evaluate("""() => { const r = document.querySelector('.panel[data-run="dropout"] canvas')
        .getBoundingClientRect(); return [r.left, r.top]; }""")
    sx, sy = page.evaluate("() => window.mphateGrid.screenPoint('dropout', 0)")
    page.mouse.move(left + sx, top + sy)
    page.wait_for_selector("#tooltip:not([hidden])", timeout=5000)
    tip = page.text_content("#tooltip")
    assert "dropout" in tip and "dense_" in tip and "epoch" in tip and "most-active class" in tip


def test_table_sorts_and_the_panels_follow(page):
    assert column(page, "run") == NAMES
    assert set(column(page, "status")) == {"ok"}
    variance = [float(v) for v in column(page, "visualization_variance")]
    page.click("#runs-table th[data-key='visualization_variance'] button")
    assert page.get_attribute("#runs-table th[data-key='visualization_variance']", "aria-sort") == "ascending"
    ascending = [float(v) for v in column(page, "visualization_variance")]
    assert ascending == sorted(variance)
    order = column(page, "run")
    assert page.evaluate("() => window.mphateGrid.panelOrder()") == order
    page.click("#runs-table th[data-key='visualization_variance'] button")
    assert page.get_attribute("#runs-table th[data-key='visualization_variance']", "aria-sort") == "descending"
    assert [float(v) for v in column(page, "visualization_variance")] == sorted(variance, reverse=True)
    assert page.evaluate("() => window.mphateGrid.panelOrder()") == order[::-1]
    page.click("#runs-table th[data-key='run'] button")
    assert column(page, "run") == sorted(NAMES)
    memorization = column(page, "memorization_error")
    final = [float(a) - float(b) for a, b in zip(column(page, "final_val_loss"), column(page, "final_loss"))]
    assert [float(m) for m in memorization] == pytest.approx(final, abs=2e-3)
