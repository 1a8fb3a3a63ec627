"""Study reports: one self-contained HTML page (or Markdown with PNG files) plus CSV tables.

    from analysis.report import write_report
    path = write_report("my-study", "reports/my-study")            # HTML, attached to the parent run
    path = write_report("my-study", "reports/my-study", fmt="md")  # Markdown + PNGs beside it

The report answers the questions of docs/learning-rules.md §8 with numbers and intervals: a table of
answers (one row per question and setting), a summary table per cell (tuned learning rate, speed with
interval, variance), how each cell's search went (:mod:`analysis.tuning`: Optuna's slice and
optimisation-history plots, the chosen value and whether it sits at the edge of the range tried), then
variance versus speed, scaling with width, the π boundary and learning-rate sensitivity (on an lr grid),
each present only when the study has the data for it (and saying what is missing otherwise). Figures are
drawn at the page's width (:data:`analysis.figures.PAGE_WIDTH_IN`), so a browser shows them at 100 %. The whole output directory
is attached to the study's MLflow parent run under ``report/``.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import figures as F
from .load import Study, load_study
from .fastest import fastest_rules
from .lr_sensitivity import MIN_LRS, answer_text, lr_sensitivity, setting_labels
from .norm_stress import (BREAKDOWN_RELATIVE_BIAS, breakdown_norms, init_bias_breakdown, init_bias_table,
                          norm_stress_table, order_norm_interaction)
from .probe import cross_rule_labels
from .scaling import (QUANTITIES, compare_compute, compare_exponents, compute_fits, compute_ratio, scaling_data,
                      scaling_fits)
from .speed import (MIN_TUNING_POINTS, cell_summary, replication_table, seed_speed, select_tuned,
                    tuning_warnings)
from .tuning import objective_label, tuning_figures, tuning_table
from . import reference
from .reference import reference_tables, rule_accuracies
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL
from .variance_speed import (matched_state_correlations, pooled_within_setting, variance_speed_correlations,
                             variance_speed_seeds, variance_speed_table)
from .verdicts import verdict

log = logging.getLogger("analysis.report")
FORMATS = ("html", "md")


@dataclass
class Section:
    key: str
    title: str
    present: bool
    text: list[str] = field(default_factory=list)            # paragraphs (plain text)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)   # (caption, display table)
    figures: list[tuple[str, object]] = field(default_factory=list)        # (file stem, Figure or row of them)
    answer: list = field(default_factory=list)   # "Answers at a glance": text, or (setting, text) per row
    bullets: list[str] = field(default_factory=list)         # rendered as a list after the text


def _rho_answer(r) -> str:
    """ρ(variance, AUC reward) with its interval and what it says."""
    verdict = ("higher variance goes with slower learning" if r["rho_hi"] < 0 else
               "higher variance goes with faster learning" if r["rho_lo"] > 0 else
               "no monotone relation is resolved (the interval contains 0)")
    return f"ρ(variance, AUC reward) = {_ci(r['rho'], r['rho_lo'], r['rho_hi'], 2)}: {verdict}"


def _ci(est, lo, hi, digits: int = 3) -> str:
    if est is None or not np.isfinite(est):
        return "–"
    s = _num(float(est), digits)
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        s += f" [{_num(float(lo), digits)}, {_num(float(hi), digits)}]"
    return s


def _num(v, digits=3) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, bool):
        if 1000 <= abs(v) < 1e9:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def _median(est, lo, hi, budget) -> str:
    """A Kaplan-Meier median: unknown (beyond the budget) when fewer than half the seeds reached it."""
    if est is None or (isinstance(est, float) and np.isinf(est)):
        return f"> {_num(budget)} (not reached by half)" if budget is not None and np.isfinite(budget) else "not reached"
    text = _num(est)
    if lo is not None and np.isfinite(lo):
        text += f" [{_num(lo)}, {'∞' if hi is None or not np.isfinite(hi) else _num(hi)}]"
    return text


def _pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"


# ----------------------------------------------------------------------------- sections


def _overview(study: Study, cells: pd.DataFrame) -> Section:
    t = study.trials
    sec = Section("overview", "Study", True)
    statuses = t["status"].value_counts().to_dict() if len(t) else {}
    axes = []
    for c, name in (("rule_variant", "rules"), ("width", "widths"), ("depth", "depths"),
                    ("outgoing_norm", "outgoing norms"), ("lr", "learning rates")):
        if c in t and t[c].notna().any():
            vals = sorted(t[c].dropna().unique(), key=F._natural)
            axes.append(f"{name}: " + ", ".join(_num(v) if isinstance(v, float) else str(v) for v in vals))
    sec.text.append(f"{len(t)} trials in {t['cell'].nunique() if len(t) else 0} cells; status: "
                    + (", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none") + ".")
    if axes:
        sec.text.append("; ".join(axes) + ".")
    seeds = int(cells["n_seeds"].sum()) if "n_seeds" in cells and len(cells) else 0
    if len(cells):
        sec.text.append(f"Each cell is reported at its tuned learning rate ({cells['tuned_by'].iloc[0]}); "
                        f"{seeds} seeds in the tuned trials in all.")
    for n in study.notes:
        sec.text.append(f"Note: {n}.")
    return sec


def _cell_section(study: Study, cells: pd.DataFrame, level: float) -> Section:
    sec = Section("cells", "Summary per cell", bool(len(cells)))
    if not len(cells):
        sec.text.append("The study has no finished trials yet, so there is nothing to summarise.")
        return sec
    pct = f"{level:.0%}"
    sec.text.append(
        f"Speed measures are means over the seeds of the tuned trial(s) with {pct} bootstrap intervals over "
        f"seeds. AUC: area under the eval-reward curve divided by the episodes trained (reward; higher is "
        f"faster). Episodes to threshold, censoring-aware (Kaplan-Meier over seeds; a seed that never reached "
        f"the threshold is censored at its budget): the median with its interval ('not reached by half' when "
        f"fewer than half the seeds got there) and the restricted mean up to the budget. Diverged seeds are "
        f"failures: they never reach the threshold and score the task's lowest reward from their divergence on. "
        f"Variance: the trained rule's probe variance summed over layers (grad² units) at "
        f"{cells.attrs.get('variance_at', 'matched episodes')}.")
    rows = []
    for _, r in cells.iterrows():
        row = {"cell": r["cell"], "rule": r.get("rule_variant"), "width": _num(r.get("width")),
               "norm": _num(r.get("outgoing_norm")) if pd.notna(r.get("outgoing_norm")) else "default",
               "tuned lr": r.get("lr_text") if r.get("lr_per_layer") else _num(r.get("lr")),
               "seeds": _num(r.get("n_seeds")),
               "AUC reward": _ci(r.get("auc_reward"), r.get("auc_reward_lo"), r.get("auc_reward_hi")),
               "episodes to threshold (median)": _median(r.get("episodes_to_threshold_median"),
                                                         r.get("episodes_to_threshold_median_lo"),
                                                         r.get("episodes_to_threshold_median_hi"),
                                                         r.get("episodes_budget")),
               "restricted mean": _ci(r.get("episodes_to_threshold"), r.get("episodes_to_threshold_lo"),
                                      r.get("episodes_to_threshold_hi")),
               "reached": _pct(r.get("reached_fraction")),
               "final reward": _ci(r.get("final_reward"), r.get("final_reward_lo"), r.get("final_reward_hi")),
               "diverged": _pct(r.get("diverged_fraction")),
               "variance": _num(r.get("var_total")),
               "s / episode": _num(r.get("seconds_per_episode"))}
        rows.append(row)
    show = pd.DataFrame(rows)
    ident = show[["rule", "width", "norm"]].astype(str).agg("|".join, axis=1)
    if ident.is_unique and "hidden" in cells and cells["hidden"].astype(str).nunique() == cells["width"].nunique():
        show = show.drop(columns="cell")  # rule, width and norm identify the cell: the key adds nothing
    sec.tables.append(("One row per cell at its tuned learning rate (intervals: " + pct + ")", show))
    warn = tuning_warnings(study)
    warn = warn[warn["warnings"] != ""]
    if len(warn):
        sec.text.append(f"Tuning warnings in {len(warn)} of {len(cells)} cells: the tuned learning rate is less "
                        "trustworthy there (see Tuning).")
    return sec


MAX_TUNING_FIGURES = 4


def _tuning_section(study: Study, table: pd.DataFrame) -> Section:
    sec = Section("tuning", "Tuning: how each cell's search went", False)
    params = table.attrs.get("params", []) if len(table) else []
    if not len(table) or not params:
        sec.text.append("Not shown: the study's spec names no searched hyperparameter, or no cell finished.")
        return sec
    sec.present = True
    obj, mode = table.attrs["objective"], table.attrs["mode"]
    sec.text.append(
        f"Each cell's search points against every searched hyperparameter, with the objective the searcher "
        f"optimised ({obj}, {'lower' if mode == 'min' else 'higher'} is better). Figures: Optuna's slice plot and "
        "optimisation history, rebuilt from the points in MLflow; each point's seeds are drawn beside it and the "
        "chosen value is dashed. A flat optimum reads as a plateau of points; a chosen value at the edge of the "
        "searched range means the optimum may lie outside it.")
    rows = []
    for _, r in table.iterrows():
        row = {"rule": r["rule_variant"], "width": _num(r["width"]),
               "norm": _num(r["outgoing_norm"]) if pd.notna(r["outgoing_norm"]) else "default"}
        for p in params:
            lo, hi = r[f"{p} min"], r[f"{p} max"]
            row[f"{p} tried"] = f"{_num(lo)} – {_num(hi)}" if np.isfinite(lo) else "–"
            row[f"{p} chosen"] = _num(r[p]) + (f" ({r[f'{p} edge']} edge)" if r[f"{p} edge"] else "")
        best, worst = r["objective_best"], r["objective_worst"]
        row["points"] = int(r["n_points"])
        row[f"{objective_label(obj)}: chosen"] = _num(r["objective"])
        row["best – worst point"] = f"{_num(best)} – {_num(worst)}" if np.isfinite(best) else "–"
        rows.append(row)
    show = pd.DataFrame(rows)
    if not table["confirmed"].any():
        sec.text.append("No cell has a confirm stage: each chosen point is reported on the seeds it was picked on "
                        "(optimistic).")
    few = table["n_points"] < MIN_TUNING_POINTS
    if few.any():
        sec.text.append(f"{int(few.sum())} of {len(table)} cells tried fewer than {MIN_TUNING_POINTS} points (TPE "
                        "samples its first points at random: close to random search).")
    sec.tables.append(("One row per cell: the values tried, the chosen value and the objective (warnings: "
                       "tuning.csv)", show))
    edge = table[[f"{p} edge" for p in params]].ne("").any(axis=1)
    if edge.any():
        sec.answer.append(("chosen value at the edge of the range tried",
                           f"{int(edge.sum())} of {len(table)} cells: " + ", ".join(
                               f"{r['rule_variant']} width {_num(r['width'])}"
                               + (f" norm {_num(r['outgoing_norm'])}" if pd.notna(r["outgoing_norm"]) else "")
                               for _, r in table[edge].iterrows())))
    else:
        sec.answer.append(("chosen value at the edge of the range tried", f"none of {len(table)} cells"))
    order = table.assign(_edge=edge.to_numpy()).sort_values("_edge", ascending=False, kind="stable")
    shown = 0
    for _, r in order.iterrows():
        if shown == MAX_TUNING_FIGURES:
            break
        if r["n_points"] < 2:
            continue    # one point: nothing to compare
        try:
            pair = tuning_figures(study, r["cell"])
        except ValueError:
            continue
        sec.figures.append((f"tuning_{shown + 1}", pair))
        shown += 1
    if shown < len(table):
        sec.text.append(f"Figures for {shown} of {len(table)} cells (those with a chosen value at an edge first, "
                        "none for cells with one point); the table holds all; analysis.tuning.tuning_figures draws any "
                        "cell.")
    return sec


def _curves_section(study: Study, tuned: pd.DataFrame) -> Section:
    sec = Section("curves", "Learning curves", False)
    has = (len(study.seed_curves) and (study.seed_curves["metric"] == "eval_reward").any()) or \
        ("eval_reward_mean" in set(study.curves["metric"]) if len(study.curves) else False)
    if not has or not len(tuned):
        sec.text.append("No eval-reward curves in this study.")
        return sec
    sec.present = True
    sec.text.append("Eval reward of the tuned trial(s) of every cell, pooled by rule, width and norm.")
    sec.figures.append(("learning_curves", F.learning_curves(study, tuned["run_id"])))
    return sec


def _variance_section(study: Study, vs: pd.DataFrame, corr: pd.DataFrame, level: float,
                      cells: pd.DataFrame | None = None) -> Section:
    sec = Section("variance_speed", "Variance versus speed", False)
    n_cells = vs.loc[vs["variance"].notna(), "cell"].nunique() if len(vs) else 0
    if n_cells < 3:
        sec.text.append("Not answerable from this study: it needs probe variances (probe.enabled) for at least "
                        "3 cells; " + ("no probe metrics were logged." if not len(vs) else
                                       f"only {n_cells} cell(s) have them."))
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
    sec.text.append(f"Variance measure: {'the noise-to-signal ratio V / (B ||mean||²), scale-free' if kind == 'nsr' else 'total variance (grows with the parameter count and the gradient scale: compare within a setting only)'}. "
                    "The answer pools Spearman's ρ within each setting (mean weighted by cells) with a bootstrap "
                    "that resamples whole cells within settings and, inside each draw, one set of seed numbers per "
                    "setting shared by its cells (seeds paired across rules); the raw correlation over all settings is shown "
                    "below but mixes settings, which can flip its sign.")
    ptotal = pooled[pooled["layer"] == "total"] if len(pooled) else pooled
    total = corr[(corr["layer"] == "total") & (corr["scope"] == "all rules")]
    if len(ptotal) and np.isfinite(ptotal["rho"].iloc[0]):
        r = ptotal.iloc[0]
        sec.answer.append((f"within settings, pooled over {int(r['n_settings'])} settings ({int(r['n_cells'])} cells)",
                           _rho_answer(r)))
        states = matched_state_correlations(study, level=level)
        for _, m in states[states["layer"] == "total"].iterrows():
            if np.isfinite(m["rho"]):
                sec.answer.append((f"on matched states ({m['state']}, {m['reached']:.0%} of seeds probed there)",
                                   f"ρ = {_ci(m['rho'], m['rho_lo'], m['rho_hi'], 2)}"))
        sec.text.append("Answer: " + "; ".join(f"{a}: {b}" for a, b in sec.answer) + ".")
        sec.tables.append(("Spearman's ρ within settings, pooled, per layer", pd.DataFrame({
            "layer": pooled["layer"], "settings": pooled["n_settings"], "cells": pooled["n_cells"],
            "ρ [interval]": [_ci(a, b, c, 2) for a, b, c in zip(pooled["rho"], pooled["rho_lo"], pooled["rho_hi"])],
            "interval excludes 0": (pooled["rho_lo"] > 0) | (pooled["rho_hi"] < 0)})))
        if len(states):
            sec.tables.append(("Spearman's ρ within settings on matched states (every rule on the same state: the "
                               "initial parameters, or each seed's state where its running reward first reached "
                               "the level), seeds paired", states))
    elif len(total) and np.isfinite(total["rho"].iloc[0]):
        r = total.iloc[0]
        sec.answer.append((f"all rules, all layers ({int(r['n'])} cells)",
                           _rho_answer(r)))
        within = corr[(corr["layer"] == "total") & (corr["scope"] != "all rules") & (corr["n"] >= 3)]
        for _, w in within.iterrows():
            sec.answer.append((f"within {w['scope']} ({int(w['n'])} cells)",
                               f"ρ = {_ci(w['rho'], w['rho_lo'], w['rho_hi'], 2)}"))
        sec.text.append("Answer: " + "; ".join(f"{a}: {b}" for a, b in sec.answer) + ".")
    show = corr.assign(**{"ρ [interval]": [_ci(a, b, c, 2) for a, b, c in zip(corr["rho"], corr["rho_lo"],
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
        sec.figures.append(("variance_vs_speed", F.variance_speed_figure(vs, corr, cells=cells)))
    except ValueError as exc:
        sec.text.append(f"(No figure: {exc}.)")
    return sec


def _scaling_section(study: Study, data: pd.DataFrame, fits: pd.DataFrame, comps: pd.DataFrame,
                     level: float) -> Section:
    sec = Section("scaling", "Scaling with width", False)
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
                        "power law's exponent is dragged towards 0 by the fixed cost); the verdict reads k's interval "
                        "and only when the fit is good and the power-law part is at least half the time at the "
                        "largest width.")
        if data.attrs.get("compute_source"):
            sec.text.append(f"Compute timings: {data.attrs['compute_source']}.")
        for _, r in cfits.iterrows():
            sec.text.append(f"Compute, {r['rule_variant']}" + (f" ({r['context']})" if r["context"] else "")
                            + f": {r['verdict']}.")
        sec.tables.append(("Compute fits t = a + b·width^k", cfits))
        cc = compare_compute(cobjs, level=level)
        source = (" (dedicated timing run)" if str(data.attrs.get("compute_source", "")).startswith("the dedicated")
                  else " (the study's own timings)")
        for _, r in cc.iterrows():
            sec.answer.append((f"compute, k(uwm) − k({r['reference']})" + (f", {r['context']}" if r["context"] else ""),
                               f"{_ci(r['difference'], r['difference_lo'], r['difference_hi'], 2)}: {r['verdict']}"
                               + source))
        ratio, trend = compute_ratio(data, level=level)
        if len(ratio):
            sec.tables.append(("Cost of uwm against each REINFORCE variant per width: ratio t_uwm / t_ref "
                               f"({level:.0%} interval, log scale, Welch) and the extra seconds per episode, also "
                               "per n² (flat where the extra work is O(n·n'))", ratio))
        for _, r in trend.iterrows():
            own = ratio.loc[(ratio["reference"] == r["reference"]) & (ratio["context"] == r["context"]), "ratio"]
            sec.answer.append((f"compute, t_uwm / t_{r['reference']}" + (f", {r['context']}" if r["context"] else ""),
                               f"ratio {own.min():.2f}–{own.max():.2f} over widths; "
                               f"slope of log ratio on log width {_ci(r['slope'], r['slope_lo'], r['slope_hi'], 2)}: "
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
                f"{r['rule_variant']} {_ci(r['exponent'], r['exponent_lo'], r['exponent_hi'], 3)}"
                for _, r in g.iterrows())))
    show = fits.assign(**{"b [interval]": [_ci(a, b, c, 3) for a, b, c in
                                           zip(fits["exponent"], fits["exponent_lo"], fits["exponent_hi"])],
                          "quantity": fits["quantity"].map(lambda q: QUANTITIES.get(q, q))})
    show = show[["quantity", "rule_variant", "context", "b [interval]", "method", "r2", "widths", "n_obs"]]
    show = show.assign(r2=show["r2"].map(lambda v: _num(v, 3))).rename(columns={"rule_variant": "rule",
                                                                                 "r2": "R²"})
    sec.tables.append(("Fitted exponents", show))
    if len(comps):
        c = comps.assign(**{"b − b_ref [interval]": [_ci(a, b, d, 3) for a, b, d in
                                                      zip(comps["difference"], comps["difference_lo"],
                                                          comps["difference_hi"])]})
        c = c[["quantity", "context", "rule_variant", "reference", "b − b_ref [interval]", "differs"]]
        c = c.assign(quantity=c["quantity"].map(lambda q: QUANTITIES.get(q, q)))
        sec.tables.append(("Exponents compared across rules (difference to the reference rule)", c))
    if data["context"].nunique() > 4:
        sec.text.append(f"The figure shows 4 of the {data['context'].nunique()} settings; the tables hold all.")
    try:
        sec.figures.append(("scaling", F.scaling_figure(data, fits)))
    except ValueError as exc:
        sec.text.append(f"(No figure: {exc}.)")
    return sec


def _pi_section(study: Study, table: pd.DataFrame, level: float,
                init: pd.DataFrame | None = None) -> Section:
    sec = Section("norm_stress", "The π boundary (outgoing-norm stress)", False)
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
        for _, r in ibd.iterrows():
            sec.answer.append((f"{r['label']}" + (f", {r['context']}" if r["context"] else ""), r["verdict"]))
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
        sec.tables.append(("Bias at initialisation per variant, norm and layer (every column: "
                           "norm_stress_init_bias.csv)", pd.DataFrame({
                               "rule": init["label"], "setting": init["context"],
                               "norm c": init["outgoing_norm"].map(_num), "layer": init["layer"],
                               "squared bias [interval]": [_ci(a, b, c, 2) for a, b, c in
                                                           zip(init["bias_sq"], init["bias_sq_lo"], init["bias_sq_hi"])],
                               "relative bias": init["relative_bias"].map(lambda v: _num(v, 2)),
                               "beyond radius": init["beyond_radius"].map(lambda v: _num(v, 2)),
                               "any bias (p)": [f"{'shown' if b else 'not shown'} ({_num(p, 2)})" for b, p in
                                                zip(init["biased"], init["p"])],
                               f"above {BREAKDOWN_RELATIVE_BIAS:.0%} (power)": [
                                   f"{'shown' if b else 'not shown'} ({_num(w, 2)})"
                                   for b, w in zip(init["broken"], init["power"])]})))
    else:
        sec.answer.append(("π boundary", verdict(None, unanswerable="the study logged no bias at initialisation; "
                                                 "the reward after tuning and training cannot test the radius")))
    show = pd.DataFrame({
        "rule": table["rule_variant"], "setting": table["context"], "norm c": table["outgoing_norm"].map(_num),
        "> π": table["above_pi"], "seeds": table["n_seeds"].map(_num),
        "diverged": [_ci(a, b, c, 2) for a, b, c in zip(table["diverged_rate"], table["diverged_rate_lo"],
                                                       table["diverged_rate_hi"])],
        "variance": [_ci(a, b, c, 3) for a, b, c in zip(table["variance"], table["variance_lo"],
                                                       table["variance_hi"])],
        "final reward": [_ci(a, b, c, 3) for a, b, c in zip(table["final_reward"], table["final_reward_lo"],
                                                           table["final_reward_hi"])]})
    if np.isfinite(table["bias"].to_numpy(float)).any():
        show.insert(7, "bias", [_ci(a, b, c, 3) for a, b, c in zip(table["bias"], table["bias_lo"], table["bias_hi"])])
    sec.tables.append(("Divergence, variance, bias (where measured) and final reward against the initial outgoing norm",
                       show))
    if table["context"].nunique() > 4:
        sec.text.append(f"The figure shows 4 of the {table['context'].nunique()} settings; the tables hold all.")
    try:
        sec.figures.append(("norm_stress", F.norm_stress_figure(table)))
    except ValueError as exc:
        sec.text.append(f"(No figure: {exc}.)")
    return sec


def _fastest_section(fast: pd.DataFrame, level: float) -> Section:
    sec = Section("fastest", "Which rule learns fastest?", bool(len(fast)))
    if not len(fast):
        sec.text.append("Not answerable from this study: it needs per-seed curves of tuned trials.")
        return sec
    sec.text.append(
        "Per setting, rules ranked by the Kaplan-Meier restricted mean of episodes to threshold (lower is faster; "
        f"censoring-aware, diverged seeds never reach it), with {level:.0%} bootstrap intervals of the difference to "
        "uwm that resample seeds jointly (paired: seed s of every rule starts from the same network and inputs).")
    for setting, g in fast.groupby("setting", sort=True):
        if not (g["reached_fraction"] > 0).any():
            sec.answer.append((setting if setting != "all" else "",
                               "not answerable: no seed of any rule reached the threshold within the budget "
                               f"({_num(g['rmst'].max())} episodes), so every rule stands at the budget"))
            continue
        g = g.sort_values(["rank", "rule_variant"])
        parts = []
        for _, r in g.iterrows():
            text = f"{int(r['rank'])}. {r['rule_variant']} {_num(r['rmst'])}"
            if np.isfinite(r["difference"]):
                sign = ("faster than uwm" if r["faster_than_reference"] else "slower than uwm"
                        if r["slower_than_reference"] else "not resolved from uwm")
                text += f" (Δ {_ci(r['difference'], r['difference_lo'], r['difference_hi'])}, {sign})"
            parts.append(text)
        sec.answer.append((setting if setting != "all" else "", "; ".join(parts)))
    sec.tables.append(("Ranking per setting, with paired differences to uwm", fast))
    return sec


def _lr_section(table: pd.DataFrame, cells: pd.DataFrame, level: float) -> Section:
    sec = Section("lr_sensitivity", "Learning-rate sensitivity", bool(len(table)))
    if not len(table):
        most = 0
        if len(cells):
            scalar = cells[~cells["lr_per_layer"].fillna(False).astype(bool)] if "lr_per_layer" in cells else cells
            per = scalar.assign(setting=setting_labels(scalar)).groupby(["rule_variant", "setting"])["lr"].nunique()
            most = int(per.max()) if len(per) else 0
        sec.text.append(f"Not answerable from this study: it needs a learning-rate grid (grid: lr: [...]) with at "
                        f"least {MIN_LRS} learning rates per rule and setting, each its own cell; this study's cells "
                        f"hold at most {most} per rule and setting (a searched learning rate gives each cell its "
                        "tuned rate only).")
        return sec
    measure = table["measure"].iloc[0]
    sec.text.append(
        f"Each rule's {'AUC reward' if measure == 'auc_reward' else measure} (mean over seeds, {level:.0%} bootstrap "
        "interval) at every learning rate of the grid. Best: the rate with the highest mean. Usable range: the rates "
        "whose result is not resolved worse than the best (their interval's upper bound reaches the best's lower "
        "bound); '≥' where it reaches the edge of the grid. Sharpness: the full width at half maximum (FWHM) in "
        "decades of learning rate, above the worst rate on the grid (half level = worst + (best − worst)/2), the "
        "crossings interpolated linearly in log10(lr) between grid points; '≥' (a lower bound) where the curve does "
        "not fall to half within the grid. A narrow FWHM means the rule's result depends sharply on the rate.")
    for _, r in table.iterrows():
        sec.answer.append((r["rule_variant"] + (f", {r['setting']}" if r["setting"] else ""),
                           answer_text(r, "AUC" if measure == "auc_reward" else measure)))
    show = pd.DataFrame({
        "rule": table["rule_variant"], "setting": table["setting"],
        "learning rates": [f"{n}: {_num(a)} – {_num(b)}" for n, a, b in zip(table["n_lrs"], table["lr_min"],
                                                                            table["lr_max"])],
        "best lr": [_num(v) + (" (edge)" if e else "") for v, e in zip(table["best_lr"], table["best_at_edge"])],
        "at best [interval]": [_ci(a, b, c) for a, b, c in zip(table["best"], table["best_lo"], table["best_hi"])],
        "usable learning rates": table["usable_lrs"],
        "usable span (decades)": [("≥ " if c else "") + _num(v, 2) for v, c in zip(table["usable_decades"],
                                                                                  table["usable_censored"])],
        "FWHM (decades)": [("≥ " if c else "") + _num(v, 2) for v, c in zip(table["fwhm_decades"],
                                                                           table["width_censored"])]})
    if not table["setting"].ne("").any():
        show = show.drop(columns="setting")
    sec.tables.append(("One row per rule (and setting) with a learning-rate grid (every column: lr_sensitivity.csv)",
                       show))
    try:
        sec.figures.append(("lr_sensitivity", F.lr_sensitivity_figure(table, cells, measure, level)))
    except ValueError as exc:
        sec.text.append(f"(No figure: {exc}.)")
    return sec


def _replication_section(table: pd.DataFrame) -> Section:
    sec = Section("replication", "Replication: mean training reward over all episodes", bool(len(table)))
    if not len(table):
        sec.text.append("This study did not log train_reward_all (the mean training reward over every episode).")
        return sec
    sec.text.append("train_reward_all at each seed's last report (the mean training reward over every episode it "
                    "trained), mean and standard deviation over seeds (ddof 0), beside the published figure where "
                    "one exists for the variant.")
    published = table[np.isfinite(table["published"].astype(float))]
    for _, r in published.iterrows():
        line = f"{r['rule_variant']}: {r['train_reward_all']:.3f} (std {r['std_ddof0']:.3f}, {int(r['n_seeds'])} seeds)"
        line += f"; published {r['published']:.2f} ({r['published_std']:.2f}), {r['source']}"
        if r["n_diverged"]:
            line += f"; {int(r['n_diverged'])} seeds diverged"
        rest = ", ".join(p for p in str(r["cell"]).split("|") if not p.startswith("rule="))
        sec.answer.append((f"{r['rule_variant']}" + (f", {rest}" if rest else ""), line.split(": ", 1)[1]))
    if not len(published):   # nothing to replicate: the per-cell figures stay in the table, out of the answers
        sec.text.append("No published figure exists for this study's variants: train_reward_all per cell is in the "
                        "table below.")
    sec.tables.append(("train_reward_all over seeds", table))
    return sec


def _methods(level: float, n_boot: int, seed: int) -> Section:
    sec = Section("methods", "Methods", True)
    sec.text += [
        "Tuned learning rate: within a cell, trials of stage 'confirm' are preferred; among the candidates the "
        "best by the study's objective is chosen and every candidate trial at that learning rate is pooled.",
        f"Intervals: percentile bootstrap over seeds (scipy.stats.bootstrap, {n_boot} resamples, seed {seed}, each "
        f"analysis on its own stream derived from its data) with the small-sample expansion of Hesterberg (2015), "
        f"nominal {level:.0%}; proportions use Wilson intervals (statsmodels); episodes to threshold Kaplan-Meier "
        "(statsmodels; median interval by Brookmeyer-Crowley, restricted mean by bootstrap); rank correlations "
        "within settings, pooled as a cell-weighted mean, with a bootstrap of whole cells and, inside it, of seeds paired across "
        "the rules of a setting; power-law exponents a bootstrap "
        "stratified by width or a t-interval; compute t = a + b·width^k (scipy curve_fit) with a stratified "
        "bootstrap and a lack-of-fit F-test against the replicate timings; the cost ratio t_uwm / t_ref per width "
        "on the log scale with Welch's degrees of freedom. Bias at initialisation: any bias by a sign-flip test over "
        "seeds of the split-half products (mean_A − exact)·(mean_B − exact), a relative bias above 10% by a "
        "one-sided t-test over seeds (Bonferroni over norms and layers, power by the noncentral t). Every test "
        "and interval is checked on simulated data in tests/test_calibration.py. Verdicts: 'shown' on a "
        "rejection; 'not shown (power p% against effect e)' on a non-rejection; 'not answerable (why)' where the "
        "design cannot say.",
        "Matched points of training: probe values are compared at the first report episode every trial shares "
        "(each trial's first report when they share none).",
        "Tables: the CSV files beside this report hold every number shown here and more (trials.csv, cells.csv, "
        "seed_speed.csv, tuning.csv, variance_speed*.csv, scaling*.csv, norm_stress*.csv, lr_sensitivity.csv).",
    ]
    return sec


# ----------------------------------------------------------------------------- analysis bundle


def analyse(study: Study, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0,
            progress: Callable[[str], None] | None = None) -> tuple[list[Section], dict[str, pd.DataFrame]]:
    """Run every analysis on a loaded study: the report's sections and the tables for CSV files."""
    say = progress or log.info
    tables: dict[str, pd.DataFrame] = {"trials": study.trials}
    say("speed per seed, trial and cell")
    seeds = seed_speed(study)
    tables["seed_speed"] = seeds
    cells = cell_summary(study, n_boot=n_boot, level=level, seed=seed, seeds=seeds)
    tables["cells"] = cells
    tuned = select_tuned(study)
    sections = [_overview(study, cells), _cell_section(study, cells, level)]
    say("tuning views")
    tables["tuning"] = tuning_table(study) if len(study.trials) else pd.DataFrame()
    sections += [_tuning_section(study, tables["tuning"]), _curves_section(study, tuned)]
    say("variance versus speed")
    vs = variance_speed_table(study, n_boot=n_boot, level=level, seed=seed)
    corr = variance_speed_correlations(vs, n_boot=n_boot, level=level, seed=seed)
    tables["variance_speed"], tables["variance_speed_correlations"] = vs, corr
    sections.append(_variance_section(study, vs, corr, level, cells))
    say("scaling with width")
    data = scaling_data(study)
    fits, fit_objs = scaling_fits(data, n_boot=n_boot, level=level, seed=seed)
    comps = compare_exponents(fit_objs, level=level)
    tables["scaling_data"], tables["scaling_fits"], tables["scaling_comparisons"] = data, fits, comps
    sections.append(_scaling_section(study, data, fits, comps, level))
    say("outgoing-norm stress")
    ns = norm_stress_table(study, n_boot=n_boot, level=level, seed=seed)
    bd = breakdown_norms(ns) if len(ns) else pd.DataFrame()
    tables["norm_stress"], tables["norm_stress_breakdown"] = ns, bd
    tables["norm_stress_init_bias"] = init = init_bias_table(study, level=level, seed=seed)
    sections.append(_pi_section(study, ns, level, init))
    say("fastest rule")
    fast = fastest_rules(study, n_boot=n_boot, level=level, seed=seed)
    tables["fastest"] = fast
    sections.append(_fastest_section(fast, level))
    say("learning-rate sensitivity")
    tables["lr_sensitivity"] = lrs = lr_sensitivity(cells)
    sections.append(_lr_section(lrs, cells, level))
    rep_table = replication_table(study)
    tables["replication"] = rep_table
    sections.append(_replication_section(rep_table))
    tables["accuracy"] = accuracies = rule_accuracies(study, level=level)
    if len(accuracies):   # a dataset study: each rule's test accuracy beside the reference points (analysis.reference)
        say("reference points")
        sections.append(Section("reference", "Test accuracy and reference points", True,
                                text=[(reference.__doc__ or "").split("\n\n")[0].replace("\n", " ")],
                                tables=reference_tables(accuracies, level)))
    sections.append(_methods(level, n_boot, seed))
    sections.insert(1, _answers(sections))
    return sections, tables


def _answers(sections: list[Section]) -> Section:
    """The study's questions, one row per question and setting, with the answers of their sections (or why
    they are open)."""
    by = {s.key: s for s in sections}
    sec = Section("answers", "Answers at a glance", True)
    rows = []
    for key, question in (("variance_speed", "Variance versus speed"), ("scaling", "Scaling with width"),
                          ("norm_stress", "The π boundary"), ("fastest", "Which rule learns fastest"),
                          ("lr_sensitivity", "Learning-rate sensitivity"),
                          ("replication", "Replication"), ("tuning", "Tuning")):
        s = by.get(key)
        if s is None:
            continue
        if not s.present:
            rows.append((question, "", "not answerable from this study (see its section)"))
            continue
        for a in s.answer or [("", "see its section")]:
            setting, text = a if isinstance(a, tuple) else ("", a)
            rows.append((question, setting, text))
    table = pd.DataFrame(rows, columns=["question", "setting", "answer"])
    if (table["setting"] == "").all():
        table = table.drop(columns="setting")
    sec.tables.append(("One row per question and setting; the sections below give the evidence", table))
    return sec


# ----------------------------------------------------------------------------- rendering

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;color:#222;
line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.8em}
.meta{color:#666;font-size:0.9em} .absent{color:#8a5a00;background:#fff8e6;padding:6px 10px;border-radius:4px}
table{border-collapse:collapse;font-size:0.82em;margin:8px 0 16px 0} caption{text-align:left;font-weight:600;
padding:4px 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} tr:nth-child(even) td{background:#fafafa} img{max-width:100%;height:auto;margin:8px 0}
nav a{margin-right:14px} .table-wrap{overflow-x:auto} figure{margin:8px 0 18px 0}
figcaption{color:#555;font-size:0.88em} .fig-row{display:flex;gap:8px;align-items:flex-start}
"""


def _figure_list(fig_or_row) -> list:
    return list(fig_or_row) if isinstance(fig_or_row, (tuple, list)) else [fig_or_row]


def _figure_files(stem: str, fig_or_row) -> list[tuple[str, object]]:
    """(file stem, Figure) of one entry of Section.figures: a figure, or a row of them (stem_a, stem_b, ...)."""
    figs = _figure_list(fig_or_row)
    return [(stem, figs[0])] if len(figs) == 1 else [(f"{stem}_{chr(97 + i)}", f) for i, f in enumerate(figs)]


def _caption_of(fig_or_row) -> str:
    return " · ".join(f.get_label() for f in _figure_list(fig_or_row) if f.get_label())


def _render_html(study: Study, sections: list[Section], fig_b64: dict[str, str]) -> str:
    e = html.escape
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>uwm-study report: {e(study.name)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Study report: {e(study.name)}</h1>",
           f"<p class='meta'>parent run {e(study.parent_run_id)} · experiment {e(str(study.experiment_id))} · "
           f"generated {now} · uwm-study analysis</p>",
           "<nav>" + "".join(f"<a href='#{s.key}'>{e(s.title)}</a>" for s in sections) + "</nav>"]
    for s in sections:
        out.append(f"<section id='{s.key}'><h2>{e(s.title)}</h2>")
        for p in s.text:
            cls = " class='absent'" if not s.present else ""
            out.append(f"<p{cls}>{e(p)}</p>")
        if s.bullets:
            out.append("<ul>")
            for i, b in enumerate(s.bullets):
                if b.startswith("    "):
                    continue
                subs = []
                for nxt in s.bullets[i + 1:]:
                    if not nxt.startswith("    "):
                        break
                    subs.append(nxt.strip())
                inner = "<ul>" + "".join(f"<li>{e(x)}</li>" for x in subs) + "</ul>" if subs else ""
                out.append(f"<li>{e(b)}{inner}</li>")
            out.append("</ul>")
        for caption, df in s.tables:
            table = _caption(df.to_html(index=False, escape=True, na_rep="–", border=0), caption)
            out.append(f"<div class='table-wrap'>{table}</div>")
        for stem, fig in s.figures:
            imgs = "".join(f"<img alt='{e(name)}' src='data:image/png;base64,{fig_b64[name]}'>"
                           for name, _ in _figure_files(stem, fig))
            if len(_figure_list(fig)) > 1:
                imgs = f"<div class='fig-row'>{imgs}</div>"
            cap = _caption_of(fig)
            out.append(f"<figure>{imgs}" + (f"<figcaption>{e(cap)}</figcaption>" if cap else "") + "</figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def _caption(table_html: str, caption: str) -> str:
    end = table_html.index(">") + 1
    return table_html[:end] + f"<caption>{html.escape(caption)}</caption>" + table_html[end:]


def _md_table(df: pd.DataFrame) -> str:
    def cell(v):
        s = "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v)
        return s.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _render_md(study: Study, sections: list[Section], fig_files: dict[str, str]) -> str:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = [f"# Study report: {study.name}", "",
           f"parent run `{study.parent_run_id}` · experiment `{study.experiment_id}` · generated {now}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for p in s.text:
            out += [("> " if not s.present else "") + p, ""]
        if s.bullets:
            out += [("  - " + b.strip()) if b.startswith("    ") else f"- {b}" for b in s.bullets] + [""]
        for caption, df in s.tables:
            out += [f"**{caption}**", "", _md_table(df), ""]
        for stem, fig in s.figures:
            out += [" ".join(f"![{name}]({fig_files[name]})" for name, _ in _figure_files(stem, fig)), ""]
            if _caption_of(fig):
                out += [f"*{_caption_of(fig)}*", ""]
    return "\n".join(out)


def _stderr_progress() -> Callable[[str], None]:
    import sys
    import time

    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] report: {message}", file=sys.stderr, flush=True)

    return say


def write_report(study_name: str, out_dir, fmt: str = "html", tracking_uri: str | None = None, *,
                 attach: bool = True, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0,
                 study: Study | None = None, progress: Callable[[str], None] | None = None,
                 analysis: tuple[list[Section], dict[str, pd.DataFrame]] | None = None) -> Path:
    """Write the report of a study and return the path of ``report.html`` / ``report.md``.

    Args:
        study_name: the study name (or its parent run id).
        out_dir: output directory (created); receives the report, CSV tables and, for Markdown,
            the figures as PNG files.
        fmt: "html" (self-contained: figures embedded as base64 PNG) or "md".
        tracking_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI`` / MLflow's default).
        attach: log ``out_dir`` as artifacts ``report/`` of the study's parent run.
        study: an already loaded study (skips loading).
        progress: called with a short message before each step (default: a timestamped line on stderr).
        analysis: the result of :func:`analyse` on ``study`` (skips the analyses: one study written in both
            formats is analysed once).

    Raises ``analysis.load.StudyNotFound`` (one line) if there is no such study, ValueError for a bad format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format '{fmt}'; valid: {', '.join(FORMATS)}")
    say = progress or _stderr_progress()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if study is None:
        say(f"loading study '{study_name}' from MLflow")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = load_study(study_name, tracking_uri)
    sections, tables = analysis or analyse(study, n_boot=n_boot, level=level, seed=seed, progress=say)
    say("writing tables and figures")
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv", index=False)
    import matplotlib.pyplot as plt

    figs = [pair for s in sections for stem, fig in s.figures for pair in _figure_files(stem, fig)]
    if fmt == "html":
        b64 = {stem: F.to_base64(fig) for stem, fig in figs}
        text = _render_html(study, sections, b64)
        path = out / "report.html"
    else:
        files = {}
        for stem, fig in figs:
            (out / f"{stem}.png").write_bytes(F.to_png_bytes(fig))
            files[stem] = f"{stem}.png"
        text = _render_md(study, sections, files)
        path = out / "report.md"
    for _, fig in figs:
        plt.close(fig)
    path.write_text(text, encoding="utf-8")
    if attach:
        say("attaching the report to the study's MLflow parent run (report/)")
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=study.tracking_uri).log_artifacts(study.parent_run_id, str(out),
                                                                   artifact_path="report")
    return path
