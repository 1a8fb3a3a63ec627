"""Learning-rate sensitivity: on a learning-rate grid, each rule's best rate, usable range and FWHM."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import figures as F
from ..lr_sensitivity import MIN_LRS, NARROWING_EFFECT, answer_text, lr_sensitivity, setting_labels
from . import Answer, Context
from ._text import ci, num

KEY, TITLE, ORDER = "lr_sensitivity", "Learning-rate sensitivity", 20


def answer(ctx: Context) -> Answer:
    table = lr_sensitivity(ctx.cells, level=ctx.level)
    a = _lr_section(table, ctx.cells, ctx.level)
    a.csv["lr_sensitivity"] = table
    return a


def _lr_section(table: pd.DataFrame, cells: pd.DataFrame, level: float) -> Answer:
    sec = Answer("lr_sensitivity", "Learning-rate sensitivity", bool(len(table)))
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
        "whose result is not resolved worse than the best by a Games-Howell comparison (the best's mean minus the "
        "rate's against the studentized range of all the grid's rates, each cell's error read from its interval): "
        "the best is the largest of the grid's means, so a flat curve would otherwise look narrower than it is; "
        "with this test a flat truth is narrowed in at most 5 % of studies. '≥' where the range reaches the edge "
        "of the grid. 'Narrower than the grid' is shown where some rate is resolved worse; not shown, with the "
        f"power of one comparison against a rate {NARROWING_EFFECT:.0%} below the best; not answerable where the "
        "best rate has no interval. Sharpness: the full width at half maximum (FWHM) in "
        "decades of learning rate, above the worst rate on the grid (half level = worst + (best − worst)/2), the "
        "crossings interpolated linearly in log10(lr) between grid points; '≥' (a lower bound) where the curve does "
        "not fall to half within the grid. A narrow FWHM means the rule's result depends sharply on the rate.")
    for _, r in table.iterrows():
        sec.answer.append((r["rule_variant"] + (f", {r['setting']}" if r["setting"] else ""),
                           answer_text(r, "AUC" if measure == "auc_reward" else measure)))
    show = pd.DataFrame({
        "rule": table["rule_variant"], "setting": table["setting"],
        "learning rates": [f"{n}: {num(a)} – {num(b)}" for n, a, b in zip(table["n_lrs"], table["lr_min"],
                                                                            table["lr_max"])],
        "best lr": [num(v) + (" (edge)" if e else "") for v, e in zip(table["best_lr"], table["best_at_edge"])],
        "at best [interval]": [ci(a, b, c) for a, b, c in zip(table["best"], table["best_lo"], table["best_hi"])],
        "usable learning rates": table["usable_lrs"],
        "usable span (decades)": [("≥ " if c else "") + num(v, 2) for v, c in zip(table["usable_decades"],
                                                                                  table["usable_censored"])],
        "narrower than the grid": table["narrowing"],
        "FWHM (decades)": [("≥ " if c else "") + num(v, 2) for v, c in zip(table["fwhm_decades"],
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
