"""Traces as arrays other tools read: an ``xarray.DataArray``, a lazy ``dask.array`` view of a
store, and an export to zarr.

All three are optional (``pip install "mphate[arrays]"``): xarray, dask and zarr are imported
only when one of these functions is called.

The labelled array has dimensions ``("slice", "unit", "trace_input")`` and these coordinates:

======================  ===============  ==================================================
coordinate              dimension        what it is
======================  ===============  ==================================================
``slice``               slice            0 .. n_slices-1
``epoch``, ``step``     slice            when each slice was recorded
every logged scalar     slice            ``loss``, ``val_loss``, ... (NaN where not logged)
``unit``                unit             0 .. n_units-1 (units of all layers, layer after layer)
``layer``               unit             name of each unit's layer (when recorded)
``trace_input``         trace_input      0 .. n_trace-1
``label``               trace_input      class of each trace input (when recorded)
======================  ===============  ==================================================

A scalar whose name is taken by another coordinate is stored as ``scalar_<name>``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mphate.optional import require

__all__ = ["DIMS", "to_xarray", "to_dask", "export_zarr"]

DIMS = ("slice", "unit", "trace_input")
_RESERVED = {"slice", "unit", "trace_input", "epoch", "step", "layer", "label", "activation"}
# target size of one zarr / dask chunk: large enough that per-chunk overhead is small, small
# enough that a reader touching one epoch range does not pull the whole run
_CHUNK_BYTES = 16 * 2**20


def _slices_per_chunk(n_units: int, n_trace: int, itemsize: int = 4) -> int:
    return max(1, _CHUNK_BYTES // max(1, n_units * n_trace * itemsize))


class _StoreSlices:
    """Array-like over a store's slices for ``dask.array.from_array``: reads only what is indexed.

    Pickles as the path and the slice count seen when the view was made (never the data), so
    a dask worker opens the store itself. The opened store is kept per process: opening scans
    the whole index, which would otherwise be repeated for every chunk.
    """

    def __init__(self, path, n_slices: int, n_units: int, n_trace: int):
        self.path = str(path)
        self.shape = (int(n_slices), int(n_units), int(n_trace))
        self.dtype = np.dtype(np.float32)
        self.ndim = 3
        self._store = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    def _open(self):
        if self._store is None:
            from mphate.traces.store import TraceStore

            # strict=False: damage after the slices this view covers must not stop a read;
            # read_slice still checks each slice it reads against its checksum
            self._store = TraceStore.open(self.path, strict=False)
        return self._store

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        first = key[0] if key else slice(None)
        single = isinstance(first, (int, np.integer))  # an integer drops the slice axis
        rows = [range(self.shape[0])[first]] if single else range(self.shape[0])[first]
        store = self._open()
        if len(rows) and max(rows) >= store.n_slices:
            raise ValueError(
                f"the trace store at {self.path} now has {store.n_slices} readable slices; the "
                f"view was made when it had {self.shape[0]} (was it truncated?)"
            )
        block = np.empty((len(rows), self.shape[1], self.shape[2]), dtype=self.dtype)
        for out_row, index in enumerate(rows):
            block[out_row] = store.read_slice(index)
        return block[(0 if single else slice(None),) + tuple(key[1:])]


def _open_store(source, strict: bool):
    """A TraceStore from a store or a store path; None for anything else."""
    from mphate.traces.store import TraceStore, is_trace_store

    if isinstance(source, TraceStore):
        return source
    if isinstance(source, (str, Path)) and is_trace_store(source):
        return TraceStore.open(source, strict=strict)
    return None


def to_dask(source, *, slices_per_chunk: int | None = None, strict: bool = True):
    """A lazy ``dask.array`` of a trace store's activations: slices are read when computed.

    Parameters
    ----------
    source : TraceStore, or path of a store directory
    slices_per_chunk : int, optional
        Slices per dask chunk (default: about 16 MB a chunk).
    strict : bool, default True
        Raise on a damaged store; with False, view the slices before the damage.

    Returns
    -------
    dask.array.Array, float32, shape (n_slices, n_units, n_trace), chunked along slices only.
    The slices recorded when the view is made; a store still being appended to keeps growing
    on disk, but the view does not.
    """
    da = require("dask.array", "a lazy dask.array view of a trace store")
    store = _open_store(source, strict)
    if store is None:
        raise ValueError(
            f"to_dask needs a trace store (a TraceStore or a store directory); got {source!r}. "
            "A trace file is read whole: use load_trace(path).to_xarray()"
        )
    if store.n_slices == 0:
        raise ValueError(f"the trace store at {store.path} holds no slice yet")
    k = slices_per_chunk or _slices_per_chunk(store.n_units, store.n_trace)
    if int(k) < 1:
        raise ValueError(f"slices_per_chunk must be a positive integer, got {slices_per_chunk!r}")
    lazy = _StoreSlices(store.path, store.n_slices, store.n_units, store.n_trace)
    return da.from_array(lazy, chunks=(int(k), store.n_units, store.n_trace),
                         name=f"mphate-store-{store.run_id}-{store.n_slices}", asarray=False)


def _coords(n_slices, n_units, n_trace, *, epochs, steps, scalars, layer_names, unit_layer, labels):
    coords = {
        "slice": np.arange(n_slices),
        "epoch": ("slice", np.asarray(epochs, dtype=float)),
        "step": ("slice", np.asarray(steps, dtype=np.int64)),
        "unit": np.arange(n_units),
        "trace_input": np.arange(n_trace),
    }
    if unit_layer is not None:
        coords["layer"] = ("unit", np.asarray(layer_names, dtype=str)[np.asarray(unit_layer)])
    if labels is not None:
        coords["label"] = ("trace_input", np.asarray(labels))
    for name, values in scalars.items():
        coords[f"scalar_{name}" if name in _RESERVED else name] = ("slice", np.asarray(values, dtype=float))
    return coords


def to_xarray(source, *, lazy: bool = False, strict: bool = True):
    """A trace as an ``xarray.DataArray`` named "activation", dims (slice, unit, trace_input).

    Parameters
    ----------
    source : Trace, TraceStore, a path to a store, or anything :func:`mphate.traces.io.as_trace`
        accepts
    lazy : bool, default False
        For a store: back the array with :func:`to_dask`, so values are read when computed
        (``.sel(...)``, ``.isel(...)`` then ``.load()`` reads only the selected slices).
    strict : bool, default True
        For a damaged store: raise, or use the slices before the damage.

    Returns
    -------
    xarray.DataArray of shape (n_slices, n_units, n_trace) with the coordinates listed in the
    module docstring; ``attrs["layer_names"]`` lists the layers in unit order.
    """
    xr = require("xarray", "Trace.to_xarray()")
    store = _open_store(source, strict)
    if lazy and store is None:
        raise ValueError("lazy=True needs a trace store (or its directory); a trace in memory or a file is read whole")
    if lazy:
        data = to_dask(store)
        meta = dict(epochs=store.epochs, steps=store.steps, scalars=store.scalars(),
                    layer_names=store.layer_names, unit_layer=store.unit_layer, labels=store.trace_labels)
        if np.isnan(meta["epochs"]).all():
            meta["epochs"] = meta["steps"].astype(float)  # as Trace does when no epoch was given
    else:
        from mphate.traces.io import as_trace

        trace = store.to_trace() if store is not None else as_trace(source)
        data = trace.data
        meta = dict(epochs=trace.epochs, steps=trace.steps, scalars=trace.scalars,
                    layer_names=trace.layer_names, unit_layer=trace.unit_layer, labels=trace.trace_labels)
    coords = _coords(*data.shape, **meta)
    attrs = {"layer_names": list(meta["layer_names"] or [])}
    return xr.DataArray(data, dims=DIMS, coords=coords, name="activation", attrs=attrs)


def _string_coords_as_codes(ds):
    """Zarr format 3 has no specified string type: store string coordinates as integer codes,
    with the names in the coordinate's ``categories`` attribute."""
    for name in list(ds.coords):
        values = ds[name].values
        if values.dtype.kind in "US":
            # categories in order of first appearance, so layer codes follow the unit order
            _, first = np.unique(values, return_index=True)
            categories = values[np.sort(first)]
            codes = np.searchsorted(categories, values, sorter=np.argsort(categories))
            codes = np.argsort(categories)[codes]
            ds = ds.assign_coords({name: (ds[name].dims, codes.astype(np.int32))})
            ds[name].attrs["categories"] = [str(c) for c in categories]
    return ds


def export_zarr(source, out, *, overwrite: bool = False, zarr_format: int = 2,
                slices_per_chunk: int | None = None, progress: bool = False):
    """Write a trace to a zarr group readable by xarray (``xr.open_zarr``), zarr and other tools.

    Parameters
    ----------
    source : Trace, TraceStore, a store directory or a trace file
        A store is read chunk by chunk (memory stays at a few chunks); anything else whole.
    out : path
        The zarr directory to create.
    overwrite : bool, default False
        Replace ``out`` if it exists (otherwise an existing ``out`` is a ValueError).
    zarr_format : {2, 3}, default 2
        2 is what most readers understand. Format 3 stores string coordinates (layer, string
        labels) as integer codes with the names in the coordinate's ``categories`` attribute.
    slices_per_chunk : int, optional
        Slices per zarr chunk of the "activation" array (default: about 16 MB a chunk).
    progress : bool
        Show dask's progress bar on stderr while writing.

    Returns
    -------
    Path of the written group. It holds one variable, "activation" (slice, unit, trace_input),
    float32, with the coordinates of :func:`to_xarray` and ``layer_names`` in its attributes.
    """
    require("zarr", "mphate export --zarr")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; choose a new path or pass overwrite=True (--overwrite)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; a zarr group is a directory")
    store = _open_store(source, strict=True)
    arr = to_xarray(store if store is not None else source, lazy=store is not None)
    k = int(slices_per_chunk or _slices_per_chunk(arr.shape[1], arr.shape[2]))
    arr = arr.chunk({"slice": k, "unit": -1, "trace_input": -1})
    ds = arr.to_dataset()
    if zarr_format == 3:
        ds = _string_coords_as_codes(ds)
    for variable in ds.variables.values():
        variable.encoding.pop("chunks", None)  # the dask chunks above decide
    write = ds.to_zarr(out, mode="w" if overwrite else "w-", zarr_format=zarr_format,
                       consolidated=zarr_format == 2, compute=False)
    if progress:
        diagnostics = require("dask.diagnostics", "a progress bar for the export")
        with diagnostics.ProgressBar():
            write.compute()
    else:
        write.compute()
    return out
