"""``mphate info PATH``: what a trace store or trace file holds, and whether it is damaged."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="summarise a trace store or trace file (.npz/.npy/.mat)",
        description="Print the slices, units per layer, step range and logged scalars of a trace. "
        "A damaged store is described, with what is still readable.",
    )
    parser.add_argument("path", help="trace store directory, or a .npz/.npy/.mat trace file")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mphate.traces.io import describe_format, load_trace
    from mphate.traces.store import TraceStore, is_trace_store

    path = Path(args.path)
    if path.is_dir() and is_trace_store(path):
        with TraceStore.open(path, strict=False) as store:
            _print_store(store)
            return 1 if store.problem else 0
    trace = load_trace(path)  # says "no trace at PATH" when nothing is there
    _print_lines(
        [("path", str(path)), ("format", describe_format(path))]
        + _trace_lines(
            n_slices=trace.n_slices,
            steps=trace.steps,
            epochs=trace.epochs,
            n_trace=trace.n_trace,
            labels=trace.trace_labels,
            layers=_layer_units(trace),
            scalars=trace.scalars,
        )
    )
    return 0


def _layer_units(trace) -> dict:
    if trace.unit_layer is None:
        return {"(no layer information)": trace.n_units}
    return {name: int((trace.unit_layer == i).sum()) for i, name in enumerate(trace.layer_names)}


def _print_store(store) -> None:
    from mphate.traces.store import FORMAT_VERSION

    lines = [
        ("path", str(store.path)),
        ("format", f"mphate trace store v{FORMAT_VERSION} (run {store.run_id}, created {store.created})"),
    ]
    lines += _trace_lines(
        n_slices=store.n_slices,
        steps=store.steps,
        epochs=store.epochs,
        n_trace=store.n_trace,
        labels=store.trace_labels,
        layers=dict(zip(store.layer_names, store.layer_units)),
        scalars=store.scalars(),
    )
    if store.problem:
        lines.append(("status", f"DAMAGED: {store.problem}"))
        lines.append(
            ("repair", f"TraceStore.open(PATH, 'a', strict=False).truncate({store.n_slices}) keeps the readable slices")
        )
    elif store.torn_tail:
        lines.append(("status", "ok; the writer stopped mid-append, its incomplete last slice is ignored"))
    else:
        lines.append(("status", "ok"))
    _print_lines(lines)


def _trace_lines(n_slices, steps, epochs, n_trace, labels, layers, scalars) -> list:
    lines = [("slices", str(n_slices))]
    if n_slices:
        lines.append(("steps", f"{int(steps[0])} .. {int(steps[-1])}"))
        finite = epochs[np.isfinite(epochs)]
        if finite.size:
            lines.append(("epochs", f"{_num(finite.min())} .. {_num(finite.max())}"))
    inputs = f"{n_trace}"
    if labels is not None:
        classes = np.unique(labels)
        inputs += f" ({classes.size} classes: {', '.join(map(str, classes[:12]))}{', ...' if classes.size > 12 else ''})"
    lines.append(("trace inputs", inputs))
    lines.append(("units", f"{sum(layers.values())} in {len(layers)} layer(s)"))
    width = max(len(name) for name in layers)
    for name, units in layers.items():
        lines.append(("", f"{name:<{width}}  {units}"))
    if scalars:
        lines.append(("scalars", f"{len(scalars)} logged (name: slices with a value, last value)"))
        width = max(len(name) for name in scalars)
        for name, values in scalars.items():
            logged = values[~np.isnan(values)]
            last = _num(logged[-1]) if logged.size else "-"
            lines.append(("", f"{name:<{width}}  {logged.size}, last {last}"))
    else:
        lines.append(("scalars", "none logged"))
    return lines


def _num(value) -> str:
    value = float(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _print_lines(lines) -> None:
    width = max(len(key) for key, _ in lines) + 1
    for key, value in lines:
        print(f"{(key + ':') if key else '':<{width}} {value}")
