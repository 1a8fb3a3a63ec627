"""Learning speed per seed, per trial and per cell, with bootstrap intervals over seeds.

Three measures of speed, each computed per seed from ``curves_per_seed.csv``:

``episodes_to_threshold``  first episode at which the seed's running-mean reward reached the
                           trial's threshold. A seed that never reached it is *censored*: it
                           counts with the trial's episode budget (``episodes``), so the mean is
                           a lower bound on the true mean whenever ``reached_fraction < 1``;
                           ``reached_fraction`` is reported beside it.
``auc_reward``             area under the seed's eval-reward curve divided by the episodes
                           trained: each report's eval reward stands for the episodes since the
                           previous report (from episode 0), so a seed perfect from the start
                           scores the maximum reward. The mean eval reward over training, in
                           reward units; higher is faster. Same definition as the study's
                           ``auc_reward_mean`` (``study.tracking.summary_metrics``), so the mean
                           over seeds matches it. Reports without a finite eval reward (after a
                           divergence) are left out.
``final_reward``           the seed's eval reward at its last report.

A cell (a point of the study's grid: rule, widths, norm, ...) usually holds several trials
(learning rates tried by the searcher, then confirmation runs). :func:`select_tuned` picks the
tuned trial(s) of each cell; :func:`cell_summary` reports the cell at its tuned learning rate.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from uwm_model import layout

from .load import Study
from .probe import probe_at
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL, bootstrap_ci, wilson_interval

SPEED_MEASURES = ("auc_reward", "episodes_to_threshold", "final_reward")
SPEED_UNITS = {"auc_reward": "reward (mean over training)", "episodes_to_threshold": "episodes",
               "final_reward": "reward"}
FINAL_STATUSES = layout.TRAINED


def seed_speed(study: Study) -> pd.DataFrame:
    """One row per (run_id, seed): ``auc_reward``, ``final_reward``, ``episodes_to_threshold`` (censored
    at the budget), ``reached`` (bool), ``diverged`` (bool), ``last_episode``."""
    if "seed_speed" in study.cache:
        return study.cache["seed_speed"].copy()
    out = _seed_speed(study)
    study.cache["seed_speed"] = out
    return out.copy()


def _seed_speed(study: Study) -> pd.DataFrame:
    cols = ["run_id", "seed", "auc_reward", "final_reward", "episodes_to_threshold", "reached", "diverged",
            "last_episode"]
    sc = study.seed_curves
    if not len(sc):
        return pd.DataFrame(columns=cols)
    seeds = sc[["run_id", "seed"]].drop_duplicates()
    ev = sc[sc["metric"] == "eval_reward"]
    ev = ev[np.isfinite(ev["value"])].sort_values(["run_id", "seed", "episode"])
    same = (ev["run_id"].eq(ev["run_id"].shift())) & (ev["seed"].eq(ev["seed"].shift()))
    width = ev["episode"] - np.where(same, ev["episode"].shift(), 0)
    g = ev.assign(_area=ev["value"] * width).groupby(["run_id", "seed"], sort=False)
    last = g["episode"].max()
    auc = g["_area"].sum() / last.where(last > 0)
    per = pd.DataFrame({"auc_reward": auc, "final_reward": g["value"].last(), "last_episode": g["episode"].max()})
    ett = (sc[sc["metric"] == "episodes_to_threshold"].dropna(subset=["value"])
           .sort_values("episode").groupby(["run_id", "seed"])["value"].last().rename("ett"))
    div = sc[sc["metric"] == "diverged"].groupby(["run_id", "seed"])["value"].max().rename("div")
    out = seeds.set_index(["run_id", "seed"]).join(per).join(ett).join(div).reset_index()
    budget = study.trials.set_index("run_id")["episodes"] if "episodes" in study.trials else pd.Series(dtype=float)
    last_ep = sc.groupby("run_id")["episode"].max()
    cap = out["run_id"].map(budget).astype("float64").fillna(out["run_id"].map(last_ep).astype("float64"))
    out["reached"] = out["ett"].notna()
    out["episodes_to_threshold"] = out["ett"].fillna(cap)
    out["diverged"] = out["div"].fillna(0) > 0.5
    return out[cols]


def trial_speed(study: Study, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0,
                seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial: each speed measure's mean over seeds with a bootstrap interval over seeds
    (``<m>``, ``<m>_lo``, ``<m>_hi``), ``n_seeds``, ``reached_fraction`` and ``diverged_fraction``
    (with a Wilson interval). Trials without per-seed curves fall back to their logged aggregates
    (``auc_reward_mean``, ``final_eval_reward_mean``, ...) with no interval."""
    seeds = seed_speed(study) if seeds is None else seeds
    rows = []
    by_run = dict(tuple(seeds.groupby("run_id"))) if len(seeds) else {}
    for _, t in study.trials.iterrows():
        rid = t["run_id"]
        s = by_run.get(rid)
        if s is not None and len(s):
            rows.append({"run_id": rid, **_pooled(s, n_boot, level, seed)})
        else:
            row = {"run_id": rid, "n_seeds": _num(t.get("seeds")), "per_seed": False}
            for m, src in (("auc_reward", "auc_reward_mean"), ("final_reward", "final_eval_reward_mean"),
                           ("episodes_to_threshold", "final_episodes_to_threshold_mean")):
                row.update({m: _num(t.get(src)), f"{m}_lo": math.nan, f"{m}_hi": math.nan})
            row["reached_fraction"] = _num(t.get("final_threshold_reached_fraction"))
            row["diverged_fraction"] = _num(t.get("final_diverged_fraction"))
            row["diverged_fraction_lo"] = row["diverged_fraction_hi"] = math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _pooled(s: pd.DataFrame, n_boot: int, level: float, seed: int) -> dict:
    """Speed measures over the seed rows ``s`` (one trial, or the pooled trials of a cell)."""
    row = {"n_seeds": int(len(s)), "per_seed": True}
    for m in SPEED_MEASURES:
        row.update(bootstrap_ci(s[m].to_numpy(float), n_boot=n_boot, level=level, seed=seed).as_dict(m))
    row["reached_fraction"] = float(s["reached"].mean())
    w = wilson_interval(int(s["diverged"].sum()), int(len(s)), level)
    row.update(w.as_dict("diverged_fraction"))
    return row


def default_objective(study: Study) -> tuple[str, str]:
    """The metric (a column of ``trials``) and mode ("max"/"min") that define a cell's tuned trial: the
    study spec's objective when it names one, else ``auc_reward_mean`` maximised."""
    spec = study.spec or {}
    obj = spec.get("objective") if isinstance(spec, dict) else None
    metric, mode = None, "max"
    if isinstance(obj, dict):
        metric, mode = obj.get("metric"), obj.get("mode", "max")
    elif isinstance(obj, str):
        metric = obj
    if isinstance(spec, dict) and not metric:
        metric, mode = spec.get("metric"), spec.get("mode", "max")
    cols = study.trials.columns
    if metric and metric not in cols and f"last_{metric}" in cols:
        metric = f"last_{metric}"
    if not metric or metric not in cols:
        for cand in ("auc_reward_mean", "final_eval_reward_mean", "last_eval_reward_mean"):
            if cand in cols:
                return cand, "max"
        return "", "max"
    return metric, ("min" if str(mode).lower().startswith("min") else "max")


def select_tuned(study: Study, objective: str | None = None, mode: str | None = None) -> pd.DataFrame:
    """The tuned trial(s) of every cell, with a column ``tuned_by`` saying how.

    Within a cell, trials of stage ``confirm`` are preferred (they re-run the searcher's choice
    with fresh seeds); among the candidates the best by ``objective`` is chosen, and every
    candidate with the same learning rate is kept (their seeds are pooled). Failed and running
    trials are never chosen; a cell whose trials all failed is absent.
    """
    if objective is None:
        objective, dmode = default_objective(study)
        mode = mode or dmode
    mode = mode or "max"
    key = ("select_tuned", objective, mode)
    if key not in study.cache:
        study.cache[key] = _select_tuned(study, objective, mode)
    return study.cache[key].copy()


def _select_tuned(study: Study, objective: str, mode: str) -> pd.DataFrame:
    t = study.trials
    ok = t[t["status"].isin(FINAL_STATUSES)] if len(t) else t
    picked = []
    for cell, g in ok.groupby("cell", sort=False, dropna=False):
        cand = g[g["stage"] == "confirm"] if (g["stage"] == "confirm").any() else g
        how = "confirm stage" if (g["stage"] == "confirm").any() else "best search trial"
        if objective and objective in cand and cand[objective].notna().any():
            score = cand[objective] if mode == "max" else -cand[objective]
            best = cand.loc[score.idxmax()]
        else:
            best = cand.iloc[0]
            how += " (no objective values: first trial)"
        same_lr = cand["lr"].eq(best["lr"]) | (cand["lr"].isna() & pd.isna(best["lr"]))
        sel = cand[same_lr | (cand["run_id"] == best["run_id"])].copy()
        sel["tuned_by"] = f"{how}, {objective or 'n/a'} {mode}"
        sel["n_trials_in_cell"] = len(g)
        picked.append(sel)
    if not picked:
        return t.iloc[0:0].assign(tuned_by=pd.Series(dtype=object), n_trials_in_cell=pd.Series(dtype=int))
    return pd.concat(picked).reset_index(drop=True)


def cell_summary(study: Study, objective: str | None = None, mode: str | None = None, n_boot: int = DEFAULT_BOOT,
                 level: float = DEFAULT_LEVEL, seed: int = 0, seeds: pd.DataFrame | None = None,
                 variance_at=None) -> pd.DataFrame:
    """One row per cell at its tuned learning rate: the tuned ``lr``, speed measures pooled over the
    seeds of the tuned trial(s) with bootstrap intervals, reached and diverged fractions,
    ``seconds_per_episode`` and the probe variance of the trained rule per layer (``var_l1`` ...,
    ``var_total``) at matched episodes (``variance_at``, see :mod:`analysis.probe`; the frame's
    ``attrs["variance_at"]`` describes the episode)."""
    tuned = select_tuned(study, objective, mode)
    seeds = seed_speed(study) if seeds is None else seeds
    var, var_when = probe_at(study, tuned["run_id"], at=variance_at)
    tspeed = None
    rows = []
    for cell, g in tuned.groupby("cell", sort=False, dropna=False):
        first = g.iloc[0]
        row = {"cell": cell}
        for c in ("rule", "rule_variant", "hidden", "width", "depth", "outgoing_norm"):
            if c in g:
                row[c] = first[c]
        row["lr"] = first["lr"]
        row["lr_per_layer"] = bool(first.get("lr_per_layer", False))
        if row["lr_per_layer"]:
            row["lr_text"] = first.get("lr_text")
        row["stage"] = first["stage"]
        row["n_trials_in_cell"] = first["n_trials_in_cell"]
        row["tuned_by"] = first["tuned_by"]
        row["run_ids"] = ",".join(g["run_id"])
        s = seeds[seeds["run_id"].isin(g["run_id"])] if len(seeds) else seeds
        if len(s):
            row.update(_pooled(s, n_boot, level, seed))
        else:
            if tspeed is None:
                tspeed = trial_speed(study, n_boot, level, seed, seeds).set_index("run_id")
            row.update(tspeed.loc[first["run_id"]].to_dict())
        for c in ("final_seconds_per_episode", "last_seconds_per_episode"):
            if c in g and g[c].notna().any():
                row["seconds_per_episode"] = float(g[c].mean())
                break
        if len(var):
            v = var[var["run_id"].isin(g["run_id"])]
            for c in var.columns:
                if c.startswith("l") and c[1:].isdigit():
                    row[f"var_{c}"] = float(v[c].mean()) if len(v) else math.nan
            row["var_total"] = float(v["total"].mean()) if len(v) else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["variance_at"] = var_when
    return out
