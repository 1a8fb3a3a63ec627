"""Scaling with width (docs/learning-rules.md §8, questions 1 and 3): power laws per rule, with intervals.

Four kinds of quantity, each fitted as ``y = A · width^b`` per rule variant (and per setting: depth,
outgoing norm and other grid axes that vary, so that only the width changes within a fit):

``episodes_to_threshold``  learning speed: the Kaplan-Meier median over the seeds of each cell's
                           tuned trial(s), in episodes (censoring-aware, :mod:`analysis.speed`); a
                           width where fewer than half the seeds reached the threshold has no median
                           and is left out of the fit (``attrs["censored"]`` lists them), so an
                           exponent never comes from budgets standing in for unobserved times;
``probe_variance``         the trained rule's probe variance summed over layers on the initial
                           parameters (``init_probe_*``) when logged, else at a matched episode,
                           per seed, in squared gradient units;
``noise_to_signal_l{l}``   per hidden layer l, the scale-free noise V / (B ||∇J||²) of the trained
                           rule on the initial parameters against the exact gradient (``nsr_exact``;
                           small nets only): the summed ``probe_variance`` counts parameters and grows
                           with ||∇J||, so its exponent is not a property of the rule;
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

import math

import numpy as np
import pandas as pd

from .load import Study
from .probe import probe_at
from .speed import FINAL_STATUSES, seed_speed, select_tuned
from .stats import (DEFAULT_BOOT, DEFAULT_LEVEL, CostFit, PowerLawFit, complexity_verdict, cost_difference_power,
                    cost_exponent_difference, MIN_LACK_OF_FIT_P, cost_verdict, exponent_difference, fit_cost,
                    fit_power_law, km_summary, t_test_power)
from .variance_speed import setting_columns
from .verdicts import verdict

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
    # the scale-free noise per layer (V / (B ||∇J||²) against the exact gradient where the probe has the oracle, else
    # against the resolved reference gradient): the summed variance counts parameters, and grows with ||∇J|| too
    nsr, _ = probe_at(study, tuned["run_id"], kind="nsr_exact", per_seed=per_seed, init=True)
    noise_source = "the exact gradient (oracle)" if len(nsr) else None
    if not len(nsr):
        nsr, _ = probe_at(study, tuned["run_id"], kind="nsr_ref", per_seed=per_seed, init=True)
        noise_source = ("a REINFORCE reference gradient grown until its squared norm exceeds 3 standard errors "
                        "(probe.reference_samples)") if len(nsr) else None
    undefined = undefined_fractions(study, info) if noise_source else pd.DataFrame(columns=UNDEFINED_COLUMNS)
    if len(nsr):
        r = nsr.merge(info, on="run_id")
        for col in [c for c in nsr.columns if c[:1] == "l" and c[1:].isdigit()]:
            parts.append(r.assign(quantity=f"noise_to_signal_{col}", value=r[col])[cols])
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
    df.attrs["noise_source"] = noise_source
    df.attrs["undefined"] = undefined
    return df


UNDEFINED_COLUMNS = ["rule_variant", "context", "width", "quantity", "states", "debiased_undefined",
                     "reference_refused"]


def undefined_fractions(study: Study, info: pd.DataFrame) -> pd.DataFrame:
    """Per rule, context, width and layer (``quantity`` noise_to_signal_l{l}): the initial states probed
    (``states``, seeds with a variance), the fraction whose debiased ratio V / (B (||ḡ||² - V/K)) is undefined
    (||ḡ||² - V/K <= 0: the trainer logs no ``nsr`` there) and the fraction the reference refused (no
    ``nsr_ref`` where ``ref_samples`` was logged; NaN where no reference ran). Needs per-seed curves; empty
    without them."""
    if not len(study.seed_curves):
        return pd.DataFrame(columns=UNDEFINED_COLUMNS)
    keys = ["run_id", "seed"]
    var, _ = probe_at(study, info["run_id"], kind="var", per_seed=True, init=True)
    if not len(var):
        return pd.DataFrame(columns=UNDEFINED_COLUMNS)
    layers = [c for c in var.columns if c[:1] == "l" and c[1:].isdigit()]
    parts = {}
    for kind in ("nsr", "nsr_ref", "ref_samples"):
        t, _ = probe_at(study, info["run_id"], kind=kind, per_seed=True, init=True)
        parts[kind] = t.set_index(keys) if len(t) else None
    v = var.set_index(keys)
    rows = []
    for layer in layers:
        states = v[layer].notna()

        def present(kind):
            t = parts[kind]
            if t is None or layer not in t:
                return pd.Series(False, index=v.index)
            return t[layer].reindex(v.index).notna()

        frame = pd.DataFrame({"state": states, "debiased": present("nsr"), "reference": present("nsr_ref"),
                              "ran": present("ref_samples")}).reset_index().merge(info, on="run_id")
        for (rule, context, width), g in frame[frame["state"]].groupby(["rule_variant", "context", "width"], sort=True):
            ran = g["ran"].sum()
            rows.append({"rule_variant": rule, "context": context, "width": width,
                         "quantity": f"noise_to_signal_{layer}", "states": int(len(g)),
                         "debiased_undefined": float(1 - g["debiased"].mean()),
                         "reference_refused": float(1 - g.loc[g["ran"], "reference"].mean()) if ran else math.nan})
    return pd.DataFrame(rows, columns=UNDEFINED_COLUMNS)


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
            fit = fit_power_law(g["width"], g["value"], n_boot=n_boot, level=level, seed=seed, key=f"{q}|{rule}|{ctx}")
        except ValueError:
            continue
        fits[(q, rule, ctx)] = fit
        rows.append({"quantity": q, "rule_variant": rule, "context": ctx, "exponent": fit.exponent,
                     "exponent_lo": fit.lo, "exponent_hi": fit.hi, "method": fit.method, "r2": fit.r2,
                     "prefactor": fit.prefactor, "n_widths": fit.n_levels, "n_obs": fit.n_obs,
                     "widths": ", ".join(str(int(w)) for w in sorted(g["width"].unique())),
                     "lack_of_fit_p": fit.lack_of_fit_p, "local_slopes": ", ".join(f"{v:.3g}" for v in fit.local_slopes),
                     "verdict": complexity_verdict(fit) if q == "seconds_per_episode" else exponent_reading(fit)})
    cols = ["quantity", "rule_variant", "context", "exponent", "exponent_lo", "exponent_hi", "method", "r2",
            "prefactor", "n_widths", "n_obs", "widths", "lack_of_fit_p", "local_slopes", "verdict"]
    return pd.DataFrame(rows, columns=cols), fits


def exponent_reading(fit: PowerLawFit) -> str:
    """The exponent with its interval where one power law holds; else no exponent, the local slopes instead
    (a slope that drifts with width, e.g. a sum of an n² and an n term, is not a property of one law)."""
    slopes = " → ".join(f"{v:.2f}" for v in fit.local_slopes)
    if not fit.one_power_law:
        return (f"no single exponent: the means depart from one power law beyond the replicate noise (lack of fit "
                f"p = {fit.lack_of_fit_p:.2g}); local slopes {slopes}")
    iv = f" [{fit.lo:.2f}, {fit.hi:.2f}]" if np.isfinite(fit.lo) else " (no interval)"
    return f"exponent {fit.exponent:.2f}{iv}; local slopes {slopes}"


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


def compute_fits(data: pd.DataFrame, level: float = DEFAULT_LEVEL) -> tuple[pd.DataFrame, dict]:
    """``t = a + b·n^k`` per (rule_variant, context) on the ``seconds_per_episode`` observations with at
    least 4 widths (:func:`analysis.stats.fit_cost`: k's t-interval from its HC3 error). Returns (table,
    fits); the table has rule_variant, context, a, b, k, k_lo, k_hi, k_se, r2, variable_share, n_widths,
    n_obs, verdict (:func:`cost_verdict`)."""
    cols = ["rule_variant", "context", "a", "b", "k", "k_lo", "k_hi", "k_se", "r2", "variable_share", "n_widths",
            "n_obs", "verdict"]
    rows, fits = [], {}
    d = data[data["quantity"] == "seconds_per_episode"] if len(data) else data
    for (rule, ctx), g in d.groupby(["rule_variant", "context"], sort=True) if len(d) else []:
        try:
            fit = fit_cost(g["width"], g["value"], level=level)
        except (ValueError, RuntimeError):
            continue
        fits[(rule, ctx)] = fit
        rows.append({"rule_variant": rule, "context": ctx, "a": fit.a, "b": fit.b, "k": fit.k, "k_lo": fit.lo,
                     "k_hi": fit.hi, "k_se": fit.se, "r2": fit.r2, "variable_share": fit.variable_share,
                     "n_widths": fit.n_levels, "n_obs": fit.n_obs, "verdict": cost_verdict(fit)})
    return pd.DataFrame(rows, columns=cols), fits


def reference_variants(labels, reference: str = "reinforce") -> list[str]:
    """Every variant of the reference rule among ``labels``: ``reinforce`` and ``reinforce(baseline=ema)``
    alike (a comparison keyed on the bare name misses the labelled variants)."""
    return sorted({r for r in labels if r == reference or r.startswith(reference + "(")})


COMPUTE_DIFFERENCE_EFFECT = 0.25   # the power of k(rule) - k(ref) is stated against exponents 0.25 apart


def compare_compute(fits: dict[tuple, CostFit], rule: str = "uwm", reference: str = "reinforce",
                    level: float = DEFAULT_LEVEL) -> pd.DataFrame:
    """``k(rule) - k(ref)`` per context and per variant ``ref`` of the reference rule
    (:func:`reference_variants`), with its t-interval (:func:`analysis.stats.cost_exponent_difference`) and
    a verdict (:func:`analysis.verdicts.verdict`) on "the exponents differ": shown only when the interval
    excludes 0 and both fits support a verdict; not shown with the test's power against exponents
    :data:`COMPUTE_DIFFERENCE_EFFECT` apart (``power``); not answerable where a fit is poor, lacks fit
    against the replicate noise, is dominated by the fixed cost or has no replicate timings."""
    rows = []
    for ctx in sorted({c for _, c in fits}):
        if (rule, ctx) not in fits:
            continue
        for ref in reference_variants([r for r, c in fits if c == ctx], reference):
            fa, fb = fits[(rule, ctx)], fits[(ref, ctx)]
            d = cost_exponent_difference(fa, fb, level)
            trusted = all(f.r2 >= 0.95 and f.variable_share >= 0.5 and not f.lack_of_fit_p < MIN_LACK_OF_FIT_P
                          for f in (fa, fb)) and np.isfinite(d.lo)
            power = cost_difference_power(fa, fb, COMPUTE_DIFFERENCE_EFFECT, level)
            shown = bool(d.lo > 0 or d.hi < 0)
            claim = (f"{rule}'s exponent {'exceeds' if d.lo > 0 else 'is below'} {ref}'s" if trusted and shown
                     else f"{rule}'s exponent differs from {ref}'s")
            reading = claim + ": " + verdict(
                shown, power, f"exponents {COMPUTE_DIFFERENCE_EFFECT:g} apart",
                None if trusted else ("a fit is poor or lacks fit against the replicate noise, or the fixed cost "
                                      "dominates, or timings lack replicates: read the cost ratio"))
            rows.append({"context": ctx, "rule_variant": rule, "reference": ref, "difference": d.estimate,
                         "difference_lo": d.lo, "difference_hi": d.hi, "power": power, "verdict": reading})
    return pd.DataFrame(rows, columns=["context", "rule_variant", "reference", "difference", "difference_lo",
                                       "difference_hi", "power", "verdict"])


RATIO_TREND_EFFECT = 0.5   # the ratio's trend test's power is stated against t_rule/t_ref growing as width^0.5


def compute_ratio(data: pd.DataFrame, rule: str = "uwm", reference: str = "reinforce",
                  level: float = DEFAULT_LEVEL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cost of ``rule`` against every variant of ``reference``, per context and width, from the
    ``seconds_per_episode`` observations: ``ratio`` = mean t_rule / mean t_ref with its interval (log
    scale, delta-method errors, Welch's degrees of freedom), ``extra`` = t_rule - t_ref (seconds per episode) and
    ``extra_per_nn`` = extra / n², the extra cost per weight of a hidden [n, n] layer pair (flat where
    the extra work is O(n·n')). Trends (second table): the OLS slope of log ratio on log width with its
    t-interval over widths, and a verdict (:func:`analysis.verdicts.verdict`) on "the ratio changes with
    width", its power stated against a slope of :data:`RATIO_TREND_EFFECT`."""
    from scipy.stats import t as student

    cols = ["context", "rule_variant", "reference", "width", "ratio", "ratio_lo", "ratio_hi", "extra", "extra_per_nn"]
    tcols = ["context", "rule_variant", "reference", "slope", "slope_lo", "slope_hi", "n_widths", "verdict"]
    d = data[data["quantity"] == "seconds_per_episode"] if len(data) else data
    rows, trends = [], []
    a = (1 - level) / 2
    for ctx, g in d.groupby("context", sort=True) if len(d) else []:
        mine = g[g["rule_variant"] == rule]
        for ref in reference_variants(g["rule_variant"].unique(), reference) if len(mine) else []:
            theirs = g[g["rule_variant"] == ref]
            for width in sorted(set(mine["width"]) & set(theirs["width"])):
                x = mine.loc[mine["width"] == width, "value"].to_numpy(float)
                y = theirs.loc[theirs["width"] == width, "value"].to_numpy(float)
                ratio = x.mean() / y.mean()
                lo = hi = math.nan
                if x.size > 1 and y.size > 1:
                    # log ratio of the means, delta-method errors, Welch's degrees of freedom: a percentile
                    # bootstrap of 4 windows per rule covers only 84 % (tests/test_calibration.py)
                    vx, vy = x.var(ddof=1) / (x.size * x.mean() ** 2), y.var(ddof=1) / (y.size * y.mean() ** 2)
                    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1)) if vx + vy > 0 else 1.0
                    half = student.ppf(1 - a, df) * math.sqrt(vx + vy)
                    lo, hi = float(ratio * math.exp(-half)), float(ratio * math.exp(half))
                rows.append({"context": ctx, "rule_variant": rule, "reference": ref, "width": float(width),
                             "ratio": float(ratio), "ratio_lo": lo, "ratio_hi": hi, "extra": float(x.mean() - y.mean()),
                             "extra_per_nn": float(x.mean() - y.mean()) / float(width) ** 2})
            part = [r for r in rows if r["reference"] == ref and r["context"] == ctx]
            if len(part) < 3:
                trends.append({"context": ctx, "rule_variant": rule, "reference": ref, "slope": math.nan,
                               "slope_lo": math.nan, "slope_hi": math.nan, "n_widths": len(part),
                               "verdict": verdict(None, unanswerable="fewer than 3 widths timed for both")})
                continue
            lx = np.log([r["width"] for r in part])
            ly = np.log([r["ratio"] for r in part])
            slope, intercept = np.polyfit(lx, ly, 1)
            df = len(part) - 2
            resid = ly - (intercept + slope * lx)
            se = math.sqrt((resid ** 2).sum() / df / ((lx - lx.mean()) ** 2).sum()) if df else math.nan
            crit = student.ppf(1 - a, df)
            lo, hi = slope - crit * se, slope + crit * se
            power = t_test_power(RATIO_TREND_EFFECT, se, df, level)
            shown = bool(lo > 0 or hi < 0)
            trends.append({"context": ctx, "rule_variant": rule, "reference": ref, "slope": float(slope),
                           "slope_lo": float(lo), "slope_hi": float(hi), "n_widths": len(part),
                           "verdict": f"t_{rule}/t_{ref} changes with width: "
                                      + verdict(shown, power, f"a ratio growing as width^{RATIO_TREND_EFFECT:g}")})
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(trends, columns=tcols)
