"""The paper's continual-learning experiment: does a network that keeps its structure forget less?

The digits are split into 5 tasks of digit pairs (0/1, 2/3, ..., 8/9) learned one after the
other, in three scenarios (incremental task: a masked softmax over the current task's two
outputs; incremental domain: two outputs, even or odd member of the pair; incremental class:
10-way), by three learners (Adam, Adagrad, Adam with rehearsal of stored examples). Each network
(64-400-400 ReLU on digits, 784-400-400 on MNIST) is traced every few batches and embedded with
M-PHATE (interslice_knn = 12, the paper's setting here).

Structure kept across a task switch is scored by :func:`mphate.metrics.task_switch_ari` between
the units' positions just before the switch and one task-epoch after it, averaged over the four
switches; the paper's claim is that a higher ARI goes with a lower final validation loss.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mphate.experiments import _common as C
from mphate.experiments._train import LEARNERS, SCENARIOS, TASKS, load_data, run_parallel, train_continual

SCENARIO_LABELS = {"task": "Incremental task", "domain": "Incremental domain", "class": "Incremental class"}
LEARNER_LABELS = {"adam": "Adam", "adagrad": "Adagrad", "rehearsal": "Adam + rehearsal"}

#: final validation accuracy and loss the paper's figure shows (MNIST)
PAPER_FINAL = {
    ("task", "rehearsal"): (0.98, 0.05), ("task", "adagrad"): (0.98, 0.10), ("task", "adam"): (0.99, 0.04),
    ("domain", "rehearsal"): (0.75, 0.70), ("domain", "adagrad"): (0.78, 0.46), ("domain", "adam"): (0.65, 1.06),
    ("class", "rehearsal"): (0.40, 2.93), ("class", "adagrad"): (0.28, 1.88), ("class", "adam"): (0.19, 4.16),
}


def settings(data_name: str, *, epochs=None, trace_every=None, quick=False) -> dict:
    """Training and embedding settings: ours on digits, the paper's on MNIST, tiny with quick."""
    if quick:
        s = dict(epochs_per_task=2, hidden=(16, 16), trace_every=1, n_per_class=3, n_landmark=None,
                 ari_seeds=3)
    elif data_name == "mnist":
        s = dict(epochs_per_task=4, hidden=(400, 400), trace_every=50, n_per_class=10, n_landmark=4000,
                 ari_seeds=20, lr={"adam": 1e-5, "adagrad": 1e-4, "rehearsal": 1e-5}, buffer_size=5000)
    else:
        s = dict(epochs_per_task=4, hidden=(400, 400), trace_every=1, n_per_class=10, n_landmark=4000,
                 ari_seeds=20)
    if epochs is not None:
        s["epochs_per_task"] = int(epochs)
    if trace_every is not None:
        s["trace_every"] = int(trace_every)
    s["batch_size"] = 128
    s["interslice_knn"] = 12
    return s


def switch_pairs(steps, task_end_steps, lag_steps: int):
    """For each task switch, the slice just before it and the first slice ``lag_steps`` or more
    batches after it: a list of (before, after) slice indices (switches without both are left out).
    """
    steps = np.asarray(steps)
    pairs = []
    for end in task_end_steps[:-1]:
        before = np.flatnonzero(steps <= end)
        after = np.flatnonzero(steps >= end + lag_steps)
        if before.size and after.size:
            pairs.append((int(before[-1]), int(after[0])))
    return pairs


def run(out, *, data_dir=None, epochs=None, trace_every=None, quick=False, n_jobs: int = 2,
        n_landmark="default", scenarios=SCENARIOS, learners=LEARNERS, seed: int = 0,
        quiet: bool = False) -> dict:
    """Train, trace and embed every (scenario, learner); write tables and figures into ``out``.

    Parameters
    ----------
    out : path
    data_dir : path, optional
        MNIST files; default the bundled digits.
    epochs : int, optional
        Epochs per task (default 4, the paper's).
    trace_every : int, optional
        Batches between slices (default 1 on digits: 60 slices over 60 batches; 50 on MNIST, the
        paper's embedding interval).
    quick : bool
        Tiny networks, 2 epochs per task (tests, smoke runs).
    n_jobs : int
        Networks trained at once.
    n_landmark : int or None
        M-PHATE landmarks (default 4000, the estimator's).

    Returns
    -------
    dict with "rows" (one per network), "spearman_rho", "spearman_p", "files", "seconds".
    """
    from mphate.metrics import task_switch_ari

    total = C.Timer()
    out = C.output_dir(out)
    data = load_data(None if data_dir is None else str(data_dir), seed)
    cfg = settings(data.name, epochs=epochs, trace_every=trace_every, quick=quick)
    if n_landmark != "default":
        cfg["n_landmark"] = n_landmark
    combos = [(s, l) for s in scenarios for l in learners]
    C.log(f"continual: {len(combos)} networks {data.n_inputs}-{'-'.join(map(str, cfg['hidden']))} ReLU on "
          f"{data.name}, 5 tasks {' '.join(f'{a}/{b}' for a, b in TASKS)}, {cfg['epochs_per_task']} epochs per "
          f"task, batch {cfg['batch_size']}, traced every {cfg['trace_every']} batches, {n_jobs} worker(s)", quiet)
    train_timer = C.Timer()
    jobs = []
    for scenario, learner in combos:
        kwargs = dict(scenario=scenario, learner=learner, data_dir=None if data_dir is None else str(data_dir),
                      epochs_per_task=cfg["epochs_per_task"], batch_size=cfg["batch_size"], hidden=cfg["hidden"],
                      trace_every=cfg["trace_every"], seed=seed, n_per_class=cfg["n_per_class"])
        if "lr" in cfg:
            kwargs["lr"] = cfg["lr"][learner]
        if "buffer_size" in cfg:
            kwargs["buffer_size"] = cfg["buffer_size"]
        jobs.append(kwargs)
    results = run_parallel(
        train_continual, jobs, n_jobs=n_jobs,
        progress=lambda r: C.log(f"  trained {r['scenario']} / {r['learner']} ({r['seconds']:.1f} s): final val "
                                 f"loss {r['final']['val_loss']:.3f}, accuracy {r['final']['val_accuracy']:.3f}", quiet),
    )
    train_seconds = train_timer.seconds

    embed_timer = C.Timer()
    rows, embeddings, traces, history = [], {}, {}, []
    emb_dir = out / "embeddings"
    emb_dir.mkdir(exist_ok=True)
    for res in results:
        key = (res["scenario"], res["learner"])
        trace = res["trace"]
        emb, seconds, _ = C.embed_timed(trace, n_landmark=cfg["n_landmark"], interslice_knn=cfg["interslice_knn"],
                                     seed=seed)
        n_units = trace.n_units
        pairs = switch_pairs(trace.steps, res["task_end_steps"], res["steps_per_task_epoch"])
        aris = [task_switch_ari(emb[b * n_units:(b + 1) * n_units], emb[a * n_units:(a + 1) * n_units],
                                n_seeds=cfg["ari_seeds"]) for b, a in pairs]
        np.savez_compressed(emb_dir / f"{res['scenario']}_{res['learner']}.npz", embedding=emb.astype(np.float32),
                            steps=trace.steps, task=trace.scalars["task"], unit_layer=trace.unit_layer)
        paper_acc, paper_loss = PAPER_FINAL[key]
        row = {
            "scenario": res["scenario"], "learner": res["learner"],
            "ari": float(np.mean(aris)) if aris else float("nan"),
            **{f"ari_switch{i + 1}": a for i, a in enumerate(aris)},
            "final_val_loss": res["final"]["val_loss"], "final_val_accuracy": res["final"]["val_accuracy"],
            **{f"final_val_accuracy_task{t}": res["final"][f"val_accuracy_task{t}"] for t in range(len(TASKS))},
            "paper_val_accuracy": paper_acc, "paper_val_loss": paper_loss,
            "lr": res["lr"], "buffer_size": res["buffer_size"], "slices": trace.n_slices,
            "points": emb.shape[0], "train_seconds": res["seconds"], "embed_seconds": seconds,
        }
        rows.append(row)
        embeddings[key], traces[key] = emb, trace
        for i in range(trace.n_slices):
            history.append({"scenario": key[0], "learner": key[1], "slice": i, "step": int(trace.steps[i]),
                            **{k: float(v[i]) for k, v in trace.scalars.items()}})
        C.log(f"  embedded {key[0]} / {key[1]}: {trace.n_slices} slices x {n_units} units in {seconds:.1f} s; "
              f"ARI {row['ari']:.3f} ({', '.join(f'{a:.2f}' for a in aris)})", quiet)
    embed_seconds = embed_timer.seconds

    rho, p = C.spearman([r["ari"] for r in rows], [r["final_val_loss"] for r in rows])
    within = {}
    for scenario in scenarios:
        sub = [r for r in rows if r["scenario"] == scenario]
        within[scenario] = C.spearman([r["ari"] for r in sub], [r["final_val_loss"] for r in sub])[0]
    files = {}
    columns = (["scenario", "learner", "ari"] + [f"ari_switch{i}" for i in range(1, len(TASKS))]
               + ["final_val_loss", "final_val_accuracy"]
               + [f"final_val_accuracy_task{t}" for t in range(len(TASKS))]
               + ["paper_val_accuracy", "paper_val_loss", "lr", "buffer_size", "slices", "points",
                  "train_seconds", "embed_seconds"])
    files["table"] = C.write_csv(out / "continual.csv", rows, columns)
    files["history"] = C.write_csv(out / "continual_history.csv", history)
    files["figure_time"] = _grid(out / "continual_time.png", rows, embeddings, traces, "time")
    files["figure_task"] = _grid(out / "continual_task.png", rows, embeddings, traces, "task")
    files["losses"] = _loss_grid(out / "continual_losses.png", rows, traces, results)
    summary = {"experiment": "continual", "data": data.name,
               "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
               "ari_definition": "task_switch_ari between the slice just before each task switch and the first "
                                 "slice one task-epoch after it; k = 3..8, ari_seeds k-means seeds; mean of 4 switches",
               "spearman_rho": rho, "spearman_p": p, "spearman_rho_within_scenario": within,
               "n_jobs": n_jobs, "train_seconds": train_seconds, "embed_seconds": embed_seconds,
               "total_seconds": total.seconds}
    files["summary"] = C.write_json(out / "continual_summary.json", summary)
    C.log(C.markdown_table(rows, ["scenario", "learner", "ari", "final_val_loss", "final_val_accuracy"]), quiet)
    C.log(f"Spearman rho (ARI vs final validation loss, {len(rows)} networks) = {rho:.3f} (p = {p:.3g}); "
          f"total {total.seconds:.0f} s (training {train_seconds:.0f} s, embedding and ARI {embed_seconds:.0f} s)", quiet)
    return {"rows": rows, "spearman_rho": rho, "spearman_p": p, "within": within,
            "files": {k: Path(v) for k, v in files.items()}, "seconds": total.seconds, "summary": summary}


def _grid(path, rows, embeddings, traces, colour_by):
    """3 x 3: scenarios down, learners across, coloured by time (batch) or by task."""
    from mphate.plot import scatter

    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    fig = C.new_figure(3.0 * len(learners) + 1.2, 2.9 * len(scenarios))
    axes = fig.subplots(len(scenarios), len(learners), squeeze=False)
    by_key = {(r["scenario"], r["learner"]): r for r in rows}
    for i, s in enumerate(scenarios):
        for j, l in enumerate(learners):
            ax = axes[i, j]
            emb, trace = embeddings[(s, l)], traces[(s, l)]
            last = j == len(learners) - 1
            if colour_by == "time":
                scatter(emb, trace.per_point(values_per_slice=trace.steps.astype(float)), ax=ax,
                        kind="continuous", label="batch", colorbar=last, s=1.0, alpha=0.5)
            else:
                tasks = trace.per_point(values_per_slice=trace.scalars["task"].astype(int))
                scatter(emb, tasks, ax=ax, kind="categorical",
                        categories=[f"{a}/{b}" for a, b in TASKS], label="task", legend=last, s=1.0, alpha=0.5)
            r = by_key[(s, l)]
            ax.set_title(f"{LEARNER_LABELS[l]}: val loss {r['final_val_loss']:.2f}, ARI {r['ari']:.2f}", fontsize=8.5)
            ax.set_xlabel("")
            ax.set_ylabel(SCENARIO_LABELS[s] if j == 0 else "")
    fig.suptitle(f"M-PHATE of continual learners, coloured by {'training time' if colour_by == 'time' else 'task'}")
    return C.save(fig, path, dpi=100)


def _loss_grid(path, rows, traces, results):
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    fig = C.new_figure(3.2 * len(learners) + 1.2, 2.5 * len(scenarios))
    axes = fig.subplots(len(scenarios), len(learners), squeeze=False, sharex=True)
    ends = {(r["scenario"], r["learner"]): r["task_end_steps"] for r in results}
    for i, s in enumerate(scenarios):
        for j, l in enumerate(learners):
            ax, trace = axes[i, j], traces[(s, l)]
            ax.plot(trace.steps, trace.scalars["loss"], color="0.6", lw=1, label="train (batch)")
            for t in range(len(TASKS)):
                ax.plot(trace.steps, trace.scalars[f"val_loss_task{t}"], lw=1.2, label=f"val {TASKS[t][0]}/{TASKS[t][1]}")
            for end in ends[(s, l)][:-1]:
                ax.axvline(end + 0.5, color="0.85", lw=0.8, zorder=0)
            ax.set_yscale("log")
            ax.spines[["top", "right"]].set_visible(False)
            if i == 0:
                ax.set_title(LEARNER_LABELS[l], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{SCENARIO_LABELS[s]}\nloss", fontsize=9)
            if i == len(scenarios) - 1:
                ax.set_xlabel("batch")
    axes[0, -1].legend(fontsize="x-small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return C.save(fig, path, dpi=100)
