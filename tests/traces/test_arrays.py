"""Traces as arrays other tools read: Trace.to_xarray(), the lazy dask view of a store, zarr export."""
from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("dask.array")
pytest.importorskip("zarr")

from mphate.cli import main  # noqa: E402
from mphate.traces.arrays import export_zarr, to_dask, to_xarray  # noqa: E402
from mphate.traces.io import save_npz  # noqa: E402
from mphate.traces.store import TraceStore  # noqa: E402
from mphate.traces.synthetic import make_trace  # noqa: E402


@pytest.fixture
def trace():
    return make_trace(n_slices=9, n_units=12, n_trace=10, n_layers=3, random_state=0)


@pytest.fixture
def store_path(tmp_path, trace):
    path = tmp_path / "run.trace"
    with TraceStore.create(path, trace.layer_names, [4, 4, 4], trace.n_trace, trace_labels=trace.trace_labels,
                           fsync=False) as store:
        for s in range(trace.n_slices):
            store.append(trace.data[s], step=10 * (s + 1), epoch=s + 1, scalars={"loss": trace.scalars["loss"][s]})
    return path


def test_trace_to_xarray_labels_every_axis(trace):
    arr = trace.to_xarray()
    assert arr.dims == ("slice", "unit", "trace_input") and arr.name == "activation"
    np.testing.assert_array_equal(arr.values, trace.data)
    assert list(arr.layer.values[:5]) == ["layer1"] * 4 + ["layer2"]
    np.testing.assert_array_equal(arr.label.values, trace.trace_labels)
    np.testing.assert_array_equal(arr.epoch.values, trace.epochs)
    np.testing.assert_array_equal(arr.val_loss.values, trace.scalars["val_loss"])
    # the coordinates select: layer 2's units at the last slice
    picked = arr.isel(slice=-1).where(arr.layer == "layer2", drop=True)
    np.testing.assert_array_equal(picked.values, trace.data[-1, 4:8])
    assert arr.attrs["layer_names"] == ["layer1", "layer2", "layer3"]


def test_lazy_view_reads_only_what_is_computed(store_path, trace, monkeypatch):
    view = to_dask(store_path, slices_per_chunk=2)
    assert view.shape == trace.data.shape and view.chunks[0] == (2, 2, 2, 2, 1)
    read = []
    original = TraceStore.read_slice
    monkeypatch.setattr(TraceStore, "read_slice", lambda self, i: read.append(i) or original(self, i))
    np.testing.assert_allclose(view[4:6].compute(scheduler="synchronous"), trace.data[4:6], rtol=1e-6)
    assert sorted(read) == [4, 5]
    lazy = to_xarray(store_path, lazy=True)
    assert lazy.chunks is not None and list(lazy.step.values) == [10 * (s + 1) for s in range(9)]
    np.testing.assert_allclose(lazy.sel(slice=8).values, trace.data[8], rtol=1e-6)


def test_lazy_view_of_a_torn_store_names_the_slice(store_path):
    view = to_dask(store_path)
    file = store_path / "slices" / "00000003.npy"
    payload = bytearray(file.read_bytes())
    payload[-1] ^= 0xFF  # damaged on disk after the view was made
    file.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="slice 3 .* does not match its checksum"):
        view.compute(scheduler="synchronous")
    with pytest.raises(ValueError, match="needs a trace store"):
        to_dask(store_path / "meta.json")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_export_zarr_round_trips(store_path, trace, tmp_path, zarr_format):
    out = export_zarr(store_path, tmp_path / "run.zarr", zarr_format=zarr_format, slices_per_chunk=4)
    ds = xr.open_zarr(out, consolidated=zarr_format == 2)
    np.testing.assert_allclose(ds.activation.values, trace.data, rtol=1e-6)
    assert ds.activation.encoding["chunks"] == (4, 12, 10)
    np.testing.assert_allclose(ds.loss.values, trace.scalars["loss"])
    if zarr_format == 2:
        assert list(ds.layer.values[::4]) == ["layer1", "layer2", "layer3"]
    else:  # no string type in the v3 spec: codes, with the names in the attributes
        assert list(ds.layer.values[::4]) == [0, 1, 2]
        assert ds.layer.attrs["categories"] == ["layer1", "layer2", "layer3"]
    with pytest.raises(ValueError, match="already exists"):
        export_zarr(store_path, out)


def test_export_command(store_path, trace, tmp_path, capsys):
    npz = save_npz(trace, tmp_path / "run.npz")
    assert main(["export", str(npz), "--zarr", str(tmp_path / "a.zarr"), "-q"]) == 0
    assert capsys.readouterr().out == ""
    np.testing.assert_allclose(xr.open_zarr(tmp_path / "a.zarr").activation.values, trace.data, rtol=1e-6)
    assert main(["export", str(store_path), "--zarr", str(tmp_path / "a.zarr")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(store_path), "--zarr", str(tmp_path / "a.zarr"), "--overwrite", "-q"]) == 0
    assert main(["export", str(tmp_path / "nothing"), "--zarr", str(tmp_path / "b.zarr")]) == 1
    assert "no trace at" in capsys.readouterr().err
