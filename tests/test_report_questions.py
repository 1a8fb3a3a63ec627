"""The report as its questions: each question a module of analysis.questions computing a typed Answer
once; the report renders answers only. Planted tables, in process."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import palette
from analysis.questions import Answer, Context, Settings, questions
from analysis.questions._text import caption_with_constants, ci, for_people, num


def test_every_question_is_a_module_found_in_order_with_a_unique_key():
    mods = questions()
    keys = [m.KEY for m in mods]
    assert len(keys) == len(set(keys))
    assert {"replication", "fastest", "lr_sensitivity", "variance_speed", "scaling", "norm_stress", "reference",
            "tuning"} <= set(keys)
    assert [m.ORDER for m in mods] == sorted(m.ORDER for m in mods)
    assert all(callable(m.answer) for m in mods)


def test_numbers_read_at_three_significant_figures_with_the_interval_in_one_cell():
    assert num(280163.89999999997) == "280,000"
    assert num(0.036812) == "0.0368" and num(7) == "7" and num(float("nan")) == "–"
    assert ci(1234.5, 1000.0, 1500.4) == "1,230 [1,000, 1,500]"
    table = pd.DataFrame({"rule_variant": ["uwm", "wm"], "rmst_lo": [280163.9, 12.3456], "lr": [0.01, 0.01]})
    shown = for_people(table)
    assert list(shown.columns) == ["rule variant", "rmst lo"]              # readable headers, constant lr dropped
    assert shown["rmst lo"].tolist() == ["280,000", "12.3"]
    assert caption_with_constants("Cells", shown) == "Cells; same in every row: lr 0.01"


def test_each_rule_has_one_colour_whatever_else_the_study_trained():
    one = palette.rule_palette(["uwm", "reinforce"])
    other = palette.rule_palette(["wm", "uwm", "hwm", "ste", "reinforce(baseline=ema)"])
    assert one["uwm"] == other["uwm"] == palette.RULE_COLOURS["uwm"]
    colours = list(palette.rule_palette(["uwm", "wm", "hwm", "ste", "reinforce", "reinforce(baseline=ema)",
                                         "hwm(order=5)"]).values())
    assert len(set(colours)) == len(colours)                               # variants tell apart from their rule
    assert palette.rule_colour("reinforce(baseline=ema)") == palette.rule_colour("reinforce(baseline=ema)")


def test_fastest_glance_names_tie_groups_from_the_paired_differences():
    from analysis.questions.fastest_rule import tie_groups

    g = pd.DataFrame({"rule_variant": ["uwm", "wm", "ste", "reinforce", "hwm"], "rank": [2, 1, 3, 4, 5],
                      "reference": "uwm", "faster_than_reference": [False, False, False, False, False],
                      "slower_than_reference": [False, False, False, True, True]})
    # wm's mean is lower than uwm's but not resolved from it: tied, not "ahead"
    assert tie_groups(g) == "uwm ≈ ste ≈ wm, ahead of hwm & reinforce"
    g.loc[g["rule_variant"] == "wm", "faster_than_reference"] = True
    assert tie_groups(g) == "wm, ahead of uwm ≈ ste, ahead of hwm & reinforce"


def test_pi_glance_is_the_first_norm_shown_above_ten_percent_with_power():
    from analysis.questions.pi_boundary import rule_by_norm

    rows = []
    for rule, broken_from in (("hwm", 3.5), ("uwm", math.inf)):
        for norm in (1.0, 3.0, 3.5, 4.0):
            for layer, rel in (("1", 0.02 if norm < broken_from else 0.3), ("2", 0.0)):
                rows.append({"label": rule, "context": "", "outgoing_norm": norm, "layer": layer,
                             "relative_bias": rel, "broken": rel > 0.1,
                             "power": 0.9 if norm < 3 else 0.4 if norm == 3 else 0.1})
    grid = rule_by_norm(pd.DataFrame(rows)).set_index("rule")
    assert grid.loc["hwm", "first norm above 10%"] == "3.5"
    assert grid.loc["hwm", "power below it (min)"] == "40%"               # the test at norm 3 had 40% power
    assert grid.loc["uwm", "first norm above 10%"] == "none shown"
    assert grid.loc["hwm", "c = 4"] == "0.3 ▲" and grid.loc["uwm", "c = 4"] == "0.02"


def test_too_few_cells_give_no_rank_correlation():
    from analysis.questions.variance_speed import MIN_CELLS, _variance_section

    assert MIN_CELLS == 5     # replicate-chung2022 published ρ = −1 [−1, −1] from 3 cells
    vs = pd.DataFrame({"cell": ["a", "b", "c", "d"], "variance": [1.0, 2.0, 3.0, 4.0], "variance_source": "own probe"})
    a = _variance_section(None, vs, pd.DataFrame(), 0.95)
    assert not a.present and a.why_not.startswith("too few cells (4 with a probe variance")
    assert not a.answer


def test_the_variance_axis_names_the_quantity_plotted():
    from analysis.figures import variance_speed_figure

    vs = pd.DataFrame({"cell": ["a", "b", "c"], "layer": "total", "rule_variant": ["uwm", "wm", "hwm"],
                       "width": 8, "variance": [0.1, 1.0, 10.0], "auc_reward": [0.9, 0.5, 0.2]})
    vs.attrs["kind"] = "nsr"
    fig = variance_speed_figure(vs)
    assert fig._supxlabel.get_text().startswith("noise-to-signal ratio")
    vs.attrs["kind"] = "var"
    assert variance_speed_figure(vs)._supxlabel.get_text().startswith("probe variance")
    import matplotlib.pyplot as plt

    plt.close("all")


def test_an_answer_says_why_not_in_one_line():
    a = Answer("x", "X", False, text=["Not answerable from this study: it has 1 width."])
    assert a.why_not == "it has 1 width"
    assert Settings().seed == 0 and Context(None).settings == Settings()


def test_a_glance_headline_never_passes_one_row_off_as_all():
    from analysis.report import _headline

    assert _headline([("", "shown")]) == "shown"
    assert _headline([("a", "none"), ("b", "none")]) == "none (all 2 rows)"
    assert _headline([("pooled", "ρ = -0.5"), ("matched", "ρ = -0.4")]) == "pooled: ρ = -0.5 (+1 more rows below)"
