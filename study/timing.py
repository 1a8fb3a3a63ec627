"""A dedicated timing run for the compute fit ``t = a + b·n^k`` (``uwm-study timing``).

The seconds per episode a study logs come from packs that shared the machine with other packs, with
probes, evaluation and logging around them: good enough to monitor a study, too noisy to fit an
exponent. This run times the training step alone: for every rule variant and hidden-layer shape the
study's grid trains, one population of the study's seeds in this process, one CPU thread, eager (no
compile, so no compile time and the same code at every width), probes off; ``repeats`` timed
windows of about ``seconds`` each after one warm-up window. Each window is one observation of
seconds per episode per member, so the fit's bootstrap sees the run-to-run noise.

The rows go to the study's parent run as the artifact :data:`uwm_model.layout.TIMING`; the analysis
prefers them to the study's own ``seconds_per_episode`` and says which it used.
"""

from __future__ import annotations

import io
import json
import time

import pandas as pd

from uwm_model import layout

COLUMNS = ["rule", "rule_options", "baseline", "hidden", "width", "seeds", "device", "repeat", "steps",
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


def time_config(config: dict, repeats: int = 5, seconds: float = 0.2) -> list[tuple[int, float]]:
    """(steps, seconds per episode per member) of each of ``repeats`` timed windows of training steps."""
    import torch

    from uwm_model import TrialConfig, Trainer

    torch.set_num_threads(1)
    trainer = Trainer(TrialConfig.model_validate(config))
    trainer._prepare()

    def window(steps: int) -> float:
        started = time.perf_counter()
        trainer._train(steps)       # the training steps only: no report, evaluation or probe
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return time.perf_counter() - started

    first = window(4)                                       # warm-up, and a first estimate of one step
    steps = int(min(4096, max(8, seconds / max(first / 4, 1e-9))))
    window(steps)                                           # warm-up at the window's size
    per = trainer.cfg.batch_size * trainer.P
    return [(steps, window(steps) / (steps * per)) for _ in range(repeats)]


def run_timing(spec, repeats: int = 5, seconds: float = 0.2, say=print) -> pd.DataFrame:
    """Time every configuration of :func:`timing_configs`; one row per timed window (:data:`COLUMNS`)."""
    rows = []
    configs = timing_configs(spec)
    for i, config in enumerate(configs, 1):
        for repeat, (steps, spe) in enumerate(time_config(config, repeats, seconds)):
            rows.append({"rule": config["rule"], "rule_options": json.dumps(config.get("rule_options") or {}),
                         "baseline": config.get("baseline", "none"), "hidden": json.dumps(config["hidden"]),
                         "width": config["hidden"][0], "seeds": config.get("seeds", 1),
                         "device": config.get("device", "auto"), "repeat": repeat, "steps": steps,
                         "seconds_per_episode": spe})
        last = [r["seconds_per_episode"] for r in rows[-repeats:]]
        say(f"[{i}/{len(configs)}] {config['rule']} {config.get('rule_options') or ''} hidden {config['hidden']}: "
            f"{min(last) * 1e6:.2f}-{max(last) * 1e6:.2f} us per episode per member")
    return pd.DataFrame(rows, columns=COLUMNS)


def log_timing(client, parent_run_id: str, table: pd.DataFrame) -> None:
    """Attach the timing rows to the study's parent run (replacing an earlier timing run's)."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    client.log_text(parent_run_id, buffer.getvalue(), layout.TIMING)
