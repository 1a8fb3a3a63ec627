"""Which rule learns fastest: rules ranked per setting by the Kaplan-Meier restricted mean of episodes to
threshold, with paired differences to uwm; the glance row names the tie groups ("uwm ≈ wm, ahead of
reinforce"). Works on any study with per-seed eval curves, control tasks included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import figures as F
from ..fastest import fastest_rules, ranked_seeds
from . import Answer, Context
from ._text import ci, control_reward, for_people, num

KEY, TITLE, ORDER = "fastest", "Which rule learns fastest?", 10


def answer(ctx: Context) -> Answer:
    s = ctx.settings
    fast = fastest_rules(ctx.study, n_boot=s.n_boot, level=s.level, seed=s.seed)
    a = _fastest_section(fast, s.level)
    if control_reward(ctx.study):
        a.text.append(control_reward(ctx.study))
    a.csv["fastest"] = fast
    if a.present:
        seeds = ranked_seeds(ctx.study)
        try:
            a.figures.append(("time_to_threshold", F.time_to_threshold_figure(
                seeds.drop_duplicates(["run_id", "seed"]).drop_duplicates(["setting", "rule_variant", "seed"]),
                F.threshold_of(ctx.study, seeds["run_id"].unique()))))
        except ValueError as exc:
            a.text.append(f"(No figure: {exc}.)")
    return a


def tie_groups(g: pd.DataFrame) -> str:
    """The ranking in resolved groups around the reference rule (uwm): 'ste, ahead of uwm ≈ wm, ahead of
    reinforce & hwm' (& : both resolved from uwm, not from each other). Rules whose paired difference to uwm is not resolved are tied with it (≈); without
    the reference in the setting, the order of the restricted means, unresolved."""
    ref = g["reference"].dropna().iloc[0] if g["reference"].notna().any() else None
    if ref is None or ref not in set(g["rule_variant"]):
        return " · ".join(g.sort_values("rank")["rule_variant"]) + " (order of means; no paired comparison)"
    faster = sorted(g.loc[g["faster_than_reference"].fillna(False).astype(bool), "rule_variant"])
    slower = sorted(g.loc[g["slower_than_reference"].fillna(False).astype(bool), "rule_variant"])
    tied = [ref] + sorted(set(g["rule_variant"]) - set(faster) - set(slower) - {ref})
    groups = [joint.join(x) for x, joint in ((faster, " & "), (tied, " ≈ "), (slower, " & ")) if x]
    return ", ahead of ".join(groups)


def _fastest_section(fast: pd.DataFrame, level: float) -> Answer:
    sec = Answer("fastest", "Which rule learns fastest?", bool(len(fast)))
    if not len(fast):
        sec.text.append("Not answerable from this study: it needs per-seed curves of tuned trials.")
        return sec
    sec.text.append(
        "Per setting, rules ranked by the Kaplan-Meier restricted mean of episodes to threshold (lower is faster; "
        f"censoring-aware, diverged seeds never reach it), with {level:.0%} bootstrap intervals of the difference to "
        "uwm that resample seeds jointly (paired: seed s of every rule starts from the same network and inputs).")
    groups = []   # the tie groups of each setting with a ranking
    for setting, g in fast.groupby("setting", sort=True):
        if not (g["reached_fraction"] > 0).any():
            sec.answer.append((setting if setting != "all" else "",
                               "not answerable: no seed of any rule reached the threshold within the budget "
                               f"({num(g['rmst'].max())} episodes), so every rule stands at the budget"))
            continue
        g = g.sort_values(["rank", "rule_variant"])
        parts = []
        for _, r in g.iterrows():
            text = f"{int(r['rank'])}. {r['rule_variant']} {num(r['rmst'])}"
            if np.isfinite(r["difference"]):
                sign = ("faster than uwm" if r["faster_than_reference"] else "slower than uwm"
                        if r["slower_than_reference"] else "not resolved from uwm")
                text += f" (Δ {ci(r['difference'], r['difference_lo'], r['difference_hi'])}, {sign})"
            parts.append(text)
        groups.append(tie_groups(g))
        sec.answer.append((setting if setting != "all" else "", groups[-1] + ": " + "; ".join(parts)))
    if groups:
        counts = pd.Series(groups).value_counts()
        sec.headline = "; ".join(f"{text} ({n} of {fast['setting'].nunique()} settings)" for text, n in counts.items())
    sec.tables.append(("Ranking per setting, with paired differences to uwm (episodes; every column: fastest.csv)",
                       _display(fast)))
    return sec


def _display(fast: pd.DataFrame) -> pd.DataFrame:
    """The ranking as people read it: the restricted mean and the difference each in one cell."""
    show = pd.DataFrame({
        "setting": fast["setting"], "rank": fast["rank"].map(lambda v: "–" if pd.isna(v) else str(int(v))),
        "rule": fast["rule_variant"],
        "restricted mean (episodes)": [ci(a, b, c) for a, b, c in zip(fast["rmst"], fast["rmst_lo"], fast["rmst_hi"])],
        "reached": fast["reached_fraction"].map(lambda v: "–" if pd.isna(v) else f"{v:.0%}"),
        "Δ to uwm (episodes)": [ci(a, b, c) for a, b, c in zip(fast["difference"], fast["difference_lo"],
                                                                fast["difference_hi"])]})
    return for_people(show, keep=("rank", "rule", "restricted mean (episodes)"))
