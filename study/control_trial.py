"""One control trial (``uwm-study train`` of a YAML whose ``task`` names an environment): the actor-critic of
:mod:`uwm_model.control` on CartPole-v1 or Acrobot-v1, its seeds on the population axis of one process.

A control trial file is a :class:`uwm_model.control.ControlConfig` whose environment is given as
``task: {env: cartpole}`` (or ``acrobot``, or the gymnasium id), e.g. tune_configs/trials/chung2022-cartpole.yaml.
A study's base in the same form makes a control study (:mod:`study.spec`); its points' configurations are held in
that form too (``ControlConfig.trial_data``), with the environment's short name, so a grid axis ``task.env`` reads alike.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from pydantic import ValidationError

from uwm_model.control import THRESHOLDS, ActorCritic, ControlConfig

from .errors import UserError, from_validation_error

ENV_NAMES = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "CartPole-v1": "CartPole-v1",
             "Acrobot-v1": "Acrobot-v1"}


def is_control(data: dict) -> bool:
    """Whether a trial file's ``task`` names an environment (a control trial)."""
    return isinstance(data, dict) and isinstance(data.get("task"), dict) and "env" in data["task"]


def control_config(data: dict) -> ControlConfig:
    """The ControlConfig of a control trial file; a UserError naming the field otherwise."""
    try:
        return validate_control(data)
    except ValidationError as err:
        raise from_validation_error(err) from None


def validate_control(data: dict) -> ControlConfig:
    """:func:`control_config`, but a field's problem is pydantic's ValidationError (the study spec names the cell
    around it); the task's own problems are UserErrors."""
    task = dict(data["task"])
    env = task.pop("env")
    if task:
        raise UserError(f"task.{sorted(task)[0]}", "unknown field (a control task has only env)")
    if env not in ENV_NAMES:
        raise UserError("task.env", f"unknown environment {env!r}; choose one of: cartpole, acrobot")
    if "env" in data:
        raise UserError("env", "give the environment as task.env")
    return ControlConfig.model_validate({**{k: v for k, v in data.items() if k != "task"}, "env": ENV_NAMES[env]})


def trial_config(data: dict):
    """A point's configuration from a study's JSON data: a ControlConfig (trial file form) or a TrialConfig."""
    from uwm_model.config import TrialConfig

    return control_config(data) if is_control(data) else TrialConfig.model_validate(data)


def summary(result, threshold: float) -> dict[str, float]:
    """The trial's figures over seeds: the anchor's average return over all episodes (mean, SD, SE over the
    seeds that did not diverge), the last 100 episodes' mean, and episodes to the threshold (the running mean of
    100 returns) among the seeds that reached it, with how many did (the others are censored at the run's end)."""
    live = ~result.returns.isnan().any(1)
    avg = result.average_return[live]
    n = int(live.sum())
    reached = result.episodes_to_threshold(threshold)[live]
    hit = reached[~reached.isnan()]
    sd = float(avg.std()) if n > 1 else math.nan
    return {"seeds": n, "diverged": int((~live).sum()), "average_return_mean": float(avg.mean()) if n else math.nan,
            "average_return_sd": sd, "average_return_se": sd / math.sqrt(n) if n > 1 else math.nan,
            "last100_return_mean": float(result.returns[live, -100:].mean()) if n else math.nan,
            "threshold": threshold, "reached": len(hit),
            "episodes_to_threshold_mean": float(hit.mean()) if len(hit) else math.nan}


def train(cfg: ControlConfig, out: Path) -> dict[str, float]:
    """Train, write the curves (aggregate to ``out``, per seed to <stem>_per_seed<suffix>), print the figures."""
    import pandas as pd
    from tqdm import tqdm

    from uwm_model.settings import torch_settings

    with torch_settings(threads=1), tqdm(total=cfg.episodes, unit="ep", dynamic_ncols=True,
                                         desc=f"{cfg.rule} on {cfg.env} x{cfg.seeds} seeds") as bar:
        ac = ActorCritic(cfg)
        ac.run(max_steps=0)                    # compiles when the config does (not part of the wall time)
        tic = time.perf_counter()
        ac.run(progress=lambda t, returns: bar.update(min(map(len, returns)) - bar.n))
        wall = time.perf_counter() - tic
    result = ac.result(wall)
    running = result.running_mean()
    seeds = [cfg.seed + k for k in range(cfg.seeds)]
    rows = [{"episode": e + 1, "seed": s, "return": float(result.returns[k, e]), "running_mean": float(running[k, e])}
            for k, s in enumerate(seeds) for e in range(cfg.episodes)]
    per_seed = pd.DataFrame(rows)
    agg = per_seed.groupby("episode").agg(return_mean=("return", "mean"), return_sd=("return", "std"),
                                          running_mean_mean=("running_mean", "mean")).reset_index()
    per_seed_path = out.with_name(f"{out.stem}_per_seed{out.suffix}")
    for table, path in ((agg, out), (per_seed, per_seed_path)):
        table.to_parquet(path, index=False) if out.suffix == ".parquet" else table.to_csv(path, index=False)
    s = summary(result, THRESHOLDS[cfg.env])
    print(f"{cfg.rule} on {cfg.env}, actor {cfg.actor_hidden}, {s['seeds']} seeds x {cfg.episodes} episodes, "
          f"{ac.t} steps in {wall:.1f} s ({'compiled' if ac.compiled else 'eager'}, compiling {ac.compile_seconds:.0f} s)")
    print(f"  average return over all episodes {s['average_return_mean']:.2f} (SD {s['average_return_sd']:.2f}, "
          f"SE {s['average_return_se']:.2f} over seeds); last 100 episodes {s['last100_return_mean']:.2f}")
    print(f"  running mean of 100 >= {s['threshold']:g}: {s['reached']} of {s['seeds']} seeds"
          + (f", at episode {s['episodes_to_threshold_mean']:.0f} on average (the others censored at "
             f"{cfg.episodes})" if s["reached"] else ""))
    print(f"  diverged: {s['diverged']} of {cfg.seeds} seeds")
    print(f"curves: {out} (aggregated), {per_seed_path} (per seed)")
    return s
