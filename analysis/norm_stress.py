"""Outgoing-norm stress (docs/learning-rules.md §8, question 4): where do the rules break down as outgoing norms grow?

The Taylor series behind hwm has radius π around 0, so once outgoing weights exceed π its
bias and variance can grow with the order; uwm stays unbiased but its importance weights
grow with the outgoing weights. Per rule variant (and setting: widths and other varying axes)
and initial outgoing norm ``c``, from each cell's tuned trial(s), pooled over seeds:

``diverged_rate``   fraction of seeds that diverged (Wilson interval);
``variance``        the trained rule's probe variance summed over layers at a matched point
                    (default: each trial's first report, the state closest to the initial
                    norm), mean over seeds with a bootstrap interval;
``final_reward``    eval reward at the last report, mean over seeds with a bootstrap interval;
``bias``            where the exact oracle applies (tiny nets), the trained rule's probe bias
                    ``‖mean estimate − exact gradient‖`` over all layers (root of the sum of the
                    layers' squares) at the same matched point, mean over seeds with a
                    bootstrap interval; NaN otherwise.

:func:`breakdown_norms` reads off, per rule, the smallest norm at which the rule has broken
down by a stated criterion, and whether it is above π.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .load import Study
from .probe import probe_at
from .speed import FINAL_STATUSES, seed_speed, select_tuned
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL, NAN_INTERVAL, bootstrap_ci, wilson_interval
from .variance_speed import setting_columns

PI = math.pi


def _context_label(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    if not cols:
        return pd.Series("", index=df.index, dtype=object)
    return df.apply(lambda r: ", ".join(f"{c}={r[c]}" for c in cols), axis=1)


def norm_stress_table(study: Study, points: str = "tuned", at="first", n_boot: int = DEFAULT_BOOT,
                      level: float = DEFAULT_LEVEL, seed: int = 0) -> pd.DataFrame:
    """One row per (rule_variant, context, outgoing_norm); empty when fewer than 2 norms were set.

    ``points``: "tuned" (each cell at its tuned learning rate) or "all" (every finished trial,
    pooling learning rates). Trials without an outgoing norm (default initialisation) are left out.
    """
    cols = ["rule_variant", "context", "outgoing_norm", "above_pi", "n_seeds", "diverged_rate", "diverged_rate_lo",
            "diverged_rate_hi", "variance", "variance_lo", "variance_hi", "final_reward", "final_reward_lo",
            "final_reward_hi", "bias", "bias_lo", "bias_hi"]
    t = study.trials
    if not len(t) or "outgoing_norm" not in t or t["outgoing_norm"].dropna().nunique() < 2:
        return pd.DataFrame(columns=cols)
    chosen = select_tuned(study) if points == "tuned" else t[t["status"].isin(FINAL_STATUSES)]
    chosen = chosen[chosen["outgoing_norm"].notna()]
    ctx_cols = [c for c in setting_columns(chosen) if c != "outgoing_norm"]
    chosen = chosen.assign(context=_context_label(chosen, ctx_cols).to_numpy())
    chosen = chosen.sort_values(["rule_variant", "width", "depth", "context", "outgoing_norm"]
                                if "depth" in chosen else ["rule_variant", "context", "outgoing_norm"])
    seeds = seed_speed(study)
    per_seed = bool(len(study.seed_curves))
    var, _ = probe_at(study, chosen["run_id"], at=at, per_seed=per_seed)
    bias, _ = probe_at(study, chosen["run_id"], kind="bias", at=at, per_seed=per_seed)
    if len(bias):
        layers = [c for c in bias.columns if c.startswith("l") and c[1:].isdigit()]
        bias["total"] = np.sqrt((bias[layers] ** 2).sum(axis=1, min_count=len(layers)))
    rows = []
    for (rule, ctx, norm), g in chosen.groupby(["rule_variant", "context", "outgoing_norm"], sort=False):
        ids = set(g["run_id"])
        row = {"rule_variant": rule, "context": ctx, "outgoing_norm": float(norm), "above_pi": bool(norm > PI)}
        s = seeds[seeds["run_id"].isin(ids)] if len(seeds) else seeds
        v = var[var["run_id"].isin(ids)]["total"].to_numpy(float) if len(var) else np.array([])
        if len(s):
            row["n_seeds"] = int(len(s))
            row.update(wilson_interval(int(s["diverged"].sum()), len(s), level).as_dict("diverged_rate"))
            row.update(bootstrap_ci(s["final_reward"], n_boot=n_boot, level=level, seed=seed).as_dict("final_reward"))
        else:  # no per-seed curves: the trial aggregates, without intervals
            n = float(g["seeds"].sum()) if "seeds" in g else math.nan
            rate = (g["final_diverged_fraction"] * g["seeds"]).sum() / n if "final_diverged_fraction" in g else math.nan
            row.update({"n_seeds": n, "diverged_rate": rate, "diverged_rate_lo": math.nan,
                        "diverged_rate_hi": math.nan,
                        "final_reward": float(g["final_eval_reward_mean"].mean()) if "final_eval_reward_mean" in g
                        else math.nan, "final_reward_lo": math.nan, "final_reward_hi": math.nan})
        iv = bootstrap_ci(v, n_boot=n_boot, level=level, seed=seed) if v.size else NAN_INTERVAL
        row.update(iv.as_dict("variance"))
        b = bias[bias["run_id"].isin(ids)]["total"].to_numpy(float) if len(bias) else np.array([])
        row.update((bootstrap_ci(b, n_boot=n_boot, level=level, seed=seed) if b.size else NAN_INTERVAL).as_dict("bias"))
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def breakdown_norms(table: pd.DataFrame, diverged_threshold: float = 0.5) -> pd.DataFrame:
    """Per (rule_variant, context): the smallest norm at which the rule broke down, by either criterion:

    - divergence: at least ``diverged_threshold`` of the seeds diverged, or
    - reward: the final reward's interval lies wholly below the interval at the smallest norm tried.

    The grid only brackets the breakdown: it happened after ``last_ok_norm`` and by
    ``breakdown_norm``. Columns: rule_variant, context, last_ok_norm, breakdown_norm (NaN: no
    breakdown up to ``max_norm``), criterion, max_norm, relative_to_pi.
    """
    rows = []
    for (rule, ctx), g in table.sort_values("outgoing_norm", kind="stable").groupby(["rule_variant", "context"],
                                                                                     sort=False):
        base = g.iloc[0]
        found, why, last_ok = math.nan, "", math.nan
        for _, r in g.iterrows():
            if np.isfinite(r["diverged_rate"]) and r["diverged_rate"] >= diverged_threshold:
                found, why = r["outgoing_norm"], f"{r['diverged_rate']:.0%} of seeds diverged"
                break
            if (r["outgoing_norm"] > base["outgoing_norm"] and np.isfinite(r["final_reward_hi"])
                    and np.isfinite(base["final_reward_lo"]) and r["final_reward_hi"] < base["final_reward_lo"]):
                found = r["outgoing_norm"]
                why = f"final reward {r['final_reward']:.2f} below {base['final_reward']:.2f} at norm {base['outgoing_norm']:g}"
                break
            last_ok = r["outgoing_norm"]
        max_norm = float(g["outgoing_norm"].max())
        if not np.isfinite(found):
            rel = f"no breakdown up to norm {max_norm:g}" + (" (beyond π)" if max_norm > PI else " (π not reached)")
        elif not np.isfinite(last_ok):
            rel = f"broken already at the smallest norm tried, {found:g}"
        else:
            where = ("bracketing π" if last_ok < PI <= found else "below π" if found <= PI else "above π")
            rel = f"breaks down between norms {last_ok:g} and {found:g}, {where}"
        rows.append({"rule_variant": rule, "context": ctx, "last_ok_norm": last_ok, "breakdown_norm": found,
                     "criterion": why, "max_norm": max_norm, "relative_to_pi": rel})
    return pd.DataFrame(rows, columns=["rule_variant", "context", "last_ok_norm", "breakdown_norm", "criterion",
                                       "max_norm", "relative_to_pi"])
