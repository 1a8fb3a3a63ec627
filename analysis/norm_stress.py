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
from .probe import probe_at, probe_index
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


# ----------------------------------------------------------------------------- bias at initialisation

BREAKDOWN_RELATIVE_BIAS = 0.1    # a rule has broken down where its bias exceeds 10 % of the exact gradient's norm
RELATIVE_BIAS_FOR_POWER = 0.2    # the breakdown test's power is stated against a relative bias of 20 %
POWER_TARGET = 0.8               # "powered up to norm c": every norm up to c has at least this power
POWER_MIN_GRADIENT_SHARE = 0.01  # ... over the layers holding at least 1 % of the exact gradient's squared norm
INIT_BIAS_COLUMNS = ["label", "context", "outgoing_norm", "layer", "n_seeds", "unit_max_outgoing", "beyond_radius",
                     "bias_sq", "bias_sq_lo", "bias_sq_hi", "exact_sq", "relative_bias", "z", "p", "biased",
                     "p_breakdown", "broken", "power"]


def init_bias_table(study: Study, level: float = DEFAULT_LEVEL) -> pd.DataFrame:
    """The debiased squared bias of every probed rule variant on the *initial* parameters, per (variant,
    setting, outgoing norm, layer), from the ``init_probe_*`` metrics (every rule on the same states and
    episodes; trials sharing a setting and seed share their initial state, so each seed counts once).

    ``bias_sq``: mean over seeds of ``||mean - exact||² - V/K`` with its interval (Monte-Carlo error of
    the probe, seeds' states fixed: ``± z · sqrt(Σ se²) / n``); ``relative_bias``: ``sqrt(max(bias_sq, 0) /
    exact_sq)``; ``z``: Stouffer's combination of the per-seed oracle z-scores ``bias_sq / se`` and ``p`` its
    one-sided p-value (H0: unbiased); ``biased``: ``p`` below ``(1 - level)`` Bonferroni-corrected over the
    norms and layers of the variant. Breakdown: ``p_breakdown`` tests H0: relative bias <=
    :data:`BREAKDOWN_RELATIVE_BIAS` (one-sided, the same correction), ``broken`` where it rejects, and
    ``power`` is that test's power against a relative bias of :data:`RELATIVE_BIAS_FOR_POWER`. ``unit_max_outgoing``: each hidden unit's largest outgoing |w| (mean over
    units, the x-axis of the Taylor radius), ``beyond_radius``: the fraction of (unit, next unit, episode)
    with |w| beyond sqrt(z'² + π²) (layer's own outgoing weights; NaN for the output layer)."""
    from scipy.stats import norm as normal

    sc = study.seed_curves
    if not len(sc):
        return pd.DataFrame(columns=INIT_BIAS_COLUMNS)
    names = pd.Series(sc["metric"].unique())
    idx = probe_index(names, None)
    idx = idx[idx["init"] & idx["kind"].isin(["bias_sq", "bias_sq_se", "exact_sq"])] if len(idx) else idx
    if not len(idx) or not (idx["kind"] == "bias_sq").any():
        return pd.DataFrame(columns=INIT_BIAS_COLUMNS)
    t = study.trials[study.trials["status"].isin(FINAL_STATUSES)]
    ctx_cols = [c for c in setting_columns(t) if c not in ("outgoing_norm", "rule", "rule_variant")]
    ctx = _context_label(t, ctx_cols)
    info = pd.DataFrame({"run_id": t["run_id"], "context": ctx.to_numpy(), "outgoing_norm": t["outgoing_norm"],
                         "own": t["rule_variant"]})
    first = sc[sc["metric"].isin(set(probe_index(names, None).query("init")["metric"]) | {m for m in names if m.startswith("init_unit_max_outgoing_l")
                                                        or m.startswith("init_beyond_radius_l")})]
    first = first[first["episode"] == first.groupby("run_id")["episode"].transform("min")]
    first = first.merge(info, on="run_id")
    if idx["label"].notna().any():     # the cross-rule entries hold the trained rule too: use only them
        idx = idx[idx["label"].notna()]
    meta = idx.set_index("metric")
    probe = first[first["metric"].isin(meta.index)].copy()
    probe["label"] = probe["metric"].map(meta["label"]).fillna(probe["own"])
    probe["kind"] = probe["metric"].map(meta["kind"])
    probe["layer"] = probe["metric"].map(meta["layer"])
    # one value per (setting, norm, seed, label, layer, kind): trials of a setting share the initial state
    probe = probe.drop_duplicates(["context", "outgoing_norm", "seed", "label", "layer", "kind"])
    wide = probe.pivot_table(index=["label", "context", "outgoing_norm", "layer", "seed"], columns="kind",
                             values="value", aggfunc="first").reset_index()
    geo = first[~first["metric"].isin(meta.index)].copy()
    geo["layer"] = geo["metric"].str.extract(r"_l(\d+)$")[0].astype(int)
    geo["kind"] = np.where(geo["metric"].str.startswith("init_unit_max"), "unit_max_outgoing", "beyond_radius")
    geo = geo.groupby(["context", "outgoing_norm", "layer", "kind"])["value"].mean().unstack("kind")
    rows = []
    z_level = normal.ppf(1 - (1 - level) / 2)
    for (label, context, norm_c, layer), g in wide.groupby(["label", "context", "outgoing_norm", "layer"]):
        g = g.dropna(subset=["bias_sq", "bias_sq_se"])
        g = g[g["bias_sq_se"] > 0]
        n = len(g)
        if not n:
            continue
        mean = float(g["bias_sq"].mean())
        se = float(np.sqrt((g["bias_sq_se"] ** 2).sum()) / n)
        z = float((g["bias_sq"] / g["bias_sq_se"]).sum() / math.sqrt(n))
        exact = float(g["exact_sq"].mean()) if "exact_sq" in g else math.nan
        row = {"label": label, "context": context, "outgoing_norm": float(norm_c), "layer": int(layer), "n_seeds": n,
               "bias_sq": mean, "bias_sq_lo": mean - z_level * se, "bias_sq_hi": mean + z_level * se,
               "exact_sq": exact, "relative_bias": math.sqrt(max(mean, 0) / exact) if exact > 0 else math.nan,
               "z": z, "p": float(normal.sf(z)), "_se": se}
        key = (context, norm_c, layer)
        row["unit_max_outgoing"] = geo["unit_max_outgoing"].get(key, math.nan) if "unit_max_outgoing" in geo else math.nan
        row["beyond_radius"] = geo["beyond_radius"].get(key, math.nan) if "beyond_radius" in geo else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    if not len(out):
        return pd.DataFrame(columns=INIT_BIAS_COLUMNS)
    tests = out.groupby("label")["p"].transform("size")
    alpha = (1 - level) / tests
    crit = normal.isf(alpha)
    out["biased"] = out["p"] < alpha
    margin = BREAKDOWN_RELATIVE_BIAS ** 2 * out["exact_sq"]
    out["p_breakdown"] = normal.sf((out["bias_sq"] - margin) / out["_se"])
    out["broken"] = out["p_breakdown"] < alpha
    effect = (RELATIVE_BIAS_FOR_POWER ** 2 - BREAKDOWN_RELATIVE_BIAS ** 2) * out["exact_sq"]
    out["power"] = normal.cdf(effect / out["_se"] - crit)
    return out.sort_values(["label", "context", "layer", "outgoing_norm"])[INIT_BIAS_COLUMNS].reset_index(drop=True)


def init_bias_breakdown(table: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, setting): the smallest norm at which some layer's relative bias exceeds
    :data:`BREAKDOWN_RELATIVE_BIAS` by the test of :func:`init_bias_table`, relative to π, whether any
    bias at all is detected (``biased_norms``), and the weakest power among the norms below the breakdown
    (a "no breakdown" claim is only as strong as that power) and the largest norm up to which every norm has
    :data:`POWER_TARGET` power (``powered_up_to``; NaN when the smallest norm already lacks it). Columns: label,
    context, breakdown_norm, min_power_below, powered_up_to, biased_norms, verdict."""
    rows = []
    for (label, context), g in table.groupby(["label", "context"], sort=True):
        hit = g[g["broken"]]
        found = float(hit["outgoing_norm"].min()) if len(hit) else math.nan
        below = g[g["outgoing_norm"] < found] if len(hit) else g
        # a layer whose exact gradient is a vanishing share of the network's has no meaningful relative bias
        # (relative to ~0): the power is stated over the layers that carry the gradient. And over the hidden
        # layers only: every rule's output layer is REINFORCE's R (a - pi), unbiased at any norm, and its
        # noise would make every statement about the boundary read "no power"
        share = below["exact_sq"] / below.groupby("outgoing_norm")["exact_sq"].transform("sum")
        carrying = below[(share >= POWER_MIN_GRADIENT_SHARE) & (below["layer"] < g["layer"].max())]
        power = float(carrying["power"].min()) if len(carrying) else math.nan
        # the largest norm up to which every norm's carrying layers have POWER_TARGET: past it, "not shown"
        # says little (the estimator's variance, and so the test's noise, grows with the norm)
        weakest = carrying.groupby("outgoing_norm")["power"].min().sort_index()
        short = weakest.index[weakest < POWER_TARGET]
        powered = weakest.index[weakest.index < short.min()] if len(short) else weakest.index
        powered_up_to = float(powered.max()) if len(powered) else math.nan
        top = float(g["outgoing_norm"].max())
        if len(hit):
            layers = ", ".join(str(int(v)) for v in sorted(hit[hit["outgoing_norm"] == found]["layer"].unique()))
            verdict = (f"relative bias above {BREAKDOWN_RELATIVE_BIAS:.0%} from norm {found:g} "
                       f"({'above' if found > PI else 'at or below'} π; layer {layers}, relative bias "
                       f"{hit[hit['outgoing_norm'] == found]['relative_bias'].max():.2f})")
        else:
            verdict = f"relative bias not shown above {BREAKDOWN_RELATIVE_BIAS:.0%} up to norm {top:g}"
        biased = sorted(g.loc[g["biased"], "outgoing_norm"].unique())
        verdict += ("; unbiased by the oracle z-test at every norm" if not biased else
                    f"; some bias detected at norms {', '.join(f'{v:g}' for v in biased)}")
        verdict += (f"; power against a {RELATIVE_BIAS_FOR_POWER:.0%} relative bias at the norms "
                    f"{'below' if len(hit) else 'tested'}, in every hidden layer carrying at least "
                    f"{POWER_MIN_GRADIENT_SHARE:.0%} of the exact gradient: at least {power:.0%}"
                    if np.isfinite(power) else "")
        if len(weakest):
            verdict += (f"; {POWER_TARGET:.0%} power up to norm {powered_up_to:g}" if np.isfinite(powered_up_to)
                        else f"; under {POWER_TARGET:.0%} power from norm {weakest.index.min():g} on")
        rows.append({"label": label, "context": context, "breakdown_norm": found, "min_power_below": power,
                     "powered_up_to": powered_up_to,
                     "biased_norms": ", ".join(f"{v:g}" for v in biased), "verdict": verdict})
    return pd.DataFrame(rows, columns=["label", "context", "breakdown_norm", "min_power_below", "powered_up_to",
                                       "biased_norms", "verdict"])


REL_FLOOR = 1e-4   # relative squared bias floor of the interaction's log scale: a relative bias of 1 %


def order_norm_interaction(table: pd.DataFrame) -> dict | None:
    """Does hwm's bias fall with the order inside the Taylor radius and grow with it outside? OLS
    (statsmodels, HC3 errors) of log10(relative squared bias + :data:`REL_FLOOR`) on order, above
    (norm > π), their interaction and a layer effect, over the hwm variants' rows of the hidden layers.
    On the log scale because above the radius the bias grows geometrically with the order (a relative
    bias of 1 at order 3 and 500 at order 7 on the reduced norm-stress run): on the raw scale those few
    rows carry all the leverage and HC3 errors leave the interaction unresolved (p = 0.3 there); the floor
    keeps the noise around 0 (negative debiased estimates) at one level. Returns the coefficients (log10
    units per order) with p-values, or None without at least two hwm orders on both sides of π."""
    import statsmodels.formula.api as smf

    hwm = table[table["label"].str.match(r"^hwm_order-\d+$", na=False)].copy()
    if not len(hwm):
        return None
    hwm["order"] = hwm["label"].str.extract(r"order-(\d+)")[0].astype(float)
    hwm["above"] = (hwm["outgoing_norm"] > PI).astype(float)
    hwm["rel"] = np.log10(np.maximum(hwm["bias_sq"] / hwm["exact_sq"], 0) + REL_FLOOR)
    # the output layer's estimates carry no Taylor bias (no outgoing weights): hidden layers only
    hwm = hwm[np.isfinite(hwm["rel"]) & (hwm["layer"] < table["layer"].max())]
    if hwm["order"].nunique() < 2 or hwm["above"].nunique() < 2:
        return None
    formula = "rel ~ order * above" + (" + C(layer)" if hwm["layer"].nunique() > 1 else "")
    fit = smf.ols(formula, data=hwm).fit(cov_type="HC3")
    return {"order_below": float(fit.params["order"]), "order_below_p": float(fit.pvalues["order"]),
            "order_x_above": float(fit.params["order:above"]), "order_x_above_p": float(fit.pvalues["order:above"]),
            "n": int(fit.nobs)}
