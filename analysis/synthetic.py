"""A synthetic study with planted answers, written to MLflow exactly as the study runner lays it out.

For demonstrations, notebooks and tests of the analysis: the numbers are generated from a
known model, so every analysis has a right answer to recover. The layout follows the contract
of the ``study`` package (see :mod:`analysis.load`): parent run per study, one child run per
point with tags ``uwm.*``, params as ``TrialConfig.flat()`` strings, the series a child run charts
(``uwm_model.metrics.is_series``, step = episode, with the running ``auc_reward_mean``) and a
``curves_per_seed.csv`` artifact.

The planted model, per rule ``r``, width ``n``, outgoing norm ``c``, learning rate ``lr`` and seed:

- probe variance of layer ``l`` (all reports): ``share_l · v_r · n^{a_r} · g_r(c) · e^{0.1 ε}``, with
  ``g_r(c) = (c/c0)^{k_r}`` (``k_r`` jumps above π for rules in ``PI_SENSITIVE``);
- time constant ``τ = τ0 · sqrt(total variance) · (1 + 4 log10(lr/lr*)²)``, eval reward
  ``1 - 2 exp(-episode/τ)``; episodes to threshold 0.9: ``τ ln 20`` (censored at the budget);
  so episodes to threshold scale as ``n^{a_r/2}`` at the tuned lr ``lr* = 0.03``;
- seconds per episode: ``s_r · n^2 · e^{0.03 ε}`` per trial (the O(mn) answer: exponent 2);
- rules in ``PI_SENSITIVE`` diverge with probability 0.8 per seed when ``c > π``;
- probe bias (all layers) 0.01 for rules in ``PI_SENSITIVE``, times ``(c/π)^6`` above π, else 0.002;
- at initialisation (``init_probe_{label}_*`` for every cross-rule label, the same state for every rule of a
  setting and seed): relative squared bias 0 for rules outside ``PI_SENSITIVE``, for the others 0.002 below
  π and ``0.05 (c/π)²`` above; debiased estimates with standard error ``0.002 · exact_sq``.

Realism: rewards stay within the task's range [-1, 1]; a seed that diverges collapses towards chance
(reward 0) in the window before its divergence and logs NaN after it; the trained rule's own probe
variance drifts down as its seed learns, while the cross-rule (matched) probe of a rule follows the state
of the trial that carries it, so own and matched variances differ; ``train_reward_all`` is the mean of the
training-reward curve so far.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from uwm_model import layout
from uwm_model import metrics as registry

RULE_MODEL = {  # v_r, a_r (variance-width exponent), k_r (norm exponent), s_r (seconds prefactor)
    "reinforce": (4.0, 1.0, 0.0, 2.0e-7),
    "ste": (0.2, 0.2, 0.5, 1.5e-7),
    "wm": (0.4, 0.4, 1.0, 2.0e-7),
    "hwm": (0.3, 0.4, 0.5, 4.0e-7),
    "uwm": (0.25, 0.3, 0.5, 3.0e-7),
}
PI_SENSITIVE = ("hwm",)
OBJECTIVE = "episodes_to_threshold_mean"   # the spec's metric: minimised
BEST_LR = 0.03
TAU0 = 60.0
LAYER_SHARES = (0.5, 0.3, 0.2)


@dataclass
class SyntheticStudy:
    name: str
    parent_run_id: str
    tracking_uri: str
    planted: dict


def _cross_label(rule: str) -> str:
    return rule


def _variance(rule, width, norm, rng, size):
    v, a, k, _ = RULE_MODEL[rule]
    c0 = 1.0
    g = (norm / c0) ** k if norm is not None else 1.0
    if rule in PI_SENSITIVE and norm is not None and norm > math.pi:
        g *= (norm / math.pi) ** 4
    return v * width ** a * g * np.exp(0.1 * rng.standard_normal(size))


def write_synthetic_study(tracking_uri: str, name: str = "synthetic", rules=("reinforce", "uwm"),
                          widths=(8, 16, 32, 64), norms=(None,), lrs=(0.01, 0.03, 0.1), seeds: int = 4,
                          episodes: int = 4000, report_every: int = 400, cross_rule: bool = True,
                          confirm: bool = True, confirm_lrs=(BEST_LR,), extras: bool = False, artifact_root: str | None = None,
                          seed: int = 0) -> SyntheticStudy:
    """Write a synthetic study to ``tracking_uri``; returns its parent run id and the planted answers.

    Args:
        rules: rule names (keys of ``RULE_MODEL``); widths: equal hidden widths (two hidden layers);
        norms: initial outgoing norms (None: default initialisation); lrs: searched learning rates
            (stage ``search``); confirm: add ``confirm`` points per cell with fresh seeds, one at each of
            ``confirm_lrs`` (default the planted best lr).
        extras: also write a failed trial (no final status) and a duplicate run of one point (a retry).
        artifact_root: directory for artifacts (default: a ``artifacts`` folder next to a SQLite file,
            else MLflow's default).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if artifact_root is None and tracking_uri.startswith("sqlite:///"):
        artifact_root = str(Path(tracking_uri[len("sqlite:///"):]).parent / "artifacts")
    exp = client.get_experiment_by_name(name)
    if exp is None:
        exp_id = client.create_experiment(name, artifact_location=Path(artifact_root).resolve().as_uri()
                                          if artifact_root else None)
    else:
        exp_id = exp.experiment_id
    rng = np.random.default_rng(seed)
    # laid out like study.spec.StudySpec; the objective is the speed itself, so tuning finds the planted lr
    spec = {"name": name, "metric": OBJECTIVE, "mode": "min",
            "base": {"seeds": seeds, "episodes": episodes, "report_every": report_every},
            "grid": {"rule": list(rules), "hidden": [[w, w] for w in widths], "outgoing_norm": list(norms)},
            "search": {"lr": {"type": "categorical", "choices": list(lrs)}}, "samples_per_cell": len(lrs)}
    import yaml

    spec_text = yaml.safe_dump(spec, sort_keys=False)
    parent = client.create_run(exp_id, run_name=name, tags={
        layout.ROLE: "study", layout.STUDY: name, layout.SPEC_HASH: hashlib.sha256(spec_text.encode()).hexdigest(),
        layout.GIT_COMMIT: "synthetic", layout.VERSION: "0.1.0"})
    pid = parent.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / layout.SPEC_ARTIFACT
        p.write_text(spec_text)
        client.log_artifact(pid, str(p))
    client.log_text(pid, registry.glossary_markdown(OBJECTIVE), layout.GLOSSARY)

    rows_written = 0
    base_seed = 0
    for rule in rules:
        for width in widths:
            for norm in norms:
                cell = _cell_key(rule, width, norm)
                points = [("search", lr, base_seed) for lr in lrs]
                if confirm:
                    points += [("confirm", lr, 1000 + base_seed) for lr in confirm_lrs]
                for stage, lr, s0 in points:
                    _write_point(client, exp_id, pid, name, rule, width, norm, lr, stage, s0, seeds, episodes,
                                 report_every, cross_rule, rules, cell, rng)
                    rows_written += 1
    if extras:
        rule, width, norm = rules[0], widths[0], norms[0]
        cell = _cell_key(rule, width, norm)
        # a failed trial: RUNNING/FAILED run without uwm.status nor summaries
        run = client.create_run(exp_id, run_name="failed-trial", tags={
            layout.PARENT: pid, layout.ROLE: "trial", layout.STUDY: name, layout.CELL: cell,
            layout.POINT_ID: "failed-point", layout.STAGE: "search"})
        client.log_param(run.info.run_id, "rule", rule)
        client.log_param(run.info.run_id, "hidden", f"[{width}, {width}]")
        client.set_terminated(run.info.run_id, "FAILED")
        # a stale duplicate of the first point (the killed attempt of a retried trial)
        run = client.create_run(exp_id, run_name="stale-duplicate", start_time=0, tags={
            layout.PARENT: pid, layout.ROLE: "trial", layout.STUDY: name, layout.CELL: cell,
            layout.POINT_ID: _point_id(name, cell, lrs[0], "search", 0), layout.STAGE: "search"})
        client.log_param(run.info.run_id, "rule", rule)
    client.set_terminated(pid, "FINISHED")
    planted = {
        "compute_exponent": 2.0,
        "variance_exponent": {r: RULE_MODEL[r][1] for r in rules},
        "speed_exponent": {r: RULE_MODEL[r][1] / 2 for r in rules},
        "best_lr": BEST_LR,
        "variance_speed_sign_auc": -1,
        "pi_sensitive": [r for r in rules if r in PI_SENSITIVE],
        "n_points": rows_written,
    }
    return SyntheticStudy(name=name, parent_run_id=pid, tracking_uri=tracking_uri, planted=planted)


def _cell_key(rule, width, norm) -> str:
    """The cell key as ``study.spec`` writes it (values as JSON: ``outgoing_norm=null``)."""
    return f"rule={rule}|hidden=[{width}, {width}]|outgoing_norm={json.dumps(norm)}"


def _point_id(name, cell, lr, stage, s0):
    return hashlib.sha1(f"{name}|{cell}|{lr}|{stage}|{s0}".encode()).hexdigest()[:16]


def _config(rule, width, norm, lr, s0, seeds, episodes, report_every, cross_rule, rules) -> dict:
    """The point's full TrialConfig as JSON data: validated by the trainer's own model, so the params and
    tags written from it are exactly those of a real run (one contract, not two)."""
    from uwm_model.config import TrialConfig   # lazily: importing analysis must not import torch

    return TrialConfig.model_validate({
        "task": {"address_bits": 2}, "hidden": [width, width], "rule": rule, "lr": lr, "outgoing_norm": norm,
        "episodes": episodes, "seed": s0, "seeds": seeds, "report_every": report_every, "eval_episodes": 1024,
        "threshold": 0.9, "threshold_window": 100, "device": "cpu", "compile": "off",
        "probe": {"enabled": True, "samples": 256, "cross_rule": cross_rule, "rules": [{"rule": r} for r in rules]},
    }).model_dump(mode="json")


def _write_point(client, exp_id, pid, name, rule, width, norm, lr, stage, s0, seeds, episodes, report_every,
                 cross_rule, rules, cell, rng):
    from mlflow.entities import Metric, Param

    config = _config(rule, width, norm, lr, s0, seeds, episodes, report_every, cross_rule, rules)
    from uwm_model.config import TrialConfig

    params = layout.point_params(TrialConfig.model_validate(config).flat(),
                                 {"rule": rule, "hidden": [width, width], "outgoing_norm": norm})
    L = 3
    var_seed = _variance(rule, width, norm, rng, seeds)  # total probe variance per seed
    lr_factor = 1 + 4 * math.log10(lr / BEST_LR) ** 2
    tau = TAU0 * np.sqrt(var_seed) * lr_factor * np.exp(0.05 * rng.standard_normal(seeds))
    ett = tau * math.log(20)
    diverge_at = np.full(seeds, -1.0)
    if rule in PI_SENSITIVE and norm is not None and norm > math.pi:
        hit = rng.random(seeds) < 0.8
        diverge_at[hit] = rng.integers(1, episodes // report_every + 1, hit.sum()) * report_every - 1
    cross_var = {r: _variance(r, width, norm, rng, seeds) for r in rules} if cross_rule else {}
    bias = 0.01 if rule in PI_SENSITIVE else 0.002        # ||mean - exact gradient||, all layers
    if rule in PI_SENSITIVE and norm is not None and norm > math.pi:
        bias *= (norm / math.pi) ** 6
    seconds = RULE_MODEL[rule][3] * width ** 2 * math.exp(0.03 * rng.standard_normal())
    seed_rows = []
    metrics = []
    t0 = 1_700_000_000_000
    init_rng = np.random.default_rng(zlib.crc32(repr((width, norm, s0)).encode()))   # one initial state per setting
    init = {}
    for r2 in (rules if cross_rule else [rule]):
        rel = 0.0 if r2 not in PI_SENSITIVE else (0.002 if norm is None or norm <= math.pi else 0.05 * (norm / math.pi) ** 2)
        for l in range(1, L + 1):
            exact = LAYER_SHARES[l - 1]
            planted = rel * exact if l < L else 0.0          # no Taylor bias in the output layer
            prefix = f"init_probe_{_cross_label(r2)}_" if cross_rule else "init_probe_"
            init[(prefix, l)] = (planted + 0.002 * exact * init_rng.standard_normal(seeds), exact)
    curve = []
    for step in range(report_every, episodes + 1, report_every):
        per_seed = []
        for k in range(seeds):
            d = {}
            dead = 0 <= diverge_at[k] < step
            collapsing = 0 <= diverge_at[k] < step + report_every and not dead   # the window before divergence
            r = 1 - 2 * math.exp(-step / tau[k])
            if collapsing:
                r *= 0.2                                        # weights blowing up: back towards chance
            clip = lambda v: min(1.0, max(-1.0, v))             # noqa: E731  rewards stay within the task's range
            d["eval_reward"] = float("nan") if dead else clip(r + 0.01 * rng.standard_normal())
            d["train_reward"] = float("nan") if dead else clip(1 - 2 * math.exp(-(step - report_every / 2) / tau[k]))
            d["running_reward"] = float("nan") if dead else r
            d["train_reward_all"] = float("nan") if dead else 1 - 2 * tau[k] * (1 - math.exp(-step / tau[k])) / step
            drift = 0.3 + 0.7 * math.exp(-step / tau[k])      # the own probe follows the seed's own trajectory
            d["diverged"] = 1.0 if dead else 0.0
            if dead:
                d["diverged_at"] = float(diverge_at[k])
            if ett[k] <= step and not dead:
                d["episodes_to_threshold"] = float(math.ceil(ett[k]))
            for l in range(1, L):
                d[f"max_abs_outgoing_l{l}"] = (norm or 1.0) * 1.1
                d[f"outgoing_norm_l{l}"] = norm or 1.0
                d[f"init_unit_max_outgoing_l{l}"] = (norm or 1.0) * 0.75
                d[f"init_beyond_radius_l{l}"] = 0.0 if norm is None or norm <= math.pi else 0.1 * (norm - math.pi)
            if step == report_every:      # the probe of the initial state: the trained rule's variance, no drift yet
                for l in range(1, L + 1):
                    d[f"init_probe_var_l{l}"] = LAYER_SHARES[l - 1] * var_seed[k]
                    d[f"init_probe_mean_sq_l{l}"] = LAYER_SHARES[l - 1] * 0.1
            for (prefix, l), (values, exact) in (init.items() if step == report_every else ()):   # first report only
                d[f"{prefix}bias_sq_l{l}"] = float(values[k])
                d[f"{prefix}bias_split_l{l}"] = float(values[k])      # the same draw: symmetric about the bias
                d[f"{prefix}bias_sq_se_l{l}"] = 0.002 * exact
                d[f"{prefix}exact_sq_l{l}"] = exact
            for l in range(1, L + 1):
                share = LAYER_SHARES[l - 1]
                d[f"probe_var_l{l}"] = float("nan") if dead else share * var_seed[k] * drift * math.exp(
                    0.02 * rng.standard_normal())
                d[f"probe_mean_sq_l{l}"] = float("nan") if dead else share * 0.1
                d[f"probe_bias_l{l}"] = float("nan") if dead else bias * math.sqrt(share) * math.exp(
                    0.05 * rng.standard_normal())
                for r2, cv in cross_var.items():
                    # another rule on this trial's state: its variance at this state, not along its own path
                    state = 0.3 + 0.7 * math.exp(-step / (tau[k] * (0.5 + RULE_MODEL[r2][0])))
                    d[f"probe_{_cross_label(r2)}_var_l{l}"] = float("nan") if dead else share * cv[k] * state
                    d[f"probe_{_cross_label(r2)}_mean_sq_l{l}"] = float("nan") if dead else share * 0.1
            per_seed.append(d)
            for m, v in d.items():
                seed_rows.append((step, s0 + k, m, v))
        agg = _aggregate(per_seed)
        agg["diverged_fraction"] = sum(d["diverged"] for d in per_seed) / seeds
        agg["threshold_reached_fraction"] = sum("episodes_to_threshold" in d for d in per_seed) / seeds
        agg["episodes"] = float(step)
        agg["seconds_per_episode"] = seconds
        median = registry.threshold_median([d["episodes_to_threshold"] for d in per_seed if "episodes_to_threshold" in d],
                                           seeds)
        if median is not None:
            agg["episodes_to_threshold_median"] = median
        # what the study's trainable logs: one series per quantity, and the mean eval reward so far
        series = {k: v for k, v in agg.items() if registry.is_series(k, OBJECTIVE)}
        if math.isfinite(agg.get("eval_reward_mean", math.nan)):
            curve.append((step, agg["eval_reward_mean"]))
        if curve:
            series[layout.AUC_REWARD] = layout.auc_reward(curve)
        metrics += [Metric(k, v, t0 + step, step) for k, v in series.items()]
    ever_diverged = (diverge_at >= 0).any()
    metrics = [m for m in metrics if math.isfinite(m.value)]
    point_id = _point_id(name, cell, lr, stage, s0)
    run = client.create_run(exp_id, run_name=layout.point_run_name(point_id, config), tags={
        layout.PARENT: pid, layout.ROLE: layout.ROLE_TRIAL, layout.STUDY: name, layout.CELL: cell,
        layout.POINT_ID: point_id, layout.STAGE: stage, layout.PACK: f"pack-{point_id}",   # one point per pack: each has its own timing
        layout.CONFIG_HASH: layout.config_hash(config), layout.NODE: "synthetic", layout.NODE_IP: "127.0.0.1",
        layout.NODES: "synthetic at 127.0.0.1",   # every node the point trained on, as study.tracking.node_label writes it
        layout.HOST: "synthetic", layout.PID: str(os.getpid()), layout.DEVICE: "cpu",
        layout.NOTE: layout.point_note({"config": config, "stage": stage, "cell": cell, "point_id": point_id}),
        layout.TIMELINE: _timeline(t0 / 1000, seconds * episodes * seeds),
        layout.STATUS: layout.DIVERGED if ever_diverged else layout.FINISHED})
    rid = run.info.run_id
    params = [Param(k, v) for k, v in params.items()]
    client.log_batch(rid, params=params, metrics=metrics[:1000 - len(params)])
    for i in range(1000 - len(params), len(metrics), 1000):
        client.log_batch(rid, metrics=metrics[i:i + 1000])
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / layout.SEED_CURVES
        pd.DataFrame(seed_rows, columns=["episode", "seed", "metric", "value"]).to_csv(p, index=False)
        client.log_artifact(rid, str(p))
    client.set_terminated(rid, "FINISHED")


def _timeline(started: float, train: float) -> str:
    """A pack's uwm.timeline as study.timeline writes it: the planted training time and small fixed phases."""
    phases = {"setup": 0.05, "compile": 0.0, "train": round(train, 4), "report": 0.1, "mlflow": 0.2,
              "checkpoint": 0.1, "other": 0.01}
    return json.dumps({"started": started, **phases, "total": round(sum(phases.values()), 4)})


def _aggregate(per_seed):
    out = {}
    for key in sorted({k for row in per_seed for k in row}):
        vals = np.array([row[key] for row in per_seed if key in row and math.isfinite(row[key])])
        if not vals.size:
            continue
        std = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        out[f"{key}_mean"], out[f"{key}_std"], out[f"{key}_sem"] = float(vals.mean()), std, std / math.sqrt(vals.size)
    return out
