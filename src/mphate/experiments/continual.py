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
from mphate.experiments.training import load_data, make_mlp, run_parallel, start_worker, train
from mphate.optional import require

SCENARIOS = ("task", "domain", "class")
LEARNERS = ("adam", "adagrad", "rehearsal")
TASKS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))

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
        s = dict(epochs_per_task=4, hidden=(400, 400), trace_every=50, n_per_class=10,
                 n_landmark=C.estimator_default("n_landmark"),
                 ari_seeds=20, lr={"adam": 1e-5, "adagrad": 1e-4, "rehearsal": 1e-5}, buffer_size=5000)
    else:
        s = dict(epochs_per_task=4, hidden=(400, 400), trace_every=1, n_per_class=10,
                 n_landmark=C.estimator_default("n_landmark"),
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


# ---------------------------------------------------------------------------------------------
# training one (scenario, learner)

_PURPOSE = "the continual-learning experiment"


def continual_targets(scenario: str, y, task):
    """Targets for labels ``y`` of tasks ``task`` (tensors): within-task 0 / 1 (task), even / odd
    member of the pair (domain) or the digit itself (class)."""
    if scenario == "task":
        return y - 2 * task  # 0 / 1 within the task's own pair of logits
    if scenario == "domain":
        return y % 2  # even / odd member of the pair
    return y


def continual_logits(scenario: str, logits, task):
    """Task scenario: only the two logits of each example's own task (masked softmax)."""
    if scenario != "task":
        return logits
    torch = require("torch", _PURPOSE)
    cols = torch.stack([2 * task, 2 * task + 1], dim=1)
    return torch.gather(logits, 1, cols)


def evaluate_tasks(model, scenario: str, X_val, y_val, t_val) -> dict:
    """Validation loss and accuracy over all tasks and per task (``val_loss_task<i>`` ...).

    The model is evaluated in evaluation mode and left in training mode.
    """
    torch = require("torch", _PURPOSE)
    model.eval()
    with torch.no_grad():
        logits = continual_logits(scenario, model(X_val), t_val)
        target = continual_targets(scenario, y_val, t_val)
        per_example = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        correct = (logits.argmax(1) == target).float()
    row = {"val_loss": per_example.mean().item(), "val_accuracy": correct.mean().item()}
    for t in range(len(TASKS)):
        row[f"val_loss_task{t}"] = per_example[t_val == t].mean().item()
        row[f"val_accuracy_task{t}"] = correct[t_val == t].mean().item()
    model.train()
    return row


class Rehearsal:
    """Adam with rehearsal's buffer: ``size`` examples kept from the earlier tasks, split evenly
    between them; every batch is joined by an equally large batch drawn from it."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng = int(size), rng
        self.X, self.y = [], []

    def make_batch(self):
        """:func:`~mphate.experiments.training.train`'s ``make_batch`` for the next task (None
        while the buffer is empty)."""
        if not self.X:
            return None
        torch = require("torch", _PURPOSE)
        replay_X, replay_y = torch.cat(self.X), torch.cat(self.y)

        def joined(Xb, yb):
            r = torch.from_numpy(self.rng.choice(len(replay_y), size=min(len(yb), len(replay_y)), replace=False))
            return torch.cat([Xb, replay_X[r]]), torch.cat([yb, replay_y[r]])

        return joined

    def keep(self, X, y, task: int) -> None:
        """After task ``task``: an even share of the buffer for every task seen so far."""
        torch = require("torch", _PURPOSE)
        share = self.size // (task + 1)
        self.X = [bx[:share] for bx in self.X]
        self.y = [by[:share] for by in self.y]
        keep = torch.from_numpy(self.rng.choice(len(y), size=min(share, len(y)), replace=False))
        self.X.append(X[keep])
        self.y.append(y[keep])


def _tensors(X, y):
    """Inputs, labels and task of each example, as tensors."""
    torch = require("torch", _PURPOSE)
    y = torch.from_numpy(np.ascontiguousarray(y)).long()
    return torch.from_numpy(np.ascontiguousarray(X)), y, y // 2


def train_continual(scenario: str, learner: str, *, data_dir=None, epochs_per_task: int = 4,
                    batch_size: int = 128, lr: float | None = None, hidden=(400, 400),
                    trace_every: int = 1, buffer_size: int | None = None, seed: int = 0,
                    n_per_class: int = 10) -> dict:
    """Train and trace one continual learner on the 5 digit-pair tasks.

    Scenarios: "task" (10 outputs, each task's loss and prediction over its own 2 logits: the
    masked softmax), "domain" (2 outputs: even or odd member of the pair), "class" (10-way).
    Learners: "adam", "adagrad", "rehearsal" (Adam with a :class:`Rehearsal` buffer of
    ``buffer_size`` examples). Default ``lr``: Adam 1e-3, Adagrad 1e-2 (the paper's 1e-5 / 1e-4
    for MNIST's 94 batches per task-epoch, scaled up for the 3 batches of a digits task-epoch,
    keeping the paper's ratio of 10). Default ``buffer_size``: 1/12 of the training set (the
    paper's 5000 of MNIST's 60000).

    Returns
    -------
    dict with "scenario", "learner", "trace" (one slice every ``trace_every`` batches, with the
    scalars task, loss (the batch's), val_loss and val_accuracy over all 5 tasks, and
    val_loss_task<i> for each task), "switch_slices" (index of the first slice recorded in each
    new task, 4 values), "task_end_steps" (the step count at the end of each task), "final"
    (val_loss, val_accuracy after the last task, and per task), "steps_per_task_epoch" and
    "seconds".
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
    if learner not in LEARNERS:
        raise ValueError(f"unknown learner {learner!r}; choose from {LEARNERS}")
    torch = require("torch", _PURPOSE)
    from mphate.capture import TorchRecorder

    timer = C.Timer()
    data, (X_trace, y_trace) = start_worker(data_dir, seed, n_per_class)
    model = make_mlp(data.n_inputs, hidden, 2 if scenario == "domain" else 10, activation="relu", seed=seed)
    if lr is None:
        lr = 1e-2 if learner == "adagrad" else 1e-3
    opt = (torch.optim.Adagrad if learner == "adagrad" else torch.optim.Adam)(model.parameters(), lr=lr)
    if buffer_size is None:
        buffer_size = max(10, round(len(data.y_train) / 12))
    replay = Rehearsal(buffer_size, np.random.default_rng(seed)) if learner == "rehearsal" else None
    train_sets = [_tensors(data.X_train[np.isin(data.y_train, p)], data.y_train[np.isin(data.y_train, p)])
                  for p in TASKS]
    val = _tensors(data.X_val, data.y_val)
    with TorchRecorder(model, X_trace, labels=y_trace, layers=list(model.hidden_names)) as rec:
        switch_slices, task_end_steps = _learn_tasks(
            model, opt, train_sets, val, rec, scenario=scenario, replay=replay, epochs_per_task=epochs_per_task,
            batch_size=batch_size, trace_every=trace_every, generator=torch.Generator().manual_seed(seed))
        final = evaluate_tasks(model, scenario, *val)
        trace = rec.to_trace()
    return {"scenario": scenario, "learner": learner, "trace": trace, "switch_slices": switch_slices,
            "task_end_steps": task_end_steps,
            "final": final, "lr": lr, "buffer_size": buffer_size if replay is not None else 0,
            "steps_per_task_epoch": int(np.ceil(len(train_sets[0][1]) / batch_size)), "seconds": timer.seconds}


def _learn_tasks(model, opt, train_sets, val, rec, *, scenario, replay, epochs_per_task, batch_size,
                 trace_every, generator):
    """The tasks one after the other, a slice every ``trace_every`` batches: the index of the
    first slice of each new task and the batch count at the end of each task."""
    torch = require("torch", _PURPOSE)
    lossf = torch.nn.CrossEntropyLoss()
    steps = [0]
    switch_slices, task_end_steps = [], []

    def loss(Xb, yb):
        task = yb // 2
        return lossf(continual_logits(scenario, model(Xb), task), continual_targets(scenario, yb, task))

    for task, (X, y, _) in enumerate(train_sets):
        if task > 0:
            switch_slices.append(rec.n_slices)

        def on_batch(b, task=task):
            steps[0] += 1
            if steps[0] % trace_every == 0:
                rec.record(step=steps[0], epoch=task + (b.epoch - 1 + b.seen / b.n) / epochs_per_task,
                           task=task, loss=b.loss.item(), **evaluate_tasks(model, scenario, *val))

        train(model, opt, X, y, epochs=epochs_per_task, batch_size=batch_size, generator=generator, loss=loss,
              make_batch=None if replay is None else replay.make_batch(), on_batch=on_batch)
        task_end_steps.append(steps[0])
        if replay is not None:
            replay.keep(X, y, task)
    return switch_slices, task_end_steps


# ---------------------------------------------------------------------------------------------
# the experiment


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
        M-PHATE landmarks (default: the estimator's, ``MPHATE().n_landmark``).

    Returns
    -------
    dict with "rows" (one per network), "spearman_rho", "spearman_p", "files", "seconds".
    """
    total = C.Timer()
    out = C.output_dir(out)
    data_dir = None if data_dir is None else str(data_dir)
    data = load_data(data_dir, seed)
    cfg = settings(data.name, epochs=epochs, trace_every=trace_every, quick=quick)
    if n_landmark != "default":
        cfg["n_landmark"] = n_landmark
    combos = [(s, l) for s in scenarios for l in learners]
    C.log(f"continual: {len(combos)} networks {data.n_inputs}-{'-'.join(map(str, cfg['hidden']))} ReLU on "
          f"{data.name}, 5 tasks {' '.join(f'{a}/{b}' for a, b in TASKS)}, {cfg['epochs_per_task']} epochs per "
          f"task, batch {cfg['batch_size']}, traced every {cfg['trace_every']} batches, {n_jobs} worker(s)", quiet)
    train_timer = C.Timer()
    results = run_parallel(
        train_continual, _jobs(combos, cfg, data_dir, seed), n_jobs=n_jobs,
        progress=lambda r: C.log(f"  trained {r['scenario']} / {r['learner']} ({r['seconds']:.1f} s): final val "
                                 f"loss {r['final']['val_loss']:.3f}, accuracy {r['final']['val_accuracy']:.3f}", quiet),
    )
    seconds = {"train_seconds": train_timer.seconds}

    embed_timer = C.Timer()
    emb_dir = out / "embeddings"
    emb_dir.mkdir(exist_ok=True)
    embedded = [_embed_learner(res, cfg, emb_dir, seed, quiet) for res in results]
    seconds["embed_seconds"] = embed_timer.seconds
    return _write_outputs(out, embedded, results, data, cfg, scenarios, n_jobs, seconds, total, quiet)


def _jobs(combos, cfg, data_dir, seed) -> list[dict]:
    """:func:`train_continual`'s arguments for each (scenario, learner)."""
    jobs = []
    for scenario, learner in combos:
        kwargs = dict(scenario=scenario, learner=learner, data_dir=data_dir,
                      epochs_per_task=cfg["epochs_per_task"], batch_size=cfg["batch_size"], hidden=cfg["hidden"],
                      trace_every=cfg["trace_every"], seed=seed, n_per_class=cfg["n_per_class"])
        if "lr" in cfg:
            kwargs["lr"] = cfg["lr"][learner]
        if "buffer_size" in cfg:
            kwargs["buffer_size"] = cfg["buffer_size"]
        jobs.append(kwargs)
    return jobs


def _embed_learner(res, cfg, emb_dir, seed, quiet):
    """Embed one trained learner and score its task switches: its table row, embedding, trace
    and per-slice history rows."""
    from mphate.metrics import task_switch_ari

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
    history = [{"scenario": key[0], "learner": key[1], "slice": i, "step": int(trace.steps[i]),
                **{k: float(v[i]) for k, v in trace.scalars.items()}} for i in range(trace.n_slices)]
    C.log(f"  embedded {key[0]} / {key[1]}: {trace.n_slices} slices x {n_units} units in {seconds:.1f} s; "
          f"ARI {row['ari']:.3f} ({', '.join(f'{a:.2f}' for a in aris)})", quiet)
    return row, emb, trace, history


def _write_outputs(out, embedded, results, data, cfg, scenarios, n_jobs, seconds, total, quiet) -> dict:
    """The correlations, tables, figures and summary of the embedded learners; :func:`run`'s result."""
    rows = [row for row, *_ in embedded]
    embeddings = {(row["scenario"], row["learner"]): emb for row, emb, _, _ in embedded}
    traces = {(row["scenario"], row["learner"]): trace for row, _, trace, _ in embedded}
    history = [h for *_, rows_of_one in embedded for h in rows_of_one]
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
               "n_jobs": n_jobs, **seconds, "total_seconds": total.seconds}
    files["summary"] = C.write_json(out / "continual_summary.json", summary)
    C.log(C.markdown_table(rows, ["scenario", "learner", "ari", "final_val_loss", "final_val_accuracy"]), quiet)
    C.log(f"Spearman rho (ARI vs final validation loss, {len(rows)} networks) = {rho:.3f} (p = {p:.3g}); "
          f"total {total.seconds:.0f} s (training {seconds['train_seconds']:.0f} s, "
          f"embedding and ARI {seconds['embed_seconds']:.0f} s)", quiet)
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
