"""Variance versus speed: how estimator variance relates to learning speed (docs/learning-rules.md §8, question 2).

One row per (trial, layer): the probe variance of the trial's rule at a matched point of
training, beside the trial's speed (means over seeds, :mod:`analysis.speed`).

Which variance. The trial's own probe measures its rule on the states its own trajectory
reached, so a slow rule is probed on early-training states and a fast one on trained states:
variance and speed are confounded through the trajectory. The cross-rule probe removes that:
every trial evaluates every probe rule on the same episodes and parameter state. Where it
exists, a trial's ``variance`` is the *matched* one: the mean, over all trials that share the
trial's setting (widths, outgoing norm, task: everything but rule and learning rate), of the
cross-rule probe of the trial's rule, so every rule is measured on the same set of states.
Otherwise it is the trial's own probe. ``variance_source`` says which.

Layers are numbered 1..L (L = output); ``layer == "total"`` sums them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from uwm_model.metrics import cross_rule_label

from .load import Study
from .probe import cross_rule_labels, probe_at
from .speed import FINAL_STATUSES, select_tuned, trial_speed
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL, generator, spearman, spearman_ci

# part of a trial's rule variant or of its tuning, not of the setting the rules are compared in
NON_SETTING = {"rule", "rule_variant", "baseline", "baseline_decay", "lr", "seed", "seeds", "name", "run_id", "cell",
               "stage", "status"}


def setting_columns(trials: pd.DataFrame) -> list[str]:
    """Columns that define a trial's setting apart from its rule and learning rate (and that vary in
    the study): cell axes other than rule/lr, plus widths and outgoing norm."""
    cols = []
    for c in ["hidden", "outgoing_norm", *sorted(cell_axes(trials).columns)]:
        if c in NON_SETTING or c.startswith("rule_options") or c in cols or c not in trials.columns:
            continue
        if trials[c].astype(str).nunique(dropna=False) > 1:
            cols.append(c)
    return cols


def cell_axes(trials: pd.DataFrame) -> pd.DataFrame:
    """The cell keys (``axis=value|axis=value``) split into one column per axis (values as strings)."""
    if "cell" not in trials or not len(trials):
        return pd.DataFrame(index=trials.index)
    rows = []
    for cell in trials["cell"]:
        d = {}
        for part in str(cell).split("|") if isinstance(cell, str) else []:
            if "=" in part:
                k, v = part.split("=", 1)
                d[k.strip()] = v.strip()
        rows.append(d)
    return pd.DataFrame(rows, index=trials.index)


def _setting_key(trials: pd.DataFrame, cols: list[str]) -> pd.Series:
    if not cols:
        return pd.Series("all", index=trials.index)
    return trials[cols].astype(str).agg("|".join, axis=1)


def _label_of(row) -> str | None:
    """The cross-rule probe label that measures exactly this trial's rule variant (rule, every option and
    the reward baseline), or None. Never another variant's: hwm of order 5 is not measured by an order-3
    probe, nor REINFORCE with an EMA baseline by plain REINFORCE."""
    baseline = row.get("baseline")
    baseline = "none" if baseline is None or _isnan(baseline) else str(baseline)
    rules = row.get("probe.rules")
    options = {k.split(".", 1)[1]: v for k, v in row.items()
               if isinstance(k, str) and k.startswith("rule_options.") and not _isnan(v)}
    if isinstance(rules, list):
        exact = [r for r in rules if isinstance(r, dict) and r.get("rule") == row["rule"]
                 and _same_options(r.get("options") or {}, options) and (r.get("baseline") or "none") == baseline]
        if not exact:
            return None
        entry = exact[0]
        named = {**(entry.get("options") or {}), **({"baseline": baseline} if baseline != "none" else {})}
        return entry.get("label") or cross_rule_label(entry["rule"], named)
    if baseline != "none":   # no list to check: a baseline variant has no default entry
        return None
    return cross_rule_label(row["rule"], options)


def _same_options(a: dict, b: dict) -> bool:
    """Option mappings equal up to number types (a param read back from MLflow may be 3.0 for 3)."""
    if a.keys() != b.keys():
        return False
    return all(x == y or (_number(x) is not None and _number(x) == _number(y)) for x, y in ((a[k], b[k]) for k in a))


def _number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def variance_speed_table(study: Study, at=None, points: str = "tuned", n_boot: int = DEFAULT_BOOT,
                         level: float = DEFAULT_LEVEL, seed: int = 0, kind: str | None = None) -> pd.DataFrame:
    """One row per (trial, layer) with the variance at the matched episode and the trial's speed.

    Args:
        at: the matched point of training (see :mod:`analysis.probe`); default: the first report
            episode all trials share.
        points: ``"tuned"``: each cell's tuned trial(s) (:func:`analysis.speed.select_tuned`), so every
            rule is represented at its best learning rate; ``"all"``: every finished trial.
        kind: the probe measure: ``"nsr"`` (default when logged: the noise-to-signal ratio, scale-free, so
            comparable across rules, widths and norms) or ``"var"`` (total variance, which grows with the
            parameter count and the gradient's scale; ``attrs["kind"]`` says which was used).

    Columns: run_id, cell, rule_variant, width, outgoing_norm, lr, layer, episode, var_own,
    var_matched, variance, variance_source, auc_reward, episodes_to_threshold, final_reward,
    reached_fraction, n_seeds. ``attrs["at"]`` describes the matched episode.
    """
    t = study.trials
    finished = t[t["status"].isin(FINAL_STATUSES)] if len(t) else t
    chosen = select_tuned(study) if points == "tuned" else finished
    if points not in ("tuned", "all"):
        raise ValueError(f"points={points!r}: expected 'tuned' or 'all'")
    out_cols = ["run_id", "cell", "rule_variant", "width", "outgoing_norm", "lr", "layer", "episode", "var_own",
                "var_matched", "variance", "variance_source", "auc_reward", "episodes_to_threshold",
                "final_reward", "reached_fraction", "n_seeds"]
    if not len(chosen):
        return pd.DataFrame(columns=out_cols)
    if kind is None:
        kind = "nsr" if any(m.startswith("probe_nsr_l") for m in study.metrics) else "var"
    own, why = probe_at(study, chosen["run_id"], at=at, kind=kind)
    if not len(own):
        return pd.DataFrame(columns=out_cols)
    layer_cols = [c for c in own.columns if c.startswith("l") and c[1:].isdigit()] + ["total"]
    own_long = own.melt(id_vars=["run_id", "episode"], value_vars=layer_cols, var_name="layer",
                        value_name="var_own")
    labels = cross_rule_labels(study)
    matched = pd.DataFrame(columns=["run_id", "layer", "var_matched"])
    if labels:
        setting = setting_columns(finished)
        key = _setting_key(finished, setting)
        parts = []
        for label in labels:
            cross, _ = probe_at(study, finished["run_id"], label=label, at=at, kind=kind)
            if not len(cross):
                continue
            cross = cross.assign(_key=cross["run_id"].map(dict(zip(finished["run_id"], key))))
            means = cross.groupby("_key")[[c for c in layer_cols if c in cross.columns]].mean()
            means["label"] = label
            parts.append(means.reset_index())
        if parts:
            table = pd.concat(parts, ignore_index=True)
            c = chosen.assign(_key=_setting_key(chosen, setting).to_numpy(),
                              label=[_label_of(r) for _, r in chosen.iterrows()])
            m = c[["run_id", "_key", "label"]].merge(table, on=["_key", "label"], how="inner")
            matched = m.melt(id_vars=["run_id"], value_vars=[x for x in layer_cols if x in m.columns],
                             var_name="layer", value_name="var_matched")
    df = own_long.merge(matched, on=["run_id", "layer"], how="left")
    df["var_matched"] = df["var_matched"].astype("float64")
    has = df["var_matched"].notna()
    df["variance"] = df["var_matched"].where(has, df["var_own"])
    df["variance_source"] = np.where(has, "cross-rule probe, matched states", "own probe")
    speed = trial_speed(study, n_boot=n_boot, level=level, seed=seed)
    speed = speed[["run_id", "auc_reward", "episodes_to_threshold", "final_reward", "reached_fraction", "n_seeds"]]
    df = df.merge(speed, on="run_id", how="left")
    df = study.with_trial_columns(df, ("cell", "rule_variant", "width", "outgoing_norm", "lr"))
    df["layer"] = df["layer"].map(lambda s: s[1:] if s != "total" else s)
    setting = setting_columns(finished)
    keys = dict(zip(finished["run_id"], _setting_key(finished, setting)))
    df = df.assign(setting=df["run_id"].map(keys))
    df = df[out_cols + ["setting"]].sort_values(["layer", "rule_variant", "width", "outgoing_norm"]).reset_index(drop=True)
    df.attrs["kind"] = kind
    df.attrs["at"] = why
    return df


def variance_speed_correlations(table: pd.DataFrame, speed: str = "auc_reward", variance: str = "variance",
                                n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL,
                                seed: int = 0) -> pd.DataFrame:
    """Spearman's rho between ``variance`` and ``speed`` per layer, over all rules and within each rule,
    with a bootstrap interval over trials.

    Sign: with ``speed="auc_reward"`` or ``"final_reward"`` (higher = faster) a negative rho means
    higher variance goes with slower learning; with ``"episodes_to_threshold"`` (lower = faster)
    the same relation gives a positive rho. Columns: layer, scope ("all rules" or a rule variant),
    n, rho, rho_lo, rho_hi, excludes_zero.
    """
    rows = []
    if not len(table):
        return pd.DataFrame(columns=["layer", "scope", "n", "rho", "rho_lo", "rho_hi", "excludes_zero"])
    for layer, g in table.groupby("layer", sort=False):
        scopes = [("all rules", g)] + [(r, h) for r, h in g.groupby("rule_variant")]
        for scope, h in scopes:
            iv = spearman_ci(h[variance], h[speed], n_boot=n_boot, level=level, seed=seed)
            rows.append({"layer": layer, "scope": scope, "n": iv.n, "rho": iv.estimate, "rho_lo": iv.lo,
                         "rho_hi": iv.hi, "excludes_zero": bool(iv.lo > 0 or iv.hi < 0)})
    return pd.DataFrame(rows)


def pooled_within_setting(table: pd.DataFrame, speed: str = "auc_reward", variance: str = "variance",
                          n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0) -> pd.DataFrame:
    """Spearman's rho between variance and speed *within* each setting (the rules compared on the same
    widths, norm and task), pooled over settings: the average of the settings' Fisher-z transformed rho
    weighted by their number of cells, transformed back. Pooling raw values across settings instead lets
    the setting drive both (wider nets: more variance and another speed), which can flip the sign.

    Interval: a bootstrap that resamples whole cells within each setting (stratified: each setting keeps
    its size; a cell carries its variance and speed together), with the percentile interval of the pooled
    rho. Settings with fewer than 3 cells are left out. Columns: layer, n_settings, n_cells, rho, rho_lo,
    rho_hi, excludes_zero."""
    cols = ["layer", "n_settings", "n_cells", "rho", "rho_lo", "rho_hi", "excludes_zero"]
    rows = []
    if not len(table) or "setting" not in table:
        return pd.DataFrame(columns=cols)
    for layer, g in table.groupby("layer", sort=False):
        g = g[np.isfinite(g[variance].astype(float)) & np.isfinite(g[speed].astype(float))]
        groups = [(h[variance].to_numpy(float), h[speed].to_numpy(float)) for _, h in g.groupby("setting")]
        groups = [(v, s) for v, s in groups if v.size >= 3]
        if not groups:
            continue
        est = _pooled_rho(groups)
        rng = generator(seed, g[variance].astype(float), g[speed].astype(float))
        draws = np.empty(n_boot)
        for b in range(n_boot):
            picks = [rng.integers(0, v.size, v.size) for v, _ in groups]
            draws[b] = _pooled_rho([(v[i], s[i]) for (v, s), i in zip(groups, picks)])
        draws = draws[np.isfinite(draws)]
        a = (1 - level) / 2
        lo, hi = np.quantile(draws, [a, 1 - a]) if draws.size >= 20 else (math.nan, math.nan)
        rows.append({"layer": layer, "n_settings": len(groups), "n_cells": int(sum(v.size for v, _ in groups)),
                     "rho": est, "rho_lo": float(lo), "rho_hi": float(hi),
                     "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0))})
    return pd.DataFrame(rows, columns=cols)


def _pooled_rho(groups) -> float:
    """Cell-count-weighted mean of the settings' Fisher-z rho (|rho| clipped below 1), back-transformed."""
    z, w = [], []
    for v, s in groups:
        r = spearman(v, s)
        if np.isfinite(r):
            z.append(np.arctanh(np.clip(r, -0.999999, 0.999999)))
            w.append(v.size)
    return float(np.tanh(np.average(z, weights=w))) if z else math.nan
