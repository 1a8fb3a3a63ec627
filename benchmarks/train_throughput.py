"""Training throughput of the replication config, side by side with the published numpy reference.

    python benchmarks/train_throughput.py [--rules wm uwm ...] [--episodes 40000] [--workers 1 2]
    REFERENCE_SCRIPT=<script timing the published code> python benchmarks/train_throughput.py

The config is tune_configs/trials/chung2022-multiplexer.yaml (20-bit multiplexer, hidden [64, 32],
batch 1, 10 seeds, Adam with per-layer learning rates), with the rule swapped. Episodes/s count
all seeds and exclude compilation, which is reported apart (steady state). The reference is
timed by a script you supply (--reference-script or REFERENCE_SCRIPT: it runs the published code,
github.com/stephen-chung-mh/weight_max with config_mp.ini, for N episodes given as its argument and
prints "N seconds") at two episode counts (start-up cancels) before and after our runs, and the
speed-up uses the mean of the two reference figures.
"""

import argparse
import os
import subprocess
import time
from pathlib import Path

import torch
import yaml

import uwm_model as um
from uwm_model.parallel import run_parallel
from uwm_model.settings import torch_settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tune_configs" / "trials" / "chung2022-multiplexer.yaml"


def reference_episodes_per_second(script: Path | None, short: int, long: int) -> float | None:
    if script is None or not script.exists():
        return None
    def run(n):
        out = subprocess.run(["bash", str(script), str(n)], capture_output=True, text=True, check=True).stdout
        episodes, seconds = out.split()
        return int(episodes), float(seconds)
    (e1, t1), (e2, t2) = run(short), run(long)
    return (e2 - e1) / (t2 - t1)


def ours(rule: str, episodes: int, workers: int, compile_mode: str):
    data = yaml.safe_load(CONFIG.read_text())
    data.update(rule=rule, rule_options={"p": 2} if rule == "wm" else {}, episodes=episodes,
                report_every=episodes // 4, compile=compile_mode, device="cpu", probe={"enabled": False})
    cfg = um.TrialConfig.model_validate(data)
    torch_settings(cfg.threads, cfg.device)   # as the CLI does; workers > 1 set their own
    tic = time.perf_counter()
    reports = list(run_parallel(cfg, workers=workers))
    total = time.perf_counter() - tic
    first, last = reports[0], reports[-1]
    # steady state: episodes after the first report over the training time after it
    steady = (last.episode - first.episode) * cfg.seeds / (last.wall_seconds - first.wall_seconds)
    return steady, last.compile_seconds, total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", nargs="+", default=["wm", "uwm", "reinforce", "ste", "hwm"])
    parser.add_argument("--episodes", type=int, default=40_000, help="episodes per seed for each of our runs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compile", nargs="+", default=["on"], choices=["on", "off"])
    parser.add_argument("--reference-script", type=Path, default=os.environ.get("REFERENCE_SCRIPT"),
                        help="runs the published numpy code for N episodes and prints 'N seconds'")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; config {CONFIG.name} (10 seeds, batch 1)")
    ref_before = reference_episodes_per_second(args.reference_script, 5_000, 25_000)
    rows = []
    for rule in args.rules:
        for mode in args.compile:
            for workers in args.workers:
                eps, compile_s, total = ours(rule, args.episodes, workers, mode)
                rows.append((rule, mode, workers, eps, compile_s, total))
                print(f"  {rule:>9} compile={mode:<3} workers={workers}: {eps:10.0f} episodes/s "
                      f"(compile {compile_s:5.1f} s, whole run {total:6.1f} s)", flush=True)
    ref_after = reference_episodes_per_second(args.reference_script, 5_000, 25_000)
    refs = [r for r in (ref_before, ref_after) if r]
    if refs:
        ref = sum(refs) / len(refs)
        print(f"\nreference (numpy, 1 seed, 1 core): {ref_before:.0f} before, {ref_after:.0f} after -> {ref:.0f} episodes/s")
        for rule, mode, workers, eps, _, _ in rows:
            print(f"  {rule:>9} compile={mode:<3} workers={workers}: {eps / ref:6.1f}x the reference")
    else:
        print("\n(pass --reference-script or set REFERENCE_SCRIPT to time the published reference side by side)")


if __name__ == "__main__":
    main()
