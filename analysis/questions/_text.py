"""Numbers as people read them: three significant figures, the interval in one cell, tables without
constant columns and with readable headers. Shared by every question and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd


def num(v, digits: int = 3) -> str:
    """A number at ``digits`` significant figures (thousands separated); integers exactly; '–' for none."""
    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}" if abs(v) >= 10000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        if 1000 <= abs(v) < 1e9:
            return f"{float(f'{v:.{digits}g}'):,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def ci(est, lo, hi, digits: int = 3) -> str:
    """'estimate [lo, hi]' in one cell ('–' without an estimate)."""
    if est is None or not np.isfinite(est):
        return "–"
    s = num(float(est), digits)
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        s += f" [{num(float(lo), digits)}, {num(float(hi), digits)}]"
    return s


def median(est, lo, hi, budget) -> str:
    """A Kaplan-Meier median: unknown (beyond the budget) when fewer than half the seeds reached it."""
    if est is None or (isinstance(est, float) and np.isinf(est)):
        return f"> {num(budget)} (not reached by half)" if budget is not None and np.isfinite(budget) else "not reached"
    text = num(est)
    if lo is not None and np.isfinite(lo):
        text += f" [{num(lo)}, {'∞' if hi is None or not np.isfinite(hi) else num(hi)}]"
    return text


def pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"


def for_people(df: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """A display copy: numbers at three significant figures, underscores out of the headers, columns that
    hold one value in every row dropped (``keep`` names ones to keep); the dropped ones, as they read, in
    ``attrs["constant"]`` (header → value) for the caption."""
    if not len(df):
        return df
    out = df.copy()
    constant = [c for c in out.columns if c not in keep and len(out) > 1
                and out[c].astype(str).nunique(dropna=False) == 1]
    same = {str(c).replace("_", " "): (num(out[c].iloc[0]) if isinstance(out[c].iloc[0], (float, np.floating))
                                       else str(out[c].iloc[0])) for c in constant}
    out = out.drop(columns=constant)
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(num)
    out = out.rename(columns=lambda c: str(c).replace("_", " "))
    out.attrs["constant"] = same
    return out


def caption_with_constants(caption: str, df: pd.DataFrame) -> str:
    """The caption, plus the columns :func:`for_people` dropped: 'same in every row: tuned lr 0.03'."""
    same = df.attrs.get("constant") or {}
    return caption + ("; same in every row: " + ", ".join(f"{k} {v}" for k, v in same.items()) if same else "")


def control_reward(study) -> str:
    """For a study of a control task (its trials' ``task.env``): what its reward axis is; '' for any other study."""
    t = study.trials
    if "task.env" not in t or not t["task.env"].notna().any():
        return ""
    envs = ", ".join(sorted(t["task.env"].dropna().astype(str).unique()))
    return (f"Control task ({envs}): a reward is an episode's return (the sum of its rewards), and the AUC reward is "
            "the average return over all episodes, Chung 2022's figure (the eval reward of a control task is the "
            "return of the episodes it trains on: it has no separate evaluation); the threshold is a running mean of "
            "100 returns (195 on CartPole, -100 on Acrobot unless the spec sets it).")
