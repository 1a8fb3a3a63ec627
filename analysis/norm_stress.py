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
                    bootstrap interval; NaN otherwise;
``reached_rate``    fraction of seeds that reached the reward threshold;
``lr_edge``         "lower" / "upper" where the cell's tuned learning rate sits at an edge of the
                    rates its search tried, else "".

:func:`breakdown_norms` reads off, per rule, the smallest norm at which training went wrong (divergence
or a lower final reward): a reading of tuning and budget, not of π, and its reward criterion only
compares norms whose tuning did not stop at an edge and whose seeds all reached the threshold. The π
boundary is read on the initial state (:func:`init_bias_table`, :func:`init_bias_breakdown`, :func:`order_norm_interaction`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .load import Study
from .probe import probe_at, probe_index
from .speed import FINAL_STATUSES, seed_speed, select_tuned
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL, NAN_INTERVAL, bootstrap_ci, sign_flip_p, t_interval, wilson_interval
from .tuning import tuning_table
from .verdicts import verdict
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
            "final_reward_hi", "bias", "bias_lo", "bias_hi", "reached_rate", "lr_edge"]
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
    tuning = tuning_table(study) if points == "tuned" and len(chosen) else pd.DataFrame()
    edge = tuning.set_index("cell")["lr edge"] if "lr edge" in tuning else pd.Series(dtype=object)
    rows = []
    for (rule, ctx, norm), g in chosen.groupby(["rule_variant", "context", "outgoing_norm"], sort=False):
        ids = set(g["run_id"])
        row = {"rule_variant": rule, "context": ctx, "outgoing_norm": float(norm), "above_pi": bool(norm > PI)}
        edges = [e for e in edge.reindex(g["cell"].unique()).fillna("") if e] if "cell" in g else []
        row["lr_edge"] = "/".join(sorted(set(edges)))
        s = seeds[seeds["run_id"].isin(ids)] if len(seeds) else seeds
        row["reached_rate"] = float(s["reached"].mean()) if len(s) else math.nan
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
    """Per (rule_variant, context): the smallest norm at which training went wrong, by either criterion:

    - divergence: at least ``diverged_threshold`` of the seeds diverged, or
    - reward: the final reward's interval lies wholly below the interval at the smallest norm tried.

    This reads tuning and budget, never the Taylor radius: every cell is tuned and trained, and by the end
    of training the weights are far from their initial norm, so the ``reading`` never mentions π (the π
    boundary is :func:`init_bias_table`'s, on the initial state). A lower reward is read only between norms
    whose tuning did not stop at an edge of the searched rates and whose seeds all reached the threshold
    (``readable``): elsewhere the reward says where the search or the budget ran out, and a norm where it
    cannot be read counts as neither worse nor fine (``unreadable_norms``). The grid only brackets the
    change: after ``last_ok_norm`` and by ``breakdown_norm`` (NaN: not shown up to ``max_norm``). Columns:
    rule_variant, context, last_ok_norm, breakdown_norm, criterion, max_norm, unreadable_norms, reading.
    """
    table = table.assign(readable=[_reward_readable(r) for _, r in table.iterrows()])
    rows = []
    for (rule, ctx), g in table.sort_values("outgoing_norm", kind="stable").groupby(["rule_variant", "context"],
                                                                                     sort=False):
        base = g.iloc[0]
        found, why, last_ok = math.nan, "", math.nan
        unreadable = [float(n) for n in g.loc[~g["readable"], "outgoing_norm"]]
        last_calm = math.nan    # the last norm where the seeds did not diverge (its reward may be unreadable)
        for _, r in g.iterrows():
            if np.isfinite(r["diverged_rate"]) and r["diverged_rate"] >= diverged_threshold:
                found, why, last_ok = r["outgoing_norm"], f"{r['diverged_rate']:.0%} of seeds diverged", last_calm
                break
            last_calm = r["outgoing_norm"]
            if not (r["readable"] and base["readable"]):
                continue
            if (r["outgoing_norm"] > base["outgoing_norm"] and np.isfinite(r["final_reward_hi"])
                    and np.isfinite(base["final_reward_lo"]) and r["final_reward_hi"] < base["final_reward_lo"]):
                found = r["outgoing_norm"]
                why = f"final reward {r['final_reward']:.2f} below {base['final_reward']:.2f} at norm {base['outgoing_norm']:g}"
                break
            last_ok = r["outgoing_norm"]
        max_norm = float(g["outgoing_norm"].max())
        if not np.isfinite(found) and not base["readable"]:
            reading = (f"after training, divergence up to norm {max_norm:g}: not shown; a lower reward: not "
                       f"answerable (at norm {base['outgoing_norm']:g} the tuning stopped at an edge or seeds "
                       "fell short of the threshold)")
        elif not np.isfinite(found):
            reading = f"after training, a lower reward or divergence up to norm {max_norm:g}: not shown"
        elif not np.isfinite(last_ok):
            reading = f"after training, worse already at the smallest norm tried, {found:g}"
        else:
            reading = f"after training, worse between norms {last_ok:g} and {found:g}"
        rows.append({"rule_variant": rule, "context": ctx, "last_ok_norm": last_ok, "breakdown_norm": found,
                     "criterion": why, "max_norm": max_norm,
                     "unreadable_norms": ", ".join(f"{n:g}" for n in unreadable), "reading": reading})
    return pd.DataFrame(rows, columns=["rule_variant", "context", "last_ok_norm", "breakdown_norm", "criterion",
                                       "max_norm", "unreadable_norms", "reading"])


def _reward_readable(row) -> bool:
    """Can a cell's final reward be compared across norms? Only where its learning rate was not chosen at an
    edge of the rates tried and every seed reached the threshold (a table without these columns: yes)."""
    edge = row.get("lr_edge", "")
    reached = row.get("reached_rate", math.nan)
    return not (isinstance(edge, str) and edge) and (not np.isfinite(reached) or reached >= 1.0)


# ----------------------------------------------------------------------------- bias at initialisation

BREAKDOWN_RELATIVE_BIAS = 0.1    # a rule has broken down where its bias exceeds 10 % of the exact gradient's norm
RELATIVE_BIAS_FOR_POWER = 0.2    # the breakdown test's power is stated against a relative bias of 20 %
POWER_TARGET = 0.8               # "powered up to norm c": every norm up to c has at least this power
POWER_MIN_GRADIENT_SHARE = 0.01  # ... over the layers holding at least 1 % of the exact gradient's squared norm
INIT_BIAS_COLUMNS = ["label", "context", "outgoing_norm", "layer", "n_seeds", "unit_max_outgoing", "beyond_radius",
                     "radius_ratio",
                     "bias_sq", "bias_sq_lo", "bias_sq_hi", "exact_sq", "relative_bias", "split_mean", "p", "biased",
                     "bias_power", "p_breakdown", "broken", "power"]
RADIUS_METRIC = r"^init_(unit_max_outgoing|beyond_radius|radius_ratio)_l\d+$"


def init_bias_table(study: Study, level: float = DEFAULT_LEVEL, seed: int = 0) -> pd.DataFrame:
    """The debiased squared bias of every probed rule variant on the *initial* parameters, per (variant,
    setting, outgoing norm, layer), from the ``init_probe_*`` metrics (every rule on the same states and
    episodes; trials sharing a setting and seed share their initial state, so each seed counts once).

    Every statistic is over the initial states (seeds) as random effects: the claim is about the rule at
    this norm, not about these states. ``bias_sq``: mean over seeds of the U-statistic ``||mean - exact||² -
    V/K`` with its expanded bootstrap interval over seeds (:func:`analysis.stats.bootstrap_ci`); ``relative_bias``: ``sqrt(max(bias_sq, 0) / exact_sq)``.
    The bias test (H0: unbiased) is the sign-flip test over seeds of the split-half products
    ``bias_split`` (:func:`analysis.stats.sign_flip_p`; symmetric about 0 under H0, so it holds its level;
    the per-seed ``bias_sq / bias_sq_se`` leans towards "unbiased" and is not used): ``split_mean`` their
    mean and ``p`` its one-sided p-value (NaN where the probe logged no ``bias_split``); ``biased``: ``p``
    below ``(1 - level)`` Bonferroni-corrected over the norms and layers of the variant; ``bias_power``: that
    test's power against a relative bias of :data:`BREAKDOWN_RELATIVE_BIAS` (normal approximation). Breakdown:
    ``p_breakdown`` tests H0: relative squared bias <= :data:`BREAKDOWN_RELATIVE_BIAS`² (one-sided t-test
    over seeds of ``bias_sq - margin · exact_sq``, the same correction), ``broken`` where it rejects, and
    ``power`` that test's power (noncentral t) against a relative bias of :data:`RELATIVE_BIAS_FOR_POWER`.
    ``unit_max_outgoing``: each hidden unit's largest outgoing |w| (mean over units), ``beyond_radius``: the
    fraction in [0, 1] of (unit, next unit, episode) with |w| beyond sqrt(z'² + π²), the layer's own
    outgoing weights against hwm's Taylor radius (NaN for the output layer)."""
    from scipy.stats import nct, norm as normal, t as student

    sc = study.seed_curves
    if not len(sc):
        return pd.DataFrame(columns=INIT_BIAS_COLUMNS)
    names = pd.Series(sc["metric"].unique())
    idx = probe_index(names, None)
    idx = idx[idx["init"] & idx["kind"].isin(["bias_sq", "bias_split", "exact_sq"])] if len(idx) else idx
    if not len(idx) or not (idx["kind"] == "bias_sq").any():
        return pd.DataFrame(columns=INIT_BIAS_COLUMNS)
    t = study.trials[study.trials["status"].isin(FINAL_STATUSES)]
    ctx_cols = [c for c in setting_columns(t) if c not in ("outgoing_norm", "rule", "rule_variant")]
    ctx = _context_label(t, ctx_cols)
    info = pd.DataFrame({"run_id": t["run_id"], "context": ctx.to_numpy(), "outgoing_norm": t["outgoing_norm"],
                         "own": t["rule_variant"]})
    radius = names[names.str.match(RADIUS_METRIC)]
    first = sc[sc["metric"].isin(set(idx["metric"]) | set(radius))]
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
    # the Taylor-radius geometry of the initial state: only its own metrics (never the probe's others),
    # one value per seed's state, averaged over the seeds
    geo = first[first["metric"].isin(set(radius))].drop_duplicates(["context", "outgoing_norm", "seed", "metric"])
    geo = geo.assign(layer=geo["metric"].str.extract(r"_l(\d+)$")[0].astype(int),
                     kind=geo["metric"].str.extract(r"^init_(.+)_l\d+$")[0])
    geo = geo.groupby(["context", "outgoing_norm", "layer", "kind"])["value"].mean().unstack("kind")
    rows = []
    for (label, context, norm_c, layer), g in wide.groupby(["label", "context", "outgoing_norm", "layer"]):
        g = g.dropna(subset=["bias_sq"])
        n = len(g)
        if not n:
            continue
        iv = bootstrap_ci(g["bias_sq"], level=level, seed=seed)
        mean, lo, hi = iv.estimate, iv.lo, iv.hi
        exact = float(g["exact_sq"].mean()) if "exact_sq" in g else math.nan
        split = g["bias_split"].to_numpy(float) if "bias_split" in g else np.array([])
        split = split[np.isfinite(split)]
        key = (context, norm_c, layer)
        rows.append({"label": label, "context": context, "outgoing_norm": float(norm_c), "layer": int(layer),
                     "n_seeds": n, "bias_sq": mean, "bias_sq_lo": lo, "bias_sq_hi": hi, "exact_sq": exact,
                     "relative_bias": math.sqrt(max(mean, 0) / exact) if exact > 0 else math.nan,
                     "split_mean": float(split.mean()) if split.size else math.nan,
                     "p": float(sign_flip_p(split)) if split.size else math.nan,
                     "_split_rms": float(np.sqrt((split ** 2).sum())) / split.size if split.size else math.nan,
                     "_excess": (g["bias_sq"] - BREAKDOWN_RELATIVE_BIAS ** 2 * g["exact_sq"]).to_numpy(float)
                     if "exact_sq" in g else np.full(n, math.nan),
                     "unit_max_outgoing": geo["unit_max_outgoing"].get(key, math.nan)
                     if "unit_max_outgoing" in geo else math.nan,
                     "beyond_radius": geo["beyond_radius"].get(key, math.nan) if "beyond_radius" in geo else math.nan,
                     "radius_ratio": geo["radius_ratio"].get(key, math.nan) if "radius_ratio" in geo else math.nan})
    out = pd.DataFrame(rows)
    if not len(out):
        return pd.DataFrame(columns=INIT_BIAS_COLUMNS)
    alpha = (1 - level) / out.groupby("label")["p"].transform("size")
    out["biased"] = out["p"] < alpha
    # the sign-flip test's power against a relative bias of BREAKDOWN_RELATIVE_BIAS: its null spread of the
    # mean is sqrt(sum T²)/n; normal approximation
    shift = BREAKDOWN_RELATIVE_BIAS ** 2 * out["exact_sq"] / out["_split_rms"]
    out["bias_power"] = normal.cdf(shift - normal.isf(alpha))
    pb, power = [], []
    for excess, a, exact in zip(out["_excess"], alpha, out["exact_sq"]):
        excess = excess[np.isfinite(excess)]
        m, _, _, se = t_interval(excess, level)
        if not (excess.size > 1 and se > 0):
            pb.append(math.nan)
            power.append(math.nan)
            continue
        df = excess.size - 1
        pb.append(float(student.sf(m / se, df)))
        effect = (RELATIVE_BIAS_FOR_POWER ** 2 - BREAKDOWN_RELATIVE_BIAS ** 2) * exact
        power.append(float(nct.sf(student.isf(a, df), df, effect / se)))
    out["p_breakdown"], out["power"] = pb, power
    out["broken"] = out["p_breakdown"] < alpha
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
        effect = f"a {RELATIVE_BIAS_FOR_POWER:.0%} relative bias"
        if len(hit):
            at = hit[hit["outgoing_norm"] == found]
            layers = ", ".join(str(int(v)) for v in sorted(at["layer"].unique()))
            verdict_ = (f"relative bias above {BREAKDOWN_RELATIVE_BIAS:.0%}: shown at norm {found:g} "
                        f"({'above' if found > PI else 'at or below'} π; layer {layers}, relative bias "
                        f"{at['relative_bias'].max():.2f})")
            if len(below):
                verdict_ += (f"; below norm {found:g}: " + verdict(False, power, effect) if np.isfinite(power) else
                             f"; below norm {found:g}: " + verdict(False, unanswerable="no hidden layer carries "
                                                                    "the gradient there"))
        else:
            verdict_ = (f"relative bias above {BREAKDOWN_RELATIVE_BIAS:.0%} up to norm {top:g}: "
                        + (verdict(False, power, effect) if np.isfinite(power)
                           else verdict(False, unanswerable="no hidden layer carries the gradient")))
        biased = sorted(g.loc[g["biased"], "outgoing_norm"].unique())
        if not g["p"].notna().any():
            verdict_ += "; any bias: " + verdict(None, unanswerable="no split-half statistic logged (bias_split)")
        elif biased:
            verdict_ += f"; some bias: shown at norms {', '.join(f'{v:g}' for v in biased)}"
        else:
            weak = float(carrying["bias_power"].min()) if len(carrying) else math.nan
            verdict_ += "; any bias at any norm: " + verdict(
                False, weak, f"a {BREAKDOWN_RELATIVE_BIAS:.0%} relative bias, sign-flip test over seeds")
        if len(weakest):
            verdict_ += (f"; {POWER_TARGET:.0%} power up to norm {powered_up_to:g}" if np.isfinite(powered_up_to)
                         else f"; under {POWER_TARGET:.0%} power from norm {weakest.index.min():g} on")
        verdict_str = verdict_
        rows.append({"label": label, "context": context, "breakdown_norm": found, "min_power_below": power,
                     "powered_up_to": powered_up_to,
                     "biased_norms": ", ".join(f"{v:g}" for v in biased), "verdict": verdict_str})
    return pd.DataFrame(rows, columns=["label", "context", "breakdown_norm", "min_power_below", "powered_up_to",
                                       "biased_norms", "verdict"])


REL_FLOOR = 1e-4   # relative squared bias floor of the interaction's log scale: a relative bias of 1 %


def order_norm_interaction(table: pd.DataFrame) -> dict | None:
    """Does hwm's bias fall with the order inside the Taylor radius and grow with it outside? OLS
    (statsmodels, HC3 errors) of log10(relative squared bias + :data:`REL_FLOOR`) on order, the share of the
    layer's outgoing weights beyond the radius, their interaction and a layer effect, over the hwm variants'
    rows of the hidden layers. The radius is per weight, sqrt(z'² + π²) against |W_ji| (``beyond_radius``, a
    fraction in [0, 1]): a column norm above π does not put any weight beyond it (layer 1 at norms 3.5 and 4
    of the norm-stress study: largest |W| 2.6 and 3.0). Where the study logged no ``beyond_radius``, the
    axis falls back to "norm > π" and ``axis`` says so. On the log scale because above the radius the bias
    grows geometrically with the order: on the raw scale those few rows carry all the leverage; the floor
    keeps the noise around 0 (negative debiased estimates) at one level. Returns the coefficients (log10
    units per order; the interaction per unit of the beyond share) with p-values, the same fit without order
    1 (``*_wo1``: a result resting on order 1 alone is not a trend over orders), or None without at least two
    hwm orders on both sides."""
    import statsmodels.formula.api as smf

    hwm = table[table["label"].str.match(r"^hwm_order-\d+$", na=False)].copy()
    if not len(hwm):
        return None
    hwm["order"] = hwm["label"].str.extract(r"order-(\d+)")[0].astype(float)
    hwm["rel"] = np.log10(np.maximum(hwm["bias_sq"] / hwm["exact_sq"], 0) + REL_FLOOR)
    # the output layer's estimates carry no Taylor bias (no outgoing weights): hidden layers only
    hwm = hwm[np.isfinite(hwm["rel"]) & (hwm["layer"] < table["layer"].max())]
    per_weight = "beyond_radius" in hwm and len(hwm) and np.isfinite(hwm["beyond_radius"].to_numpy(float)).all()
    hwm["above"] = hwm["beyond_radius"] if per_weight else (hwm["outgoing_norm"] > PI).astype(float)

    def fit(rows):
        if rows["order"].nunique() < 2 or rows["above"].nunique() < 2:
            return None
        formula = "rel ~ order * above" + (" + C(layer)" if rows["layer"].nunique() > 1 else "")
        return smf.ols(formula, data=rows).fit(cov_type="HC3")

    full = fit(hwm)
    if full is None:
        return None
    out = {"axis": "share of weights beyond sqrt(z'² + π²)" if per_weight else "column norm > π (no per-weight data)",
           "order_below": float(full.params["order"]), "order_below_p": float(full.pvalues["order"]),
           "order_x_above": float(full.params["order:above"]), "order_x_above_p": float(full.pvalues["order:above"]),
           "n": int(full.nobs)}
    wo1 = fit(hwm[hwm["order"] > 1])
    out.update({"order_x_above_wo1": float(wo1.params["order:above"]) if wo1 is not None else math.nan,
                "order_x_above_p_wo1": float(wo1.pvalues["order:above"]) if wo1 is not None else math.nan,
                "n_wo1": int(wo1.nobs) if wo1 is not None else 0})
    return out
