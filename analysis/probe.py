"""Estimator-probe metrics: parse their names and read them at matched points of training.

Probe metric names (per seed; aggregates add ``_mean``/``_std``/``_sem``):
``probe_var_l{l}``, ``probe_mean_sq_l{l}``, ``probe_bias_l{l}`` for the trained rule, and
``probe_{label}_var_l{l}`` ... for the cross-rule probe (several rules evaluated on the same
episodes and parameter state), and the same names prefixed ``init_`` for the probe of the initial
parameters (episode 0, before any update; repeated in every report), and prefixed
``at_reward_{level}_`` for the probe of each member's state where its running reward first reached
``level`` (``probe.reward_levels``; repeated in every later report). Kinds are those of
``uwm_model.metrics.PROBE_KINDS`` (``var``, ``mean_sq``, ``bias``, ``bias_sq``, ``bias_sq_se``,
``cos``, ``nsr``). ``var`` is the total per-sample variance of the layer's
estimates (weights and bias), in squared reward-gradient units (docs/learning-rules.md, section 7).

*Matched points of training*: probe values are compared across trials at the same episode.
``at`` selects it:

- ``None`` (default): the first episode at which every trial in question has a probe value
  (falls back to each trial's first report when they share none);
- ``"first"`` / ``"last"``: each trial's first / last report;
- an ``int``: per trial, the last report at or before that episode (else its first report);
- a ``float`` in (0, 1]: that fraction of each trial's episode budget, then as for an int.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from uwm_model.metrics import AGGREGATES, PROBE_RE   # the trainer's metric registry (torch-free)

AGG_SUFFIXES = tuple(f"_{kind}" for kind in AGGREGATES)


def parse_probe_metric(name: str, aggregate: str | None = "_mean") -> dict[str, Any] | None:
    """``{"label": str|None, "kind": str, "layer": int, "init": bool, "level": float|None}`` for a probe
    metric name, or None (``level``: the reward level of an ``at_reward_{level}_`` probe).

    With ``aggregate`` (default ``"_mean"``) the name must end with it (aggregate metrics); with
    ``None`` the name is a per-seed base name.
    """
    base = name
    if aggregate is not None:
        if not name.endswith(aggregate):
            return None
        base = name[: -len(aggregate)]
    m = PROBE_RE.match(base)
    if not m:
        return None
    return {"label": m["label"], "kind": m["kind"], "layer": int(m["layer"]), "init": bool(m["init"]),
            "level": float(m["level"]) if m["level"] else None}


def probe_index(names, aggregate: str | None = "_mean") -> pd.DataFrame:
    """Table of the probe metrics among ``names``: metric, label (None = the trained rule's own probe),
    kind, layer."""
    rows = []
    for n in names:
        p = parse_probe_metric(n, aggregate)
        if p is not None:
            rows.append({"metric": n, **p})
    return pd.DataFrame(rows, columns=["metric", "label", "kind", "layer", "init", "level"])


def cross_rule_labels(study) -> list[str]:
    """Labels of the cross-rule probe present in the study (empty when no trial ran it)."""
    idx = probe_index(study.metrics)
    return sorted(idx["label"].dropna().unique()) if len(idx) else []


def reward_levels(study) -> list[float]:
    """The reward levels at which the study's trials probed (``probe.reward_levels``), ascending."""
    idx = probe_index(study.metrics)
    return sorted(idx["level"].dropna().unique().tolist()) if len(idx) else []


def select_episode(df: pd.DataFrame, at=None, budgets: pd.Series | None = None) -> tuple[pd.DataFrame, str]:
    """Rows of a long table (columns run_id, episode, ...) at each run's matched episode (see module
    docstring). Returns the rows and a sentence describing the choice, for reports."""
    if not len(df):
        return df, "no probe values"
    eps = df[["run_id", "episode"]].drop_duplicates()
    if at is None:
        sets = eps.groupby("run_id")["episode"].apply(set)
        common = set.intersection(*sets.tolist()) if len(sets) else set()
        if common:
            e = min(common)
            return df[df["episode"] == e], f"episode {e:,} (the first report every trial has)"
        at = "first"
        why = "each trial's first report (the trials share no report episode)"
    else:
        why = None
    if at == "first":
        chosen = eps.groupby("run_id")["episode"].min()
        why = why or "each trial's first report"
    elif at == "last":
        chosen = eps.groupby("run_id")["episode"].max()
        why = "each trial's last report"
    elif isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        chosen = _at_or_before(eps, pd.Series(int(at), index=eps["run_id"].unique()))
        why = f"the last report at or before episode {int(at):,}"
    elif isinstance(at, float) and 0 < at <= 1:
        if budgets is None:
            raise ValueError("a fractional `at` needs the trials' episode budgets")
        target = (budgets.reindex(eps["run_id"].unique()).astype(float) * at).round()
        chosen = _at_or_before(eps, target)
        why = f"the last report at or before {at:.0%} of each trial's episodes"
    else:
        raise ValueError(f"at={at!r}: expected None, 'first', 'last', an episode (int) or a fraction in (0, 1]")
    key = df["run_id"].map(chosen)
    return df[df["episode"] == key], why


def _at_or_before(eps: pd.DataFrame, target: pd.Series) -> pd.Series:
    t = eps["run_id"].map(target)
    ok = eps[eps["episode"] <= t]
    chosen = ok.groupby("run_id")["episode"].max()
    first = eps.groupby("run_id")["episode"].min()
    return chosen.reindex(first.index).fillna(first).astype("int64")


def probe_at(study, run_ids=None, label: str | None = None, kind: str = "var", at=None,
             per_seed: bool = False, init: bool = False, reward_level: float | None = None) -> tuple[pd.DataFrame, str]:
    """Probe values of the given trials at matched episodes, one column per layer.

    Returns (table, description). The table has run_id, episode (and seed with ``per_seed``),
    ``l1`` ... ``lL`` and ``total`` (sum over layers, NaN if a layer is missing). ``label`` None is
    the trained rule's own probe; otherwise a cross-rule label. Aggregate curves (means over seeds)
    are used unless ``per_seed``. With ``init`` the probe of the initial parameters (``init_probe_*``,
    the same in every report; the first report's values are returned and the description says so).
    With ``reward_level`` the probe where each member's running reward first reached that level (the
    last report's values, which repeat the probe; seeds that never reached it have none).
    """
    src = study.seed_curves if per_seed else study.curves
    names = src["metric"].unique() if len(src) else []
    idx = probe_index(names, None if per_seed else "_mean")
    if len(idx):
        idx = idx[(idx["kind"] == kind) & (idx["label"].isna() if label is None else idx["label"].eq(label))
                  & idx["init"].eq(init)
                  & (idx["level"].isna() if reward_level is None
                     else np.isclose(idx["level"].astype(float), reward_level))]
    keys = ["run_id", "seed", "episode"] if per_seed else ["run_id", "episode"]
    if not len(idx):
        return pd.DataFrame(columns=keys + ["total"]), "no probe values"
    layer_of = dict(zip(idx["metric"], idx["layer"]))
    df = src[src["metric"].isin(layer_of)]
    if run_ids is not None:
        df = df[df["run_id"].isin(list(run_ids))]
    budgets = study.trials.set_index("run_id")["episodes"] if "episodes" in study.trials else None
    df, why = select_episode(df, "first" if init else "last" if reward_level is not None else at, budgets)
    if init:
        why = "the initial parameters (episode 0, before any update)"
    elif reward_level is not None:
        why = f"each seed's state where its running reward first reached {reward_level:g}"
    if not len(df):
        return pd.DataFrame(columns=keys + ["total"]), why
    df = df.assign(layer=df["metric"].map(layer_of))
    wide = df.pivot_table(index=keys, columns="layer", values="value", aggfunc="mean")
    layers = sorted(wide.columns)
    wide.columns = [f"l{l}" for l in layers]
    wide["total"] = wide.sum(axis=1, min_count=len(layers))
    wide.loc[wide[[f"l{l}" for l in layers]].isna().any(axis=1), "total"] = np.nan
    return wide.reset_index(), why
