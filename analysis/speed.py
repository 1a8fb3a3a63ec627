"""Learning speed per seed, per trial and per cell, with intervals over seeds.

Three measures of speed, each computed per seed from ``curves_per_seed.csv``:

``episodes_to_threshold``  first episode at which the seed's running-mean reward reached the
                           trial's threshold. A seed that never reached it is *censored*: we know
                           only that it needs more than the episodes it was observed for (its
                           budget, or its last report when it stopped early). A diverged seed never
                           reaches it (censored at the budget). Pooled over seeds by Kaplan-Meier
                           (:func:`analysis.stats.km_summary`): ``episodes_to_threshold`` is the
                           *restricted mean* up to the budget (area under the KM curve; it is a
                           lower bound on the unrestricted mean whenever seeds were censored), and
                           ``episodes_to_threshold_median`` the KM median (``inf`` when fewer than
                           half the seeds reached the threshold), each with its interval.
``auc_reward``             area under the seed's eval-reward curve divided by the episodes
                           trained: each report's eval reward stands for the episodes since the
                           previous report (from episode 0), so a seed perfect from the start
                           scores the maximum reward. The mean eval reward over training, in
                           reward units; higher is faster. Same definition as the study's
                           ``auc_reward_mean`` for seeds that did not diverge.
``final_reward``           the seed's eval reward at its last report.

**Diverged seeds are failures** (the documented rule): from the report at which a seed diverged
(``diverged_at``, else its first report with ``diverged = 1``) to its budget, its reward counts
as the lowest reward of the task (-1 for ``pm1`` rewards, 0 for ``10``), whatever the frozen
parameters would still score; so its final reward is that floor, its AUC includes the floor over
the rest of the budget, and it never counts as having reached the threshold.

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
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL, bootstrap_ci, km_summary, t_interval, wilson_interval

SPEED_MEASURES = ("auc_reward", "episodes_to_threshold", "final_reward")
SPEED_UNITS = {"auc_reward": "reward (mean over training)", "episodes_to_threshold": "episodes",
               "final_reward": "reward"}
FINAL_STATUSES = layout.TRAINED


def seed_speed(study: Study) -> pd.DataFrame:
    """One row per (run_id, seed): ``auc_reward``, ``final_reward`` (diverged seeds as failures, see the
    module doc), ``episodes_to_threshold`` (the observed episode when ``reached``, else the censoring time),
    ``reached`` (bool; never for a diverged seed), ``diverged`` (bool), ``diverged_at``, ``last_episode``
    (last finite report before any divergence), ``budget``."""
    if "seed_speed" in study.cache:
        return study.cache["seed_speed"].copy()
    out = _seed_speed(study)
    study.cache["seed_speed"] = out
    return out.copy()


REWARD_FLOOR = {"pm1": -1.0, "10": 0.0}   # the lowest reward of the task (TaskConfig.rewards)


def reward_floor(trials: pd.DataFrame) -> pd.Series:
    """Per run_id, the lowest reward of its task: what a diverged seed scores (see module doc). A control task's
    reward is a return: 0 on CartPole (below any episode's), -max_steps on Acrobot (an episode that never swings up)."""
    kinds = trials["task.rewards"] if "task.rewards" in trials else pd.Series("pm1", index=trials.index)
    floor = kinds.map(lambda k: REWARD_FLOOR.get(str(k), -1.0)).to_numpy(float)
    if "task.env" in trials:
        env, steps = trials["task.env"].astype(str), pd.to_numeric(trials.get("max_steps"), errors="coerce")
        floor = np.where(env == "cartpole", 0.0, np.where(env == "acrobot", -steps, floor))
    return pd.Series(floor, index=trials["run_id"])


def _seed_speed(study: Study) -> pd.DataFrame:
    cols = ["run_id", "seed", "auc_reward", "final_reward", "episodes_to_threshold", "reached", "diverged",
            "diverged_at", "last_episode", "budget"]
    sc = study.seed_curves
    if not len(sc):
        return pd.DataFrame(columns=cols)
    keys = ["run_id", "seed"]
    seeds = sc[keys].drop_duplicates()
    div = sc[sc["metric"] == "diverged"]
    div_flag = div.groupby(keys)["value"].max().rename("div")
    first_div = div[div["value"] > 0.5].groupby(keys)["episode"].min().rename("first_div")
    div_at = sc[sc["metric"] == "diverged_at"].dropna(subset=["value"]).groupby(keys)["value"].min().rename("div_at")
    out = seeds.set_index(keys).join(div_flag).join(first_div).join(div_at)
    out["diverged"] = out["div"].fillna(0) > 0.5
    out["diverged_at"] = out["div_at"].where(out["div_at"].notna(), out["first_div"]).where(out["diverged"])
    budget = study.trials.set_index("run_id")["episodes"] if "episodes" in study.trials else pd.Series(dtype=float)
    last_ep = sc.groupby("run_id")["episode"].max()
    run = out.index.get_level_values("run_id")
    out["budget"] = pd.Series(run.map(budget), index=out.index).astype("float64").fillna(
        pd.Series(run.map(last_ep), index=out.index).astype("float64"))
    floor = pd.Series(run.map(reward_floor(study.trials)) if len(study.trials) else np.nan, index=out.index)
    floor = floor.astype("float64").fillna(-1.0)

    # eval rewards up to (not including) the divergence; the floor stands for the rest of the budget
    ev = sc[sc["metric"] == "eval_reward"].join(out["diverged_at"], on=keys)
    ev = ev[np.isfinite(ev["value"]) & ~(ev["episode"] >= ev["diverged_at"])].sort_values(keys + ["episode"])
    same = ev["run_id"].eq(ev["run_id"].shift()) & ev["seed"].eq(ev["seed"].shift())
    ev = ev.assign(_w=ev["episode"] - np.where(same, ev["episode"].shift(), 0))
    g = ev.assign(_area=ev["value"] * ev["_w"]).groupby(keys, sort=False)
    out = out.join(pd.DataFrame({"_area": g["_area"].sum(), "_last": g["episode"].max(), "_final": g["value"].last()}))
    out["last_episode"] = out["_last"]
    span = np.where(out["diverged"], out["budget"], out["_last"])
    area = out["_area"].fillna(0) + np.where(out["diverged"], floor * (out["budget"] - out["_last"].fillna(0)), 0)
    out["auc_reward"] = np.where(span > 0, area / np.where(span > 0, span, 1), np.nan)
    out["final_reward"] = np.where(out["diverged"], floor, out["_final"])

    ett = (sc[sc["metric"] == "episodes_to_threshold"].dropna(subset=["value"])
           .sort_values("episode").groupby(keys)["value"].last().rename("ett"))
    out = out.join(ett)
    out["reached"] = out["ett"].notna() & ~out["diverged"]
    # observed time when reached; else censored where observation ended: the budget (a finished or diverged
    # seed) or the seed's last report (a trial stopped early or still running)
    seen = np.where(out["diverged"], out["budget"], np.fmin(out["budget"], out["_last"].fillna(out["budget"])))
    out["episodes_to_threshold"] = np.where(out["reached"], out["ett"], seen)
    return out.reset_index()[cols]


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
    for m in ("auc_reward", "final_reward"):
        row.update(bootstrap_ci(s[m].to_numpy(float), n_boot=n_boot, level=level, seed=seed).as_dict(m))
        row[f"{m}_se"] = t_interval(s[m].to_numpy(float), level)[3]     # lr-sensitivity's comparisons need it
    tau = float(s["budget"].max()) if "budget" in s and s["budget"].notna().any() else float(s["episodes_to_threshold"].max())
    km = km_summary(s["episodes_to_threshold"].to_numpy(float), s["reached"].to_numpy(bool), tau,
                    n_boot=n_boot, level=level, seed=seed)
    row.update({"episodes_to_threshold": km.rmst, "episodes_to_threshold_lo": km.rmst_lo,
                "episodes_to_threshold_hi": km.rmst_hi, "episodes_to_threshold_median": km.median,
                "episodes_to_threshold_median_lo": km.median_lo, "episodes_to_threshold_median_hi": km.median_hi,
                "episodes_budget": tau})
    row["reached_fraction"] = float(s["reached"].mean())
    row["censored_fraction"] = 1 - row["reached_fraction"]
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
        values = (pd.to_numeric(g[objective], errors="coerce") if objective and objective in g
                  else pd.Series(np.nan, index=g.index))
        # the one chooser the study's summary, best_per_cell.csv and its tag use too (the confirm stage first)
        points = [{"cell": 0, "stage": s, "status": st, "value": float(v), "index": i}
                  for i, s, st, v in zip(g.index, g["stage"], g["status"], values)]
        best_point = layout.chosen_points(points, mode)[0]
        how = "confirm stage" if best_point["stage"] == layout.STAGE_CONFIRM else "best search trial"
        if best_point["value"] is None:
            how += " (no objective values: first trial)"
        cand = g[g["stage"] == best_point["stage"]] if best_point["stage"] == layout.STAGE_CONFIRM else g
        best = g.loc[best_point["index"]]
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


MIN_TUNING_POINTS = 5   # fewer search points than this in a cell: the chosen lr is close to a random draw


def tuning_warnings(study: Study) -> pd.DataFrame:
    """Per cell, what makes its tuned learning rate less trustworthy: the numbers come from the search's
    own seeds (no confirm stage: the best of several draws, picked and reported on the same seeds, is
    optimistic); the chosen lr is the smallest or largest the search tried (the optimum may lie outside
    the range); too few search points (TPE samples its first points at random). Columns: cell,
    rule_variant, lr, lr_min, lr_max, n_search, confirmed, warnings (text, empty when none)."""
    t = study.trials
    tuned = select_tuned(study)
    rows = []
    for cell, g in tuned.groupby("cell", sort=False, dropna=False):
        search = t[(t["cell"] == cell) & (t["stage"] != "confirm") & t["lr"].notna()] if len(t) else t
        lr = float(g["lr"].iloc[0]) if g["lr"].notna().any() else math.nan
        confirmed = bool((g["stage"] == "confirm").any())
        lr_min, lr_max = (float(search["lr"].min()), float(search["lr"].max())) if len(search) else (math.nan, math.nan)
        n = int(search["lr"].nunique()) if len(search) else 0
        warn = []
        if not confirmed:
            warn.append("no confirm stage: reported on the seeds it was picked on (optimistic)")
        if n > 1 and np.isfinite(lr) and (np.isclose(lr, lr_min) or np.isclose(lr, lr_max)):
            warn.append(f"lr {lr:.3g} is at the {'lower' if np.isclose(lr, lr_min) else 'upper'} edge of the searched "
                        f"range [{lr_min:.3g}, {lr_max:.3g}]")
        if 1 < n < MIN_TUNING_POINTS:
            warn.append(f"only {n} learning rates tried (fewer than {MIN_TUNING_POINTS}: close to random search)")
        rows.append({"cell": cell, "rule_variant": g["rule_variant"].iloc[0] if "rule_variant" in g else None,
                     "lr": lr, "lr_min": lr_min, "lr_max": lr_max, "n_search": n, "confirmed": confirmed,
                     "warnings": "; ".join(warn)})
    return pd.DataFrame(rows, columns=["cell", "rule_variant", "lr", "lr_min", "lr_max", "n_search", "confirmed",
                                       "warnings"])


# Chung (AAAI 2022), Weight Maximization on the 20-bit multiplexer: mean training reward over all
# 800 000 episodes, mean (std) over 10 runs
PUBLISHED = {"replicate-chung2022": {"rule_variant": "wm(p=2)", "train_reward_all": 0.81, "std": 0.01,
                                     "source": "Chung 2022, 10 runs"}}


def replication_table(study: Study) -> pd.DataFrame:
    """Per tuned cell: ``train_reward_all`` at each seed's last report (the mean training reward over every
    episode it trained), its mean and standard deviation over seeds (ddof 0, as published), and the
    published figure beside the variant it reports on (:data:`PUBLISHED`, by study name). Diverged seeds
    keep the value they logged and are counted in ``n_diverged``."""
    cols = ["cell", "rule_variant", "n_seeds", "n_diverged", "train_reward_all", "std_ddof0", "published",
            "published_std", "source"]
    sc = study.seed_curves
    if not len(sc) or not (sc["metric"] == "train_reward_all").any():
        return pd.DataFrame(columns=cols)
    last = (sc[sc["metric"] == "train_reward_all"].sort_values("episode")
            .groupby(["run_id", "seed"])["value"].last().reset_index())
    seeds = seed_speed(study)[["run_id", "seed", "diverged"]]
    last = last.merge(seeds, on=["run_id", "seed"], how="left")
    pub = PUBLISHED.get(study.name, {})
    rows = []
    for cell, g in select_tuned(study).groupby("cell", sort=False, dropna=False):
        v = last[last["run_id"].isin(g["run_id"])]
        x = v["value"].to_numpy(float)
        x = x[np.isfinite(x)]
        variant = g["rule_variant"].iloc[0] if "rule_variant" in g else None
        mine = pub.get("rule_variant") == variant
        rows.append({"cell": cell, "rule_variant": variant, "n_seeds": int(x.size),
                     "n_diverged": int(v["diverged"].fillna(False).sum()),
                     "train_reward_all": float(x.mean()) if x.size else math.nan,
                     "std_ddof0": float(x.std(ddof=0)) if x.size else math.nan,
                     "published": pub.get("train_reward_all", math.nan) if mine else math.nan,
                     "published_std": pub.get("std", math.nan) if mine else math.nan,
                     "source": pub.get("source", "") if mine else ""})
    return pd.DataFrame(rows, columns=cols)
