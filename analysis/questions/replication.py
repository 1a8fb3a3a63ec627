"""Replication: each variant's mean training reward over all episodes beside the published figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..speed import replication_table
from . import Answer, Context

KEY, TITLE, ORDER = "replication", "Replication: mean training reward over all episodes", 5


def answer(ctx: Context) -> Answer:
    table = replication_table(ctx.study)
    a = _replication_section(table)
    a.csv["replication"] = table
    return a


def _replication_section(table: pd.DataFrame) -> Answer:
    sec = Answer("replication", "Replication: mean training reward over all episodes", bool(len(table)))
    if not len(table):
        sec.text.append("Not answerable from this study: it did not log train_reward_all (the mean training reward "
                        "over every episode).")
        return sec
    published = table[np.isfinite(table["published"].astype(float))]
    if not len(published):   # nothing to replicate: the per-cell figures stay in replication.csv
        sec.present = False
        sec.text.append("Not answerable from this study: no published figure exists for its variants "
                        "(train_reward_all per cell: replication.csv).")
        return sec
    sec.text.append("train_reward_all at each seed's last report (the mean training reward over every episode it "
                    "trained), mean and standard deviation over seeds (ddof 0), beside the published figure where "
                    "one exists for the variant.")
    for _, r in published.iterrows():
        line = f"{r['rule_variant']}: {r['train_reward_all']:.3f} (std {r['std_ddof0']:.3f}, {int(r['n_seeds'])} seeds)"
        line += f"; published {r['published']:.2f} ({r['published_std']:.2f}), {r['source']}"
        if r["n_diverged"]:
            line += f"; {int(r['n_diverged'])} seeds diverged"
        rest = ", ".join(p for p in str(r["cell"]).split("|") if not p.startswith("rule="))
        sec.answer.append((f"{r['rule_variant']}" + (f", {rest}" if rest else ""), line.split(": ", 1)[1]))
    sec.tables.append(("train_reward_all over seeds", table))
    return sec
