"""How each cell's search went: Optuna's own slice and optimisation-history plots, rebuilt from MLflow.

The study's searcher keeps its Optuna studies in memory only; MLflow holds every point it tried (params,
the objective, per-seed curves). :func:`cell_study` rebuilds one cell's search as an in-memory
``optuna.Study`` (``optuna.create_study`` + ``add_trial(optuna.trial.create_trial(...))``, in the order
the points started), so Optuna's matplotlib backend draws it exactly as it draws a live study:

    from analysis import load_study
    from analysis.tuning import tuning_figures, tuning_table
    study = load_study("my-study")
    tuning_table(study)                        # one row per cell: range, chosen value, edge warnings
    slice_fig, history_fig = tuning_figures(study, study.trials["cell"].iloc[0])

Each point's seeds are drawn over Optuna's slice plot (small grey marks; open marks at the budget for seeds
that never reached the threshold) and the chosen value is marked, so a reader sees whether the optimum is
flat, sharp or at the edge of the searched range.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from .load import Study
from .speed import default_objective, seed_speed, select_tuned, tuning_warnings

CHOSEN_COLOUR = "#d62728"
SEED_COLOUR = "0.45"


def search_space(study: Study) -> dict[str, tuple[str, BaseDistribution]]:
    """Optuna parameter name -> (column of ``study.trials``, distribution), from the spec's ``search``
    (``lr`` searched per layer gives ``lr.l1``, ``lr.l2``, ... read from the columns ``lr_l1``, ...)."""
    spec = study.spec if isinstance(study.spec, dict) else {}
    space: dict[str, tuple[str, BaseDistribution]] = {}
    for path, p in (spec.get("search") or {}).items():
        kind = p.get("type", "float")
        choices = list(p.get("choices") or [])
        numeric = choices and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
        if kind == "categorical" and numeric and len(choices) > 1:
            # numbers tried as categories are still numbers: drawn on a numeric axis, logarithmic when
            # they are positive and at least a factor 2 apart (a grid of learning rates)
            lo, hi = float(min(choices)), float(max(choices))
            dist: BaseDistribution = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 2)
        elif kind == "categorical":
            dist = CategoricalDistribution(choices)
        elif kind == "int":
            dist = IntDistribution(int(p["low"]), int(p["high"]), log=bool(p.get("log")), step=int(p.get("step") or 1))
        else:
            dist = FloatDistribution(float(p["low"]), float(p["high"]), log=bool(p.get("log")), step=p.get("step"))
        if p.get("per_layer"):
            layers = sorted(int(c.rsplit("_l", 1)[1]) for c in study.trials.columns
                            if c.startswith(f"{path}_l") and c.rsplit("_l", 1)[1].isdigit())
            for layer in layers:
                space[f"{path}.l{layer}"] = (f"{path}_l{layer}", dist)
        elif path in study.trials.columns:
            space[path] = (path, dist)
    return space


def _per_seed_metric(objective: str) -> str:
    """``last_episodes_to_threshold_mean`` -> ``episodes_to_threshold``: the per-seed quantity an aggregate
    objective averages."""
    name = objective
    for prefix in ("last_", "final_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    for suffix in ("_mean", "_median"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return {"eval_reward": "final_reward"}.get(name, name)


def seed_values(study: Study, objective: str | None = None) -> pd.DataFrame:
    """Per (run_id, seed) the per-seed value of the objective: columns run_id, seed, value, reached
    (False for a seed that never reached the threshold: its value is then the budget it was censored at)."""
    objective = objective or default_objective(study)[0]
    metric = _per_seed_metric(objective)
    seeds = seed_speed(study)
    if metric in seeds.columns:
        out = seeds[["run_id", "seed", metric]].rename(columns={metric: "value"})
        reached = seeds["reached"] if metric == "episodes_to_threshold" else pd.Series(True, index=seeds.index)
        return out.assign(reached=reached.fillna(False).astype(bool).to_numpy())
    sc = study.seed_curves
    if not len(sc) or not (sc["metric"] == metric).any():
        return pd.DataFrame(columns=["run_id", "seed", "value", "reached"])
    last = (sc[sc["metric"] == metric].dropna(subset=["value"]).sort_values("episode")
            .groupby(["run_id", "seed"])["value"].last().reset_index())
    return last.assign(reached=True)


def cell_study(study: Study, cell: str, objective: str | None = None, mode: str | None = None) -> optuna.Study:
    """One cell's search as an in-memory Optuna study: one trial per search point (confirm points are
    re-runs, not searched), in the order the points started, COMPLETE with the objective or FAIL when it
    has none (diverged, failed, never reached the threshold). Each trial's user attrs hold its run_id."""
    if objective is None:
        objective, dmode = default_objective(study)
        mode = mode or dmode
    space = search_space(study)
    t = study.trials
    pts = t[(t["cell"] == cell) & (t["stage"] != "confirm")]
    pts = pts.sort_values([c for c in ("start_time", "run_name") if c in pts.columns], kind="stable")
    direction = "minimize" if (mode or "max") == "min" else "maximize"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)    # no "A new study created" line per cell
    try:
        opt = optuna.create_study(direction=direction, study_name=str(cell))
    finally:
        optuna.logging.set_verbosity(verbosity)
    for _, r in pts.iterrows():
        params, dists = {}, {}
        for name, (col, dist) in space.items():
            v = r.get(col)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            v = int(v) if isinstance(dist, IntDistribution) else float(v) if isinstance(dist, FloatDistribution) else v
            if not _inside(dist, v):
                continue    # outside the spec's range (the spec changed): drawn nowhere rather than wrongly
            params[name], dists[name] = v, dist
        value = r.get(objective) if objective else None
        ok = value is not None and np.isfinite(float(value))
        opt.add_trial(create_trial(params=params, distributions=dists, value=float(value) if ok else None,
                                   state=TrialState.COMPLETE if ok else TrialState.FAIL,
                                   user_attrs={"run_id": r["run_id"], "status": r.get("status")}))
    return opt


def _inside(dist: BaseDistribution, value) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return dist.low <= value <= dist.high


def tuning_table(study: Study) -> pd.DataFrame:
    """One row per tuned cell: rule_variant, width, outgoing_norm, per searched parameter its searched range
    (``<name> min``, ``<name> max``), chosen value (``<name>``) and ``<name> edge`` ("lower", "upper" or ""),
    the number of search points, the objective at the chosen point and over the points tried
    (``objective_best``, ``objective_worst``), ``confirmed``, and ``warnings``: those of
    :func:`analysis.speed.tuning_warnings` plus the same edge check for every other searched parameter."""
    objective, mode = default_objective(study)
    space = search_space(study)
    tuned = select_tuned(study)
    warn = tuning_warnings(study).set_index("cell")["warnings"] if len(tuned) else pd.Series(dtype=object)
    t = study.trials
    rows = []
    for cell, g in tuned.groupby("cell", sort=False):
        pts = t[(t["cell"] == cell) & (t["stage"] != "confirm")]
        row = {"cell": cell, "rule_variant": g["rule_variant"].iloc[0], "width": g["width"].iloc[0],
               "outgoing_norm": g["outgoing_norm"].iloc[0] if "outgoing_norm" in g else np.nan,
               "n_points": len(pts)}
        extra = []
        for name, (col, _) in space.items():
            tried = pts[col].dropna().astype(float) if col in pts else pd.Series(dtype=float)
            chosen = float(g[col].iloc[0]) if col in g and pd.notna(g[col].iloc[0]) else np.nan
            row[f"{name} min"], row[f"{name} max"] = (tried.min(), tried.max()) if len(tried) else (np.nan, np.nan)
            row[name] = chosen
            row[f"{name} edge"] = ""
            if tried.nunique() > 1 and np.isfinite(chosen):
                for side, edge in (("lower", tried.min()), ("upper", tried.max())):
                    if np.isclose(chosen, edge):
                        row[f"{name} edge"] = side
                        if name != "lr":    # tuning_warnings says it for lr
                            extra.append(f"{name} {chosen:.3g} is at the {side} edge of the searched range "
                                         f"[{tried.min():.3g}, {tried.max():.3g}]")
        vals = pts[objective].astype(float) if objective in pts else pd.Series(dtype=float)
        row["objective"] = float(g[objective].iloc[0]) if objective in g else np.nan
        best, worst = (vals.min(), vals.max()) if mode == "min" else (vals.max(), vals.min())
        row["objective_best"], row["objective_worst"] = (best, worst) if vals.notna().any() else (np.nan, np.nan)
        row["confirmed"] = bool((g["stage"] == "confirm").any())
        row["warnings"] = "; ".join(w for w in [warn.get(cell, "")] + extra if w)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(objective=objective, mode=mode, params=list(space))
    return out


def _cover(ax, xs, pad: float = 0.05) -> None:
    """Widen the x limits of a numeric slice panel to every point tried (Optuna pads only the completed ones)."""
    xs = [float(x) for x in xs if isinstance(x, (int, float))]
    if not xs:
        return
    log = ax.get_xscale() == "log"
    f = np.log10 if log else (lambda v: v)
    lo, hi = f(min(xs)), f(max(xs))
    span = (hi - lo) or 1.0
    lo, hi = lo - pad * span, hi + pad * span
    if log:
        lo, hi = 10 ** lo, 10 ** hi
    left, right = ax.get_xlim()
    ax.set_xlim(min(lo, left), max(hi, right))


def _slice_axes(axes) -> list:
    return list(np.ravel(axes)) if isinstance(axes, np.ndarray) else [axes]


def tuning_figures(study: Study, cell: str, objective: str | None = None, mode: str | None = None,
                   width_in: float = 10.0):
    """Optuna's slice plot (every searched parameter that varies in the cell, with each point's seeds and
    the chosen value marked) and its optimisation history for one cell: two matplotlib Figures sized to
    share a row of ``width_in`` inches. ValueError when the cell has no completed search point."""
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization.matplotlib import plot_optimization_history, plot_slice

    from .figures import label_log_axis

    if objective is None:
        objective, dmode = default_objective(study)
        mode = mode or dmode
    opt = cell_study(study, cell, objective, mode)
    done = opt.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise ValueError(f"cell {cell} has no search point with a value of {objective}")
    varying = [n for n in search_space(study)
               if len({t.params.get(n) for t in opt.trials if n in t.params}) > 1]
    params = varying or sorted({n for t in done for n in t.params})
    if not params:
        raise ValueError(f"cell {cell} searched no parameter")
    tuned = select_tuned(study)
    chosen = tuned[tuned["cell"] == cell]
    seeds = seed_values(study, objective)
    run_of = {t.number: t.user_attrs["run_id"] for t in opt.trials}
    target = objective_label(objective)
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")      # Optuna marks its matplotlib backend experimental
        axes = _slice_axes(plot_slice(opt, params=params, target_name=target))
        hist_ax = plot_optimization_history(opt, target_name=target)
    slice_fig, hist_fig = axes[0].figure, hist_ax.figure
    space = search_space(study)
    for ax, name in zip(axes, sorted(set(params))):     # Optuna draws the parameters sorted by name
        col = space[name][0] if name in space else name
        x_of = {t.number: t.params.get(name) for t in opt.trials}
        pts = pd.DataFrame({"run_id": list(run_of.values()), "x": [x_of[n] for n in run_of]}).dropna()
        s = seeds.merge(pts, on="run_id")
        if len(s):
            hit = s[s["reached"]]
            ax.scatter(hit["x"], hit["value"], s=10, marker="_", color=SEED_COLOUR, zorder=3, lw=1)
            miss = s[~s["reached"]]
            if len(miss):
                ax.scatter(miss["x"], miss["value"], s=14, marker="^", facecolors="none",
                           edgecolors=SEED_COLOUR, zorder=3, lw=0.8)
        if len(chosen) and col in chosen and pd.notna(chosen[col].iloc[0]):
            ax.axvline(chosen[col].iloc[0], color=CHOSEN_COLOUR, ls="--", lw=1.2, zorder=1)
        _cover(ax, [v for v in x_of.values() if v is not None])   # Optuna's limits leave out failed points
        if ax.get_xscale() == "log":
            label_log_axis(ax.xaxis)
        ax.set_xlabel(name)
        ax.set_title("")
    slice_fig.suptitle("")
    n = len(axes)
    slice_w = width_in * min(0.62, 0.3 + 0.16 * n)
    # Optuna's colorbar (the trial number) is laid out by hand; constrained layout draws it anew
    bars = [a for a in slice_fig.axes if a.get_label() == "<colorbar>"]
    for a in bars:
        a.remove()
    for fig, w in ((slice_fig, slice_w), (hist_fig, width_in - slice_w - 0.2)):
        fig.set_size_inches(w, 2.9)
        fig.set_layout_engine("constrained")
    if bars and axes[0].collections:
        bar = slice_fig.colorbar(axes[0].collections[0], ax=axes, label="search point", pad=0.02)
        bar.ax.tick_params(labelsize=7)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for fig in (slice_fig, hist_fig):
        for a in fig.axes:
            a.tick_params(labelsize=7)
            a.xaxis.label.set_size(8)
            a.yaxis.label.set_size(8)
    handles = [Line2D([], [], ls="", marker="o", color="#6baed6", markeredgecolor="grey", label="point (mean)"),
               Line2D([], [], ls="", marker="_", color=SEED_COLOUR, label="seed"),
               Line2D([], [], color=CHOSEN_COLOUR, ls="--", label="chosen")]
    mine = seeds[seeds["run_id"].isin(list(run_of.values()))]
    if len(mine) and (~mine["reached"].astype(bool)).any():
        handles.insert(2, Line2D([], [], ls="", marker="^", markerfacecolor="none", color=SEED_COLOUR,
                                 label="seed not reached (at budget)"))
    slice_fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    hist_ax.set_title("")
    hist_ax.set_xlabel("search point (in start order)")
    if hist_ax.get_legend() is not None:
        hist_ax.get_legend().remove()
    h, labels = hist_ax.get_legend_handles_labels()
    labels = ["point" if lab == target else "best so far" if lab == "Best Value" else lab for lab in labels]
    hist_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    hist_fig.legend(h, labels, loc="outside lower center", ncol=len(h), fontsize=7, frameon=False)
    slice_fig.suptitle(f"slice: {_short(chosen, cell)}", fontsize=9)
    hist_fig.suptitle("optimisation history", fontsize=9)
    return slice_fig, hist_fig


OBJECTIVE_LABELS = {"episodes_to_threshold": "episodes to threshold (episodes)",
                    "auc_reward": "AUC reward (reward)", "final_reward": "final eval reward (reward)"}


def objective_label(objective: str) -> str:
    """An objective column as an axis label with its unit (``last_episodes_to_threshold_mean`` ->
    ``mean episodes to threshold (episodes)``)."""
    base = _per_seed_metric(objective)
    label = OBJECTIVE_LABELS.get(base, base.replace("_", " "))
    return ("mean " if objective.endswith("_mean") else "") + label


def _short(chosen: pd.DataFrame, cell: str) -> str:
    if not len(chosen):
        return str(cell)
    r = chosen.iloc[0]
    norm = r.get("outgoing_norm")
    return (f"{r['rule_variant']}, width {int(r['width'])}" if pd.notna(r.get("width")) else str(r["rule_variant"])) + \
        (f", norm {norm:g}" if pd.notna(norm) else "")
