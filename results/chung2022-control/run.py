"""Chung (2022)'s CartPole and Acrobot configs (tune_configs/trials/chung2022-<name>.yaml), 10 seeds on the population axis in one process, under a wall-clock
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

from study.control_trial import control_config
from study.spec import read_yaml
from uwm_model.control import THRESHOLDS, ActorCritic
from uwm_model.settings import torch_settings

HERE = pathlib.Path(__file__).parent
TRIALS = HERE.parent.parent / "tune_configs" / "trials"      # chung2022-<name>.yaml: the published configs
PUBLISHED = {"cartpole": (390.38, 43.25), "acrobot": (-97.05, 2.90)}


def summary(ac: ActorCritic, name: str, wall: float) -> dict:
    """The run so far: the episodes every member completed (E), the average return over them per member, its
    mean, SD and standard error over members, episodes to threshold, the returns."""
    cfg = ac.cfg
    E = min(len(r) for r in ac.returns)
    per_member = [sum(r[:E]) / E for r in ac.returns] if E else []
    mean = sum(per_member) / len(per_member) if E else math.nan
    sd = (sum((x - mean) ** 2 for x in per_member) / (len(per_member) - 1)) ** 0.5 if E else math.nan
    result = ac.result(wall)
    return {"config": cfg.model_dump(), "published_mean_sd": PUBLISHED[name], "episodes_completed_by_all": E,
            "complete": E >= cfg.episodes, "steps": ac.t, "wall_seconds": round(wall, 1),
            "compiled": ac.compiled, "compile_seconds": round(ac.compile_seconds, 1),
            "average_return_first_E": per_member, "mean": mean, "sd": sd,
            "se": sd / len(per_member) ** 0.5 if E else None,
            "episodes_to_threshold": result.episodes_to_threshold(THRESHOLDS[cfg.env]).tolist(),
            "returns": [r[:E] for r in ac.returns]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(PUBLISHED))
    ap.add_argument("--seconds", type=float, default=600.0, help="wall-clock budget of training (compiling apart)")
    ap.add_argument("--out", default=None, help="JSON to write (default <name>.json beside this file); rewritten "
                    "every 2 000 steps, so a run stopped early leaves its latest state")
    args = ap.parse_args()
    out_path = pathlib.Path(args.out) if args.out else HERE / f"{args.name}.json"
    cfg = control_config(read_yaml(TRIALS / f"chung2022-{args.name}.yaml", "config"))
    ac = ActorCritic(cfg)
    with torch_settings(threads=1):
        ac.run(max_steps=0)           # compiles (config compile: auto compiles a 1000-episode run), not timed
        tic = time.perf_counter()
        while not ac.finished() and time.perf_counter() - tic < args.seconds:
            ac.run(max_steps=2000)
            out = summary(ac, args.name, time.perf_counter() - tic)
            out_path.write_text(json.dumps(out))
    print(f"{args.name}: E={out['episodes_completed_by_all']} episodes by every member ({ac.t} steps, "
          f"{out['wall_seconds']:.0f} s after {ac.compile_seconds:.0f} s compiling); average return over them "
          f"{out['mean']:.2f} (SD {out['sd']:.2f}, SE {out['se']}); published {PUBLISHED[args.name]}")


if __name__ == "__main__":
    main()
