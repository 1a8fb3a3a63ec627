"""Variance versus speed: does a rule whose gradient estimate is noisier learn more slowly?

Spearman's ρ between each cell's probe variance and its AUC reward, pooled within settings (a bootstrap of
whole cells and, inside it, of seeds paired across the rules of a setting). Fewer than
:data:`MIN_CELLS` cells with a probe variance: "too few cells", no ρ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import figures as F
from ..load import Study
from ..probe import cross_rule_labels
from ..variance_speed import (matched_state_correlations, pooled_within_setting, variance_speed_correlations,
                              variance_speed_seeds, variance_speed_table)
from . import Answer, Context
from ._text import ci, control_reward, num

KEY, TITLE, ORDER = "variance_speed", "Variance versus speed", 30
MIN_CELLS = 5     # a rank correlation of fewer cells has an interval that says nothing (3 cells: ρ = ±1 by chance 1/3)


def answer(ctx: Context) -> Answer:
    s = ctx.settings
    vs = variance_speed_table(ctx.study, n_boot=s.n_boot, level=s.level, seed=s.seed)
    corr = variance_speed_correlations(vs, n_boot=s.n_boot, level=s.level, seed=s.seed)
    a = _variance_section(ctx.study, vs, corr, s.level, ctx.cells)
    if control_reward(ctx.study):
        if not len(vs):       # the first line is what the report's list of closed questions shows
            a.text[0] = ("Not answerable from this study: its control trials logged no estimator probe "
                         "(probe_samples: 0), so there is no variance to correlate.")
        else:
            a.text.append("A control trial's probe measures one step's estimator at the states the member visits, "
                          "for the TD error of that step under the current critic (K copies of each state stepped "
                          "once: docs/learning-rules.md §9), not the variance over whole episodes.")
        a.text.append(control_reward(ctx.study))
    a.csv.update(variance_speed=vs, variance_speed_correlations=corr)
    return a


def _variance_section(study: Study, vs: pd.DataFrame, corr: pd.DataFrame, level: float,
                      cells: pd.DataFrame | None = None) -> Answer:
    sec = Answer("variance_speed", "Variance versus speed", False)
    n_cells = vs.loc[vs["variance"].notna(), "cell"].nunique() if len(vs) else 0
    if n_cells < MIN_CELLS:
        sec.text.append(f"Not answerable from this study: too few cells ({n_cells} with a probe variance; a rank "
                        f"correlation needs at least {MIN_CELLS}, and a probe: probe.enabled, or a control "
                        "study's probe_samples)"
                        + ("; no probe metrics were logged." if not len(vs) else "."))
        return sec
    sec.present = True
    src = vs["variance_source"].value_counts().to_dict()
    labels = cross_rule_labels(study)
    sec.text.append(
        f"Variance at {vs.attrs.get('at', 'matched episodes')}; source: "
        + ", ".join(f"{k} ({v} rows)" for k, v in src.items())
        + (f". Cross-rule probe labels: {', '.join(labels)}." if labels else
           ". No cross-rule probe in this study: each cell's own probe is used, which measures each rule on the "
           "states its own trajectory reached (variance and speed are then confounded through the trajectory)."))
    sec.text.append("Speed is the AUC reward (higher = faster), so a negative ρ means higher variance goes with "
                    f"slower learning. Spearman's ρ with {level:.0%} bootstrap intervals over cells.")
    per_seed = variance_speed_seeds(study, vs)
    pooled = pooled_within_setting(vs, level=level, seeds=per_seed if len(per_seed) else None)
    kind = vs.attrs.get("kind", "var")
    measure = {"nsr": "the debiased noise-to-signal ratio V / (B (||mean||² - V/K)), scale-free (undefined where "
                      "||mean||² <= V/K and biased low where defined)",
               "nsr_exact": "the noise-to-signal ratio V / (B ||∇J||²) against the exact gradient, scale-free",
               "nsr_ref": "the noise-to-signal ratio V / (B ||∇J||²) against a resolved reference gradient, "
                          "scale-free"}.get(kind, "total variance (grows with the parameter count and the gradient "
                                                   "scale: compare within a setting only)")
    sec.text.append(f"Variance measure: {measure}. "
                    "The answer pools Spearman's ρ within each setting (mean weighted by cells) with a bootstrap "
                    "that resamples whole cells within settings and, inside each draw, one set of seed numbers per "
                    "setting shared by its cells (seeds paired across rules); the raw correlation over all settings is shown "
                    "below but mixes settings, which can flip its sign.")
    confounded = lr_grid(vs)
    if confounded:
        sec.text.append(f"Learning-rate grid: {confounded} (each a rule in one setting) compare cells at different "
                        "learning rates, and the learning rate moves both sides (a larger step changes the states "
                        "the probe measures and how fast the reward rises), so ρ here mixes the learning rate's effect "
                        "with variance's: it is not an answer about variance (compare at each rule's best rate, or on "
                        "matched states).")
    sec.csv["variance_speed_pooled"] = pooled     # the glance's ρ: every number it quotes is in a CSV
    ptotal = pooled[pooled["layer"] == "total"] if len(pooled) else pooled
    total = corr[(corr["layer"] == "total") & (corr["scope"] == "all rules")]
    if len(ptotal) and np.isfinite(ptotal["rho"].iloc[0]):
        r = ptotal.iloc[0]
        sec.answer.append((f"within settings, pooled over {int(r['n_settings'])} settings ({int(r['n_cells'])} cells)",
                           _rho_answer(r, confounded)))
        states = matched_state_correlations(study, level=level)
        sec.csv["variance_speed_matched_states"] = states
        for _, m in states[states["layer"] == "total"].iterrows():
            if np.isfinite(m["rho"]):
                sec.answer.append((f"on matched states ({m['state']}, {m['reached']:.0%} of seeds probed there)",
                                   f"ρ = {ci(m['rho'], m['rho_lo'], m['rho_hi'], 2)}"))
        sec.text.append("Answer: " + "; ".join(f"{a}: {b}" for a, b in sec.answer) + ".")
        sec.tables.append(("Spearman's ρ within settings, pooled, per layer", pd.DataFrame({
            "layer": pooled["layer"], "settings": pooled["n_settings"], "cells": pooled["n_cells"],
            "ρ [interval]": [ci(a, b, c, 2) for a, b, c in zip(pooled["rho"], pooled["rho_lo"], pooled["rho_hi"])],
            "interval excludes 0": (pooled["rho_lo"] > 0) | (pooled["rho_hi"] < 0)})))
        if len(states):
            sec.tables.append(("Spearman's ρ within settings on matched states (every rule on the same state: the "
                               "initial parameters, or each seed's state where its running reward first reached "
                               "the level), seeds paired", states))
    elif len(total) and np.isfinite(total["rho"].iloc[0]):
        r = total.iloc[0]
        sec.answer.append((f"all rules, all layers ({int(r['n'])} cells)",
                           _rho_answer(r, confounded)))
        within = corr[(corr["layer"] == "total") & (corr["scope"] != "all rules") & (corr["n"] >= 3)]
        for _, w in within.iterrows():
            sec.answer.append((f"within {w['scope']} ({int(w['n'])} cells)",
                               f"ρ = {ci(w['rho'], w['rho_lo'], w['rho_hi'], 2)}"))
        sec.text.append("Answer: " + "; ".join(f"{a}: {b}" for a, b in sec.answer) + ".")
    show = corr.assign(**{"ρ [interval]": [ci(a, b, c, 2) for a, b, c in zip(corr["rho"], corr["rho_lo"],
                                                                             corr["rho_hi"])]})
    show = show[["layer", "scope", "n", "ρ [interval]", "excludes_zero"]].rename(
        columns={"excludes_zero": "interval excludes 0"})
    few = (corr["n"] < 3) | ~np.isfinite(corr["rho"].to_numpy(float))
    if few.any():
        sec.text.append(f"{int(few.sum())} of {len(corr)} (layer, scope) pairs have fewer than 3 cells (no ρ) and are "
                        "left out of the table below.")
    sec.tables.append(("Spearman's ρ between variance and AUC reward, per layer, over all rules and within each",
                       show[~few.to_numpy()]))
    try:
        fig = F.variance_speed_figure(vs, corr, cells=cells)
        if confounded:
            fig.suptitle("learning-rate grid: cells differ in learning rate, which moves variance and speed alike",
                         fontsize=9, color="#a33")
            fig.set_label(fig.get_label() + " Warning: the cells differ in learning rate (a grid), which drives both "
                          "axes; the relation shown is not variance's effect.")
        sec.figures.append(("variance_vs_speed", fig))
    except ValueError as exc:
        sec.text.append(f"(No figure: {exc}.)")
    return sec


def lr_grid(vs: pd.DataFrame) -> str:
    """'' when each rule's compared cells share one learning rate within a setting; else how many (rule, setting)
    groups hold several (a learning-rate grid: the rate drives variance and speed alike), as words."""
    from ..lr_sensitivity import setting_labels

    if not len(vs) or "lr" not in vs:
        return ""
    cells = vs.drop_duplicates("cell")
    cells = cells.assign(_setting=setting_labels(cells).to_numpy())
    n = int((cells.groupby(["rule_variant", "_setting"])["lr"].nunique() > 1).sum())
    groups = cells.groupby(["rule_variant", "_setting"]).ngroups
    return f"{n} of {groups} groups" if n else ""


def _rho_answer(r, confounded: str = "") -> str:
    """ρ(variance, AUC reward) with its interval and what it says (not answerable on a learning-rate grid)."""
    if confounded:
        return (f"ρ(variance, AUC reward) = {ci(r['rho'], r['rho_lo'], r['rho_hi'], 2)}: not answerable as an effect "
                "of variance (the cells differ in learning rate, a grid, which moves both)")
    verdict = ("higher variance goes with slower learning" if r["rho_hi"] < 0 else
               "higher variance goes with faster learning" if r["rho_lo"] > 0 else
               "no monotone relation is resolved (the interval contains 0)")
    return f"ρ(variance, AUC reward) = {ci(r['rho'], r['rho_lo'], r['rho_hi'], 2)}: {verdict}"
