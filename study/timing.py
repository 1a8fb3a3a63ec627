"""A dedicated timing run for the compute fit ``t = a + b·n^k`` (``uwm-study timing``).

The seconds per episode a study logs come from packs that shared the machine with other packs, with
probes, evaluation and logging around them: good enough to monitor a study, too noisy to fit an
exponent. This run times the training step alone: for every rule variant and hidden-layer shape the
study's grid trains, one population of the study's seeds in this process, one CPU thread, eager (no
compile, so no compile time and the same code at every width), probes off; windows of about
``seconds`` each, interleaved: every configuration is built and warmed up first, then ``repeats``
rounds (after one discarded warm-up round) each time every configuration once, in a fresh random order
(:func:`timing_schedule`), so a slow spell of the machine is shared by the rules and widths instead of
confounded with them. Each window is one observation of seconds per episode per member, so the fit's
bootstrap sees the run-to-run noise.

The rows go to the study's parent run as the artifact :data:`uwm_model.layout.TIMING`; the analysis
prefers them to the study's own ``seconds_per_episode`` and says which it used.
"""

from __future__ import annotations

import io
import json
import time

import pandas as pd

from uwm_model import layout

COLUMNS = ["rule", "rule_options", "baseline", "hidden", "width", "seeds", "device", "repeat", "position", "steps",
           "seconds_per_episode"]


def timing_configs(spec) -> list[dict]:
    """One configuration (TrialConfig data) per distinct (rule, options, baseline, hidden) of the grid, with
    the probes off, eager and single-threaded."""
    seen, out = set(), []
    for cell in spec.cells():
        c = cell.config
        key = json.dumps([c["rule"], c.get("rule_options") or {}, c.get("baseline", "none"), c["hidden"]], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append({**c, "probe": {**c.get("probe", {}), "enabled": False}, "compile": "off", "threads": 1})
    return out


class _Timed:
    """One configuration's trainer, ready to time: built, prepared and warmed up (its first windows
    discarded), with the window size that takes about ``seconds``."""

    def __init__(self, config: dict, seconds: float):
        import torch

        from uwm_model import TrialConfig, Trainer

        torch.set_num_threads(1)
        self.trainer = Trainer(TrialConfig.model_validate(config))
        self.trainer._prepare()
        first = self._window(4)                                  # warm-up, and a first estimate of one step
        self.steps = int(min(4096, max(8, seconds / max(first / 4, 1e-9))))
        self._window(self.steps)                                 # warm-up at the window's size

    def _window(self, steps: int) -> float:
        import torch

        started = time.perf_counter()
        self.trainer._train(steps)       # the training steps only: no report, evaluation or probe
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)
        return time.perf_counter() - started

    def window(self) -> float:
        """Seconds per episode per member of one timed window."""
        return self._window(self.steps) / (self.steps * self.trainer.cfg.batch_size * self.trainer.P)


def timing_schedule(n_configs: int, rounds: int, seed: int = 0) -> list[list[int]]:
    """The order of the timed windows: ``rounds`` rounds, each timing every configuration once in a fresh
    random order. A slow spell of the machine (another process, thermal throttling, a cache gone cold)
    then falls on every rule and width alike, instead of on one block of them (rules timed one after the
    other, widths rising, confound the rule and the width with the time of day)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [[int(i) for i in rng.permutation(n_configs)] for _ in range(rounds)]


def run_timing(spec, repeats: int = 5, seconds: float = 0.2, say=print, seed: int = 0) -> pd.DataFrame:
    """Time every configuration of :func:`timing_configs`, interleaved (:func:`timing_schedule`): one
    discarded warm-up round, then ``repeats`` rounds; one row per timed window (:data:`COLUMNS`)."""
    configs = timing_configs(spec)
    timed = [_Timed(c, seconds) for c in configs]
    schedule = timing_schedule(len(configs), repeats + 1, seed)
    for i in schedule[0]:                                        # warm-up round: every trainer hot, discarded
        timed[i].window()
    rows = []
    for repeat, order in enumerate(schedule[1:]):
        for position, i in enumerate(order):
            config = configs[i]
            rows.append({"rule": config["rule"], "rule_options": json.dumps(config.get("rule_options") or {}),
                         "baseline": config.get("baseline", "none"), "hidden": json.dumps(config["hidden"]),
                         "width": config["hidden"][0], "seeds": config.get("seeds", 1),
                         "device": config.get("device", "auto"), "repeat": repeat, "position": position,
                         "steps": timed[i].steps, "seconds_per_episode": timed[i].window()})
        say(f"round {repeat + 1}/{repeats}: {len(order)} configurations timed")
    return pd.DataFrame(rows, columns=COLUMNS)


def log_timing(client, parent_run_id: str, table: pd.DataFrame) -> None:
    """Attach the timing rows to the study's parent run (replacing an earlier timing run's)."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    client.log_text(parent_run_id, buffer.getvalue(), layout.TIMING)
