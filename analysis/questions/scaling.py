"""Scaling with width: how speed, variance and compute per episode grow with the hidden width.

Power laws y = A·width^b per rule and setting; compute as t = a + b·width^k (the fit the answer and the
figure both use), UWM's exponent against each REINFORCE variant's and the cost ratio t_uwm / t_ref.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import figures as F
from ..load import Study
from ..scaling import (COMPUTE_DIFFERENCE_EFFECT, QUANTITIES, compare_compute, compare_exponents, compute_fits,
                       compute_ratio, scaling_data, scaling_fits)
from . import Answer, Context
from ._text import ci, for_people, num

KEY, TITLE, ORDER = "scaling", "Scaling with width", 40


def answer(ctx: Context) -> Answer:
    s = ctx.settings
    data = scaling_data(ctx.study)
    fits, fit_objs = scaling_fits(data, n_boot=s.n_boot, level=s.level, seed=s.seed)
    comps = compare_exponents(fit_objs, level=s.level)
    a = _scaling_section(ctx.study, data, fits, comps, s.level)
    a.csv.update(scaling_data=data, scaling_fits=fits, scaling_comparisons=comps)
    return a


def _scaling_section(study: Study, data: pd.DataFrame, fits: pd.DataFrame, comps: pd.DataFrame,
                     level: float) -> Answer:
    sec = Answer("scaling", "Scaling with width", False)
    widths = study.trials["width"].dropna().nunique() if len(study.trials) else 0
    if widths < 2 or not len(fits):
        sec.text.append(f"Not answerable from this study: it has {widths} hidden width(s); power-law fits need "
                        "at least 2 (3 or more for a t-interval).")
        return sec
    sec.present = True
    sec.text.append(
        f"Power laws y = A·width^b fitted on log-log axes per rule (and per setting), {level:.0%} intervals on "
        "the exponent b: stratified bootstrap over seeds or trials at each width (t-interval over the widths when a "
        "width has fewer than 3 values). For an equal-width net, an O(mn) rule costs O(width²) per episode: compute exponent 2; "
        "an O(m²n) rule gives 3.")
    cfits, cobjs = compute_fits(data, level=level)
    if len(cfits):
        sec.text.append("Compute is fitted as t = a + b·width^k (a fixed cost per episode plus a power law; a bare "
                        "power law's exponent is dragged towards 0 by the fixed cost); k's interval is a t-interval "
                        "from its heteroscedasticity-consistent (HC3) standard error, and the difference "
                        "k(uwm) − k(ref) combines the two errors (Welch degrees of freedom; 94-97 % coverage in simulation, where "
                        "a bootstrap of the timings covered 89 %). The verdict reads the interval only when the fit "
                        "is good and the power-law part is at least half the time at the largest width; a "
                        f"difference not shown states its power against exponents {COMPUTE_DIFFERENCE_EFFECT:g} apart.")
        if data.attrs.get("compute_source"):
            sec.text.append(f"Compute timings: {data.attrs['compute_source']}.")
        for _, r in cfits.iterrows():
            sec.text.append(f"Compute, {r['rule_variant']}" + (f" ({r['context']})" if r["context"] else "")
                            + f": {r['verdict']}.")
        sec.tables.append(("Compute fits t = a + b·width^k", for_people(cfits)))
        cc = compare_compute(cobjs, level=level)
        sec.csv.update(scaling_compute_fits=cfits, scaling_compute_comparisons=cc)
        source = (" (dedicated timing run)" if str(data.attrs.get("compute_source", "")).startswith("the dedicated")
                  else " (the study's own timings)")
        for _, r in cc.iterrows():
            sec.answer.append((f"compute, k(uwm) − k({r['reference']})" + (f", {r['context']}" if r["context"] else ""),
                               f"{ci(r['difference'], r['difference_lo'], r['difference_hi'], 2)}: {r['verdict']}"
                               + source))
        ratio, trend = compute_ratio(data, level=level)
        if len(ratio):
            sec.csv.update(scaling_compute_ratio=ratio, scaling_compute_ratio_trend=trend)
        if len(ratio):
            sec.tables.append(("Cost of uwm against each REINFORCE variant per width: ratio t_uwm / t_ref "
                               f"({level:.0%} interval, log scale, Welch) and the extra seconds per episode, also "
                               "per n² (flat where the extra work is O(n·n'))", ratio))
        for _, r in trend.iterrows():
            own = ratio.loc[(ratio["reference"] == r["reference"]) & (ratio["context"] == r["context"]), "ratio"]
            sec.answer.append((f"compute, t_uwm / t_{r['reference']}" + (f", {r['context']}" if r["context"] else ""),
                               f"ratio {own.min():.2f}–{own.max():.2f} over widths; "
                               f"slope of log ratio on log width {ci(r['slope'], r['slope_lo'], r['slope_hi'], 2)}: "
                               f"{r['verdict']}" + source))
    else:
        sec.text.append("Compute: no t = a + b·width^k fit (it needs 4 or more widths); the bare power law's reading "
                        "below holds only where fixed costs per episode are negligible.")
        bare = fits[fits["quantity"] == "seconds_per_episode"]
        if len(bare):
            sec.tables.append(("Compute (bare power law) per rule and setting", pd.DataFrame(
                {"rule": bare["rule_variant"], "setting": bare["context"], "verdict": bare["verdict"]})))
    censored = data.attrs.get("censored", [])
    if censored:
        sec.text.append("Speed exponents use Kaplan-Meier medians; left out where fewer than half the seeds reached "
                        "the threshold: " + "; ".join(censored) + ".")
    for q, name in (("episodes_to_threshold", "speed exponent (KM median episodes to threshold)"),
                    ("probe_variance", "variance exponent")):
        f = fits[fits["quantity"] == q]
        for ctx, g in f.groupby("context", sort=False):
            sec.answer.append((name + (f", {ctx}" if ctx else ""), " · ".join(
                f"{r['rule_variant']} {ci(r['exponent'], r['exponent_lo'], r['exponent_hi'], 3)}"
                for _, r in g.iterrows())))
    noise_lines(sec, data, fits)
    show = fits.assign(**{"b [interval]": [ci(a, b, c, 3) for a, b, c in
                                           zip(fits["exponent"], fits["exponent_lo"], fits["exponent_hi"])],
                          "quantity": fits["quantity"].map(lambda q: QUANTITIES.get(q, q))})
    show = show.assign(**{"local slopes": fits["local_slopes"]})
    show = show[["quantity", "rule_variant", "context", "b [interval]", "method", "r2", "local slopes", "widths",
                 "n_obs"]]
    show = show.assign(r2=show["r2"].map(lambda v: num(v, 3))).rename(columns={"rule_variant": "rule",
                                                                                 "r2": "R²"})
    sec.tables.append(("Fitted exponents", show))
    if len(comps):
        c = comps.assign(**{"b − b_ref [interval]": [ci(a, b, d, 3) for a, b, d in
                                                      zip(comps["difference"], comps["difference_lo"],
                                                          comps["difference_hi"])]})
        c = c[["quantity", "context", "rule_variant", "reference", "b − b_ref [interval]", "differs"]]
        c = c.assign(quantity=c["quantity"].map(lambda q: QUANTITIES.get(q, q)))
        sec.tables.append(("Exponents compared across rules (difference to the reference rule)", c))
    if data["context"].nunique() > 4:
        sec.text.append(f"The figure shows 4 of the {data['context'].nunique()} settings; the tables hold all.")
    try:
        sec.figures.append(("scaling", F.scaling_figure(data, fits, compute=cfits)))
    except ValueError as exc:
        sec.text.append(f"(No figure: {exc}.)")
    return sec


def noise_lines(sec: Answer, data: pd.DataFrame, fits: pd.DataFrame) -> None:
    """The scale-free noise's width exponent per layer and rule (:func:`analysis.scaling.exponent_reading`:
    no exponent where one power law does not fit), each with the fraction of initial states where the
    probe's own debiased ratio is undefined and, with a reference gradient, where the reference refused."""
    noise = fits[fits["quantity"].str.startswith("noise_to_signal_")]
    if not len(noise):
        return
    sec.text.append(f"Scale-free noise V / (B·‖∇J‖²) per layer on the initial parameters, against "
                    f"{data.attrs.get('noise_source') or 'the exact gradient'}; the debiased ratio "
                    "V / (B·(‖ḡ‖² − V/K)) is undefined where ‖ḡ‖² ≤ V/K and biased low where defined, so it is "
                    "not fitted; its undefined share is given beside each exponent.")
    undefined = data.attrs.get("undefined")
    for _, r in noise.iterrows():
        share = ""
        if undefined is not None and len(undefined):
            u = undefined[(undefined["quantity"] == r["quantity"]) & (undefined["rule_variant"] == r["rule_variant"])
                          & (undefined["context"] == r["context"])]
            if len(u):
                share = (f" (debiased ratio undefined in {u['debiased_undefined'].min():.0%}–"
                         f"{u['debiased_undefined'].max():.0%} of states per width")
                if u["reference_refused"].notna().any():
                    share += f"; reference refused in {u['reference_refused'].max():.0%} at most"
                share += ")"
        layer = r["quantity"].removeprefix("noise_to_signal_l")
        sec.answer.append((f"noise exponent, layer {layer}, {r['rule_variant']}" + (f", {r['context']}" if r["context"] else ""),
                           r["verdict"] + share))
