"""Learning-rate sensitivity: how sharply does each rule's result depend on the learning rate?

Read from the cells table (:func:`analysis.speed.cell_summary`) of a study whose grid sets the learning rate
(``grid: lr: [...]``): there each (rule, lr) is a cell of its own, with the measure's mean over seeds and its
interval. One row per rule variant and setting (the other grid axes: widths, norm, task, ...) that has at
least :data:`MIN_LRS` distinct scalar learning rates; cells with one learning rate per layer are left out
(their ``lr`` is a geometric mean, not a point of a one-dimensional curve). The measure is one where higher
is better (``auc_reward``, ``final_reward``).

Three readings of the curve measure(log10 lr):

``best``        the learning rate with the highest mean, with that cell's interval.
``usable``      the learning rates whose result is *not resolved worse* than the best (:func:`resolved_worse`:
                the best's mean minus the rate's exceeds the Games-Howell critical difference, the studentized
                range of all the grid's rates, so that under a flat truth *some* rate is resolved worse in at
                most 5 % of studies: the best is the maximum of the grid's means, and the old rule, "the rate's
                interval reaches the best's lower bound", narrowed a flat range in 13 %). A cell without an
                interval is never resolved worse. Its extent ``usable_decades = log10(max/min)`` over those
                rates; it may skip a rate in between (``n_usable`` says how many). ``usable_censored``: it
                includes the smallest or largest rate on the grid, so the range may go on beyond it.
``narrowing``   the verdict on "some rate is worse than the best" (the range narrower than the grid): "shown"
                where a rate is resolved worse; else "not shown (power p% against a rate 20 % below the best)"
                (:data:`NARROWING_EFFECT`, the power of one comparison of the best with a typical rate); "not
                answerable" where the best rate has no interval.
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

import functools
import math

import numpy as np
import pandas as pd

from .stats import DEFAULT_LEVEL, t_test_power
from .variance_speed import NON_SETTING, cell_axes
from .verdicts import verdict

MIN_LRS = 3
MEASURES = ("auc_reward", "final_reward")      # higher is better
COLUMNS = ["rule_variant", "setting", "measure", "n_lrs", "lr_min", "lr_max", "best_lr", "best", "best_lo",
           "best_hi", "best_at_edge", "worst", "half_level", "usable_lrs", "n_usable", "usable_lr_min",
           "usable_lr_max", "usable_decades", "usable_censored", "narrowing_shown", "narrowing_power", "narrowing",
           "fwhm_lr_lo", "fwhm_lr_hi", "fwhm_decades", "width_censored"]
NARROWING_EFFECT = 0.2   # the narrowing test's power is stated against a rate 20 % (of the best's size) below the best


def lr_sensitivity(cells: pd.DataFrame, measure: str = "auc_reward", level: float = DEFAULT_LEVEL) -> pd.DataFrame:
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
        seeds = g["n_seeds"].to_numpy(float) if "n_seeds" in g else np.full(len(g), np.nan)
        se = g[f"{measure}_se"].to_numpy(float) if f"{measure}_se" in g else None
        rows.append({"rule_variant": rule, "setting": setting, "measure": measure,
                     **curve_summary(g["lr"].to_numpy(float), g[measure].to_numpy(float),
                                     g[f"{measure}_lo"].to_numpy(float), g[f"{measure}_hi"].to_numpy(float),
                                     seeds, level, se)})
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


def cell_errors(lo: np.ndarray, hi: np.ndarray, n_seeds: np.ndarray, level: float = DEFAULT_LEVEL) -> np.ndarray:
    """Each cell's standard error of its mean, read back from its interval over ``n_seeds`` seeds, for a cells
    table without the seeds' own errors (``{measure}_se``, sd/√n): the expanded bootstrap intervals
    (analysis.stats.bootstrap_ci) reproduce the t-interval's width, mean ± t·se, so se = (hi - lo) / (2 t_{n-1}).
    Less exact: the narrowing's level under a flat truth is 8 % with errors read back from intervals of 300
    resamples, 5.5 % with the seeds' own (measured over 1 500 simulations). NaN without an interval or with
    fewer than 2 seeds."""
    from scipy.stats import t as student

    n = np.asarray(n_seeds, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        q = student.ppf(1 - (1 - level) / 2, np.where(n >= 2, n - 1, np.nan))
        return np.where(np.isfinite(lo) & np.isfinite(hi) & (n >= 2), (hi - lo) / (2 * q), np.nan)


def resolved_worse(value: np.ndarray, se: np.ndarray, n_seeds: np.ndarray, level: float = DEFAULT_LEVEL
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which rates are resolved worse than the best (the highest mean), by Games-Howell comparisons with it:
    ``best - value_j > q · sqrt((se_best² + se_j²) / 2)``, q the studentized range's ``level`` quantile for
    all the grid's rates and the pair's Welch degrees of freedom. Under a flat truth the largest gap, the best
    against the worst, is the range of the grid's means, so some rate is resolved worse in about 1 - level of
    studies whichever rate won (tests/test_calibration.py). Returns (worse, critical, df) per rate: the
    critical value ``q/√2`` and the degrees of freedom of each rate's comparison (NaN at the best and where a
    cell has no error)."""
    ib = int(np.argmax(value))
    pair = se ** 2 + se[ib] ** 2
    n = np.asarray(n_seeds, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = pair ** 2 / (se ** 4 / (n - 1) + se[ib] ** 4 / (n[ib] - 1))
        df[ib] = np.nan
        ok = np.isfinite(df) & (pair > 0)
        crit = np.full(value.size, np.nan)
        crit[ok] = [studentized_range_quantile(level, value.size, d) / math.sqrt(2) for d in df[ok]]
        worse = ok & (value[ib] - value > crit * np.sqrt(pair))
    return worse, crit, df


@functools.lru_cache(maxsize=1024)
def _range_quantile(level: float, k: int, df: int) -> float:
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(level, k, df))


def studentized_range_quantile(level: float, k: int, df: float) -> float:
    """The studentized range's ``level`` quantile for ``k`` means at ``df`` degrees of freedom rounded down
    (conservative) and capped at 1 000 (beyond, it no longer changes): scipy integrates numerically, 0.2-0.4 s a
    call, so whole degrees of freedom are cached."""
    return _range_quantile(float(level), int(k), int(min(max(math.floor(df + 1e-9), 1), 1000)))


def narrowing_verdict(value: np.ndarray, se: np.ndarray, worse: np.ndarray, crit: np.ndarray, df: np.ndarray
                      ) -> tuple[bool, float, str]:
    """(shown, power, verdict) on "some rate is worse than the best" from :func:`resolved_worse`'s output: the
    power is that of the best's comparison with the median rate (its error and degrees of freedom) against a
    rate :data:`NARROWING_EFFECT` of the best's size below it (a noncentral t at the Games-Howell critical
    value, one comparison: the test of the whole grid has at least this power)."""
    from scipy.stats import nct

    ib = int(np.argmax(value))
    effect = f"a rate {NARROWING_EFFECT:.0%} below the best"
    if not np.isfinite(se[ib]) or not np.isfinite(df).any():
        return False, math.nan, verdict(None, unanswerable="the best rate has no interval over seeds")
    j = np.flatnonzero(np.isfinite(df))
    j = j[np.argsort(se[j])][len(j) // 2]
    ncp = NARROWING_EFFECT * abs(value[ib]) / math.sqrt(se[ib] ** 2 + se[j] ** 2) if se[ib] + se[j] > 0 else math.inf
    power = float(nct.sf(crit[j], df[j], ncp)) if math.isfinite(ncp) else 1.0
    shown = bool(worse.any())
    return shown, power, verdict(shown, power, effect)


def curve_summary(lr: np.ndarray, value: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_seeds: np.ndarray,
                  level: float = DEFAULT_LEVEL, se: np.ndarray | None = None) -> dict:
    """Best rate, usable range (with the narrowing verdict) and FWHM of one curve: ``value`` (mean over
    ``n_seeds`` seeds) with interval ``[lo, hi]`` and standard error ``se`` (sd/√n over the seeds; where
    absent, read back from the interval by :func:`cell_errors`) at the learning rates ``lr`` (ascending,
    distinct)."""
    x = np.log10(lr)
    ib = int(np.argmax(value))
    best, worst = float(value[ib]), float(value.min())
    se = cell_errors(lo, hi, n_seeds, level) if se is None else np.asarray(se, dtype=np.float64)
    worse, crit, df = resolved_worse(value, se, n_seeds, level)
    shown, power, narrowing = narrowing_verdict(value, se, worse, crit, df)
    usable = ~worse
    usable_lr = lr[usable]
    half = worst + (best - worst) / 2
    left, right, censored = half_crossings(x, value, ib, half)
    return {"n_lrs": int(np.unique(lr).size), "lr_min": float(lr[0]), "lr_max": float(lr[-1]),
            "best_lr": float(lr[ib]), "best": best, "best_lo": float(lo[ib]), "best_hi": float(hi[ib]),
            "best_at_edge": bool(ib in (0, lr.size - 1)), "worst": worst, "half_level": half,
            "usable_lrs": ", ".join(f"{v:g}" for v in usable_lr), "n_usable": int(usable.sum()),
            "usable_lr_min": float(usable_lr.min()), "usable_lr_max": float(usable_lr.max()),
            "usable_decades": float(np.log10(usable_lr.max() / usable_lr.min())),
            "usable_censored": bool(usable[0] or usable[-1]), "narrowing_shown": shown, "narrowing_power": power,
            "narrowing": narrowing,
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
    text += f"; narrower than the grid: {r['narrowing']}"
    text += f"; FWHM {'≥ ' if r['width_censored'] else ''}{r['fwhm_decades']:.2g} decades"
    return text
