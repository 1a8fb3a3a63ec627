"""Scaling with width (docs/learning-rules.md §8, questions 1 and 3): power laws per rule, with intervals.

Three quantities, each fitted as ``y = A · width^b`` per rule variant (and per setting: depth,
outgoing norm and other grid axes that vary, so that only the width changes within a fit):

``episodes_to_threshold``  learning speed: the Kaplan-Meier median over the seeds of each cell's
                           tuned trial(s), in episodes (censoring-aware, :mod:`analysis.speed`); a
                           width where fewer than half the seeds reached the threshold has no median
                           and is left out of the fit (``attrs["censored"]`` lists them), so an
                           exponent never comes from budgets standing in for unobserved times;
``probe_variance``         the trained rule's probe variance summed over layers on the initial
                           parameters (``init_probe_*``) when logged, else at a matched episode,
                           per seed, in squared gradient units;
``seconds_per_episode``    measured compute per episode per member, one value per pack (points
                           trained together in one population share one timing; every finished
                           trial at that width counts, whatever its learning rate: compute does
                           not depend on it), in seconds. Fitted as ``t = a + b·n^k``
                           (:func:`compute_fits`: a fixed cost per episode plus the power law), not
                           as a bare power law, whose exponent a fixed cost drags towards 0.

Widths are the first hidden layer's (equal-width nets are what this analysis is for; a study
whose nets mix widths gets a note). For an equal-width net of width n, an O(m·n) update per
layer costs O(n²) per episode: the compute exponent is 2 when the rule is O(mn), 3 when O(m²n).
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from .load import Study
from .probe import probe_at
from .speed import FINAL_STATUSES, seed_speed, select_tuned
from .stats import (DEFAULT_BOOT, DEFAULT_LEVEL, CostFit, PowerLawFit, complexity_verdict, cost_exponent_difference,
                    cost_verdict,
                    exponent_difference, fit_cost, fit_power_law, km_summary)
from .variance_speed import setting_columns

QUANTITIES = {
    "episodes_to_threshold": "episodes to threshold (episodes)",
    "probe_variance": "probe variance, all layers (grad² units)",
    "seconds_per_episode": "compute (seconds / episode / member)",
}


def _context(trials: pd.DataFrame) -> list[str]:
    cols = [c for c in setting_columns(trials) if c not in ("hidden", "width")]
    if "depth" in trials and trials["depth"].nunique() > 1:
        cols.insert(0, "depth")
    return cols


def scaling_data(study: Study, at=None) -> pd.DataFrame:
    """Long table of observations for the fits: quantity, rule_variant, context, width, value."""
    t = study.trials
    finished = t[t["status"].isin(FINAL_STATUSES)] if len(t) else t
    cols = ["quantity", "rule_variant", "context", "width", "value"]
    if not len(finished) or finished["width"].nunique() < 2:
        return pd.DataFrame(columns=cols)
    ctx_cols = _context(finished)

    def ctx(df):
        if not ctx_cols:
            return pd.Series("", index=df.index)
        return df.apply(lambda r: ", ".join(f"{c}={_fmt(r[c])}" for c in ctx_cols), axis=1)

    parts = []
    tuned = select_tuned(study)
    info = tuned[["run_id", "rule_variant", "width"]].assign(context=ctx(tuned).to_numpy())
    seeds = seed_speed(study)
    censored = []
    if len(seeds):
        s = seeds.merge(info, on="run_id")
        medians = []
        for (rule, context, width), g in s.groupby(["rule_variant", "context", "width"], sort=False):
            km = km_summary(g["episodes_to_threshold"], g["reached"], float(g["budget"].max()), n_boot=2)
            if np.isfinite(km.median):
                medians.append({"rule_variant": rule, "context": context, "width": width, "value": km.median})
            else:
                censored.append(f"{rule} {context} width {width:g}".replace("  ", " "))
        if medians:
            parts.append(pd.DataFrame(medians).assign(quantity="episodes_to_threshold")[cols])
    else:
        s = tuned.assign(context=ctx(tuned).to_numpy())
        if "final_episodes_to_threshold_mean" in s:
            parts.append(s.assign(quantity="episodes_to_threshold", value=s["final_episodes_to_threshold_mean"])[cols])
    # the initial state when the study probed it (the same kind of state at every width), else matched reports
    per_seed = bool(len(study.seed_curves))
    var, _ = probe_at(study, tuned["run_id"], per_seed=per_seed, init=True)
    if not len(var):
        var, _ = probe_at(study, tuned["run_id"], at=at, per_seed=per_seed)
    if len(var):
        v = var.merge(info, on="run_id")
        parts.append(v.assign(quantity="probe_variance", value=v["total"])[cols])
    spe = next((c for c in ("final_seconds_per_episode", "last_seconds_per_episode") if c in finished), None)
    timing, compute_source = getattr(study, "timing", None), None
    if timing is not None and len(timing):
        # the dedicated timing run: every rule and width timed alone, several windows each (one observation each)
        parts.append(timing.assign(quantity="seconds_per_episode", context="", value=timing["seconds_per_episode"])[cols])
        compute_source = (f"the dedicated timing run (uwm-study timing: {len(timing)} windows, one thread, "
                          "training steps only)")
    elif spe:
        compute_source = ("the study's own seconds_per_episode (packs timed while sharing the machine, with probes "
                          "and logging around them; run `uwm-study timing` for a dedicated timing run)")
        f = finished.assign(context=ctx(finished).to_numpy())
        if "pack" in f and f["pack"].notna().any():
            # points trained together in one pack share one timing: one observation per pack
            f = pd.concat([f[f["pack"].isna()], f[f["pack"].notna()].drop_duplicates(["pack", "rule_variant", "context"])])
        parts.append(f.assign(quantity="seconds_per_episode", value=f[spe])[cols])
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    df = df.dropna(subset=["value", "width"]).reset_index(drop=True)
    df.attrs["censored"] = censored
    df.attrs["compute_source"] = compute_source
    return df


def _fmt(v):
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def scaling_fits(data: pd.DataFrame, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL,
                 seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Power-law fit per (quantity, rule_variant, context) with at least 2 widths.

    Returns (table, fits): the table has quantity, rule_variant, context, exponent, exponent_lo,
    exponent_hi, method, r2, prefactor, n_widths, n_obs, widths, verdict (compute only);
    ``fits`` maps (quantity, rule_variant, context) to the :class:`PowerLawFit` (with bootstrap draws).
    """
    rows, fits = [], {}
    for (q, rule, ctx), g in data.groupby(["quantity", "rule_variant", "context"], sort=True):
        if g["width"].nunique() < 2:
            continue
        try:
            fit = fit_power_law(g["width"], g["value"], n_boot=n_boot, level=level, seed=seed)
        except ValueError:
            continue
        fits[(q, rule, ctx)] = fit
        rows.append({"quantity": q, "rule_variant": rule, "context": ctx, "exponent": fit.exponent,
                     "exponent_lo": fit.lo, "exponent_hi": fit.hi, "method": fit.method, "r2": fit.r2,
                     "prefactor": fit.prefactor, "n_widths": fit.n_levels, "n_obs": fit.n_obs,
                     "widths": ", ".join(str(int(w)) for w in sorted(g["width"].unique())),
                     "verdict": complexity_verdict(fit) if q == "seconds_per_episode" else ""})
    cols = ["quantity", "rule_variant", "context", "exponent", "exponent_lo", "exponent_hi", "method", "r2",
            "prefactor", "n_widths", "n_obs", "widths", "verdict"]
    return pd.DataFrame(rows, columns=cols), fits


def compare_exponents(fits: dict[tuple, PowerLawFit], reference: str | None = None,
                      level: float = DEFAULT_LEVEL) -> pd.DataFrame:
    """Each rule's exponent minus the reference rule's, per quantity and context, with an interval.

    The reference defaults to ``reinforce`` when present (the plain baseline), else the first rule
    in alphabetical order. ``differs`` is True when the interval excludes 0.
    """
    rows = []
    keys = sorted(fits)
    for q, ctx in sorted({(k[0], k[2]) for k in keys}):
        rules = sorted(k[1] for k in keys if k[0] == q and k[2] == ctx)
        ref = reference if reference in rules else ("reinforce" if "reinforce" in rules else rules[0])
        for r in rules:
            if r == ref:
                continue
            d = exponent_difference(fits[(q, r, ctx)], fits[(q, ref, ctx)], level)
            rows.append({"quantity": q, "context": ctx, "rule_variant": r, "reference": ref, "difference": d.estimate,
                         "difference_lo": d.lo, "difference_hi": d.hi,
                         "differs": bool(np.isfinite(d.lo) and (d.lo > 0 or d.hi < 0))})
    return pd.DataFrame(rows, columns=["quantity", "context", "rule_variant", "reference", "difference",
                                       "difference_lo", "difference_hi", "differs"])


def compute_fits(data: pd.DataFrame, n_boot: int = 200, level: float = DEFAULT_LEVEL,
                 seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """``t = a + b·n^k`` per (rule_variant, context) on the ``seconds_per_episode`` observations with at
    least 4 widths (:func:`analysis.stats.fit_cost`). Returns (table, fits); the table has rule_variant,
    context, a, b, k, k_lo, k_hi, r2, variable_share, n_widths, n_obs, verdict (:func:`cost_verdict`)."""
    cols = ["rule_variant", "context", "a", "b", "k", "k_lo", "k_hi", "r2", "variable_share", "n_widths", "n_obs",
            "verdict"]
    rows, fits = [], {}
    d = data[data["quantity"] == "seconds_per_episode"] if len(data) else data
    for (rule, ctx), g in d.groupby(["rule_variant", "context"], sort=True) if len(d) else []:
        try:
            fit = fit_cost(g["width"], g["value"], n_boot=n_boot, level=level, seed=seed)
        except (ValueError, RuntimeError):
            continue
        fits[(rule, ctx)] = fit
        rows.append({"rule_variant": rule, "context": ctx, "a": fit.a, "b": fit.b, "k": fit.k, "k_lo": fit.lo,
                     "k_hi": fit.hi, "r2": fit.r2, "variable_share": fit.variable_share, "n_widths": fit.n_levels,
                     "n_obs": fit.n_obs, "verdict": cost_verdict(fit)})
    return pd.DataFrame(rows, columns=cols), fits


def compare_compute(fits: dict[tuple, CostFit], rule: str = "uwm", reference: str = "reinforce",
                    level: float = DEFAULT_LEVEL) -> pd.DataFrame:
    """``k(rule) - k(reference)`` per context with its interval, and a verdict that reads the interval and
    both fits' quality: ``differs`` only when the interval excludes 0 and both fits support a verdict."""
    rows = []
    for ctx in sorted({c for _, c in fits}):
        if (rule, ctx) not in fits or (reference, ctx) not in fits:
            continue
        fa, fb = fits[(rule, ctx)], fits[(reference, ctx)]
        d = cost_exponent_difference(fa, fb, level)
        trusted = all(f.r2 >= 0.95 and f.variable_share >= 0.5 for f in (fa, fb)) and np.isfinite(d.lo)
        if not trusted:
            verdict = "no verdict: a fit is poor, or the fixed cost dominates, or timings lack replicates"
        elif d.lo > 0 or d.hi < 0:
            verdict = f"{rule}'s exponent {'exceeds' if d.lo > 0 else 'is below'} {reference}'s"
        else:
            verdict = f"{rule} and {reference} scale alike (the interval includes 0)"
        rows.append({"context": ctx, "rule_variant": rule, "reference": reference, "difference": d.estimate,
                     "difference_lo": d.lo, "difference_hi": d.hi, "verdict": verdict})
    return pd.DataFrame(rows, columns=["context", "rule_variant", "reference", "difference", "difference_lo",
                                       "difference_hi", "verdict"])
