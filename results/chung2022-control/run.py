"""Chung (2022)'s CartPole and Acrobot configs, 10 seeds on the population axis in one process, under a wall-clock
budget: ``./dev python results/chung2022-control/run.py cartpole --seconds 600``. Writes <name>.json beside this
file: each member's returns, the episodes every member completed (E), the average return over those first E
episodes per member, its mean, SD and standard error, and the wall time. When E < 1000 the figure is NOT the
anchor's (its average over 1000 episodes) and the JSON says so."""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import torch
import yaml

from uwm_model.control import THRESHOLDS, ActorCritic, ControlConfig
from uwm_model.settings import torch_settings

HERE = pathlib.Path(__file__).parent
PUBLISHED = {"cartpole": (390.38, 43.25), "acrobot": (-97.05, 2.90)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(PUBLISHED))
    ap.add_argument("--seconds", type=float, default=600.0, help="wall-clock budget")
    args = ap.parse_args()
    cfg = ControlConfig(**yaml.safe_load((HERE / f"{args.name}.yaml").read_text()))
    ac = ActorCritic(cfg)
    with torch_settings(threads=1):
        ac.run(max_steps=0)           # compiles (config compile: auto compiles a 1000-episode run), not timed
        tic = time.perf_counter()
        while not ac.finished() and time.perf_counter() - tic < args.seconds:
            ac.run(max_steps=2000)
    wall = time.perf_counter() - tic
    E = min(len(r) for r in ac.returns)
    per_member = [sum(r[:E]) / E for r in ac.returns] if E else []
    mean = sum(per_member) / len(per_member) if E else math.nan
    sd = (sum((x - mean) ** 2 for x in per_member) / (len(per_member) - 1)) ** 0.5 if E else math.nan
    result = ac.result(wall)
    out = {"config": cfg.model_dump(), "published_mean_sd": PUBLISHED[args.name], "episodes_completed_by_all": E,
           "complete": E >= cfg.episodes, "steps": ac.t, "wall_seconds": round(wall, 1),
           "compiled": ac.compiled, "compile_seconds": round(ac.compile_seconds, 1),
           "average_return_first_E": per_member, "mean": mean, "sd": sd, "se": sd / len(per_member) ** 0.5 if E else None,
           "episodes_to_threshold": result.episodes_to_threshold(THRESHOLDS[cfg.env]).tolist(),
           "returns": [r[:E] for r in ac.returns]}
    (HERE / f"{args.name}.json").write_text(json.dumps(out))
    print(f"{args.name}: E={E} episodes by every member ({ac.t} steps, {wall:.0f} s after "
          f"{ac.compile_seconds:.0f} s compiling); average return over them "
          f"{mean:.2f} (SD {sd:.2f}, SE {out['se']:.2f}); published {PUBLISHED[args.name]}")


if __name__ == "__main__":
    main()
