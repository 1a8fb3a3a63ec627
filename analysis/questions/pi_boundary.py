"""The π boundary: from which initial outgoing norm does a rule's gradient estimate become biased?

Answered only from the bias at initialisation against the exact gradient (every rule on the same initial
states), per weight against its Taylor radius; the reward after tuning and training reads the tuning and
the budget, not the radius. The glance answer is a rule × norm table: the first norm whose relative bias
is shown above 10%, with the power of the tests below it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import figures as F
from ..load import Study
from ..norm_stress import (BREAKDOWN_RELATIVE_BIAS, RELATIVE_BIAS_FOR_POWER, breakdown_norms, init_bias_breakdown,
                           init_bias_table, norm_stress_table, order_norm_interaction)
from ..verdicts import verdict
from . import Answer, Context
from ._text import ci, num

KEY, TITLE, ORDER = "norm_stress", "The π boundary (outgoing-norm stress)", 50


def answer(ctx: Context) -> Answer:
    s = ctx.settings
    ns = norm_stress_table(ctx.study, n_boot=s.n_boot, level=s.level, seed=s.seed)
    init = init_bias_table(ctx.study, level=s.level, seed=s.seed)
    a = _pi_section(ctx.study, ns, s.level, init)
    a.csv.update(norm_stress=ns, norm_stress_breakdown=breakdown_norms(ns) if len(ns) else pd.DataFrame(),
                 norm_stress_init_bias=init)
    return a


def rule_by_norm(init: pd.DataFrame) -> pd.DataFrame:
    """One row per rule (and setting), one column per norm: the relative bias of the worst layer, marked
    '▲' where a relative bias above 10% is shown; the first such norm and the lowest power of the tests
    below it. Output-layer rows where nothing is estimated (all zero) are left out."""
    if not len(init):
        return pd.DataFrame()
    d = init[np.isfinite(init["relative_bias"].to_numpy(float))]
    rows = []
    for (rule, context), g in d.groupby(["label", "context"], sort=True):
        row = {"rule": rule}
        if init["context"].nunique() > 1:
            row["setting"] = context
        first = np.nan
        for norm, h in g.groupby("outgoing_norm", sort=True):
            broken = bool(h["broken"].any())
            row[f"c = {num(norm)}"] = num(float(h["relative_bias"].max()), 2) + (" ▲" if broken else "")
            if broken and not np.isfinite(first):
                first = float(norm)
        below = g[g["outgoing_norm"] < first] if np.isfinite(first) else g
        power = float(below["power"].min()) if len(below) and np.isfinite(below["power"]).any() else np.nan
        row[f"first norm above {BREAKDOWN_RELATIVE_BIAS:.0%}"] = num(first) if np.isfinite(first) else "none shown"
        row["power below it (min)"] = "–" if not np.isfinite(power) else f"{power:.0%}"
        rows.append(row)
    return pd.DataFrame(rows)


def _pi_section(study: Study, table: pd.DataFrame, level: float,
                init: pd.DataFrame | None = None) -> Answer:
    sec = Answer("norm_stress", "The π boundary (outgoing-norm stress)", False)
    norms = study.trials["outgoing_norm"].dropna().nunique() if len(study.trials) else 0
    if norms < 2 or not len(table):
        sec.text.append(f"Not answerable from this study: it sets {norms} distinct initial outgoing norm(s); the "
                        "stress analysis needs at least 2, ideally on both sides of π ≈ 3.14.")
        return sec
    sec.present = True
    sec.text.append(
        "Per rule and initial outgoing norm c: the fraction of seeds that diverged (Wilson interval), the probe "
        "variance summed over layers at each trial's first report (bootstrap over seeds), the probe bias against "
        "the exact gradient where the net is small enough for the oracle, and the final eval "
        f"reward (bootstrap over seeds); {level:.0%} intervals. The reward after tuning and training reads the "
        "tuning and the budget, not the Taylor radius (the weights leave their initial norm as they learn): the "
        "π boundary is answered only from the bias at initialisation.")
    init = init_bias_table(study, level=level) if init is None else init
    if len(init):
        sec.text.append(
            "At initialisation (every rule on the same initial states and episodes): the debiased squared bias "
            "||mean − exact||² − V/K per layer against the exact gradient, mean over seeds with a bootstrap "
            f"interval over the initial states (random effects); a relative bias above {BREAKDOWN_RELATIVE_BIAS:.0%} "
            "is shown where a one-sided t-test over seeds rejects (Bonferroni over norms and layers), any bias where "
            "a sign-flip test over seeds of the split-half products (mean_A − exact)·(mean_B − exact) rejects; a "
            "non-rejection is 'not shown', with its power.")
        ibd = init_bias_breakdown(init)
        for _, r in ibd.iterrows():   # the full verdict per variant; the glance reads the rule × norm table
            sec.bullets.append(f"{r['label']}" + (f", {r['context']}" if r["context"] else "") + f": {r['verdict']}")
        grid = rule_by_norm(init)
        key = f"first norm above {BREAKDOWN_RELATIVE_BIAS:.0%}"
        if len(grid):   # the headline: per rule, the first norms shown over its settings
            sec.headline = (f"first norm with a relative bias above {BREAKDOWN_RELATIVE_BIAS:.0%} shown: " + "; ".join(
                f"{rule} " + ", ".join(f"{'none' if v == 'none shown' else 'c = ' + v}"
                                       + (f" ({n} settings)" if n > 1 else "") for v, n in g[key].value_counts().items())
                for rule, g in grid.groupby("rule", sort=True)))
        for _, g in grid.iterrows():
            first, power = g[f"first norm above {BREAKDOWN_RELATIVE_BIAS:.0%}"], g["power below it (min)"]
            sec.answer.append((g["rule"] + (f", {g['setting']}" if "setting" in g else ""),
                               f"first norm with a relative bias above {BREAKDOWN_RELATIVE_BIAS:.0%} shown: "
                               + (f"c = {first}" if first != "none shown" else "none")
                               + f" (lowest power below it against a {RELATIVE_BIAS_FOR_POWER:.0%} relative bias: {power})"))
        inter = order_norm_interaction(init)
        if inter:
            below = verdict(inter["order_below"] < 0 and inter["order_below_p"] < 0.05)
            above = verdict(inter["order_x_above"] > 0 and inter["order_x_above_p"] < 0.05)
            wo1 = (f"; without order 1: {verdict(inter['order_x_above_wo1'] > 0 and inter['order_x_above_p_wo1'] < 0.05)}"
                   f" (change {inter['order_x_above_wo1']:+.3g}, p = {inter['order_x_above_p_wo1']:.2g}, "
                   f"{inter['n_wo1']} rows)" if inter["n_wo1"] else "; without order 1: "
                   + verdict(None, unanswerable="fewer than two orders above 1"))
            sec.answer.append(
                ("hwm order × radius", f"bias falling with the order inside the radius: {below}; growing with it "
                 f"beyond: {above} (axis: {inter['axis']}; log10 relative squared bias per order "
                 f"{inter['order_below']:+.3g}, p = {inter['order_below_p']:.2g}; change beyond the radius "
                 f"{inter['order_x_above']:+.3g}, p = {inter['order_x_above_p']:.2g}; OLS, HC3, {inter['n']} rows)"
                 + wo1))
        if len(grid):
            sec.tables.append((f"Rule × initial outgoing norm c: largest relative bias over layers, ▲ where a relative "
                               f"bias above {BREAKDOWN_RELATIVE_BIAS:.0%} is shown; the first such norm and the lowest "
                               f"power (against a {RELATIVE_BIAS_FOR_POWER:.0%} relative bias) of the tests below it",
                               grid))
        sec.tables.append(("Bias at initialisation per variant, norm and layer (every column: "
                           "norm_stress_init_bias.csv)", pd.DataFrame({
                               "rule": init["label"], "setting": init["context"],
                               "norm c": init["outgoing_norm"].map(num), "layer": init["layer"],
                               "squared bias [interval]": [ci(a, b, c, 2) for a, b, c in
                                                           zip(init["bias_sq"], init["bias_sq_lo"], init["bias_sq_hi"])],
                               "relative bias": init["relative_bias"].map(lambda v: num(v, 2)),
                               "beyond radius": init["beyond_radius"].map(lambda v: num(v, 2)),
                               "largest |W|/radius": init["radius_ratio"].map(lambda v: num(v, 2)),
                               "any bias (p)": [f"{'shown' if b else 'not shown'} ({num(p, 2)})" for b, p in
                                                zip(init["biased"], init["p"])],
                               f"above {BREAKDOWN_RELATIVE_BIAS:.0%} (power)": [
                                   f"{'shown' if b else 'not shown'} ({num(w, 2)})"
                                   for b, w in zip(init["broken"], init["power"])]})))
    else:
        sec.answer.append(("π boundary", verdict(None, unanswerable="the study logged no bias at initialisation; "
                                                 "the reward after tuning and training cannot test the radius")))
    show = pd.DataFrame({
        "rule": table["rule_variant"], "setting": table["context"], "norm c": table["outgoing_norm"].map(num),
        "> π": table["above_pi"], "seeds": table["n_seeds"].map(num),
        "diverged": [ci(a, b, c, 2) for a, b, c in zip(table["diverged_rate"], table["diverged_rate_lo"],
                                                       table["diverged_rate_hi"])],
        "variance": [ci(a, b, c, 3) for a, b, c in zip(table["variance"], table["variance_lo"],
                                                       table["variance_hi"])],
        "final reward": [ci(a, b, c, 3) for a, b, c in zip(table["final_reward"], table["final_reward_lo"],
                                                           table["final_reward_hi"])]})
    if np.isfinite(table["bias"].to_numpy(float)).any():
        show.insert(7, "bias", [ci(a, b, c, 3) for a, b, c in zip(table["bias"], table["bias_lo"], table["bias_hi"])])
    sec.tables.append(("Divergence, variance, bias (where measured) and final reward against the initial outgoing norm",
                       show))
    if table["context"].nunique() > 4:
        sec.text.append(f"The figure shows 4 of the {table['context'].nunique()} settings; the tables hold all.")
    try:
        sec.figures.append(("norm_stress", F.norm_stress_figure(table, init if len(init) else None)))
    except ValueError as exc:
        sec.text.append(f"(No figure: {exc}.)")
    try:
        sec.figures.append(("pi_boundary", F.pi_boundary_figure(init)))
    except ValueError as exc:
        sec.text.append(f"(No per-weight π figure: {exc}.)")
    return sec
