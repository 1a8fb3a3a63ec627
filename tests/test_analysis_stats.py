"""Statistical primitives of the analysis package recover planted answers on synthetic data.

Every test draws from a fixed numpy seed in float64. Coverage checks repeat an experiment a few
hundred times; their tolerances are binomial: with 300 repetitions at true coverage 0.95 the
standard error is 0.013, so a window of [0.90, 0.99] is about 4 standard errors wide on the
low side and fails only when the interval is really miscalibrated.
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats
from analysis.load import Study, parse_param, rule_variant
from analysis.probe import parse_probe_metric, probe_at, select_episode
from analysis.speed import seed_speed, select_tuned


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_estimate_is_the_statistic_and_is_reproducible():
    x = np.random.default_rng(1).normal(3.0, 2.0, 20)
    a = stats.bootstrap_ci(x, seed=7)
    b = stats.bootstrap_ci(x, seed=7)
    assert a == b                                   # seeded: the same call, the same interval
    assert a.estimate == pytest.approx(x.mean(), abs=1e-12)
    assert a.lo < a.estimate < a.hi and a.n == 20
    med = stats.bootstrap_ci(x, statistic="median", seed=7)
    assert med.estimate == pytest.approx(np.median(x), abs=1e-12)


def test_bootstrap_ci_drops_nans_and_handles_tiny_samples():
    iv = stats.bootstrap_ci([1.0, np.nan, 3.0, np.inf])
    assert iv.n == 2 and iv.estimate == 2.0 and 1.0 <= iv.lo <= iv.hi <= 3.0
    one = stats.bootstrap_ci([5.0])
    assert one.estimate == 5.0 and math.isnan(one.lo) and one.n == 1
    assert stats.bootstrap_ci([]).n == 0


def test_expanded_alpha_is_smaller_for_small_samples_and_tends_to_the_nominal_tail():
    assert stats.expanded_alpha(4) < stats.expanded_alpha(10) < stats.expanded_alpha(1000)
    assert stats.expanded_alpha(100_000) == pytest.approx(0.025, rel=1e-3)


@pytest.mark.parametrize("n", [5, 12])
def test_bootstrap_ci_coverage_of_the_mean(n):
    """Coverage of the true mean over 300 normal samples: the expanded interval is calibrated
    (0.90..0.99) even at n = 5, where the plain percentile interval is visibly too narrow."""
    rng = np.random.default_rng(100 + n)
    hits = plain_hits = 0
    reps = 300
    for i in range(reps):
        x = rng.normal(1.5, 1.0, n)
        hits += stats.bootstrap_ci(x, n_boot=1000, seed=i).contains(1.5)
        plain_hits += stats.bootstrap_ci(x, n_boot=1000, seed=i, expanded=False).contains(1.5)
    assert 0.90 <= hits / reps <= 0.99
    assert plain_hits <= hits
    if n == 5:
        assert plain_hits / reps < 0.92           # the reason for the expansion


def test_wilson_interval_known_values():
    # reference values of the 95 % Wilson score interval (z = 1.959964)
    iv = stats.wilson_interval(0, 10)
    assert (iv.estimate, iv.lo) == (0.0, 0.0) and iv.hi == pytest.approx(0.2775, abs=1e-4)
    iv = stats.wilson_interval(5, 10)
    assert (iv.lo, iv.hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    iv = stats.wilson_interval(10, 10)
    assert iv.hi == 1.0 and iv.lo == pytest.approx(0.7225, abs=1e-4)


# ----------------------------------------------------------------------------- rank correlation


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 40).astype(float)          # many ties
    y = x + rng.integers(0, 3, 40)
    assert stats.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_ci_planted_monotone_relations_have_the_right_sign():
    rng = np.random.default_rng(4)
    x = rng.lognormal(0, 1, 30)
    up = stats.spearman_ci(x, np.exp(x) * rng.lognormal(0, 0.3, 30), seed=1)
    down = stats.spearman_ci(x, -np.sqrt(x) + rng.normal(0, 0.1, 30), seed=1)
    assert up.estimate > 0.6 and up.lo > 0
    assert down.estimate < -0.6 and down.hi < 0


def test_spearman_ci_of_independent_variables_contains_zero():
    """Independent pairs: the interval contains 0 in most repetitions (calibration 0.88..0.99)."""
    rng = np.random.default_rng(5)
    reps, n = 150, 25
    contains = sum(stats.spearman_ci(rng.normal(size=n), rng.normal(size=n), n_boot=600, seed=i).contains(0.0)
                   for i in range(reps))
    assert 0.88 <= contains / reps <= 0.995


def test_spearman_ci_too_few_pairs_is_nan():
    iv = stats.spearman_ci([1.0, 2.0], [2.0, 1.0])
    assert iv.n == 2 and math.isnan(iv.estimate)


# ----------------------------------------------------------------------------- power laws


def _planted(rng, widths, b, a=3.0, reps=6, noise=0.1):
    x = np.repeat(widths, reps).astype(float)
    return x, a * x ** b * np.exp(noise * rng.standard_normal(x.size))


def test_power_law_recovers_a_planted_exponent():
    rng = np.random.default_rng(6)
    x, y = _planted(rng, [8, 16, 32, 64, 128], 1.7)
    fit = stats.fit_power_law(x, y, seed=0)
    assert fit.method == "bootstrap" and fit.n_levels == 5 and fit.n_obs == 30
    assert fit.contains(1.7)
    assert fit.hi - fit.lo < 0.2
    assert fit.prefactor == pytest.approx(3.0, rel=0.3)
    assert fit.r2 > 0.99
    assert fit.t_lo < 1.7 < fit.t_hi


def test_power_law_interval_coverage():
    """A planted exponent lies in the bootstrap interval in 0.88..0.995 of 200 repetitions (4 widths,
    4 replicates each: few enough that an uncorrected bootstrap would under-cover)."""
    rng = np.random.default_rng(7)
    hits = sum(stats.fit_power_law(*_planted(rng, [8, 16, 32, 64], 2.0, reps=4, noise=0.2), n_boot=800,
                                   seed=i).contains(2.0) for i in range(200))
    assert 0.88 <= hits / 200 <= 0.995


def test_power_law_few_replicates_use_the_t_interval():
    rng = np.random.default_rng(8)
    x, y = _planted(rng, [4, 8, 16, 32, 64, 128], 2.5, reps=1, noise=0.05)
    fit = stats.fit_power_law(x, y)
    assert fit.method == "t" and fit.draws is None
    assert fit.lo == fit.t_lo and fit.contains(2.5)
    two = stats.fit_power_law(*_planted(rng, [4, 8, 16, 32], 2.5, reps=2, noise=0.05))
    assert two.method == "t"                        # 2 replicates: a bootstrap would be far too narrow
    with pytest.raises(ValueError, match="2 distinct"):
        stats.fit_power_law([8, 8], [1.0, 2.0])


def test_exponent_difference_separates_o_mn_from_o_m2n():
    rng = np.random.default_rng(9)
    two = stats.fit_power_law(*_planted(rng, [8, 16, 32, 64], 2.0), seed=1)
    three = stats.fit_power_law(*_planted(rng, [8, 16, 32, 64], 3.0), seed=2)
    d = stats.exponent_difference(three, two)
    assert d.contains(1.0) and d.lo > 0
    same = stats.exponent_difference(two, stats.fit_power_law(*_planted(rng, [8, 16, 32, 64], 2.0), seed=3))
    assert same.contains(0.0)
    # t-interval fits (one timing per width): the interval uses their t quantile, not the normal one
    widths = [8, 16, 32, 64, 128, 256]
    t2 = stats.fit_power_law(*_planted(rng, widths, 2.0, reps=1, noise=0.05))
    t3 = stats.fit_power_law(*_planted(rng, widths, 3.0, reps=1, noise=0.05))
    d = stats.exponent_difference(t3, t2)
    assert t2.method == t3.method == "t" and d.contains(1.0) and d.lo > 0
    assert stats.exponent_difference(t2, stats.fit_power_law(*_planted(rng, widths, 2.0, reps=1, noise=0.05))).contains(0.0)


def test_complexity_verdict_reads_the_compute_exponent():
    rng = np.random.default_rng(10)
    two = stats.fit_power_law(*_planted(rng, [16, 32, 64, 128], 2.0, noise=0.03))
    three = stats.fit_power_law(*_planted(rng, [16, 32, 64, 128], 3.0, noise=0.03))
    flat = stats.fit_power_law(*_planted(rng, [16, 32, 64, 128], 0.5, noise=0.03))
    assert "consistent with O(mn)" in stats.complexity_verdict(two)
    assert "consistent with O(m²n)" in stats.complexity_verdict(three)
    assert "overheads dominate" in stats.complexity_verdict(flat)


# ----------------------------------------------------------------------------- names and tables


def test_parse_param_reads_json_and_python_reprs():
    assert parse_param("[64, 64]") == [64, 64]
    assert parse_param("null") is None and parse_param("None") is None
    assert parse_param("0.01") == 0.01 and parse_param("true") is True
    assert parse_param("[{'rule': 'uwm', 'options': {}}]") == [{"rule": "uwm", "options": {}}]
    assert parse_param("uwm") == "uwm"
    assert rule_variant("hwm", {"order": 5, "form": "rb"}) == "hwm(form=rb, order=5)"
    assert rule_variant("uwm", {}) == "uwm"


@pytest.mark.parametrize("name, expected", [
    ("probe_var_l1_mean", {"label": None, "kind": "var", "layer": 1}),
    ("probe_mean_sq_l3_mean", {"label": None, "kind": "mean_sq", "layer": 3}),
    ("probe_uwm_var_l2_mean", {"label": "uwm", "kind": "var", "layer": 2}),
    ("probe_hwm_form-rb_order-5_bias_l1_mean", {"label": "hwm_form-rb_order-5", "kind": "bias", "layer": 1}),
    ("probe_reinforce_mean_sq_l12_mean", {"label": "reinforce", "kind": "mean_sq", "layer": 12}),
    ("probe_hwm_order-3_bias_sq_se_l2_mean", {"label": "hwm_order-3", "kind": "bias_sq_se", "layer": 2}),
    ("probe_bias_sq_l1_mean", {"label": None, "kind": "bias_sq", "layer": 1}),
    ("init_probe_uwm_nsr_l1_mean", {"label": "uwm", "kind": "nsr", "layer": 1, "init": True}),
    ("at_reward_0.7_probe_uwm_nsr_l1_mean", {"label": "uwm", "kind": "nsr", "layer": 1, "level": 0.7}),
    ("at_reward_0.6_probe_hwm_order-3_bias_sq_se_l2_mean", {"label": "hwm_order-3", "kind": "bias_sq_se", "layer": 2,
                                                            "level": 0.6}),
    ("at_reward_0.8_probe_var_l3_mean", {"label": None, "kind": "var", "layer": 3, "level": 0.8}),
    ("probe_var_l1_sem", None),
    ("eval_reward_mean", None),
])
def test_parse_probe_metric(name, expected):
    assert parse_probe_metric(name) == (None if expected is None else {"init": False, "level": None, **expected})


def _study(trials, curves=None, seeds=None):
    empty = pd.DataFrame(columns=["run_id", "episode", "metric", "value"])
    return Study(name="t", parent_run_id="p", experiment_id="0", tracking_uri=None, tags={}, spec=None,
                 trials=pd.DataFrame(trials), curves=curves if curves is not None else empty,
                 seed_curves=seeds if seeds is not None else empty.assign(seed=pd.Series(dtype=int)))


def test_select_episode_matches_points_of_training():
    df = pd.DataFrame({"run_id": ["a"] * 3 + ["b"] * 2, "episode": [100, 200, 300, 200, 400],
                       "value": [1, 2, 3, 4, 5.0]})
    rows, why = select_episode(df)
    assert set(rows["episode"]) == {200} and "200" in why      # the first episode both have
    rows, _ = select_episode(df, at="last")
    assert dict(zip(rows["run_id"], rows["episode"])) == {"a": 300, "b": 400}
    rows, _ = select_episode(df, at=350)
    assert dict(zip(rows["run_id"], rows["episode"])) == {"a": 300, "b": 200}
    rows, _ = select_episode(df, at=0.5, budgets=pd.Series({"a": 300, "b": 800}))
    assert dict(zip(rows["run_id"], rows["episode"])) == {"a": 100, "b": 400}


def test_seed_speed_auc_threshold_and_censoring():
    """AUC as the study runner defines it: each report's reward stands for the episodes since the
    previous report, divided by the episodes trained; an unreached threshold is censored at the budget;
    a diverged seed scores the task's lowest reward from its divergence on."""
    rows = []
    for seed, rewards in ((0, [0.0, 0.5, 1.0]), (1, [0.2, 0.2, 0.2])):
        for ep, r in zip((100, 200, 400), rewards):
            rows.append(("r", ep, seed, "eval_reward", r))
    rows.append(("r", 200, 0, "episodes_to_threshold", 150.0))
    rows.append(("r", 400, 0, "episodes_to_threshold", 150.0))
    rows.append(("r", 400, 1, "diverged", 1.0))
    seeds = pd.DataFrame(rows, columns=["run_id", "episode", "seed", "metric", "value"])
    st = _study([{"run_id": "r", "episodes": 400}], seeds=seeds)
    s = seed_speed(st).set_index("seed")
    assert s.loc[0, "auc_reward"] == pytest.approx((0 * 100 + 0.5 * 100 + 1.0 * 200) / 400)
    # seed 1 diverged at its report of episode 400: a failure from there on (the task's floor, -1)
    assert s.loc[1, "auc_reward"] == pytest.approx((0.2 * 200 - 1.0 * 200) / 400)
    assert s.loc[0, "final_reward"] == 1.0 and s.loc[1, "final_reward"] == -1.0
    assert (s.loc[0, "episodes_to_threshold"], s.loc[0, "reached"]) == (150.0, True)
    assert (s.loc[1, "episodes_to_threshold"], s.loc[1, "reached"]) == (400.0, False)
    assert (bool(s.loc[0, "diverged"]), bool(s.loc[1, "diverged"])) == (False, True)


def test_select_tuned_prefers_confirm_then_the_objective():
    trials = [
        {"run_id": "a", "cell": "c1", "status": "finished", "stage": "search", "lr": 0.1, "auc_reward_mean": 0.9},
        {"run_id": "b", "cell": "c1", "status": "finished", "stage": "search", "lr": 0.01, "auc_reward_mean": 0.5},
        {"run_id": "c", "cell": "c1", "status": "finished", "stage": "confirm", "lr": 0.01, "auc_reward_mean": 0.4},
        {"run_id": "d", "cell": "c2", "status": "finished", "stage": "search", "lr": 0.1, "auc_reward_mean": 0.2},
        {"run_id": "e", "cell": "c2", "status": "diverged", "stage": "search", "lr": 0.3, "auc_reward_mean": 0.7},
        {"run_id": "f", "cell": "c2", "status": "failed", "stage": "search", "lr": 1.0, "auc_reward_mean": 0.99},
        {"run_id": "g", "cell": "c3", "status": "failed", "stage": "search", "lr": 1.0},
    ]
    tuned = select_tuned(_study(trials))
    assert dict(zip(tuned["cell"], tuned["run_id"])) == {"c1": "c", "c2": "e"}   # failed trials never chosen
    tuned = select_tuned(_study(trials), objective="auc_reward_mean", mode="min")
    assert dict(zip(tuned["cell"], tuned["run_id"])) == {"c1": "c", "c2": "d"}


def test_probe_at_sums_layers_and_reads_cross_rule_labels():
    rows = []
    for run, scale in (("a", 1.0), ("b", 2.0)):
        for ep in (100, 200):
            for l in (1, 2):
                rows.append((run, ep, f"probe_var_l{l}_mean", scale * l * ep))
                rows.append((run, ep, f"probe_uwm_var_l{l}_mean", 10 * scale * l))
    curves = pd.DataFrame(rows, columns=["run_id", "episode", "metric", "value"])
    st = _study([{"run_id": "a", "episodes": 200}, {"run_id": "b", "episodes": 200}], curves=curves)
    own, why = probe_at(st)
    assert list(own["episode"]) == [100, 100]
    assert own.set_index("run_id")["total"].to_dict() == {"a": 300.0, "b": 600.0}
    cross, _ = probe_at(st, label="uwm", at="last")
    assert cross.set_index("run_id")["l2"].to_dict() == {"a": 20.0, "b": 40.0}


def test_trial_row_per_layer_lr_baseline_variant_and_crashed_runs():
    """One child run as the study runner writes it (params are json.dumps strings) becomes one trials row."""
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

    from analysis.load import _trial_row

    def run(params, tags, status="FINISHED"):
        info = RunInfo(run_id="r" * 32, experiment_id="1", user_id="u", status=status, start_time=1000,
                       end_time=2000, lifecycle_stage="active", run_name="p")
        return Run(info, RunData(metrics=[Metric("auc_reward_mean", 0.5, 0, 10), Metric("eval_reward_mean", 0.7, 0, 10)],
                                 params=[Param(k, v) for k, v in params.items()],
                                 tags=[RunTag(k, v) for k, v in tags.items()]))

    params = {"rule": "reinforce", "baseline": "ema", "hidden": "[16, 16]", "lr": "[0.01, 0.001, 0.1]",
              "outgoing_norm": "null", "cell.rule": "reinforce"}
    row = _trial_row(run(params, {"uwm.status": "finished", "uwm.cell": "rule=reinforce|baseline=ema",
                                  "uwm.stage": "search", "uwm.pack": "pack-0001"}))
    assert row["rule_variant"] == "reinforce(baseline=ema)"
    assert row["lr"] == pytest.approx(0.01) and row["lr_per_layer"] and row["lr_text"] == "[0.01, 0.001, 0.1]"
    assert row["lr_l2"] == 0.001 and math.isnan(row["outgoing_norm"])
    assert (row["width"], row["depth"], row["hidden_units"]) == (16, 2, 32)
    assert row["auc_reward_mean"] == 0.5 and row["last_eval_reward_mean"] == 0.7
    assert (row["status"], row["stage"], row["pack"]) == ("finished", "search", "pack-0001")
    crashed = _trial_row(run({"rule": "uwm"}, {}, status="FAILED"))
    assert crashed["status"] == "failed" and crashed["rule_variant"] == "uwm"
