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

Which state. ``state`` picks the parameter state the variance is read on: the report episode ``at``
(default), the initial parameters (``"init"``: every rule on the same state), or a reward level r (a
float: each member's state at the first report where its running reward reached r, ``at_reward_{r}_``
probes). At a reward level every rule's variance is read on states of equal training reward, not equal
episode counts, so a fast rule is not probed on trained states and a slow one on untrained ones; only
seeds that reached r contribute, which :func:`matched_state_correlations` reports beside each answer.

Correlations (:func:`pooled_within_setting`) are computed within each setting and pooled (mean weighted
by cells); their bootstrap resamples cells within settings and, when per-seed values are given
(:func:`variance_speed_seeds`), the seeds of each resampled setting *paired* across its cells: one draw of
seed numbers serves every rule of the setting, so the seed effects the rules share (the same initial
parameters and training streams, seeded alike) cancel as they do in the estimate, while the seed noise of
each cell's mean is propagated (a cells-only bootstrap treats the cell means as exact).

Layers are numbered 1..L (L = output); ``layer == "total"`` sums them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from uwm_model.metrics import cross_rule_label

from .load import Study
from .probe import cross_rule_labels, probe_at, reward_levels
from .speed import FINAL_STATUSES, seed_speed, select_tuned, trial_speed
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL, _ranks, _row_pearson, generator, spearman, spearman_ci

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


def setting_text(trials: pd.DataFrame, cols: list[str], sep: str) -> pd.Series:
    """Each trial's values in ``cols`` as text joined by ``sep``. A value a cell does not set (``categories`` of a
    Bernoulli layer beside categorical ones) reads "-": pandas 3's astype(str) keeps it a float NaN, which join
    refuses."""
    values = trials[cols]
    return values.astype(object).where(values.notna(), "-").astype(str).agg(sep.join, axis=1)


def _setting_key(trials: pd.DataFrame, cols: list[str]) -> pd.Series:
    if not cols:
        return pd.Series("all", index=trials.index)
    return setting_text(trials, cols, "|")


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


def _where(state, at) -> dict:
    """probe_at's arguments for a state (see the module doc)."""
    if state is None:
        return {"at": at}
    if state == "init":
        return {"init": True}
    if isinstance(state, (int, float)) and not isinstance(state, bool):
        return {"reward_level": float(state)}
    raise ValueError(f"state={state!r}: expected None (the report episode `at`), 'init' or a reward level")


def _matched(study: Study, chosen: pd.DataFrame, finished: pd.DataFrame, layer_cols: list[str], kind: str,
             where: dict, per_seed: bool = False) -> pd.DataFrame:
    """The matched variance of each chosen trial: the mean, over the finished trials of its setting, of the
    cross-rule probe of exactly its rule variant (per seed number with ``per_seed``). Columns run_id,
    (seed,) layer, var_matched."""
    keys = ["_key", "label"] + (["seed"] if per_seed else [])
    cols = ["run_id"] + (["seed"] if per_seed else []) + ["layer", "var_matched"]
    labels = cross_rule_labels(study)
    if not labels:
        return pd.DataFrame(columns=cols)
    key = dict(zip(finished["run_id"], _setting_key(finished, setting_columns(finished))))
    parts = []
    for label in labels:
        cross, _ = probe_at(study, finished["run_id"], label=label, kind=kind, per_seed=per_seed, **where)
        if not len(cross):
            continue
        cross = cross.assign(_key=cross["run_id"].map(key), label=label)
        parts.append(cross.groupby(keys)[[c for c in layer_cols if c in cross.columns]].mean().reset_index())
    if not parts:
        return pd.DataFrame(columns=cols)
    table = pd.concat(parts, ignore_index=True)
    c = chosen.assign(_key=_setting_key(chosen, setting_columns(finished)).to_numpy(),
                      label=[_label_of(r) for _, r in chosen.iterrows()])
    m = c[["run_id", "_key", "label"]].merge(table, on=["_key", "label"], how="inner")
    return m.melt(id_vars=cols[:-2], value_vars=[x for x in layer_cols if x in m.columns], var_name="layer",
                  value_name="var_matched")


def variance_speed_table(study: Study, at=None, points: str = "tuned", n_boot: int = DEFAULT_BOOT,
                         level: float = DEFAULT_LEVEL, seed: int = 0, kind: str | None = None,
                         state=None) -> pd.DataFrame:
    """One row per (trial, layer) with the variance at the matched episode and the trial's speed.

    Args:
        at: the matched point of training (see :mod:`analysis.probe`); default: the first report
            episode all trials share.
        state: None (the report episode ``at``), ``"init"`` or a reward level (see the module doc).
        points: ``"tuned"``: each cell's tuned trial(s) (:func:`analysis.speed.select_tuned`), so every
            rule is represented at its best learning rate; ``"all"``: every finished trial.
        kind: the probe measure; default the first logged of ``"nsr_exact"`` (V / (B ||∇J||²) against the
            exact gradient), ``"nsr_ref"`` (against the reference gradient; initial state only) and ``"nsr"``
            (the debiased ratio: undefined where ||ḡ||² <= V/K and biased low where defined), all scale-free,
            so comparable across rules, widths and norms; else ``"var"`` (total variance, which grows with
            the parameter count and the gradient's scale; ``attrs["kind"]`` says which was used).

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
        # the noise against the true gradient where logged (nsr_exact; nsr_ref on the initial state): the debiased
        # nsr is undefined in most draws at the probe's K on wide nets, and biased low where defined (finding 8)
        head = "init_probe_" if state == "init" else "probe_" if state is None else "at_reward_"
        kind = next((k for k in ("nsr_exact", "nsr_ref", "nsr")
                     if any(m.startswith(head) and f"probe_{k}_l" in m for m in study.metrics)), "var")
    where = _where(state, at)
    own, why = probe_at(study, chosen["run_id"], kind=kind, **where)
    if not len(own):
        return pd.DataFrame(columns=out_cols)
    layer_cols = [c for c in own.columns if c.startswith("l") and c[1:].isdigit()] + ["total"]
    own_long = own.melt(id_vars=["run_id", "episode"], value_vars=layer_cols, var_name="layer",
                        value_name="var_own")
    matched = _matched(study, chosen, finished, layer_cols, kind, where)
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
    df.attrs["state"] = state
    return df


def variance_speed_seeds(study: Study, table: pd.DataFrame, speed: str = "auc_reward") -> pd.DataFrame:
    """Per-seed values behind :func:`variance_speed_table`'s rows, for the seed-paired bootstrap of
    :func:`pooled_within_setting`: one row per (trial, layer, seed number) with the seed's ``speed``
    (:func:`analysis.speed.seed_speed`) and ``variance``: the matched cross-rule probe of the trial's
    variant averaged over the setting's trials *of that seed number*, when per-seed probes were logged
    (else the trial's own per-seed probe, else its row's variance). Columns run_id, cell, setting,
    layer, seed, variance, and the speed column."""
    cols = ["run_id", "cell", "setting", "layer", "seed", "variance", speed]
    if not len(table):
        return pd.DataFrame(columns=cols)
    sp = seed_speed(study)
    sp = sp[sp["run_id"].isin(table["run_id"])][["run_id", "seed", speed]]
    if not len(sp):
        return pd.DataFrame(columns=cols)
    kind = table.attrs.get("kind", "var")
    where = _where(table.attrs.get("state"), None)
    t = study.trials
    finished = t[t["status"].isin(FINAL_STATUSES)]
    chosen = t[t["run_id"].isin(table["run_id"])]
    own, _ = probe_at(study, chosen["run_id"], kind=kind, per_seed=True, **where)
    layer_cols = [c for c in own.columns if c.startswith("l") and c[1:].isdigit()] + ["total"]
    per = sp.merge(table[["run_id", "cell", "setting", "layer", "variance", "variance_source"]], on="run_id")
    if len(own):
        own_long = own.melt(id_vars=["run_id", "seed"], value_vars=layer_cols, var_name="layer", value_name="_own")
        own_long["layer"] = own_long["layer"].map(lambda s: s[1:] if s != "total" else s)
        matched = _matched(study, chosen, finished, layer_cols, kind, where, per_seed=True)
        matched["layer"] = matched["layer"].map(lambda s: s[1:] if s != "total" else s)
        per = per.merge(own_long, on=["run_id", "seed", "layer"], how="left").merge(
            matched.rename(columns={"var_matched": "_matched"}), on=["run_id", "seed", "layer"], how="left")
        from_matched = per["variance_source"].str.startswith("cross-rule")
        seed_value = per["_matched"].where(from_matched, per["_own"]).astype("float64")
        per["variance"] = seed_value.where(seed_value.notna(), per["variance"])
    return per[cols].reset_index(drop=True)


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
                          n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0,
                          seeds: pd.DataFrame | None = None, pairing: str = "paired") -> pd.DataFrame:
    """Spearman's rho between variance and speed *within* each setting (the rules compared on the same
    widths, norm and task), pooled over settings: the average of the settings' rho weighted by their number
    of cells (see :func:`_pooled_rho` for why not Fisher z). Pooling raw values across settings instead lets
    the setting drive both (wider nets: more variance and another speed), which can flip the sign.

    Interval: a percentile bootstrap stratified by setting. Each draw resamples whole cells within each
    setting (a cell carries its variance and speed together) and, with ``seeds`` (per-seed rows with
    columns cell, setting, layer, seed, ``variance`` and ``speed``, e.g. :func:`variance_speed_seeds`),
    also the seeds behind each cell's means: ``pairing="paired"`` draws one set of seed numbers per
    setting and uses it for every cell there (the rules' shared seed effects cancel, as in the estimate);
    ``"independent"`` draws seeds per cell (for comparison: it adds the shared seed effects as noise).
    Without ``seeds`` the cell means are treated as exact. With ``seeds`` the estimate is computed from
    their cell means. Settings with fewer than 3 cells are left out. Columns: layer, n_settings, n_cells,
    rho, rho_lo, rho_hi, excludes_zero, seeds ("paired", "independent" or "none")."""
    cols = ["layer", "n_settings", "n_cells", "rho", "rho_lo", "rho_hi", "excludes_zero", "seeds"]
    if pairing not in ("paired", "independent"):
        raise ValueError(f"pairing={pairing!r}: expected 'paired' or 'independent'")
    rows = []
    if not len(table) or "setting" not in table:
        return pd.DataFrame(columns=cols)
    for layer, g in table.groupby("layer", sort=False):
        g = g[np.isfinite(g[variance].astype(float)) & np.isfinite(g[speed].astype(float))]
        if seeds is not None and len(seeds):
            s = seeds[(seeds["layer"].astype(str) == str(layer)) & seeds["cell"].isin(g["cell"])]
            groups = [_seed_matrices(h, variance, speed) for _, h in s.groupby("setting")]
        else:
            groups = [(h[variance].to_numpy(float)[:, None], h[speed].to_numpy(float)[:, None])
                      for _, h in g.groupby("setting")]
        groups = [(v, sp) for v, sp in groups if v.shape[0] >= 3]
        if not groups:
            continue
        est = _pooled_rho([(np.nanmean(v, 1), np.nanmean(sp, 1)) for v, sp in groups])
        rng = generator(seed, *(np.concatenate([x.ravel() for x, _ in groups]),
                                np.concatenate([y.ravel() for _, y in groups])))
        rhos, w = [], []
        for v, sp in groups:
            n_cells, n_seeds = v.shape
            cells = rng.integers(0, n_cells, (n_boot, n_cells))
            shape = (n_boot, 1, n_seeds) if pairing == "paired" else (n_boot, n_cells, n_seeds)
            picks = np.broadcast_to(rng.integers(0, n_seeds, shape), (n_boot, n_cells, n_seeds))
            with warnings.catch_warnings():   # a draw of only missing seeds for a cell: NaN, left out below
                warnings.simplefilter("ignore", RuntimeWarning)
                vm = np.nanmean(np.take_along_axis(v[None], picks, 2), 2)     # [B, cells]: means over drawn seeds
                sm = np.nanmean(np.take_along_axis(sp[None], picks, 2), 2)
            vm, sm = np.take_along_axis(vm, cells, 1), np.take_along_axis(sm, cells, 1)
            rho = _row_pearson(_ranks(vm), _ranks(sm))
            rho = np.where(np.isfinite(vm).all(1) & np.isfinite(sm).all(1), rho, np.nan)
            rhos.append(rho)
            w.append(np.where(np.isfinite(rho), n_cells, 0.0))
        rhos, w = np.array(rhos), np.array(w)
        with np.errstate(invalid="ignore"):
            draws = np.nansum(np.where(w > 0, rhos * w, 0.0), 0) / w.sum(0)
        draws = draws[np.isfinite(draws)]
        a = (1 - level) / 2
        lo, hi = np.quantile(draws, [a, 1 - a]) if draws.size >= 20 else (math.nan, math.nan)
        rows.append({"layer": layer, "n_settings": len(groups), "n_cells": int(sum(v.shape[0] for v, _ in groups)),
                     "rho": est, "rho_lo": float(lo), "rho_hi": float(hi),
                     "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
                     "seeds": pairing if seeds is not None and len(seeds) else "none"})
    return pd.DataFrame(rows, columns=cols)


def _seed_matrices(rows: pd.DataFrame, variance: str, speed: str) -> tuple[np.ndarray, np.ndarray]:
    """[cells, seed numbers] matrices of one setting's per-seed variance and speed (NaN where a cell lacks a
    seed), columns aligned by seed number so that a column is the same seed in every cell."""
    wide = rows.pivot_table(index="cell", columns="seed", values=[variance, speed], aggfunc="mean")
    return wide[variance].to_numpy(float), wide[speed].to_numpy(float)


def _pooled_rho(groups) -> float:
    """Cell-count-weighted mean of the settings' rho. Not of their Fisher z: with the 3 to 10 cells of a
    setting, rho is often exactly ±1 (always so in resamples that repeat cells), whose z is infinite, so a
    few such settings would decide every bootstrap draw."""
    r, w = [], []
    for v, s in groups:
        rho = spearman(v, s)
        if np.isfinite(rho):
            r.append(rho)
            w.append(len(v))
    return float(np.average(r, weights=w)) if r else math.nan


def matched_state_correlations(study: Study, speed: str = "auc_reward", n_boot: int = DEFAULT_BOOT,
                               level: float = DEFAULT_LEVEL, seed: int = 0) -> pd.DataFrame:
    """The pooled within-setting correlation (:func:`pooled_within_setting`, seeds paired) of the total
    variance with ``speed`` on every matched state the study probed: the initial parameters and each
    reward level (``probe.reward_levels``). Columns: state ("initial parameters" or "reward r"), layer,
    n_settings, n_cells, rho, rho_lo, rho_hi, excludes_zero, seeds, reached (fraction of the chosen cells'
    seeds that reached the level and so were probed there; 1 for the initial state)."""
    cols = ["state", "layer", "n_settings", "n_cells", "rho", "rho_lo", "rho_hi", "excludes_zero", "seeds", "reached"]
    rows = []
    for state in ["init", *reward_levels(study)]:
        table = variance_speed_table(study, n_boot=50, level=level, seed=seed, state=state)
        if not len(table):
            continue
        total = table[table["layer"] == "total"]
        total.attrs.update(table.attrs)
        per_seed = variance_speed_seeds(study, total, speed)
        pooled = pooled_within_setting(total, speed=speed, n_boot=n_boot, level=level, seed=seed,
                                       seeds=per_seed if len(per_seed) else None)
        reached = 1.0
        if state != "init" and len(per_seed):
            probed, _ = probe_at(study, total["run_id"], per_seed=True, kind=table.attrs.get("kind", "var"),
                                 reward_level=state)
            reached = len(probed[["run_id", "seed"]].drop_duplicates()) / len(per_seed[["run_id", "seed"]]
                                                                              .drop_duplicates())
        name = "initial parameters" if state == "init" else f"reward {state:g}"
        rows += [{"state": name, **r, "reached": reached} for r in pooled.to_dict("records")]
    return pd.DataFrame(rows, columns=cols)
