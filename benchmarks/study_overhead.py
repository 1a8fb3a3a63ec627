"""Where a study's time goes: its wall time against the training inside it (issue 28, items 1-3).

    python benchmarks/study_overhead.py [--spec tune_configs/quickstart.yaml] [--keep DIR]

Runs the study once with `uwm-study run` on a local Ray and a fresh MLflow SQLite store, then reads each pack's
``uwm.timeline`` tag (study/timeline.py: the trial function's time split into setup, compile, train, report,
mlflow, checkpoint and other) and prints:

- per pack: its phases and when it started, counted from the command's launch;
- the study: launch to the first pack's start (the CLI's imports, checks, MLflow's parent run, Ray's start,
  the searcher's first points, a worker's start and imports), the packs' span, the last pack's end to the exit;
- the fixed cost per pack (its total less compile, train and report: what a pack costs beyond its trainer);
- two ratios: the study's wall time against its training work spread over the trials that run at once plus
  Ray's start (the trainer's own clocks: compile, train, report, summed over packs, divided by the concurrency
  the packs actually reached), and against the training alone (train only).

Ray's start is timed once on its own (`ray.init` then `ray.shutdown` in a fresh interpreter). The trainer's
clocks inside a Ray worker are the trainer-alone times on the same cores (the same code in the same kind of
process); a side-by-side run of `Trainer` outside Ray is `benchmarks/packed_sweep.py`'s job.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ray_start_seconds() -> float:
    code = "import time, ray; t = time.perf_counter(); ray.init(); ray.shutdown(); print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def pack_timelines(tracking_uri: str) -> list[dict]:
    """One timeline per pack (its point runs carry the same one), with the pack's id and point count."""
    from mlflow.tracking import MlflowClient

    from uwm_model import layout

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`{layout.ROLE}` = '{layout.ROLE_TRIAL}'", max_results=50000)
    packs: dict[str, dict] = {}
    for run in runs:
        tag = run.data.tags.get(layout.TIMELINE)
        if tag is None:
            continue
        pack = run.data.tags[layout.PACK]
        packs.setdefault(pack, {**json.loads(tag), "pack": pack, "points": 0})["points"] += 1
    return sorted(packs.values(), key=lambda p: p["started"])


def concurrency(packs: list[dict]) -> float:
    """The packs' summed wall time over the span they covered: the trials that ran at once, on average."""
    span = max(p["started"] + p["total"] for p in packs) - min(p["started"] for p in packs)
    return sum(p["total"] for p in packs) / span if span > 0 else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=str(ROOT / "tune_configs" / "quickstart.yaml"))
    ap.add_argument("--keep", help="keep the MLflow store and Ray results in this folder (default: a temporary one)")
    args = ap.parse_args()

    ray_s = ray_start_seconds()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="uwm-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cli = Path(sys.executable).parent / "uwm-study"
    launched = time.time()
    proc = subprocess.run([str(cli), "run", args.spec, "--tracking-uri", uri, "--storage", str(work / "runs")],
                          cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.time() - launched
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        print(f"the study exited {proc.returncode}")
        return 1
    packs = pack_timelines(uri)
    if not packs:
        print("no pack timeline found (uwm.timeline): is the study older than study/timeline.py?")
        return 1

    phases = ["setup", "compile", "train", "report", "mlflow", "checkpoint", "other", "total"]
    print(f"{args.spec}: {len(packs)} packs, {sum(p['points'] for p in packs)} points, wall {wall:.1f} s "
          f"(Ray's start alone {ray_s:.1f} s)\n")
    print(f"{'pack':>12} {'pts':>4} {'start':>7} " + " ".join(f"{k:>10}" for k in phases))
    for p in packs:
        print(f"{p['pack'][-12:]:>12} {p['points']:>4} {p['started'] - launched:>7.1f} "
              + " ".join(f"{p[k]:>10.2f}" for k in phases))
    total = {k: sum(p[k] for p in packs) for k in phases}
    print(f"{'sum':>12} {sum(p['points'] for p in packs):>4} {'':>7} " + " ".join(f"{total[k]:>10.2f}" for k in phases))

    first = min(p["started"] for p in packs) - launched
    last_end = max(p["started"] + p["total"] for p in packs) - launched
    at_once = concurrency(packs)
    trainer = total["compile"] + total["train"] + total["report"]
    fixed = [p["total"] - p["compile"] - p["train"] - p["report"] for p in packs]
    print(f"\nlaunch to the first pack's start: {first:.1f} s; packs from {first:.1f} to {last_end:.1f} s; "
          f"last pack's end to the exit: {wall - last_end:.1f} s")
    print(f"fixed cost per pack beyond its trainer: median {sorted(fixed)[len(fixed) // 2]:.2f} s, "
          f"max {max(fixed):.2f} s (setup, MLflow, checkpoints, the loop)")
    print(f"trials at once, on average: {at_once:.2f}")
    print(f"study wall / (trainer work / trials at once + Ray's start): {wall / (trainer / at_once + ray_s):.2f}x")
    print(f"study wall / (training steps alone / trials at once): {wall / (total['train'] / at_once):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
