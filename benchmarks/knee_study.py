"""How stable is t="auto"? Knee rules on real von Neumann entropy curves.

Trains the 8 generalisation networks on digits (300 epochs, traced every epoch), embeds each
with ``spectral_stride`` 1 and 2, adds the benchmark traces found in benchmarks/data, and
prints, for every entropy curve, the t that each knee rule picks and our ``t_candidates_``.
The numbers quoted in docs/algorithm.md ("Two-bend curves") come from this script.

    .venv/bin/python benchmarks/knee_study.py                  # about 6 minutes on 2 cores
    .venv/bin/python benchmarks/knee_study.py --spectra benchmarks/out/knee_spectra.npz
    .venv/bin/python benchmarks/knee_study.py --preservation random_pixels

Rules compared (all on the entropy at t = 1..100):
  L        the estimator's rule: best two-segment least-squares fit (diffusion.find_knee)
  L-refine the same, refitted on t = 1..2*knee until the knee stops moving (Salvador & Chan)
  kneedle  the point farthest below the chord between the curve's ends (Satopaa et al.)
  L-log-t  a two-segment fit against log t instead of t
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
TRACES = os.path.join(OUT, "knee_traces")
BENCH_TRACES = ("digits_trace", "digits_100x512", "digits_300x1024")


def refined(y, min_points=20):
    from mphate.embed.diffusion import find_knee

    knee, cutoff = len(y), len(y)
    while True:
        last = knee
        knee = find_knee(y[:cutoff])
        cutoff = min(len(y), max(min_points, 2 * (knee + 1)))
        if knee >= last:
            return knee


def kneedle(y):
    x = np.linspace(0, 1, len(y))
    scaled = (y - y.min()) / (y.max() - y.min())
    return int(np.argmax((1 - scaled) - x))


def log_t(y):
    x = np.log(np.arange(1, len(y) + 1))

    def rss(xs, ys):
        return ((ys - np.polyval(np.polyfit(xs, ys, 1), xs)) ** 2).sum()

    errors = [rss(x[: i + 1], y[: i + 1]) + rss(x[i:], y[i:]) for i in range(1, len(y) - 1)]
    return int(np.argmin(errors)) + 1


def record_spectra(path):
    from mphate import MPHATE
    from mphate.experiments.generalization import train_generalization
    from mphate.experiments.generalization import GENERALIZATION_VARIANTS

    os.makedirs(TRACES, exist_ok=True)
    spectra = {}
    for variant in GENERALIZATION_VARIANTS:
        data = train_generalization(variant, epochs=300, lr=1e-3, seed=0)["trace"].data
        np.savez(os.path.join(TRACES, f"{variant}.npz"), trace=data)
        for stride in (1, 2):
            est = MPHATE(random_state=0, spectral_stride=stride).fit(data)
            spectra[f"{variant}_stride{stride}"] = est.spectrum_.eigenvalues
            print(f"  {variant}, stride {stride}: t = {est.t_}", flush=True)
    for name in BENCH_TRACES:
        file = os.path.join(HERE, "data", f"{name}.npz")
        if os.path.exists(file):
            est = MPHATE(random_state=0).fit(np.load(file)["trace"])
            spectra[name] = est.spectrum_.eigenvalues
            print(f"  {name}: t = {est.t_}", flush=True)
    np.savez(path, **spectra)
    return spectra


def rule_table(spectra):
    from mphate.embed.diffusion import find_knee, knee_fit_errors, t_candidates, von_neumann_entropy

    rules = {"L": find_knee, "L-refine": refined, "kneedle": kneedle, "L-log-t": log_t}
    print("| curve | " + " | ".join(rules) + " | t_candidates_ | 2nd minimum / best |")
    print("|---|" + "---:|" * len(rules) + "---|---:|")
    for name, eigenvalues in spectra.items():
        entropy = von_neumann_entropy(eigenvalues, 100)
        errors = knee_fit_errors(entropy)
        local = [i for i in range(len(errors)) if errors[i] == errors[max(0, i - 5): i + 6].min()]
        ratios = sorted(errors[i] / errors.min() for i in local)
        second = f"{ratios[1]:.3f}" if len(ratios) > 1 else "-"
        picks = " | ".join(str(rule(entropy) + 1) for rule in rules.values())
        print(f"| {name} | {picks} | {' '.join(map(str, t_candidates(entropy)))} | {second} |")


def preservation_by_t(variant, times=(4, 6, 10, 15, 20, 25, 33, 45, 70)):
    from mphate import MPHATE
    from mphate.metrics import neighbor_preservation, visualization_variance

    file = os.path.join(TRACES, f"{variant}.npz")
    if not os.path.exists(file):
        file = os.path.join(HERE, "data", f"{variant}.npz")
    data = np.load(file)["trace"]
    est = MPHATE(random_state=0)
    print("| t | intra k=10 | inter k=10 | intra k=40 | inter k=40 | variance |")
    print("|---:|---:|---:|---:|---:|---:|")
    for t in times:
        embedding = est.set_params(t=t).fit_transform(data)  # kernel and landmarks reused
        scores = [neighbor_preservation(embedding, data, k) for k in (10, 40)]
        cells = " | ".join(f"{s['intraslice']:.3f} | {s['interslice']:.3f}" for s in scores)
        print(f"| {t} | {cells} | {visualization_variance(embedding, data.shape[0]):.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spectra", help="reuse spectra saved by an earlier run (.npz)")
    ap.add_argument("--preservation", metavar="TRACE",
                    help="instead: preservation and variance against t for one trace (a variant "
                         "recorded by an earlier run, or a benchmark trace name)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    if args.preservation:
        preservation_by_t(args.preservation)
        return
    if args.spectra:
        with np.load(args.spectra) as saved:
            spectra = {name: saved[name] for name in saved.files}
    else:
        os.makedirs(OUT, exist_ok=True)
        spectra = record_spectra(os.path.join(OUT, "knee_spectra.npz"))
    rule_table(spectra)


if __name__ == "__main__":
    main()
