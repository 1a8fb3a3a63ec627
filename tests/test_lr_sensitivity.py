"""Learning-rate sensitivity (analysis.lr_sensitivity) against curves with planted answers: a Gaussian in
log10(lr) of known sigma, a tent whose half-maximum crossings fall between grid points, a peak at the
grid's edge, flat and sharp curves, per-layer learning rates and too-short grids; and the report's section."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.lr_sensitivity import COLUMNS, answer_text, lr_sensitivity

STUDY_GRID = np.array([1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3])   # tune_configs/lr-sensitivity.yaml
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def _cells(rule, lrs, values, half=0.01, per_layer=False, width=32, **axes):
    """A cells table (analysis.speed.cell_summary's columns that lr_sensitivity reads) for one rule on a
    learning-rate grid: interval value ± half."""
    lrs, values = np.asarray(lrs, float), np.asarray(values, float)
    extra = "".join(f"|{k}={v}" for k, v in axes.items())
    return pd.DataFrame({
        "cell": [f"rule={rule}{extra}|lr=" + (f"[{v:.6g}, {v / 10:.6g}]" if per_layer else f"{v:.6g}")
                 for v in lrs], "rule": rule, "rule_variant": rule,
        "hidden": str([width, width]), "width": width, "depth": 2, "outgoing_norm": np.nan, "lr": lrs,
        "lr_per_layer": per_layer, "n_seeds": 8, "auc_reward": values, "auc_reward_lo": values - half,
        "auc_reward_hi": values + half, "final_reward": values, "final_reward_lo": values - half,
        "final_reward_hi": values + half})


def _gaussian(x, mu, sigma, floor=0.05, height=0.4):
    return floor + height * np.exp(-(x - mu) ** 2 / (2 * sigma ** 2))


@pytest.mark.parametrize("sigma, mu", [(0.3, -2.33), (0.55, -1.87)])
def test_fwhm_of_a_gaussian_in_log_lr_is_recovered_on_a_fine_grid(sigma, mu):
    x = np.arange(-5.0, 0.0 + 1e-9, 0.05)
    row = lr_sensitivity(_cells("uwm", 10 ** x, _gaussian(x, mu, sigma))).iloc[0]
    assert row["fwhm_decades"] == pytest.approx(FWHM_PER_SIGMA * sigma, abs=0.01)
    assert not row["width_censored"]
    assert math.log10(row["fwhm_lr_lo"]) == pytest.approx(mu - FWHM_PER_SIGMA * sigma / 2, abs=0.01)
    assert math.log10(row["best_lr"]) == pytest.approx(mu, abs=0.025)
    assert row["n_lrs"] == x.size and row["best"] == pytest.approx(0.45, abs=1e-3)


def _naive_width(lrs, values):
    """The wrong method: grid points at or above half maximum times the grid spacing."""
    half = values.min() + (values.max() - values.min()) / 2
    return (values >= half).sum() * np.diff(np.log10(lrs)).mean()


def test_interpolated_crossings_give_the_width_on_a_coarse_grid_where_counting_points_does_not():
    # a tent in log10(lr) (linear sides): its half-maximum crossings fall between grid points half a decade apart
    x = np.arange(-4.0, -0.5 + 1e-9, 0.5)
    lrs = 10 ** x
    values = 0.1 + 0.4 * np.clip(1 - np.abs(x + 2.0) / 1.3, 0, None)
    row = lr_sensitivity(_cells("wm", lrs, values)).iloc[0]
    assert row["fwhm_decades"] == pytest.approx(1.3, abs=1e-9)                 # exact for linear sides
    assert (row["fwhm_lr_lo"], row["fwhm_lr_hi"]) == pytest.approx((10 ** -2.65, 10 ** -1.35))
    assert abs(_naive_width(lrs, values) - 1.3) > 0.15                        # 3 points x 0.5 = 1.5


def test_a_peak_at_the_grid_edge_gives_a_censored_lower_bound():
    x = np.log10(STUDY_GRID)
    values = _gaussian(x, mu=0.0, sigma=0.6)           # true peak beyond the largest rate; true FWHM 1.41
    row = lr_sensitivity(_cells("ste", STUDY_GRID, values)).iloc[0]
    assert row["best_lr"] == 0.3 and row["best_at_edge"] and row["width_censored"]
    assert row["fwhm_lr_hi"] == pytest.approx(0.3)     # the grid's edge stands in for the crossing
    assert row["fwhm_decades"] < FWHM_PER_SIGMA * 0.6  # a lower bound: the curve runs on past the grid
    assert "FWHM ≥ " in answer_text(row) and "(edge of the grid)" in answer_text(row)


def test_a_flat_curve_with_overlapping_intervals_is_usable_over_the_whole_grid():
    values = 0.3 + np.array([0.004, -0.003, 0.0, 0.005, -0.004, 0.002, -0.001, 0.003])
    row = lr_sensitivity(_cells("reinforce", STUDY_GRID, values, half=0.05)).iloc[0]
    assert row["n_usable"] == 8 and row["usable_censored"]
    assert row["usable_decades"] == pytest.approx(math.log10(0.3 / 1e-4))
    exactly_flat = lr_sensitivity(_cells("reinforce", STUDY_GRID, np.full(8, 0.3))).iloc[0]
    assert exactly_flat["width_censored"]
    assert exactly_flat["fwhm_decades"] == pytest.approx(math.log10(0.3 / 1e-4))
    assert "usable 0.0001–0.3 (≥ 3.5 decades)" in answer_text(row)


def test_a_sharp_curve_is_usable_at_its_best_rate_only():
    values = np.array([0.0, 0.02, 0.05, 0.1, 0.5, 0.12, 0.0, 0.0])
    row = lr_sensitivity(_cells("uwm", STUDY_GRID, values, half=0.02)).iloc[0]
    assert row["usable_lrs"] == "0.01" and row["n_usable"] == 1 and row["usable_decades"] == 0
    assert not row["usable_censored"]
    assert "usable 0.01 only" in answer_text(row)


def test_usable_means_not_resolved_worse_by_a_games_howell_comparison_with_the_best():
    """Best 0.40, every cell ± 0.05 over 8 seeds (se = 0.05 / t_7), 5 rates: a rate is resolved worse where the
    best's mean minus its own exceeds q(0.95; 5 rates, 14 df) / √2 · √2 se (0.0933): 0.305 is (0.095 below),
    0.31 is not (0.09 below), though its interval [0.26, 0.36] misses the best's lower bound 0.35 (the old rule
    would have cut it). The narrowing is shown; without the 0.305 rate, not shown, with its power."""
    from scipy.stats import studentized_range, t as student

    lrs = np.array([1e-3, 3e-3, 0.01, 0.03, 0.1])
    se = 0.05 / student.ppf(0.975, 7)
    critical = studentized_range.ppf(0.95, 5, 14) * se
    assert 0.09 < critical < 0.095
    row = lr_sensitivity(_cells("hwm", lrs, [0.305, 0.31, 0.40, 0.38, 0.35], half=0.05)).iloc[0]
    assert row["usable_lrs"] == "0.003, 0.01, 0.03, 0.1" and row["narrowing_shown"] and row["narrowing"] == "shown"
    assert row["usable_decades"] == pytest.approx(math.log10(0.1 / 0.003))
    flat = lr_sensitivity(_cells("hwm", lrs, [0.32, 0.31, 0.40, 0.38, 0.35], half=0.05)).iloc[0]
    assert flat["n_usable"] == 5 and not flat["narrowing_shown"]
    assert flat["narrowing"].startswith("not shown (power ")
    assert flat["narrowing"].endswith("against a rate 20% below the best)")
    assert "narrower than the grid: not shown (power" in answer_text(flat)
    one_seed = _cells("hwm", lrs, [0.1, 0.2, 0.4, 0.2, 0.1], half=0.05).assign(n_seeds=1)
    assert lr_sensitivity(one_seed).iloc[0]["narrowing"].startswith("not answerable (")


def test_per_layer_learning_rates_are_left_out_and_short_grids_give_no_row():
    three = _cells("uwm", [1e-3, 1e-2, 1e-1], [0.1, 0.3, 0.2])
    per_layer = _cells("uwm", [3e-3], [0.9], per_layer=True)      # higher, but not on the curve
    two = _cells("wm", [1e-3, 1e-2], [0.1, 0.3])
    two_and_per_layer = _cells("wm", [3e-2], [0.2], per_layer=True)
    table = lr_sensitivity(pd.concat([three, per_layer, two, two_and_per_layer], ignore_index=True))
    assert list(table["rule_variant"]) == ["uwm"]
    assert table["n_lrs"].iloc[0] == 3 and table["best_lr"].iloc[0] == 0.01
    empty = lr_sensitivity(two)
    assert not len(empty) and list(empty.columns) == COLUMNS


def test_one_row_per_rule_and_setting_where_other_axes_vary():
    x = np.log10(STUDY_GRID)
    cells = pd.concat([_cells("uwm", STUDY_GRID, _gaussian(x, -2.0, 0.4), width=w, hidden=f"[{w}, {w}]")
                       for w in (16, 64)], ignore_index=True)
    table = lr_sensitivity(cells)
    assert list(table["setting"]) == ["hidden=[16, 16]", "hidden=[64, 64]"]
    assert lr_sensitivity(_cells("uwm", STUDY_GRID, _gaussian(x, -2.0, 0.4)))["setting"].iloc[0] == ""


def test_an_unknown_measure_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown lr-sensitivity measure 'episodes_to_threshold'"):
        lr_sensitivity(_cells("uwm", STUDY_GRID, np.zeros(8)), measure="episodes_to_threshold")


def test_the_report_section_answers_per_rule_and_its_figure_is_legible():
    from analysis.figures import layout_problems
    from analysis.questions.lr_sensitivity import _lr_section
    from analysis.report import _answers, _inapplicable

    x = np.log10(STUDY_GRID)
    cells = pd.concat([_cells("uwm", STUDY_GRID, _gaussian(x, -2.0, 0.3), half=0.02),
                       _cells("reinforce(baseline=ema)", STUDY_GRID, _gaussian(x, 0.0, 0.6), half=0.02)],
                      ignore_index=True)
    table = lr_sensitivity(cells)
    sec = _lr_section(table, cells, 0.95)
    assert sec.present and len(sec.figures) == 1 and len(sec.tables) == 1
    fig = sec.figures[0][1]
    assert layout_problems(fig) == []
    strip = fig.axes[-1]                   # the usable range and FWHM per rule, named on its y axis
    assert [t.get_text() for t in strip.get_yticklabels()] == ["reinforce(baseline=ema)", "uwm"]
    assert any(ln.get_marker() == ">" for ln in strip.get_lines())     # the censored FWHM runs past the grid
    answers = _answers([sec]).tables[0][1]
    rows = answers[answers["question"] == "Learning-rate sensitivity"].set_index("setting")
    assert set(rows.index) == {"uwm", "reinforce(baseline=ema)"}
    uwm = table.set_index("rule_variant").loc["uwm"]
    assert uwm["fwhm_decades"] == pytest.approx(FWHM_PER_SIGMA * 0.3, abs=0.05)     # within a tenth of the spacing
    assert rows.loc["uwm", "answer"] == ("best lr 0.01 (AUC 0.45 [0.43, 0.47]; picked and scored on the same "
                                         "seeds, so it leans high); usable 0.01 only; narrower than the grid: "
                                         f"shown; FWHM {uwm['fwhm_decades']:.2g} decades")
    assert "FWHM ≥ " in rows.loc["reinforce(baseline=ema)", "answer"]
    import matplotlib.pyplot as plt

    plt.close(fig)
    absent = _lr_section(lr_sensitivity(cells.iloc[:2]), cells.iloc[:2], 0.95)
    assert not absent.present and absent.text[0].startswith("Not answerable from this study")
    assert "at most 2 per rule" in absent.text[0]
    assert not len(_answers([absent]).tables[0][1])            # not a glance row: one line at the end says why
    assert _inapplicable([absent]).text[0].startswith("Learning-rate sensitivity: not answerable (it needs a learning-rate grid")
