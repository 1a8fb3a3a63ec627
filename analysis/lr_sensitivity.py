"""Learning-rate sensitivity: how sharply does each rule's result depend on the learning rate?

Read from the cells table (:func:`analysis.speed.cell_summary`) of a study whose grid sets the learning rate
(``grid: lr: [...]``): there each (rule, lr) is a cell of its own, with the measure's mean over seeds and its
interval. One row per rule variant and setting (the other grid axes: widths, norm, task, ...) that has at
least :data:`MIN_LRS` distinct scalar learning rates; cells with one learning rate per layer are left out
(their ``lr`` is a geometric mean, not a point of a one-dimensional curve). The measure is one where higher
is better (``auc_reward``, ``final_reward``).

Three readings of the curve measure(log10 lr):

``best``        the learning rate with the highest mean, with that cell's interval.
``usable``      the learning rates whose result is *not resolved worse* than the best: their interval's upper
                bound reaches the best's lower bound (``hi >= best_lo``; a cell without an interval uses its
                mean). Its extent ``usable_decades = log10(max/min)`` over those rates; it may skip a rate in
                between (``n_usable`` says how many). ``usable_censored``: it includes the smallest or largest
                rate on the grid, so the range may go on beyond it.
``FWHM``        the full width at half maximum in decades of lr, above the *worst* rate on the grid: the
                half level is ``worst + (best - worst) / 2``; on each side of the best, the nearest grid
                interval where the mean falls to that level is located and the crossing found by linear
                interpolation in log10(lr) between its two rates. Where the mean does not fall to half
                within the grid on a side, the grid's edge stands in and ``width_censored`` is true: the width
                is then a lower bound (">=" in text). A curve that is flat (best == worst) is censored on both
                sides. The width comes from the means alone (no interval); the usable range carries the
                uncertainty of each point.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .variance_speed import NON_SETTING, cell_axes

MIN_LRS = 3
MEASURES = ("auc_reward", "final_reward")      # higher is better
COLUMNS = ["rule_variant", "setting", "measure", "n_lrs", "lr_min", "lr_max", "best_lr", "best", "best_lo",
           "best_hi", "best_at_edge", "worst", "half_level", "usable_lrs", "n_usable", "usable_lr_min",
           "usable_lr_max", "usable_decades", "usable_censored", "fwhm_lr_lo", "fwhm_lr_hi", "fwhm_decades",
           "width_censored"]


def lr_sensitivity(cells: pd.DataFrame, measure: str = "auc_reward") -> pd.DataFrame:
    """One row per (rule variant, setting) with at least :data:`MIN_LRS` scalar learning rates: the best
    rate with its interval, the usable range and the FWHM of ``measure`` over log10(lr) (see the module's
    docstring for the definitions). Empty (with the columns) when no rule has such a grid."""
    if measure not in MEASURES:
        raise ValueError(f"unknown lr-sensitivity measure '{measure}'; valid: {', '.join(MEASURES)}")
    if not len(cells) or measure not in cells:
        return pd.DataFrame(columns=COLUMNS)
    scalar = ~cells["lr_per_layer"].fillna(False).astype(bool) if "lr_per_layer" in cells else True
    d = cells[scalar & (cells["lr"] > 0) & np.isfinite(cells[measure].astype(float))]
    d = d.assign(setting=setting_labels(d))
    rows = []
    for (rule, setting), g in d.groupby(["rule_variant", "setting"], sort=True):
        g = g.sort_values("lr")
        if g["lr"].nunique() < MIN_LRS:
            continue
        rows.append({"rule_variant": rule, "setting": setting, "measure": measure,
                     **curve_summary(g["lr"].to_numpy(float), g[measure].to_numpy(float),
                                     g[f"{measure}_lo"].to_numpy(float), g[f"{measure}_hi"].to_numpy(float))})
    return pd.DataFrame(rows, columns=COLUMNS)


def setting_labels(cells: pd.DataFrame) -> pd.Series:
    """Each cell's setting apart from its rule and learning rate, as ``axis=value, ...`` over the axes that
    vary (the cell key's other axes, widths and outgoing norm); "" when nothing else varies."""
    axes = cell_axes(cells)
    axes = axes[[c for c in axes.columns if c not in NON_SETTING and not c.startswith(("rule_options", "lr"))]]
    if "hidden" in cells:          # the cells' own columns, where a cell key may leave them out
        axes = axes.assign(hidden=cells["hidden"].astype(str))
    if "outgoing_norm" in cells:
        axes = axes.assign(outgoing_norm=cells["outgoing_norm"].map(lambda v: "default" if pd.isna(v) else f"{v:g}"))
    varying = [c for c in axes.columns if axes[c].astype(str).nunique(dropna=False) > 1]
    if not varying:
        return pd.Series("", index=cells.index, dtype=object)
    return axes[varying].astype(str).apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)


def curve_summary(lr: np.ndarray, value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict:
    """Best rate, usable range and FWHM of one curve: ``value`` (mean) with interval ``[lo, hi]`` at the
    learning rates ``lr`` (ascending, distinct)."""
    x = np.log10(lr)
    ib = int(np.argmax(value))
    best, worst = float(value[ib]), float(value.min())
    floor = lo[ib] if np.isfinite(lo[ib]) else best
    usable = np.where(np.isfinite(hi), hi, value) >= floor
    usable_lr = lr[usable]
    half = worst + (best - worst) / 2
    left, right, censored = half_crossings(x, value, ib, half)
    return {"n_lrs": int(np.unique(lr).size), "lr_min": float(lr[0]), "lr_max": float(lr[-1]),
            "best_lr": float(lr[ib]), "best": best, "best_lo": float(lo[ib]), "best_hi": float(hi[ib]),
            "best_at_edge": bool(ib in (0, lr.size - 1)), "worst": worst, "half_level": half,
            "usable_lrs": ", ".join(f"{v:g}" for v in usable_lr), "n_usable": int(usable.sum()),
            "usable_lr_min": float(usable_lr.min()), "usable_lr_max": float(usable_lr.max()),
            "usable_decades": float(np.log10(usable_lr.max() / usable_lr.min())),
            "usable_censored": bool(usable[0] or usable[-1]),
            "fwhm_lr_lo": float(10 ** left), "fwhm_lr_hi": float(10 ** right), "fwhm_decades": float(right - left),
            "width_censored": censored}


def half_crossings(x: np.ndarray, y: np.ndarray, ib: int, half: float) -> tuple[float, float, bool]:
    """Where ``y`` (over ascending ``x``) first falls to ``half`` on each side of its maximum at ``ib``,
    interpolated linearly between the grid points around the crossing; the grid's edge (and censored =
    True) on a side where it does not fall that far. A flat curve is censored on both sides."""
    if not y[ib] > half:
        return float(x[0]), float(x[-1]), True
    below_left = np.flatnonzero(y[:ib] <= half)
    below_right = ib + 1 + np.flatnonzero(y[ib + 1:] <= half)
    if len(below_left):
        i = below_left[-1]           # y[i] <= half < y[i + 1]
        left = x[i] + (half - y[i]) / (y[i + 1] - y[i]) * (x[i + 1] - x[i])
    else:
        left = x[0]
    if len(below_right):
        j = below_right[0]           # y[j - 1] > half >= y[j]
        right = x[j - 1] + (y[j - 1] - half) / (y[j - 1] - y[j]) * (x[j] - x[j - 1])
    else:
        right = x[-1]
    return float(left), float(right), not (len(below_left) and len(below_right))


def answer_text(r, measure_name: str = "AUC") -> str:
    """One line of the report's answers: best lr with its interval, usable range, FWHM."""
    def num(v):
        return f"{v:.3g}"

    text = (f"best lr {num(r['best_lr'])}" + (" (edge of the grid)" if r["best_at_edge"] else "")
            + f" ({measure_name} {num(r['best'])}"
            + (f" [{num(r['best_lo'])}, {num(r['best_hi'])}]" if math.isfinite(r["best_lo"]) else "")
            + "; picked and scored on the same seeds, so it leans high)")
    ge = "≥ " if r["usable_censored"] else ""
    if r["n_usable"] == 1:
        text += f"; usable {num(r['best_lr'])} only"
    else:
        text += (f"; usable {num(r['usable_lr_min'])}–{num(r['usable_lr_max'])} ({ge}{r['usable_decades']:.2g} "
                 f"decades)")
    text += f"; FWHM {'≥ ' if r['width_censored'] else ''}{r['fwhm_decades']:.2g} decades"
    return text
