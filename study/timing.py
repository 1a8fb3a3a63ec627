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

Widths beyond the grid's (``widths``: equal widths at the grid's depths, e.g. 1024) make the compute
fit reach further than training could. Every trainer stays alive through the interleaved rounds, so the
widths are admitted smallest first while all their trainers fit together in memory
(:func:`admit_widths`: :func:`uwm_model.memory.member_bytes`, checked before any trainer is built); a
width that does not fit is skipped with one line that says so.

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


def timing_configs(spec, widths=()) -> list[dict]:
    """One configuration (TrialConfig data) per distinct (rule, options, baseline, hidden) of the grid, with
    the probes off, eager and single-threaded; with ``widths``, also every equal-width net of those widths at
    each depth the grid's equal-width nets have, for every rule variant of the grid."""
    seen, out = set(), []

    def add(c, hidden):
        key = json.dumps([c["rule"], c.get("rule_options") or {}, c.get("baseline", "none"), hidden], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append({**c, "hidden": hidden, "probe": {**c.get("probe", {}), "enabled": False}, "compile": "off",
                        "threads": 1})

    cells = [cell.config for cell in spec.cells()]
    for c in cells:
        add(c, list(c["hidden"]))
    depths = sorted({len(c["hidden"]) for c in cells if len(set(c["hidden"])) == 1})
    for width in sorted(widths):
        for c in cells:
            for depth in depths:
                add(c, [int(width)] * depth)
    return out


def _trainer_bytes(config: dict) -> int:
    from uwm_model import TrialConfig
    from uwm_model.memory import member_bytes

    cfg = TrialConfig.model_validate(config)
    return member_bytes(cfg) * cfg.seeds


def available_bytes(configs: list[dict]) -> tuple[float, str]:
    """The memory the timed trainers may take together: 0.8 of the free GPU memory when they run on the GPU,
    else 0.8 of the host's available memory; and its description."""
    import psutil
    import torch

    from uwm_model.network import resolve_device

    if configs and resolve_device(configs[0].get("device", "auto")).type == "cuda":
        free = torch.cuda.mem_get_info()[0]
        return 0.8 * free, f"0.8 x {free / 2**30:.1f} GiB free on the GPU"
    free = psutil.virtual_memory().available
    return 0.8 * free, f"0.8 x {free / 2**30:.1f} GiB of available memory"


def admit_widths(configs: list[dict], available: float, where: str, say=print) -> list[dict]:
    """The configurations (in their order) of the widths that fit together in ``available`` bytes (every
    trainer is alive through the interleaved rounds), admitted smallest width first; a width that does not fit
    is skipped, with all its rules, and said in one line (the timing of the other widths goes on)."""
    by_width: dict[int, list[dict]] = {}
    for c in configs:
        by_width.setdefault(max(c["hidden"]), []).append(c)
    admitted, used = set(), 0.0
    for width in sorted(by_width):
        need = sum(_trainer_bytes(c) for c in by_width[width])
        if used + need > available:
            say(f"timing: width {width} skipped: its {len(by_width[width])} configurations need about "
                f"{need / 2**30:,.2f} GiB (uwm_model.memory) on top of {used / 2**30:,.2f} GiB for the narrower "
                f"widths, and {where} leaves {available / 2**30:,.2f} GiB")
            continue
        used += need
        admitted.add(width)
    return [c for c in configs if max(c["hidden"]) in admitted]


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


def run_timing(spec, repeats: int = 5, seconds: float = 0.2, say=print, seed: int = 0, widths=(),
               available: tuple[float, str] | None = None) -> pd.DataFrame:
    """Time every configuration of :func:`timing_configs` (with the extra ``widths``) whose width fits the
    memory (:func:`admit_widths`; ``available`` = (bytes, description), default :func:`available_bytes`),
    interleaved (:func:`timing_schedule`): one discarded warm-up round, then ``repeats`` rounds; one row per
    timed window (:data:`COLUMNS`)."""
    configs = timing_configs(spec, widths)
    configs = admit_widths(configs, *(available or available_bytes(configs)), say=say)
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
