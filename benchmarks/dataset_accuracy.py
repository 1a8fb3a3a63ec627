"""Test accuracy of every rule on MNIST-5k (binary 0-4 against 5-9, and 10 classes), short Trainer runs, beside
the reference points of analysis.reference. Prints one Markdown table per task (the README's figures).

    python benchmarks/dataset_accuracy.py [--episodes 16000] [--seeds 4] [--lr 0.003] [--hidden 64]

One fixed learning rate for every rule (not tuned: the tune_configs/mnist-*.yaml studies tune it), Adam, batch 8,
eager steps on the CPU. Accuracy is each seed's test_accuracy at the last report (the stochastic network on the
full 1 000-image test split); intervals are t-intervals over seeds (95%).
"""

import argparse
import time

import numpy as np
from scipy import stats

import uwm_model as um
from analysis.reference import reference_points

TASKS = {"binary 0-4 vs 5-9": {"dataset": "mnist5k", "classes": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]},
         "10 classes": {"dataset": "mnist5k"}}
RULES = [("reinforce (ema baseline)", "reinforce", {}, "ema"), ("ste", "ste", {}, "none"), ("wm", "wm", {}, "none"),
         ("hwm P=3", "hwm", {"order": 3}, "none"), ("uwm", "uwm", {}, "none")]


def interval(values):
    values = np.asarray(values, float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.3f} [{values.mean() - half:.3f}, {values.mean() + half:.3f}]"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=16000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    um.torch_settings(threads=1)
    for name in args.tasks:
        task = TASKS[name]
        print(f"\n### MNIST-5k, {name}: hidden [{args.hidden}], {args.episodes} episodes (batch 8), {args.seeds} seeds, "
              f"lr {args.lr}\n\n| method | test accuracy [95% interval] |\n|---|---|", flush=True)
        for label, rule, options, baseline in RULES:
            cfg = um.TrialConfig(task=task, hidden=[args.hidden], rule=rule, rule_options=options, baseline=baseline,
                                 lr=args.lr, batch_size=8, episodes=args.episodes, report_every=args.episodes,
                                 seeds=args.seeds, device="cpu", compile="off", probe={"enabled": False})
            tic = time.time()
            last = list(um.Trainer(cfg).run())[-1].points[0]
            print(f"| {label} | {interval([r['test_accuracy'] for r in last.per_seed])} ({time.time() - tic:.0f} s) |",
                  flush=True)
        for _, r in reference_points(task, [args.hidden]).iterrows():
            ci = f" [{r['lo']:.3f}, {r['hi']:.3f}]" if np.isfinite(r["lo"]) else ""
            print(f"| {r['reference']} | {r['accuracy']:.3f}{ci} ({r['note']}) |", flush=True)


if __name__ == "__main__":
    main()
