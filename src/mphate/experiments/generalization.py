"""The paper's generalisation experiment: does a heterogeneous picture go with less memorisation?

Eight copies of one network are trained, differing only in regularisation or in corrupted
training data: vanilla, dropout 0.5, kernel L1, kernel L2, activity L1, activity L2 (all 1e-4),
random labels and random pixels. Each is traced after every epoch and embedded with M-PHATE.
Memorisation error = final validation loss - final training loss; visualisation variance =
:func:`mphate.metrics.visualization_variance` of its embedding. The paper reports a negative
Spearman correlation between the two across the 8 networks.

Each network is one task (:func:`network_task`: train, trace, embed) given to
:func:`mphate.runs.run_tasks`, the executor of ``mphate compare-runs``: in this process by default,
on Dask with ``workers=`` / ``scheduler=``, each result cached as it arrives and a failed network
reported while the others go on.

Defaults on digits (documented in docs/experiments/generalization.md): 64-128-128-128-10
LeakyReLU(0.1), Adam lr 1e-3, batch 256, 300 epochs. The paper's MNIST settings (lr 1e-5) are
used when ``data_dir`` points to MNIST files.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from mphate.experiments import _common as C
from mphate.experiments.training import evaluate, load_data, make_mlp, start_worker, train
from mphate.optional import require

GENERALIZATION_VARIANTS = (
    "vanilla", "dropout", "kernel_l1", "kernel_l2", "activity_l1", "activity_l2",
    "random_labels", "random_pixels",
)

#: display names, in the paper's order
LABELS = {
    "vanilla": "Vanilla", "dropout": "Dropout", "kernel_l1": "Kernel L1", "kernel_l2": "Kernel L2",
    "activity_l1": "Activity L1", "activity_l2": "Activity L2", "random_labels": "Random labels",
    "random_pixels": "Random pixels",
}

#: final train / validation losses the paper's figure shows (MNIST, 300 epochs, lr 1e-5)
PAPER_LOSSES = {
    "dropout": (0.23, 0.14), "kernel_l1": (0.07, 0.09), "kernel_l2": (0.05, 0.08),
    "vanilla": (0.04, 0.08), "activity_l1": (0.08, 0.19), "activity_l2": (0.03, 0.15),
    "random_labels": (2.21, 2.35), "random_pixels": (1.74, 2.66),
}


def settings(data_name: str, *, epochs=None, lr=None, quick=False) -> dict:
    """Training and embedding settings: the paper's on MNIST, ours on digits, tiny with quick."""
    if quick:
        s = dict(epochs=8, lr=3e-3, hidden=(16, 16, 16), n_per_class=3, embed_slices=8, n_landmark=None)
    elif data_name == "mnist":
        s = dict(epochs=300, lr=1e-5, hidden=(128, 128, 128), n_per_class=10, embed_slices=None,
                 n_landmark=C.estimator_default("n_landmark"))
    else:
        s = dict(epochs=300, lr=1e-3, hidden=(128, 128, 128), n_per_class=10, embed_slices=None,
                 n_landmark=C.estimator_default("n_landmark"))
    if epochs is not None:
        s["epochs"] = int(epochs)
    if lr is not None:
        s["lr"] = float(lr)
    s["batch_size"] = 256
    return s


# ---------------------------------------------------------------------------------------------
# training one network


def generalization_inputs(data, variant: str, seed: int = 0):
    """Training inputs and labels of a variant (random labels / pixels replace the real ones).

    Random labels: the training labels shuffled once (seeded). Random pixels: every training
    image replaced by Gaussian noise with the data's per-pixel mean and standard deviation
    (Zhang et al. 2017's "Gaussian" corruption). The validation set is never corrupted.
    """
    rng = np.random.default_rng(seed + 1)
    X, y = data.X_train, data.y_train
    if variant == "random_labels":
        y = rng.permutation(y)
    elif variant == "random_pixels":
        mean, std = X.mean(axis=0), X.std(axis=0)
        X = (mean + std * rng.standard_normal(X.shape)).astype(np.float32)
    return X, y


def penalty(variant: str, model, reg: float):
    """The variant's regulariser as a function of nothing, evaluated after each forward pass.

    Kernel L1 / L2: ``reg * sum|W|`` / ``reg * sum W^2`` over the weight matrices of every
    Linear layer; activity L1 / L2: ``reg * sum|h|`` / ``reg * sum h^2`` over the hidden
    layers' outputs of the last forward pass, averaged over the batch; otherwise 0.
    """
    torch = require("torch", "the generalisation experiment")
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]

    def value():
        pre = model.pre_activations
        if variant == "kernel_l1":
            return reg * sum(w.abs().sum() for w in weights)
        if variant == "kernel_l2":
            return reg * sum((w * w).sum() for w in weights)
        if variant == "activity_l1":
            return reg * sum(h.abs().sum() for h in pre) / pre[0].shape[0]
        if variant == "activity_l2":
            return reg * sum((h * h).sum() for h in pre) / pre[0].shape[0]
        return 0.0

    return value


def train_generalization(variant: str, *, data_dir=None, epochs: int = 300, lr: float = 1e-3,
                         batch_size: int = 256, hidden=(128, 128, 128), reg: float = 1e-4,
                         dropout: float = 0.5, trace_every: int = 1, seed: int = 0,
                         n_per_class: int = 10) -> dict:
    """Train and trace one of the 8 generalisation networks.

    The regularisers follow Keras's meaning of the paper's settings (see :func:`penalty`);
    dropout (rate ``dropout``) follows each hidden nonlinearity. The trace inputs are real
    training images for every variant.

    Returns
    -------
    dict with "variant", "trace" (a :class:`mphate.Trace`: one slice per traced epoch, scalars
    loss / val_loss / accuracy / val_accuracy), "history" (those four per epoch, arrays of
    length ``epochs``) and "seconds". Losses are the plain cross-entropy of the whole training
    (on the variant's own, possibly corrupted, data) or validation set in evaluation mode.
    """
    if variant not in GENERALIZATION_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {GENERALIZATION_VARIANTS}")
    torch = require("torch", "the generalisation experiment")
    from mphate.capture import TorchRecorder

    timer = C.Timer()
    data, (X_trace, y_trace) = start_worker(data_dir, seed, n_per_class)
    X_np, y_np = generalization_inputs(data, variant, seed)
    model = make_mlp(data.n_inputs, hidden, 10, activation="leaky_relu",
                     dropout=dropout if variant == "dropout" else 0.0, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lossf = torch.nn.CrossEntropyLoss()
    X, y = torch.from_numpy(X_np), torch.from_numpy(y_np).long()
    X_val, y_val = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val).long()
    extra = penalty(variant, model, reg)
    history = {k: np.full(epochs, np.nan) for k in ("loss", "val_loss", "accuracy", "val_accuracy")}

    def after_epoch(epoch):
        (loss, acc), (val_loss, val_acc) = evaluate(model, X, y), evaluate(model, X_val, y_val)
        row = {"loss": loss, "val_loss": val_loss, "accuracy": acc, "val_accuracy": val_acc}
        for key, value in row.items():
            history[key][epoch - 1] = value
        if epoch % trace_every == 0 or epoch == epochs:
            rec.record(step=epoch, epoch=epoch, **row)

    with TorchRecorder(model, X_trace, labels=y_trace, layers=list(model.hidden_names)) as rec:
        train(model, opt, X, y, epochs=epochs, batch_size=batch_size,
              generator=torch.Generator().manual_seed(seed),
              loss=lambda Xb, yb: lossf(model(Xb), yb) + extra(), on_epoch=after_epoch)
        trace = rec.to_trace()
    return {"variant": variant, "trace": trace, "history": history, "seconds": timer.seconds}


# ---------------------------------------------------------------------------------------------
# one network, start to finish: the experiment's task


def network_task(variant: str, train: dict, embed: dict, key: str) -> dict:
    """Train one network and embed it: the task :func:`run` gives :func:`mphate.runs.run_tasks`
    for each network, run in this process or on a Dask worker.

    It is given settings only (``train``: :func:`train_generalization`'s keywords; ``embed``:
    "embed_slices", "n_landmark", "common_t", "seed" and "n_jobs", the embedding's threads), so
    the data are read and the network trained where the task runs; what comes back is small:
    the table row, the 2-D embedding (float32), the embedded slices' epochs and unit layers, each
    point's most-active class and the per-epoch history. Training uses one torch thread, as it
    always has; the thread count of the process running it is put back afterwards.
    """
    from mphate.experiments.training import torch_threads
    from mphate.plot import coloring

    with torch_threads(1):
        res = train_generalization(variant, **train)
    row, emb, sub = _embed_network(res, embed)
    classes = coloring(sub, "class")
    return {"network": variant, "key": key, "row": row, "embedding": emb.astype(np.float32),
            "epochs": np.asarray(sub.epochs), "unit_layer": sub.unit_layer, "class_codes": classes.values,
            "classes": classes.categories, "history": res["history"],
            "where": f"{socket.gethostname()}:{os.getpid()}"}


def _embed_network(res, embed):
    """Embed one trained network at its own t and at each common t: its table row, the
    embedding and the embedded slices of its trace."""
    from mphate.metrics import visualization_variance

    variant, trace, hist = res["variant"], res["trace"], res["history"]
    sub = C.slice_trace(trace, C.even_indices(trace.n_slices, embed["embed_slices"] or trace.n_slices))
    emb, seconds, est = C.embed_timed(sub, n_landmark=embed["n_landmark"], interslice_knn=25, seed=embed["seed"],
                                      n_jobs=embed["n_jobs"])
    variance = visualization_variance(emb, sub.n_slices)
    auto_t, t_candidates = est.t_, est.t_candidates_
    common_variances = _variances_at(est, sub, embed["common_t"])  # refits est, so t_ is read above
    row = {
        "network": variant,
        "final_train_loss": float(hist["loss"][-1]),
        "final_val_loss": float(hist["val_loss"][-1]),
        "memorization_error": float(hist["val_loss"][-1] - hist["loss"][-1]),
        "visualization_variance": variance,
        # the variance falls steeply with t, and each network gets its own automatic t
        "t": auto_t,
        "t_candidates": " ".join(map(str, t_candidates)),
        **common_variances,
        "final_train_accuracy": float(hist["accuracy"][-1]),
        "final_val_accuracy": float(hist["val_accuracy"][-1]),
        "paper_train_loss": PAPER_LOSSES[variant][0],
        "paper_val_loss": PAPER_LOSSES[variant][1],
        "embedded_slices": sub.n_slices,
        "points": emb.shape[0],
        "train_seconds": res["seconds"],
        "embed_seconds": seconds,
    }
    return row, emb, sub


# ---------------------------------------------------------------------------------------------
# the experiment


def run(out, *, data_dir=None, epochs=None, lr=None, quick=False, workers=None, scheduler=None,
        use_cache: bool = True, embed_slices=None, n_landmark="default", variants=GENERALIZATION_VARIANTS,
        seed: int = 0, common_t=(10, 30, 60), quiet: bool = False, n_jobs=None) -> dict:
    """Train, trace and embed the networks, one task each; write tables and figures into ``out``.

    Parameters
    ----------
    out : path
        Output folder (created).
    data_dir : path, optional
        MNIST files (IDX or mnist.npz); default: the bundled digits.
    epochs, lr : optional
        Override the defaults of :func:`settings`.
    quick : bool
        Tiny networks and few epochs (for tests and a smoke run).
    workers, scheduler : optional
        Where each network is trained and embedded (:func:`network_task`, one task a network,
        through :func:`mphate.runs.run_tasks`): ``workers=N`` a new Dask LocalCluster of N
        processes, ``scheduler=ADDRESS`` a running cluster (its workers must see ``data_dir``);
        neither, one after the other in this process. The numbers do not depend on where.
    use_cache : bool
        Each finished network is kept in ``out/cache`` (keyed by every setting it depends on),
        and a rerun takes it from there; False trains and embeds every network again.
    embed_slices : int, optional
        Every epoch is traced; embed only about this many evenly spaced epochs (always the
        last). Default: all of them, as in the paper.
    n_landmark : int or None
        M-PHATE landmarks (default: the estimator's, ``MPHATE().n_landmark``, the paper's setting).
    common_t : sequence of int
        Diffusion times at which every network is also embedded, so that the variances are
        compared at one t as well as at each network's own automatic t (the variance falls
        steeply with t). Refitting at another t reuses the kernel and landmarks.
    n_jobs : int, optional
        Deprecated: the size of the process pool this used to train in; now ``workers``.

    Returns
    -------
    dict with "rows" (one per network that finished), "failed" ({network: one-line error} for
    those that did not), "spearman_rho", "spearman_p" (at each network's own t),
    "spearman_by_t" ({t: (rho, p)} for each common t), "files", "seconds", "summary". Raises
    ValueError when every network failed.
    """
    from mphate.runs.executor import check_executor

    total = C.Timer()
    workers = _workers_from_n_jobs(n_jobs, workers)
    check_executor(workers, scheduler)
    out = C.output_dir(out)
    data_dir = None if data_dir is None else str(Path(data_dir).resolve())  # the same path on any worker
    data = load_data(data_dir, seed)
    cfg = settings(data.name, epochs=epochs, lr=lr, quick=quick)
    if embed_slices is not None:
        cfg["embed_slices"] = int(embed_slices)
    if n_landmark != "default":
        cfg["n_landmark"] = n_landmark
    common_t = [int(t) for t in common_t]
    if any(t < 1 for t in common_t):
        raise ValueError(f"common diffusion times must be positive integers; got {common_t}")
    variants = list(dict.fromkeys(variants))
    where = (f"on the Dask cluster at {scheduler}" if scheduler is not None else
             f"on {workers} local Dask worker(s)" if workers is not None else "in this process")
    C.log(f"generalization: {len(variants)} networks {data.n_inputs}-{'-'.join(map(str, cfg['hidden']))}-10 "
          f"on {data.name} ({len(data.y_train)} train / {len(data.y_val)} validation), {cfg['epochs']} epochs, "
          f"Adam lr {cfg['lr']:g}, batch {cfg['batch_size']}, trained and embedded {where}", quiet)
    jobs = [_job(v, cfg, data_dir, seed, common_t, workers) for v in variants]
    timer = C.Timer()
    done, failed = _run_networks(jobs, out / "cache", use_cache, workers, scheduler, quiet)
    if not done:
        messages = sorted(set(failed.values()))
        raise ValueError(f"every network failed: {messages[0]}" if len(messages) == 1 else
                         "every network failed: " + "; ".join(f"{v}: {m}" for v, m in failed.items()))
    done = [done[v] for v in variants if v in done]
    seconds = {"networks_seconds": timer.seconds,
               "train_seconds": sum(d["row"]["train_seconds"] for d in done),
               "embed_seconds": sum(d["row"]["embed_seconds"] for d in done)}
    executor = {"workers": workers, "scheduler": scheduler, "failed": failed,
                "cached": [d["network"] for d in done if d.get("cached")]}
    return _write_outputs(out, done, data, cfg, common_t, executor, seconds, total, quiet)


def _workers_from_n_jobs(n_jobs, workers):
    """``workers`` for the deprecated ``n_jobs`` (a process pool of that size, 1: this process)."""
    if n_jobs is None:
        return workers
    import warnings

    warnings.warn("generalization.run(n_jobs=) is deprecated: use workers=N (a local Dask cluster of N "
                  "processes) or nothing (this process)", DeprecationWarning, stacklevel=3)
    return workers if workers is not None or int(n_jobs) <= 1 else int(n_jobs)


def _job(variant, cfg, data_dir, seed, common_t, workers) -> tuple:
    """:func:`network_task`'s arguments for one network, the cache key among them: every setting
    the result depends on (threads aside: they do not change it) and the versions computing it."""
    import mphate
    from mphate.runs.executor import threads_per_task
    from mphate.runs.specs import params_digest

    train = dict(data_dir=data_dir, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                 hidden=cfg["hidden"], seed=seed, n_per_class=cfg["n_per_class"])
    embed = dict(embed_slices=cfg["embed_slices"], n_landmark=cfg["n_landmark"], common_t=common_t, seed=seed)
    key = params_digest({"experiment": "generalization", "network": variant, "train": train, "embed": embed,
                         "data": _data_fingerprint(data_dir), "mphate": mphate.__version__,
                         "torch": require("torch", "the generalisation experiment").__version__})
    return variant, train, {**embed, "n_jobs": threads_per_task(workers)}, key


def _data_fingerprint(data_dir) -> list:
    """What identifies the data: "digits" (bundled), or each MNIST file's name, size and time
    (``data_dir`` is a folder of them or an mnist.npz)."""
    if data_dir is None:
        return ["digits"]
    path = Path(data_dir)
    files = [f for f in path.iterdir() if f.is_file()] if path.is_dir() else [path]
    return sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def _run_networks(jobs, cache_dir, use_cache, workers, scheduler, quiet):
    """Every network's :func:`network_task` result, from the cache or run now, each saved to the
    cache as it arrives; ``({network: result}, {network: one-line error})``."""
    from mphate.runs import TaskFailure, run_tasks
    from mphate.runs.cache import load_result, save_result

    done, failed, todo = {}, {}, []
    for job in jobs:
        hit = load_result(cache_dir, job[3]) if use_cache else None
        if hit is None:
            todo.append(job)
            continue
        history = hit.pop("scalars")
        done[job[0]] = {**hit, "history": history, "cached": True}
        _log_network(done[job[0]], "from the cache", quiet)

    def on_done(i, value):
        variant = todo[i][0]
        if isinstance(value, TaskFailure):
            failed[variant] = value.message
            C.log(f"  {variant}: failed: {value.message}", quiet)
            return
        done[variant] = value
        save_result({**{k: v for k, v in value.items() if k != "history"}, "scalars": value["history"]}, cache_dir)
        _log_network(value, f"trained in {value['row']['train_seconds']:.1f} s", quiet)

    run_tasks(network_task, todo, labels=[job[0] for job in todo], workers=workers, scheduler=scheduler,
              on_done=on_done, quiet=True, desc="networks")
    return done, failed


def _log_network(result, how, quiet) -> None:
    row = result["row"]
    units = row["points"] // row["embedded_slices"]
    C.log(f"  {row['network']}: {how}; embedded {row['embedded_slices']} slices x {units} units in "
          f"{row['embed_seconds']:.1f} s; t = {row['t']}, memorisation {row['memorization_error']:.3f}, "
          f"variance {row['visualization_variance']:.4g}", quiet)


def _write_outputs(out, done, data, cfg, common_t, executor, seconds, total, quiet) -> dict:
    """The correlations, tables, figures and summary of the embedded networks; :func:`run`'s result."""
    from mphate.plot.colorings import CATEGORICAL, Coloring

    emb_dir = out / "embeddings"
    emb_dir.mkdir(exist_ok=True)
    for d in done:
        np.savez_compressed(emb_dir / f"{d['network']}.npz", embedding=d["embedding"], epochs=d["epochs"],
                            unit_layer=d["unit_layer"])
    rows = [d["row"] for d in done]
    embeddings = {d["network"]: d["embedding"] for d in done}
    colorings = {d["network"]: Coloring("class", "most-active class", d["class_codes"], CATEGORICAL,
                                        list(d["classes"])) for d in done}
    histories = {d["network"]: d["history"] for d in done}
    errors = [r["memorization_error"] for r in rows]
    rho, p = C.spearman(errors, [r["visualization_variance"] for r in rows])
    spearman_by_t = {t: C.spearman(errors, [r[f"variance_t{t}"] for r in rows]) for t in common_t}
    files = {}
    files["table"] = C.write_csv(out / "generalization.csv", rows)
    files["history"] = C.write_csv(out / "generalization_history.csv", [
        {"network": v, "epoch": e + 1, **{k: float(h[k][e]) for k in ("loss", "val_loss", "accuracy", "val_accuracy")}}
        for v, h in histories.items() for e in range(len(h["loss"]))
    ])
    files["figure"] = _embedding_figure(out / "generalization.png", rows, embeddings, colorings)
    files["losses"] = _loss_figure(out / "generalization_losses.png", histories)
    files["variance"] = _variance_figure(out / "generalization_variance.png", rows, rho, p)
    summary = {
        "experiment": "generalization", "data": data.name, "n_train": len(data.y_train),
        "n_val": len(data.y_val), "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "spearman_rho": rho, "spearman_p": p,
        "spearman_by_t": {str(t): {"rho": r, "p": q} for t, (r, q) in spearman_by_t.items()},
        **executor, **seconds, "total_seconds": total.seconds,
    }
    files["summary"] = C.write_json(out / "generalization_summary.json", summary)
    C.log(C.markdown_table(rows, ["network", "final_train_loss", "final_val_loss", "memorization_error",
                                  "visualization_variance", "t", "t_candidates"]), quiet)
    for t, (rho_t, p_t) in spearman_by_t.items():
        C.log(f"at a common t = {t}: Spearman rho = {rho_t:.3f} (p = {p_t:.3g})", quiet)
    C.log(f"Spearman rho (memorisation error vs visualisation variance) = {rho:.3f} (p = {p:.3g}); "
          f"total {total.seconds:.0f} s (training {seconds['train_seconds']:.0f} s, "
          f"embedding {seconds['embed_seconds']:.0f} s, summed over the networks)", quiet)
    return {"rows": rows, "failed": dict(executor["failed"]), "spearman_rho": rho, "spearman_p": p,
            "spearman_by_t": spearman_by_t, "files": {k: Path(v) for k, v in files.items()},
            "seconds": total.seconds, "summary": summary}


def _variances_at(est, trace, times) -> dict:
    """Visualisation variance of ``trace`` re-embedded at each of ``times`` (fitted ``est``)."""
    from mphate.metrics import visualization_variance

    auto_t = est.t
    variances = {}
    for t in times:
        embedding = est.set_params(t=t).fit_transform(trace.data)  # kernel and landmarks reused
        variances[f"variance_t{t}"] = visualization_variance(embedding, trace.n_slices)
    est.set_params(t=auto_t)
    return variances


def _embedding_figure(path, rows, embeddings, colorings):
    """The paper's 2 x 4 grid: each network coloured by most-active class, with its final losses."""
    from mphate.plot import scatter

    n = len(rows)
    ncols = min(4, n)
    nrows = int(np.ceil(n / ncols))
    fig = C.new_figure(3.1 * ncols + 1.0, 3.0 * nrows)
    grid = fig.add_gridspec(nrows, ncols)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        v = row["network"]
        scatter(embeddings[v], colorings[v], ax=ax, legend=(i == ncols - 1),
                s=1.5, alpha=0.5)
        ax.set_title(f"{LABELS.get(v, v)}\ntrain {row['final_train_loss']:.3f} / val {row['final_val_loss']:.3f}",
                     fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.suptitle("M-PHATE of each network, coloured by each unit's most-active class")
    return C.save(fig, path)


def _loss_figure(path, histories):
    fig = C.new_figure(10, 3.4)
    ax_train, ax_val = fig.subplots(1, 2)
    for v, h in histories.items():
        epochs = np.arange(1, len(h["loss"]) + 1)
        (line,) = ax_train.plot(epochs, h["loss"], lw=1.2, label=LABELS.get(v, v))
        ax_val.plot(epochs, h["val_loss"], lw=1.2, color=line.get_color())
    for ax, title in ((ax_train, "training loss"), (ax_val, "validation loss")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.spines[["top", "right"]].set_visible(False)
    ax_val.legend(handles=ax_train.get_lines(), fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return C.save(fig, path)


def _variance_figure(path, rows, rho, p):
    fig = C.new_figure(5.2, 3.8)
    ax = fig.add_subplot()
    for r in rows:
        ax.scatter(r["visualization_variance"], r["memorization_error"], s=25)
        ax.annotate(LABELS.get(r["network"], r["network"]), (r["visualization_variance"], r["memorization_error"]),
                    fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("visualisation variance")
    ax.set_ylabel("memorisation error (val - train loss)")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_title(f"Spearman rho = {rho:.2f} (p = {p:.2g})", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return C.save(fig, path)
