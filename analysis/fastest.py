"""Which rule learns fastest? A ranking per setting with paired differences against uwm.

Within each setting (every grid axis but the rule: widths, norm, task, ...), each rule variant is
taken at its tuned learning rate (confirm-stage trials when the study has them, see
:func:`analysis.speed.select_tuned`) and its speed is the Kaplan-Meier restricted mean of episodes to
threshold up to the budget (censoring-aware; diverged seeds never reach it, :mod:`analysis.speed`):
lower is faster. Rules are ranked by it. Against the reference rule (uwm), the difference
``RMST(rule) - RMST(uwm)`` gets a bootstrap interval that resamples *seeds jointly*: seed ``s`` of
every rule in a setting starts from the same initial network and input stream, so the pairs share
their luck and the paired interval is the honest (and narrower) one. Rules whose seeds cannot be
paired (different seed sets) are resampled independently, and the table says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .load import Study
from .speed import seed_speed, select_tuned
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL, expanded_alpha, generator, km_rmst, km_summary
from .variance_speed import setting_columns, setting_text

REFERENCE = "uwm"
COLUMNS = ["setting", "rank", "rule_variant", "n_seeds", "rmst", "rmst_lo", "rmst_hi", "reached_fraction",
           "reference", "difference", "difference_lo", "difference_hi", "paired", "faster_than_reference",
           "slower_than_reference"]


def ranked_seeds(study: Study) -> pd.DataFrame:
    """The seeds the ranking reads: every seed of each cell's tuned trial(s) (:func:`analysis.speed.seed_speed`
    columns) with its ``rule_variant`` and ``setting`` (the varying axes other than the rule, "all" when none)."""
    tuned = select_tuned(study)
    seeds = seed_speed(study)
    if not len(tuned) or not len(seeds):
        return seeds.assign(rule_variant=pd.Series(dtype=object), setting=pd.Series(dtype=object))
    cols = [c for c in setting_columns(tuned) if c not in ("rule", "rule_variant")]
    tuned = tuned.assign(setting=setting_text(tuned, cols, ", ") if cols else "all")
    return seeds.merge(tuned[["run_id", "rule_variant", "setting"]], on="run_id")


def fastest_rules(study: Study, reference: str = REFERENCE, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL,
                  seed: int = 0) -> pd.DataFrame:
    """One row per (setting, rule variant), ranked by restricted mean episodes to threshold (1 = fastest;
    equal means share a rank; NaN in a setting where no seed of any rule reached the threshold), with the
    paired bootstrap difference to ``reference`` (NaN for the reference itself or when the setting lacks it).
    ``faster_than_reference``/``slower_...``: the interval excludes 0 that way."""
    s = ranked_seeds(study)
    if not len(s):
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for setting, g in s.groupby("setting", sort=True):
        tau = float(g["budget"].max())
        per_rule = {r: h.drop_duplicates("seed").set_index("seed") for r, h in g.groupby("rule_variant")}
        ref = per_rule.get(reference)
        out = []
        for rule, h in per_rule.items():
            km = km_summary(h["episodes_to_threshold"], h["reached"], tau, n_boot=n_boot, level=level, seed=seed)
            row = {"setting": setting, "rule_variant": rule, "n_seeds": len(h), "rmst": km.rmst, "rmst_lo": km.rmst_lo,
                   "rmst_hi": km.rmst_hi, "reached_fraction": float(h["reached"].mean()), "reference": reference}
            row.update(_difference(h, ref, tau, n_boot, level, seed) if ref is not None and rule != reference
                       else {"difference": math.nan, "difference_lo": math.nan, "difference_hi": math.nan,
                             "paired": False})
            out.append(row)
        out.sort(key=lambda r: r["rmst"])
        # rules that never reached the threshold all stand at the budget: tied, not ranked by their order
        # here; and where no rule reached it, nothing is ranked (NaN): the study cannot tell which is faster
        anyone_reached = any(r["reached_fraction"] > 0 for r in out)
        for r in out:
            r["rank"] = 1 + sum(o["rmst"] < r["rmst"] for o in out) if anyone_reached else math.nan
            r["faster_than_reference"] = bool(r["difference_hi"] < 0)
            r["slower_than_reference"] = bool(r["difference_lo"] > 0)
        rows += out
    return pd.DataFrame(rows, columns=COLUMNS)


def _difference(rule: pd.DataFrame, ref: pd.DataFrame, tau: float, n_boot: int, level: float, seed: int) -> dict:
    """RMST(rule) - RMST(ref) with a bootstrap interval: seeds resampled jointly when both have the same
    seeds (paired), else each independently."""
    t_a, e_a = rule["episodes_to_threshold"].to_numpy(float), rule["reached"].to_numpy(bool)
    t_b, e_b = ref["episodes_to_threshold"].to_numpy(float), ref["reached"].to_numpy(bool)
    d = float(km_rmst(t_a, e_a, tau) - km_rmst(t_b, e_b, tau))
    paired = set(rule.index) == set(ref.index)
    rng = generator(seed, t_a, e_a, np.resize(t_b, t_a.size), np.resize(e_b, t_a.size))
    # a joint resample of the seed indices: scipy.stats.bootstrap(paired=True) does the same, but it cannot
    # resample two unequal groups independently in one call; the index draw is kept here for both cases
    if paired:
        b = ref.loc[rule.index]
        t_b, e_b = b["episodes_to_threshold"].to_numpy(float), b["reached"].to_numpy(bool)
        idx = rng.integers(0, t_a.size, (n_boot, t_a.size))
        idx_b = idx
    else:
        idx = rng.integers(0, t_a.size, (n_boot, t_a.size))
        idx_b = rng.integers(0, t_b.size, (n_boot, t_b.size))
    diff = km_rmst(t_a[idx], e_a[idx], tau) - km_rmst(t_b[idx_b], e_b[idx_b], tau)
    a = expanded_alpha(min(t_a.size, t_b.size), level)
    lo, hi = np.quantile(diff, [a, 1 - a]) if min(t_a.size, t_b.size) > 1 else (math.nan, math.nan)
    return {"difference": d, "difference_lo": float(lo), "difference_hi": float(hi), "paired": paired}
