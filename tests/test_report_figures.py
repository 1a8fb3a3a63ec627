"""Figures that show what they say: per-seed learning curves behind the mean, Kaplan-Meier curves of time to
threshold with censored seeds drawn as censored, and a warning where a learning-rate grid confounds variance
with speed. Planted tables and a small synthetic study, in process."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import figures as F
from analysis.figures import layout_problems


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_time_to_threshold_is_kaplan_meier_with_censored_seeds_marked():
    # rule a: 4 seeds reach at 100, 200, 300, 400; rule b: 2 reach (100, 300), 2 censored at 250 and 500
    seeds = pd.DataFrame({"setting": "all", "rule_variant": ["a"] * 4 + ["b"] * 4,
                          "episodes_to_threshold": [100, 200, 300, 400, 100, 250, 300, 500],
                          "reached": [True] * 4 + [True, False, True, False]})
    fig = F.time_to_threshold_figure(seeds, 0.9)
    assert layout_problems(fig) == []
    ax = fig.axes[0]
    assert fig._supylabel.get_text() == "fraction of seeds that reached reward threshold 0.9"
    assert fig._supxlabel.get_text() == "episodes"
    steps = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "+"]
    a, b = steps
    assert np.allclose(a.get_xdata(), [0, 100, 200, 300, 400, 400]) and np.allclose(a.get_ydata(), [0, .25, .5, .75, 1, 1])
    # Kaplan-Meier, not the naive fraction: after the censoring at 250, the reach at 300 takes 1/2 of the rest
    assert np.allclose(b.get_xdata(), [0, 100, 300, 500]) and np.allclose(b.get_ydata(), [0, .25, .625, .625])
    assert len(marks) == 1                                  # rule a has no censored seed
    assert np.allclose(marks[0].get_xdata(), [250, 500]) and np.allclose(marks[0].get_ydata(), [.25, .625])
    assert "censored" in fig.get_label() and "Kaplan-Meier" in fig.get_label()


def test_a_rule_whose_seeds_never_reach_stays_at_zero_with_every_seed_censored():
    seeds = pd.DataFrame({"setting": ["w=8"] * 3, "rule_variant": "reinforce", "episodes_to_threshold": [900.0] * 3,
                          "reached": False})
    ax = F.time_to_threshold_figure(seeds).axes[0]
    step = next(ln for ln in ax.get_lines() if ln.get_linestyle() == "-")
    assert np.allclose(step.get_ydata(), 0) and step.get_xdata()[-1] == 900
    assert next(ln for ln in ax.get_lines() if ln.get_marker() == "+").get_xdata().tolist() == [900.0] * 3


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    from analysis.load import load_study
    from analysis.synthetic import write_synthetic_study

    uri = f"sqlite:///{tmp_path_factory.mktemp('figs') / 'mlflow.db'}"
    write_synthetic_study(uri, "figs", rules=("uwm", "wm"), widths=(8,), lrs=(0.03,), seeds=3, episodes=1200,
                          report_every=400, cross_rule=False, confirm=False)
    return load_study("figs", uri)


def test_learning_curves_draw_every_seed_thin_behind_the_mean(small_study):
    fig = F.learning_curves(small_study, n_boot=50)
    ax = fig.axes[0]
    thin = [ln for ln in ax.get_lines() if ln.get_linewidth() < 1]
    thick = [ln for ln in ax.get_lines() if ln.get_linewidth() > 1.5]
    assert len(thin) == 6 and len(thick) == 2              # 2 rules x 3 seeds, and each rule's mean
    sc = small_study.seed_curve("eval_reward")
    values = {tuple(np.round(g.sort_values("episode")["value"], 12)) for _, g in sc.groupby(["run_id", "seed"])}
    assert {tuple(np.round(ln.get_ydata(), 12)) for ln in thin} == values   # the seeds' own values
    for rule_mean in thick:                                 # the mean is the mean of its thin lines
        mates = [ln.get_ydata() for ln in thin if ln.get_color() == rule_mean.get_color()]
        assert len(mates) == 3 and np.allclose(np.mean(mates, axis=0), rule_mean.get_ydata())
    assert all(ln.get_zorder() < thick[0].get_zorder() for ln in thin)
    assert "each seed a thin line" in fig.get_label() and layout_problems(fig) == []


def test_each_seed_line_tells_its_seed_on_hover_and_links_its_run(small_study):
    """The learning curves' seed lines carry a hover text (rule, lr, seed, last value) and their run's MLflow
    link in the inline SVG the HTML report embeds; the mean lines carry none."""
    import xml.etree.ElementTree as ET

    from analysis.interactive import SVG, TIPS, to_svg
    from analysis.report import run_link_of

    fig = F.learning_curves(small_study, n_boot=50)
    tips = getattr(fig, TIPS)
    assert len(tips) == 6                                          # 2 rules x 3 seeds, not the 2 means
    sc = small_study.seed_curve("eval_reward")
    last = sc.sort_values("episode").groupby(["run_id", "seed"]).tail(1)
    expected = {(f"{r['rule_variant']}, lr 0.03, seed {int(r['seed'])}: eval reward {r['value']:.3g} at episode "
                 f"{int(r['episode'])}", r["run_id"]) for _, r in last.iterrows()}
    assert set(tips.values()) == expected
    link = run_link_of(small_study)
    root = ET.fromstring(to_svg(fig, link))
    links = root.findall(f".//{{{SVG}}}a")
    assert len(links) == 6
    for a in links:
        [title] = a.iter(f"{{{SVG}}}title")
        run_id = next(run for text, run in tips.values() if text == title.text)
        assert a.get("href") == link(run_id) and f"/runs/{run_id}" in a.get("href") and a.get("target") == "_blank"
        assert a.find(f".//{{{SVG}}}path") is not None            # the line itself is the link
    assert root.get("width") == f"{fig.get_size_inches()[0] * F.DPI:.0f}px"
    # read from an export (no store to open): hover texts, no links
    small_study.tracking_uri, uri = None, small_study.tracking_uri
    try:
        assert run_link_of(small_study) is None
        plain = ET.fromstring(to_svg(fig, run_link_of(small_study)))
        assert not plain.findall(f".//{{{SVG}}}a") and len(plain.findall(f".//{{{SVG}}}title")) == 6
    finally:
        small_study.tracking_uri = uri
    plt.close(fig)


def _vs(lrs):
    rows = []
    for i, (rule, lr) in enumerate(lrs):
        rows.append({"cell": f"rule={rule}|lr={lr}", "layer": "total", "rule_variant": rule, "width": 8,
                     "outgoing_norm": np.nan, "lr": lr, "variance": 10.0 ** i, "auc_reward": 0.9 - 0.1 * i,
                     "variance_source": "own probe"})
    return pd.DataFrame(rows)


def test_a_learning_rate_grid_is_named_as_a_confound_not_read_as_variance():
    from analysis.questions.variance_speed import _rho_answer, lr_grid

    grid = _vs([("uwm", 0.01), ("uwm", 0.03), ("uwm", 0.1), ("wm", 0.01), ("wm", 0.03), ("wm", 0.1)])
    assert lr_grid(grid) == "2 of 2 groups"
    tuned = _vs([("uwm", 0.01), ("wm", 0.03), ("hwm", 0.1), ("ste", 0.02), ("reinforce", 0.05)])
    assert lr_grid(tuned) == ""                      # one (tuned) rate per rule: each rule's own, no grid
    r = {"rho": -0.9, "rho_lo": -1.0, "rho_hi": -0.7}
    assert "slower learning" in _rho_answer(r)
    text = _rho_answer(r, lr_grid(grid))
    assert "not answerable as an effect of variance" in text and "slower" not in text
