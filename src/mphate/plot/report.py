"""A report folder for one training run: interactive HTML, publication PNGs, the embedding."""
from __future__ import annotations

import warnings
from pathlib import Path

from mphate.traces.embedding_file import save_embedding
from mphate.paths import ensure_writable_dir
from mphate.plot.colorings import STANDARD, available_colorings, check_embedding, coloring
from mphate.plot.html import report_html
from mphate.plot.static import plot_3d, plot_colorings, plot_entropy
from mphate.traces.trace import Trace


def write_report(
    embedding,
    trace: Trace,
    out_dir,
    *,
    title: str = "M-PHATE report",
    embedding_3d=None,
    webgl: bool | None = None,
    dpi: int = 200,
    params: dict | None = None,
    estimator=None,
) -> dict[str, Path]:
    """Write ``index.html``, PNG figures and ``embedding.npz`` into ``out_dir``.

    Parameters
    ----------
    embedding : array, shape (n_slices * n_units, 2) or (..., 3)
        Slice-major M-PHATE coordinates of ``trace``.
    trace : Trace
    out_dir : str or Path
        Created if missing; ValueError/PermissionError naming it when it cannot be written.
    title : str
        Page and figure title.
    embedding_3d : array, shape (n_slices * n_units, 3), optional
        A 3-D embedding for the 3-D figure and the page's 3-D view (a 3-column
        ``embedding`` serves as its own 3-D view).
    webgl : bool, optional
        WebGL drawing in the page; default above 5000 points.
    dpi : int
        Resolution of the PNGs.
    params : dict, optional
        Embedding parameters, stored in ``embedding.npz``.
    estimator : fitted :class:`mphate.MPHATE`, optional
        The estimator that made ``embedding``: adds ``entropy.png``, the entropy curve its
        diffusion time was read from, with the chosen t and any rival knee marked.

    Returns
    -------
    dict naming each written file: "html", "colorings" (the panels side by side), one PNG per
    available standard colouring ("epoch", "layer", "class"), "3d" when a 3-D embedding is
    available, "entropy" when an estimator is given, and "embedding".
    """
    emb = check_embedding(embedding, trace)
    emb3 = None
    if embedding_3d is not None:
        emb3 = check_embedding(embedding_3d, trace, n_components=3)
    elif emb.shape[1] == 3:
        emb3 = emb
    out = ensure_writable_dir(out_dir)

    paths: dict[str, Path] = {}
    page = report_html(emb, trace, title=title, embedding_3d=emb3, webgl=webgl)
    paths["html"] = out / "index.html"
    paths["html"].write_text(page, encoding="utf-8")

    offered = [name for name in STANDARD if name in available_colorings(trace)]
    for name in STANDARD:
        if name not in offered:
            try:
                coloring(trace, name)
            except ValueError as exc:
                warnings.warn(f"{exc}; the report leaves that colouring out", UserWarning, stacklevel=2)
    paths["colorings"] = out / "colorings.png"
    plot_colorings(emb, trace, paths["colorings"], color_by=offered, dpi=dpi, title=title)
    for name in offered:
        paths[name] = out / f"{name}.png"
        plot_colorings(emb, trace, paths[name], color_by=[name], dpi=dpi)
    if emb3 is not None:
        paths["3d"] = out / "3d.png"
        plot_3d(emb3, coloring(trace, "epoch"), path=paths["3d"], dpi=dpi)

    if estimator is not None:
        paths["entropy"] = out / "entropy.png"
        plot_entropy(estimator, path=paths["entropy"], dpi=dpi)

    paths["embedding"] = save_embedding(
        out / "embedding.npz", emb, trace,
        embedding_3d=emb3 if emb3 is not None and emb3 is not emb else None, params=params,
    )
    return paths


__all__ = ["write_report"]
