"""Packed sweep versus one trial per point, through the real study runner, side by side.

    python benchmarks/packed_sweep.py [--episodes 20000] [--batch-size 1] [--lrs 16] [--norms 4] [--seeds 4]

The sweep (issue "packed sweeps"): rules uwm and wm on the 11-bit multiplexer, hidden [64, 32],
16 learning rates (log-spaced 1e-3..1e-1) x 4 initial outgoing norms (0.5, 1, 2, 4) per rule,
4 seeds per point, 20 000 episodes each: 128 points. It runs twice with `uwm-study run` on a
local Ray and a fresh MLflow SQLite store: once with pack_size 64 (a rule's 64 points share one
population) and once with pack_size 1 (one Ray trial per point). For each run it prints wall
time, points per second and the peak memory the machine used above its idle level, then the
speed-up and, per rule and norm, the best final eval reward of both runs with the seed noise
(the standard error over seeds of the best point), which must agree.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def used_memory_bytes() -> int:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kb = lambda k: int(info[k].split()[0]) * 1024  # noqa: E731
    return kb("MemTotal") - kb("MemAvailable")


def spec(args, pack_size: int) -> dict:
    lrs = [float(x) for x in np.geomspace(1e-3, 1e-1, args.lrs)]
    norms = [0.5, 1.0, 2.0, 4.0][: args.norms]
    return {
        "name": f"packed-sweep-{pack_size}",
        "description": "benchmarks/packed_sweep.py",
        "base": {"task": {"address_bits": 3}, "hidden": [64, 32], "batch_size": args.batch_size,
                 "episodes": args.episodes, "report_every": args.episodes // 4, "seeds": args.seeds,
                 "eval_episodes": 512, "probe": {"enabled": False}, "threshold": 0.5},
        "grid": {"rule": ["uwm", "wm"], "outgoing_norm": norms, "lr": lrs},
        "samples_per_cell": 1,
        "pack_size": pack_size,
    }


def run(args, pack_size: int, workdir: Path) -> dict:
    folder = workdir / f"pack{pack_size}"
    folder.mkdir()
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec(args, pack_size)))
    idle = used_memory_bytes()
    peak = [idle]
    done = threading.Event()

    def watch():
        while not done.wait(0.5):
            peak[0] = max(peak[0], used_memory_bytes())

    threading.Thread(target=watch, daemon=True).start()
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db")
    env.pop("RAY_ADDRESS", None)
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "study.cli", "run", str(path), "--storage", str(folder / "runs")],
                   cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL if args.quiet else None)
    wall = time.perf_counter() - tic
    done.set()
    return {"wall": wall, "peak": peak[0] - idle, "uri": env["MLFLOW_TRACKING_URI"], "name": f"packed-sweep-{pack_size}"}


def best_per_cell(uri: str, name: str) -> dict:
    """(rule, norm) -> (best final eval reward over the lr axis, its standard error over seeds)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`uwm.role` = 'trial'", max_results=10_000)
    best = {}
    for r in runs:
        key = (r.data.params.get("rule"), float(r.data.params.get("outgoing_norm")))
        value = r.data.metrics.get("eval_reward_mean", float("nan"))   # the series' latest value: its final one
        if key not in best or value > best[key][0]:
            best[key] = (value, r.info.run_id)
    # the spread over seeds is in the run's per-seed curves (a child run charts the mean only)
    return {key: (value, _final_sem(client, run_id)) for key, (value, run_id) in best.items()}, len(runs)


def _final_sem(client, run_id: str) -> float:
    """Standard error over seeds of the eval reward at the run's last report."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        table = pd.read_csv(client.download_artifacts(run_id, "curves_per_seed.csv", tmp))
    last = table[(table["metric"] == "eval_reward") & (table["episode"] == table["episode"].max())]["value"]
    return float(last.std(ddof=1) / np.sqrt(len(last))) if len(last) > 1 else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lrs", type=int, default=16)
    parser.add_argument("--norms", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--quiet", action="store_true", help="hide the runs' progress output")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    points = 2 * args.lrs * args.norms
    workdir = Path(tempfile.mkdtemp(prefix="packed-sweep-"))
    try:
        results = {size: run(args, size, workdir) for size in (args.lrs * args.norms, 1)}
        print(f"\n{points} points ({args.seeds} seeds, {args.episodes} episodes, batch {args.batch_size}) per run:")
        for size, r in results.items():
            print(f"  pack_size {size:>3}: wall {r['wall']:8.1f} s, {points / r['wall']:6.3f} points/s, "
                  f"peak memory +{r['peak'] / 2**30:5.2f} GiB")
        packed, single = results[args.lrs * args.norms], results[1]
        print(f"  speed-up: {single['wall'] / packed['wall']:.1f}x")
        (bp, n_packed), (bs, n_single) = best_per_cell(packed["uri"], packed["name"]), best_per_cell(single["uri"], single["name"])
        print(f"  MLflow child runs: {n_packed} packed, {n_single} one per point")
        print("\n  best final eval reward per (rule, norm): packed | one per point | difference in seed-noise units")
        worst = 0.0
        for key in sorted(bp):
            (a, sa), (b, sb) = bp[key], bs[key]
            z = abs(a - b) / max(np.hypot(sa, sb), 1e-9)
            worst = max(worst, z)
            print(f"    {key[0]:>4} norm {key[1]:>3}: {a:6.3f} | {b:6.3f} | {z:4.1f}")
        print(f"  agreement: {'yes' if worst < 4 else 'NO'} (largest difference {worst:.1f} standard errors)")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
