"""Tuning: how each cell's search went (the values tried, the chosen one, edges), with Optuna's plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..load import Study
from ..speed import MIN_TUNING_POINTS
from ..tuning import objective_label, tuning_figures, tuning_table
from . import Answer, Context
from ._text import num

KEY, TITLE, ORDER = "tuning", "Tuning: how each cell's search went", 90


def answer(ctx: Context) -> Answer:
    table = tuning_table(ctx.study) if len(ctx.study.trials) else pd.DataFrame()
    a = _tuning_section(ctx.study, table)
    a.csv["tuning"] = table
    return a


MAX_TUNING_FIGURES = 4


def _tuning_section(study: Study, table: pd.DataFrame) -> Answer:
    sec = Answer("tuning", "Tuning: how each cell's search went", False)
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
        row = {"rule": r["rule_variant"], "width": num(r["width"]),
               "norm": num(r["outgoing_norm"]) if pd.notna(r["outgoing_norm"]) else "default"}
        for p in params:
            lo, hi = r[f"{p} min"], r[f"{p} max"]
            row[f"{p} tried"] = f"{num(lo)} – {num(hi)}" if np.isfinite(lo) else "–"
            row[f"{p} chosen"] = num(r[p]) + (f" ({r[f'{p} edge']} edge)" if r[f"{p} edge"] else "")
        best, worst = r["objective_best"], r["objective_worst"]
        row["points"] = int(r["n_points"])
        row[f"{objective_label(obj)}: chosen"] = num(r["objective"])
        row["best – worst point"] = f"{num(best)} – {num(worst)}" if np.isfinite(best) else "–"
        rows.append(row)
    show = pd.DataFrame(rows)
    if not table["confirmed"].any():
        sec.text.append("No cell has a confirm stage: each chosen point is reported on the seeds it was picked on "
                        "(optimistic).")
    else:
        n = int(table["confirmed"].sum())
        sec.text.append(f"{n} of {len(table)} cells have a confirm stage: their chosen value and its objective are "
                        "the confirm points' (re-run on fresh seeds; the same point the study's summary, "
                        "best_per_cell.csv and uwm.best_point name), so the objective can fall outside the search "
                        "points' best – worst, which were measured on the search's seeds.")
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
                               f"{r['rule_variant']} width {num(r['width'])}"
                               + (f" norm {num(r['outgoing_norm'])}" if pd.notna(r["outgoing_norm"]) else "")
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
