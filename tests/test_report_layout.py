"""Report figures legible at 100 % and the per-cell tuning views, in process on hand-built studies.

The layout checker (analysis.figures.layout_problems) must catch each defect the report's figures had
(too wide for the page, overlapping log tick labels, a legend over the data, a bare value as a legend
entry) and pass the conventions that replaced them. The tuning views rebuild each cell's search as an
Optuna study from the recorded points and must find the planted optimum, order and edge.
"""

import math
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from analysis import figures as F
from analysis.load import Study
from analysis.tuning import cell_study, search_space, tuning_figures, tuning_table

matplotlib.use("Agg")


# ----------------------------------------------------------------------------- the layout checker


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


def test_layout_checker_catches_each_defect_of_the_old_figures(close_figures):
    # a log axis over 1.5 decades (the old scaling figure): matplotlib labels its minor ticks, which overlap
    fig, ax = plt.subplots(figsize=(3, 2.5))
    ax.plot([8, 128], [150, 4500])
    ax.set_yscale("log")
    problems = F.layout_problems(fig)
    assert any("tick label" in p and "overlaps tick label" in p for p in problems), problems
    # the same span with the report's labelling: no overlap
    F.label_log_axis(ax.yaxis)
    assert not [p for p in F.layout_problems(fig) if "tick label" in p]

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(range(10), range(10), label="uwm")
    ax.plot(range(10), range(10), label="16")              # seaborn's style legend: a width without its name
    ax.legend()
    problems = F.layout_problems(fig)
    assert any("legend covers the data region" in p for p in problems), problems
    assert any("'16' is a bare value" in p for p in problems), problems

    fig, ax = plt.subplots(figsize=(16, 3))                 # shrunk by the browser to fit the page
    assert any("wider than the page" in p for p in F.layout_problems(fig))

    fig, ax = plt.subplots(figsize=(4, 3))                  # a title written over the axes' label
    ax.set_ylabel("a long y label that reaches the top")
    fig.text(0.04, 0.5, "a title on the label", rotation=90, va="center")
    assert any("overlaps" in p for p in F.layout_problems(fig))


def test_page_grid_with_legend_above_has_no_layout_problems(close_figures):
    from matplotlib.lines import Line2D

    fig, axes = F._page_grid(2, 4, sharex=True)
    for ax in axes.ravel():
        ax.plot([1, 4], [0.002, 0.05], marker="o")
        ax.set_yscale("log")
        F.label_log_axis(ax.yaxis)
        ax.set_title("probe bias vs exact gradient (grad)", fontsize=8)
    fig.supxlabel("initial outgoing norm c (weight units)")
    F._legend_below(fig, [Line2D([], [])] * 4, ["hwm", "reinforce", "uwm", "c = π"])
    assert F.layout_problems(fig) == []
    assert round(fig.get_size_inches()[0] * F.DPI) <= 1118        # the report's column: shown at 100 %


# ----------------------------------------------------------------------------- tuning views

BEST = 0.03
NEVER = 0.001       # its seeds never reach the threshold
SEEDS = 4


def _objective(lr, seed):
    """Planted: episodes to threshold 200 (1 + 4 log10(lr / 0.03)²), per-seed spread ±10 %."""
    return 200.0 * (1 + 4 * math.log10(lr / BEST) ** 2) * (1 + 0.1 * (seed - 1.5) / 1.5)


def _tuning_study():
    """Cell a: 5 learning rates around the optimum, started in a scrambled order, plus a point whose seeds
    never reach the threshold (no objective value) and a failed point. Cell b: learning rates below the
    optimum only, so the best sits at the upper edge of the range."""
    trials, rows = [], []
    start = pd.Timestamp("2026-01-01")
    plan = [("a", lr) for lr in (0.1, 0.003, BEST, 0.3, 0.01, NEVER)] + [("b", lr) for lr in (0.001, 0.002, 0.005,
                                                                                               0.01)]
    for i, (cell, lr) in enumerate(plan):
        rid = f"{cell}{i}"
        values = [_objective(lr, s) if lr != NEVER else math.inf for s in range(SEEDS)]
        trials.append({"run_id": rid, "run_name": rid, "cell": cell, "status": "finished", "stage": "search",
                       "rule": "uwm", "rule_variant": "uwm", "width": 16, "outgoing_norm": np.nan, "lr": lr,
                       "episodes": 4000, "seeds": SEEDS, "start_time": start + pd.Timedelta(seconds=i),
                       "last_episodes_to_threshold_mean": float(np.mean(values)) if lr != NEVER else np.nan})
        for s, v in enumerate(values):
            for ep in (1000, 2000, 3000, 4000):
                rows.append((rid, ep, s, "eval_reward", 1.0 if ep >= v else 0.0))
                rows.append((rid, ep, s, "diverged", 0.0))
                if ep >= v:
                    rows.append((rid, ep, s, "episodes_to_threshold", v))
    trials.append({"run_id": "a-failed", "run_name": "a-failed", "cell": "a", "status": "failed", "stage": "search",
                   "rule": "uwm", "rule_variant": "uwm", "width": 16, "outgoing_norm": np.nan, "lr": 0.05,
                   "episodes": 4000, "seeds": SEEDS, "start_time": start + pd.Timedelta(seconds=20),
                   "last_episodes_to_threshold_mean": np.nan})
    spec = {"metric": "episodes_to_threshold_mean", "mode": "min",
            "search": {"lr": {"type": "float", "low": 0.001, "high": 0.3, "log": True}}}
    empty = pd.DataFrame(columns=["run_id", "episode", "metric", "value"])
    return Study(name="tuning", parent_run_id="p", experiment_id="0", tracking_uri=None, tags={}, spec=spec,
                 trials=pd.DataFrame(trials), curves=empty,
                 seed_curves=pd.DataFrame(rows, columns=["run_id", "episode", "seed", "metric", "value"]))


def test_cell_search_rebuilt_as_an_optuna_study_in_start_order():
    study = _tuning_study()
    space = search_space(study)
    assert list(space) == ["lr"] and space["lr"][1] == FloatDistribution(0.001, 0.3, log=True)
    opt = cell_study(study, "a")
    assert opt.direction.name == "MINIMIZE"
    assert [t.params.get("lr") for t in opt.trials] == [0.1, 0.003, BEST, 0.3, 0.01, NEVER, 0.05]
    # no objective value (never reached the threshold; failed): not a completed trial
    assert [t.state for t in opt.trials] == [TrialState.COMPLETE] * 5 + [TrialState.FAIL] * 2
    assert opt.best_trial.params["lr"] == BEST
    assert opt.best_trial.user_attrs["run_id"] == "a2"


def test_tuning_table_marks_the_chosen_value_and_the_edge():
    table = tuning_table(_tuning_study()).set_index("cell")
    a, b = table.loc["a"], table.loc["b"]
    assert a["lr"] == BEST and a["lr edge"] == "" and "edge" not in a["warnings"]
    assert (a["lr min"], a["lr max"], a["n_points"]) == (NEVER, 0.3, 7)
    assert a["objective"] == pytest.approx(200.0) and a["objective_best"] == pytest.approx(200.0)
    assert b["lr"] == 0.01 and b["lr edge"] == "upper"
    assert "upper edge of the searched range" in b["warnings"]           # analysis.speed.tuning_warnings' words


def test_tuning_figures_are_optunas_plots_with_seeds_and_the_chosen_value(close_figures):
    study = _tuning_study()
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # the figures raise no warning (Optuna's are silenced on purpose)
        slice_fig, hist_fig = tuning_figures(study, "a")
    (ax,) = [a for a in slice_fig.axes if a.get_label() != "<colorbar>"]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lr"
    offsets = [c.get_offsets() for c in ax.collections]
    means = next(o for o in offsets if len(o) == 5)                    # Optuna's points: one per completed point
    assert sorted(np.asarray(means)[:, 0]) == sorted([0.1, 0.003, BEST, 0.3, 0.01])
    seeds = np.concatenate([o for o in offsets if len(o) == 5 * SEEDS])
    assert len(seeds) == 5 * SEEDS                                       # every seed of every completed point
    never = np.asarray(next(o for o in offsets if len(o) == SEEDS))      # and, at the budget, those never reached
    assert np.allclose(never, [[NEVER, 4000]] * SEEDS)
    assert ax.get_xlim()[0] < NEVER                                      # inside the panel
    chosen = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(chosen) == 1 and np.allclose(chosen[0].get_xdata(), BEST)
    (hax,) = hist_fig.axes
    assert len(hax.collections[0].get_offsets()) == 5
    for fig in (slice_fig, hist_fig):
        assert F.layout_problems(fig) == []
    assert matplotlib.rcParams["axes.facecolor"] == "white"             # Optuna's ggplot style did not leak


def test_the_tuning_warning_line_counts_each_kind_of_warning():
    """The summary's line says which warnings, so "10 of 10 cells" beside "5 of 10 at an edge" reads right."""
    from analysis.report import tuning_warning_line

    warn = pd.DataFrame({"warnings": ["lr 0.03 is at the upper edge of the searched range [0.001, 0.03]; only 4 "
                                      "learning rates tried (fewer than 5: close to random search)",
                                      "only 4 learning rates tried (fewer than 5: close to random search)",
                                      "no confirm stage: reported on the seeds it was picked on (optimistic)"]})
    line = tuning_warning_line(warn, 10)
    assert line.startswith("Tuning warnings in 3 of 10 cells (1 chose a rate at an edge of the range searched; "
                           "2 tried fewer than 5 learning rates; 1 have no confirm stage)"), line
    assert tuning_warning_line(warn.iloc[:0], 10) is None
