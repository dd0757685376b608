"""Colourings, matplotlib figures (image tests), the plotly figure and the report folder."""
from __future__ import annotations

import base64
import json
import os
import re
import warnings

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("plotly")

from plot_helpers import fake_embedding, synthetic_trace  # noqa: E402

from mphate.traces.embedding_file import load_embedding  # noqa: E402
from mphate.plot import (  # noqa: E402
    available_colorings,
    coloring,
    epoch_per_point,
    layer_per_point,
    most_active_class_per_point,
    most_active_class_per_unit,
    plot_3d,
    plot_colorings,
    plotly_figure,
    scalar_per_point,
    scatter,
    unit_per_point,
)
from mphate.plot.html import report_data, report_html  # noqa: E402
from mphate.plot.palettes import TAB10  # noqa: E402
from mphate.plot.report import write_report  # noqa: E402
from mphate.traces.trace import Trace  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(n_slices=10, layer_sizes=(12, 12, 6), n_classes=4, per_class=4)


@pytest.fixture(scope="module")
def embedding(trace):
    return fake_embedding(trace)


def read_png(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def has_color(pixels, hex_color, tol=12, min_count=20):
    """At least ``min_count`` pixels within ``tol`` (per channel) of ``hex_color``."""
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).max(axis=2) <= tol).sum()) >= min_count


# ---------------------------------------------------------------------------- colourings
def test_per_point_arrays_are_slice_major(trace):
    n_units = trace.n_units
    epochs = epoch_per_point(trace)
    units = unit_per_point(trace)
    layers = layer_per_point(trace)
    i = 3 * n_units + 7  # slice 3, unit 7
    assert len(epochs) == len(units) == len(layers) == trace.n_slices * n_units
    assert epochs[i] == trace.epochs[3]
    assert units[i] == 7
    assert layers[i] == trace.unit_layer[7]
    np.testing.assert_array_equal(scalar_per_point(trace, "loss")[i], trace.scalars["loss"][3])


def test_most_active_class_is_argmax_of_class_means(trace):
    codes, classes = most_active_class_per_unit(trace)
    assert codes.shape == (trace.n_slices, trace.n_units)
    np.testing.assert_array_equal(classes, np.arange(4))
    # the synthetic unit u is driven by class u % 4
    np.testing.assert_array_equal(codes, np.tile(np.arange(trace.n_units) % 4, (trace.n_slices, 1)))


def test_most_active_class_uses_the_mean_not_the_sum():
    # class "a" has three inputs at 1.0 (sum 3, mean 1), class "b" one input at 2.0 (sum 2, mean 2)
    data = np.array([1.0, 1.0, 1.0, 2.0]).reshape(1, 1, 4).repeat(2, axis=0)
    t = Trace(data=data, trace_labels=np.array(["a", "a", "a", "b"]))
    assert list(most_active_class_per_point(t)) == ["b", "b"]


def test_most_active_class_ties_go_to_the_first_class():
    t = Trace(data=np.zeros((2, 1, 4)), trace_labels=np.array([3, 1, 3, 1]))
    assert list(most_active_class_per_point(t)) == [1, 1]


def test_missing_metadata_gives_clear_errors():
    bare = synthetic_trace(n_slices=3, layer_sizes=(4,), layers=False, labels=False)
    with pytest.raises(ValueError, match="colour by layer is unavailable.*no layer metadata"):
        layer_per_point(bare)
    with pytest.raises(ValueError, match="most-active class is unavailable.*trace_labels"):
        coloring(bare, "class")
    assert available_colorings(bare) == ["epoch", "unit", "loss", "val_loss"]
    with pytest.raises(ValueError, match="no scalar 'accuracy'.*loss, val_loss"):
        scalar_per_point(bare, "accuracy")
    with pytest.raises(ValueError, match="unknown colouring 'bogus'.*epoch, unit"):
        coloring(bare, "bogus")


def test_coloring_labels(trace):
    layer = coloring(trace, "layer")
    assert layer.kind == "categorical" and layer.categories == ["dense_1", "dense_2", "dense_3"]
    cls = coloring(trace, "most_active_class")
    assert cls.name == "class" and cls.categories == ["0", "1", "2", "3"]
    assert coloring(trace, "val_loss").kind == "continuous"


# ------------------------------------------------------------------------- matplotlib
def test_scatter_continuous_has_colorbar_and_clean_axes(trace, embedding):
    ax = scatter(embedding, coloring(trace, "epoch"))
    fig = ax.figure
    assert ax.get_xlabel() == "M-PHATE 1" and ax.get_ylabel() == "M-PHATE 2"
    assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    colorbars = [a for a in fig.axes if a is not ax]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "epoch"
    assert ax.get_legend() is None


def test_scatter_categorical_from_raw_array_has_legend(trace, embedding):
    names = np.array(["early", "late"])[(epoch_per_point(trace) > 5).astype(int)]
    ax = scatter(embedding, names, label="phase")
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["early", "late"]
    assert legend.get_title().get_text() == "phase"
    assert len(ax.figure.axes) == 1  # no colour-bar for categories


def test_scatter_rejects_bad_input(trace, embedding):
    with pytest.raises(ValueError, match="length 5 but the embedding has"):
        scatter(embedding, np.arange(5.0))
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="3-D axes"):
        scatter(fake_embedding(trace, 3), ax=ax)
    with pytest.raises(ValueError, match=r"shape \(n_points, 2\)"):
        scatter(np.zeros(10))


def test_plot_colorings_png_size_and_content(tmp_path, trace, embedding):
    path = tmp_path / "fig.png"
    fig = plot_colorings(embedding, trace, path, panel_size=3.0, dpi=80)
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in panels] == ["Epoch", "Layer", "Most-active class"]
    colorbars = [a for a in fig.axes if not a.get_title()]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "epoch"
    assert [t.get_text() for t in panels[1].get_legend().get_texts()] == ["dense_1", "dense_2", "dense_3"]
    assert [t.get_text() for t in panels[2].get_legend().get_texts()] == ["0", "1", "2", "3"]

    pixels = read_png(path)
    width, height = fig.get_size_inches() * 80
    assert pixels.shape == (round(height), round(width), 3)
    nonwhite = (pixels < 245).any(axis=2).mean()
    assert 0.02 < nonwhite < 0.6, f"{nonwhite:.3f} of the image is drawn"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # colour maps, not a flat image
    # viridis ends on the colour-bar; tab10 layer/class colours in points and legends
    assert has_color(pixels, "#440154") and has_color(pixels, "#fde725")
    for hex_color in TAB10[:4]:
        assert has_color(pixels, hex_color)


def test_plot_colorings_without_layers_warns_and_drops_the_panel(tmp_path):
    bare = synthetic_trace(n_slices=4, layer_sizes=(6,), layers=False)
    with pytest.warns(UserWarning, match="colour by layer is unavailable"):
        fig = plot_colorings(fake_embedding(bare), bare)
    assert [a.get_title() for a in fig.axes if a.get_title()] == ["Epoch", "Most-active class"]
    with pytest.raises(ValueError, match="colour by layer is unavailable"):
        plot_colorings(fake_embedding(bare), bare, color_by=["layer"])


def test_plot_3d(tmp_path, trace):
    path = tmp_path / "3d.png"
    ax = plot_3d(fake_embedding(trace, 3), coloring(trace, "layer"), path=path, figsize=(4, 3), dpi=50)
    assert ax.name == "3d" and ax.get_zlabel() == "M-PHATE 3"
    pixels = read_png(path)
    assert pixels.shape == (150, 200, 3)
    assert has_color(pixels, TAB10[0], min_count=5)


def test_plot_3d_of_a_2d_embedding_is_refused(trace, embedding):
    with pytest.raises(ValueError, match="3-column embedding.*n_components=3"):
        plot_3d(embedding)


def test_unwritable_output_folder(tmp_path, trace, embedding):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=re.escape(str(blocker / "sub"))):
        plot_colorings(embedding, trace, blocker / "sub" / "fig.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write to any folder")
def test_read_only_output_folder(tmp_path, trace, embedding):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="not writable"):
        plot_colorings(embedding, trace, locked / "fig.png")


# ------------------------------------------------------------------------------ plotly
def test_plotly_figure(trace, embedding):
    fig = plotly_figure(embedding, trace, "layer")
    assert [t.name for t in fig.data] == ["dense_1", "dense_2", "dense_3"]
    assert sum(len(t.x) for t in fig.data) == len(embedding)
    assert fig.data[0].type == "scatter"  # few points: SVG
    assert "epoch" in fig.data[0].hovertemplate and "loss" in fig.data[0].hovertemplate
    assert fig.data[0].customdata[0][0] == "dense_1 #0"

    fig = plotly_figure(embedding, trace, "epoch", webgl=True)
    assert len(fig.data) == 1 and fig.data[0].type == "scattergl"
    assert fig.data[0].marker.showscale and fig.data[0].marker.colorbar.title.text == "epoch"
    assert fig.layout.xaxis.title.text == "M-PHATE 1"

    fig3 = plotly_figure(fake_embedding(trace, 3), trace, "class")
    assert {t.type for t in fig3.data} == {"scatter3d"}
    assert fig3.layout.scene.zaxis.title.text == "M-PHATE 3"


# ------------------------------------------------------------------------------ report
def _decode(column):
    assert column["dtype"] == "float32"
    return np.frombuffer(base64.b64decode(column["b64"]), dtype="<f4")


def test_report_data_round_trips(trace, embedding):
    data = report_data(embedding, trace, embedding_3d=fake_embedding(trace, 3))
    assert [v["name"] for v in data["views"]] == ["2-D", "3-D"]
    x = _decode(data["views"][0]["coords"][0])
    np.testing.assert_allclose(x, embedding[:, 0].astype(np.float32))
    assert [c["name"] for c in data["colorings"]] == ["epoch", "layer", "class", "loss", "val_loss"]
    assert data["curves"] == ["loss", "val_loss"]
    assert data["n_slices"] * data["n_units"] == len(x)


def test_report_html_is_self_contained_and_script_safe(embedding):
    t = synthetic_trace(n_slices=10, layer_sizes=(12, 12, 6), n_classes=4, per_class=4)
    t.layer_names = ["</script><b>x", "dense_2", "dense_3"]
    t.scalars["val_loss"][2] = np.nan
    page = report_html(embedding, t, title="A & B")
    assert "<title>A &amp; B</title>" in page
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=", page)
    assert page.count("</script>") == 3  # plotly.js, data, viewer: the layer name cannot end a block
    blob = page.split('id="mphate-data">', 1)[1].split("</script>", 1)[0]
    data = json.loads(blob)
    assert data["layer_names"][0] == "</script><b>x"
    assert data["scalars"]["val_loss"][2] is None  # NaN is not JSON


def test_write_report(tmp_path, trace, embedding):
    emb3 = fake_embedding(trace, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_report(embedding, trace, tmp_path / "rep", embedding_3d=emb3, dpi=40)
    assert set(paths) == {"html", "colorings", "epoch", "layer", "class", "3d", "embedding"}
    for path in paths.values():
        assert path.exists() and path.stat().st_size > 1000
    assert paths["html"].name == "index.html"
    np.testing.assert_allclose(load_embedding(paths["embedding"], trace), embedding)
    np.testing.assert_allclose(load_embedding(paths["embedding"], key="embedding_3d"), emb3)
    assert read_png(paths["3d"]).std() > 5


def test_write_report_rejects_a_2d_embedding_as_3d(tmp_path, trace, embedding):
    with pytest.raises(ValueError, match="3-D view needs an embedding with 3 columns"):
        write_report(embedding, trace, tmp_path / "rep", embedding_3d=embedding)
    assert not (tmp_path / "rep").exists()  # checked before anything is written


def test_write_report_without_layers(tmp_path):
    bare = synthetic_trace(n_slices=4, layer_sizes=(6,), layers=False)
    with pytest.warns(UserWarning, match="colour by layer is unavailable"):
        paths = write_report(fake_embedding(bare), bare, tmp_path, dpi=30)
    assert "layer" not in paths and "3d" not in paths and paths["class"].exists()


def test_plot_entropy_marks_the_chosen_t_and_the_rival_knee(tmp_path):
    from types import SimpleNamespace

    from mphate.plot import plot_entropy

    t = np.arange(1, 101, dtype=float)
    curve = 8 - 0.5 * np.minimum(t, 6) - 0.01 * t - 2.2 * np.clip((t - 40) / 30, 0, 1)
    ax = plot_entropy(curve)  # knees found from the curve itself
    labels = sorted(text.get_text() for text in ax.texts)
    assert labels == ["other knee t=60", "t=7"]
    assert sorted(line.get_xdata()[0] for line in ax.lines[1:3]) == [7, 60]  # the vertical markers

    # a fitted estimator's own t and candidates win; the figure can be written
    fitted = SimpleNamespace(entropy_=curve, t_=60, t_candidates_=[7, 60])
    path = tmp_path / "entropy.png"
    ax = plot_entropy(fitted, path=path, dpi=40)
    assert sorted(text.get_text() for text in ax.texts) == ["other knee t=7", "t=60"]
    assert path.stat().st_size > 1000 and read_png(path).std() > 5

    with pytest.raises(ValueError, match="finite entropy curve"):
        plot_entropy(np.array([3.0, np.nan, 1.0]))


def test_write_report_with_the_estimator_adds_the_entropy_figure(tmp_path):
    from mphate import MPHATE

    small = synthetic_trace(n_slices=6, layer_sizes=(8, 8))
    est = MPHATE(interslice_knn=3, random_state=0)
    embedding = est.fit_transform(small)
    paths = write_report(embedding, small, tmp_path / "rep", dpi=30, estimator=est)
    assert paths["entropy"].name == "entropy.png" and read_png(paths["entropy"]).std() > 5
