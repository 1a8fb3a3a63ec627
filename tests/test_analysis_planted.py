"""Planted answers the analysis must recover (issue 12), in process on hand-built studies: each test
names the wrong method it guards against."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.load import Study
from analysis.speed import cell_summary, seed_speed


def _study(trials, seed_rows=(), name="t", curves=None):
    seeds = pd.DataFrame(list(seed_rows), columns=["run_id", "episode", "seed", "metric", "value"])
    empty = pd.DataFrame(columns=["run_id", "episode", "metric", "value"])
    return Study(name=name, parent_run_id="p", experiment_id="0", tracking_uri=None, tags={}, spec=None,
                 trials=pd.DataFrame(trials), curves=curves if curves is not None else empty, seed_curves=seeds)


def _trial(run_id, cell, rule="uwm", lr=0.01, stage="search", episodes=1000, **extra):
    return {"run_id": run_id, "cell": cell, "status": "finished", "stage": stage, "rule": rule, "rule_variant": rule,
            "lr": lr, "episodes": episodes, "seeds": 4, **extra}


def _curve(run_id, seed, rewards, every=250, reached=None, diverged_at=None):
    rows = []
    for i, r in enumerate(rewards, 1):
        ep = i * every
        rows.append((run_id, ep, seed, "eval_reward", r))
        rows.append((run_id, ep, seed, "diverged", float(diverged_at is not None and ep >= diverged_at)))
        if reached is not None and ep >= reached:
            rows.append((run_id, ep, seed, "episodes_to_threshold", float(reached)))
        if diverged_at is not None and ep >= diverged_at:
            rows.append((run_id, ep, seed, "diverged_at", float(diverged_at)))
    return rows


# ----------------------------------------------------------------------------- divergence and censoring


def test_diverged_seeds_are_failures_not_successes():
    """Planted: every seed learns to reward 1.0 and then diverges at episode 500 (its frozen parameters
    would still score 1.0). Old: AUC 1.0, final 1.0, 100 % reached. Right: final = the task's floor,
    never reached, AUC pulled down by the failed half of the budget."""
    rows = []
    for s in range(4):
        rows += _curve("r", s, [1.0, 1.0, 1.0, 1.0], reached=250, diverged_at=500)
    st = _study([_trial("r", "c")], rows)
    s = seed_speed(st)
    assert (s["final_reward"] == -1.0).all() and not s["reached"].any()
    # the report at the divergence no longer counts: 1.0 up to episode 250, the floor -1 for the other 750
    assert s["auc_reward"].to_numpy() == pytest.approx([(1.0 * 250 - 1.0 * 750) / 1000] * 4)
    cell = cell_summary(st, n_boot=200).iloc[0]
    assert cell["reached_fraction"] == 0 and cell["final_reward"] == -1.0


def test_censored_seeds_give_a_kaplan_meier_median_not_the_budget():
    """Planted: 3 of 5 seeds reach the threshold at 200, 300, 400; two never do within 1000. The mean with
    the budget filled in (old) is 580 and its interval pretends to be observed; KM: median 400 (the third
    event), restricted mean = area under the KM curve (580 here too, labelled as restricted), and with all
    seeds censored the median is unknown (inf), never "1,000 [1,000, 1,000]"."""
    rows = []
    for s, reach in enumerate([200, 300, 400, None, None]):
        rows += _curve("r", s, [0.1, 0.5, 0.9, 0.9], reached=reach)
    cell = cell_summary(_study([_trial("r", "c")], rows), n_boot=200).iloc[0]
    assert cell["episodes_to_threshold_median"] == 400
    assert cell["episodes_to_threshold"] == pytest.approx(200 + 0.8 * 100 + 0.6 * 100 + 0.4 * 600)
    none = []
    for s in range(4):
        none += _curve("r", s, [0.1, 0.2, 0.2, 0.2])
    cell = cell_summary(_study([_trial("r", "c")], none), n_boot=200).iloc[0]
    assert math.isinf(cell["episodes_to_threshold_median"]) and cell["censored_fraction"] == 1


def test_km_restricted_mean_matches_statsmodels_curve():
    from statsmodels.duration.survfunc import SurvfuncRight

    from analysis.stats import km_rmst

    rng = np.random.default_rng(4)
    t = rng.integers(1, 20, 30).astype(float)
    e = rng.random(30) < 0.6
    sf = SurvfuncRight(t, e.astype(int))
    grid = np.concatenate([[0.0], sf.surv_times, [25.0]])
    surv = np.concatenate([[1.0], sf.surv_prob])
    assert km_rmst(t, e, 25.0) == pytest.approx(float((surv * np.diff(grid)).sum()))


# ----------------------------------------------------------------------------- wrong variant


def test_variance_is_never_taken_from_another_variant():
    """Planted trap: hwm of order 5 trained, the cross-rule probe lists only hwm of order 3. Old: order 3's
    variance is used for order 5 (the only hwm entry). Right: no matched label (the trial keeps its own)."""
    from analysis.variance_speed import _label_of

    row = pd.Series({"rule": "hwm", "rule_options.order": 5, "probe.rules": [{"rule": "hwm", "options": {"order": 3}}]})
    assert _label_of(row) is None
    row = pd.Series({"rule": "hwm", "rule_options.order": 5.0,
                     "probe.rules": [{"rule": "hwm", "options": {"order": 3}}, {"rule": "hwm", "options": {"order": 5}}]})
    assert _label_of(row) == "hwm_order-5"
    ema = pd.Series({"rule": "reinforce", "baseline": "ema", "probe.rules": [{"rule": "reinforce", "options": {}}]})
    assert _label_of(ema) is None        # plain REINFORCE's probe does not measure the EMA-baseline variant
    both = [{"rule": "reinforce", "options": {}}, {"rule": "reinforce", "options": {}, "baseline": "ema"}]
    assert _label_of(pd.Series({"rule": "reinforce", "baseline": "ema", "probe.rules": both})) == "reinforce_baseline-ema"
    assert _label_of(pd.Series({"rule": "reinforce", "baseline": "none", "probe.rules": both})) == "reinforce"


# ----------------------------------------------------------------------------- compute scaling


@pytest.mark.slow
def test_fixed_cost_does_not_hide_a_cubic_cost():
    """Planted: t = 2e-4 + 1e-11 n^3 (an O(m²n) rule behind a fixed cost), 3 timings per width. The bare
    power law (old) finds an exponent ~0.4 and declares O(m²n) excluded; t = a + b n^k recovers k = 3."""
    from analysis.stats import cost_verdict, fit_cost

    rng = np.random.default_rng(1)
    n = np.repeat([8, 16, 32, 64, 128, 256, 512], 3).astype(float)
    t = (2e-4 + 1e-11 * n ** 3) * np.exp(0.03 * rng.standard_normal(n.size))
    fit = fit_cost(n, t)
    assert fit.lo <= 3 <= fit.hi and fit.hi - fit.lo < 0.3
    assert "consistent with O(m²n)" in cost_verdict(fit) and "O(mn) excluded" in cost_verdict(fit)
    # a fixed cost dominating every width gives no verdict at all
    flat = (1e-3 + 1e-12 * n ** 2) * np.exp(0.03 * rng.standard_normal(n.size))
    assert "no verdict" in cost_verdict(fit_cost(n, flat))


def test_compute_difference_uwm_minus_reinforce():
    """Planted: uwm k = 2, reinforce k = 2 (same O(mn)), both behind fixed costs: the difference interval
    contains 0 and the difference is "not shown" with its power; a planted k = 3 uwm is shown to exceed (and
    reinforce, against it, to be below)."""
    from analysis.scaling import compare_compute, compute_fits

    rng = np.random.default_rng(2)
    widths = np.repeat([16, 32, 64, 128, 256, 512], 4).astype(float)
    rows = []
    for rule, b, k in (("uwm", 3e-9, 2.0), ("reinforce", 2e-9, 2.0), ("uwm3", 1e-11, 3.0)):
        t = (5e-5 + b * widths ** k) * np.exp(0.03 * rng.standard_normal(widths.size))
        rows += [{"quantity": "seconds_per_episode", "rule_variant": rule, "context": "", "width": w, "value": v}
                 for w, v in zip(widths, t)]
    table, fits = compute_fits(pd.DataFrame(rows))
    same = compare_compute(fits).iloc[0]
    assert same["difference_lo"] <= 0 <= same["difference_hi"]
    assert same["verdict"] == ("uwm's exponent differs from reinforce's: not shown (power 100% against exponents "
                               "0.25 apart)")
    more = compare_compute(fits, rule="uwm3").iloc[0]
    assert more["difference_lo"] > 0.5 and more["verdict"] == "uwm3's exponent exceeds reinforce's: shown"
    less = compare_compute(fits, rule="reinforce", reference="uwm3").iloc[0]
    assert less["difference_hi"] < -0.5 and less["verdict"] == "reinforce's exponent is below uwm3's: shown"


def test_compute_fit_prefers_the_dedicated_timing_run_and_says_so():
    """Planted: the study's own seconds_per_episode are flat (every pack timed behind the same shared-machine
    overhead, 1e-3 s, with 30 % noise), which hides uwm's planted k = 3; the dedicated timing run (study.timing,
    4 windows per width) has t = 5e-5 + 1e-11 n^3 for uwm. The fit must use the timing run, recover k = 3 and
    name its source; without it, it falls back to the study's timings and says that instead."""
    from analysis.scaling import compute_fits, scaling_data

    rng = np.random.default_rng(3)
    widths = [16, 32, 64, 128, 256, 512]
    trials = [_trial(f"uwm-{w}", f"rule=uwm|hidden=[{w}, {w}]", width=w, hidden=[w, w],
                     final_seconds_per_episode=1e-3 * math.exp(0.3 * rng.standard_normal()),
                     final_episodes_to_threshold_mean=500.0) for w in widths]
    timing = pd.DataFrame([{"rule": "uwm", "rule_options": "{}", "baseline": "none", "rule_variant": "uwm", "width": w,
                            "repeat": r, "seconds_per_episode": (5e-5 + 1e-11 * w ** 3) * math.exp(0.03 * rng.standard_normal())}
                           for w in widths for r in range(4)])
    own = scaling_data(_study(trials))
    assert own.attrs["compute_source"].startswith("the study's own")
    st = _study(trials)
    st.timing = timing
    data = scaling_data(st)
    assert data.attrs["compute_source"].startswith("the dedicated timing run")
    assert (data["quantity"] == "seconds_per_episode").sum() == len(timing)
    fit = compute_fits(data)[0].iloc[0]
    assert fit["k_lo"] <= 3 <= fit["k_hi"] and fit["k_hi"] - fit["k_lo"] < 0.5
    old = compute_fits(own)[0]
    assert not len(old) or not (old.iloc[0]["k_lo"] <= 3 <= old.iloc[0]["k_hi"] and old.iloc[0]["k_hi"] - old.iloc[0]["k_lo"] < 0.5)


# ----------------------------------------------------------------------------- bootstrap streams


def test_intervals_do_not_depend_on_row_order_and_fits_are_not_coupled():
    """Planted: fit B is fit A's data times width^0.1 (the same noise realisation). Old: both fits draw the
    same indices (one seed), so the difference's interval collapses to ~0 width; permuting B's rows inside
    each width widens it tenfold. Right: independent streams, the interval is the same either way (up to
    Monte-Carlo error) and as wide as the two fits' own spreads combined."""
    from analysis.stats import exponent_difference, fit_power_law

    rng = np.random.default_rng(0)
    x = np.repeat([8, 16, 32, 64, 128], 6).astype(float)
    y = 3 * x ** 1.5 * np.exp(0.2 * rng.standard_normal(x.size))
    a = fit_power_law(x, y, n_boot=2000)
    b = fit_power_law(x, y * x ** 0.1, n_boot=2000)
    perm = np.concatenate([rng.permutation(np.flatnonzero(x == v)) for v in np.unique(x)])
    b_perm = fit_power_law(x[perm], (y * x ** 0.1)[perm], n_boot=2000)
    d, d_perm = exponent_difference(a, b), exponent_difference(a, b_perm)
    width, width_perm = d.hi - d.lo, d_perm.hi - d_perm.lo
    single = float(np.diff(np.quantile(a.draws, [0.025, 0.975]))[0])    # plain percentiles, as the difference
    assert width == pytest.approx(width_perm, rel=0.15)
    assert width == pytest.approx(math.sqrt(2) * single, rel=0.25)


def test_bootstrap_interval_is_invariant_to_permutation():
    from analysis.stats import bootstrap_ci

    x = np.random.default_rng(5).normal(size=12)
    a = bootstrap_ci(x, n_boot=4000)
    b = bootstrap_ci(x[::-1], n_boot=4000)
    assert a.lo == pytest.approx(b.lo, abs=0.08) and a.hi == pytest.approx(b.hi, abs=0.08)


# ----------------------------------------------------------------------------- fastest rule, tuning, replication


def test_fastest_rule_ranking_with_paired_differences():
    """Planted: per seed s, uwm reaches at 200 + 10 s and reinforce 40 episodes later (the same seed's luck);
    ste never reaches. Paired: reinforce slower than uwm with an interval excluding 0 (an unpaired interval
    on 4 seeds with this spread would not); ste ranked last."""
    from analysis.fastest import fastest_rules

    trials, rows = [], []
    luck = [0, 300, 100, 500]
    for rule, shift in (("uwm", 0), ("reinforce", 40), ("ste", None)):
        trials.append(_trial(rule, f"rule={rule}", rule=rule))
        for s in range(4):
            reach = None if shift is None else 200 + luck[s] + shift
            rows += _curve(rule, s, [0.5, 0.9, 0.9, 0.9], reached=reach)
    table = fastest_rules(_study(trials, rows), n_boot=1000).set_index("rule_variant")
    assert list(table.sort_values("rank").index) == ["uwm", "reinforce", "ste"]
    assert table.loc["reinforce", "paired"] and table.loc["reinforce", "difference"] == pytest.approx(40)
    assert table.loc["reinforce", "slower_than_reference"] and table.loc["ste", "slower_than_reference"]


def test_rules_that_never_reach_the_threshold_are_tied_and_none_reached_is_not_answerable():
    """Planted: uwm reaches on every seed, ste and hwm on none. The two stand at the budget together: tied
    at rank 2 (not 2 and 3 by name). In a setting where no rule reaches, nothing is ranked and the report's
    answer says why, not "1. hwm 1000; 2. ste 1000; ..."."""
    from analysis.fastest import fastest_rules
    from analysis.questions.fastest_rule import _fastest_section

    trials, rows = [], []
    for width, reaches in ((8, True), (16, False)):
        for rule in ("uwm", "ste", "hwm"):
            run = f"{rule}{width}"
            trials.append(_trial(run, f"rule={rule}|hidden=[{width}]", rule=rule, hidden=f"[{width}]"))
            for s in range(4):
                rows += _curve(run, s, [0.5, 0.9, 0.9, 0.9], reached=200 + 50 * s if reaches and rule == "uwm" else None)
    table = fastest_rules(_study(trials, rows), n_boot=200)
    assert table["setting"].nunique() == 2, table
    ranked = table[table["reached_fraction"].groupby(table["setting"]).transform("max") > 0].set_index("rule_variant")
    assert ranked["rank"].to_dict() == {"uwm": 1, "ste": 2, "hwm": 2}
    unranked = table[table["reached_fraction"].groupby(table["setting"]).transform("max") == 0]
    assert len(unranked) == 3 and unranked["rank"].isna().all()
    answers = dict(_fastest_section(table, 0.95).answer)
    assert len(answers) == 2
    (open_setting, said), = [(k, v) for k, v in answers.items() if "16" in k]
    assert said.startswith("not answerable: no seed of any rule reached the threshold") and "1." not in said
    ranked_answer = [a for k, a in answers.items() if k != open_setting][0]
    assert ranked_answer.startswith("uwm, ahead of hwm & ste: 1. uwm"), ranked_answer   # tie groups, then the ranking


def test_settings_with_an_axis_some_cells_do_not_set_are_ranked_apart():
    """Bernoulli cells beside categorical ones (categories-study): `categories` is missing (NaN) in the Bernoulli
    trials. Each unit type is its own setting, the missing value read as "-" (pandas 3 keeps NaN through
    astype(str), and joining it failed: the categorical-units report crashed here)."""
    from analysis.fastest import fastest_rules

    trials, rows = [], []
    for units, categories, hidden in (("bernoulli", math.nan, "[32, 32]"), ("categorical", 3.0, "[11, 11]")):
        for rule in ("uwm", "wm"):
            run = f"{rule}-{units}"
            cell = f"hidden_units={units}|" + ("" if units == "bernoulli" else "categories=3|") + f"hidden={hidden}|rule={rule}"
            trials.append(_trial(run, cell, rule=rule, hidden=hidden, hidden_units=units, categories=categories))
            for s in range(4):
                rows += _curve(run, s, [0.5, 0.9, 0.9, 0.9], reached=200 + 50 * s)
    table = fastest_rules(_study(trials, rows), n_boot=200)
    assert sorted(table["setting"].unique()) == ["[11, 11], 3.0, categorical", "[32, 32], -, bernoulli"], table
    assert (table.groupby("setting")["rule_variant"].nunique() == 2).all()


def test_tuning_warnings_flag_edge_few_points_and_no_confirm():
    from analysis.speed import tuning_warnings

    trials = [_trial(f"a{i}", "c1", lr=lr, auc_reward_mean=score) for i, (lr, score) in
              enumerate([(0.001, 0.1), (0.01, 0.2), (0.1, 0.9)])]
    trials += [_trial(f"b{i}", "c2", lr=lr, auc_reward_mean=score) for i, (lr, score) in
               enumerate([(0.001, 0.1), (0.003, 0.2), (0.01, 0.9), (0.03, 0.3), (0.1, 0.2), (0.3, 0.1)])]
    trials.append(_trial("b9", "c2", lr=0.01, stage="confirm", auc_reward_mean=0.8))
    w = tuning_warnings(_study(trials)).set_index("cell")["warnings"]
    assert "upper edge" in w["c1"] and "only 3" in w["c1"] and "no confirm" in w["c1"]
    assert w["c2"] == ""


def test_replication_reports_train_reward_all_with_population_std():
    from analysis.speed import replication_table

    values = [0.80, 0.79, 0.81, 0.80]
    rows = []
    for s, v in enumerate(values):
        rows += _curve("w", s, [0.5, 0.9])
        rows += [("w", 250, s, "train_reward_all", 0.3), ("w", 500, s, "train_reward_all", v)]
    trials = [_trial("w", "rule=wm", rule="wm", rule_variant="wm(p=2)")]
    trials[0]["rule_variant"] = "wm(p=2)"
    t = replication_table(_study(trials, rows, name="replicate-chung2022")).iloc[0]
    assert t["train_reward_all"] == pytest.approx(np.mean(values))
    assert t["std_ddof0"] == pytest.approx(np.std(values, ddof=0))
    assert (t["published"], t["published_std"]) == (0.81, 0.01)


# ----------------------------------------------------------------------------- the π boundary at initialisation


def _init_bias_study(seed=0):
    """Planted: relative squared bias 0 for uwm at every norm; for hwm of order k, 0.02 / k below π (falls
    with the order) and 0.05 k above π (grows with it); exact_sq 1, per-seed noise 0.005 (bias_sq and the
    split-half bias_split); a quarter of the weights beyond the Taylor radius above π, and the probe's
    other initial metrics (a variance of 7 000) beside them, which must not leak into beyond_radius."""
    rng = np.random.default_rng(seed)
    norms = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    labels = {"uwm": lambda c: 0.0}
    for k in (1, 3, 5):
        labels[f"hwm_order-{k}"] = (lambda k: lambda c: 0.02 / k if c < math.pi else 0.05 * k)(k)
    trials, rows = [], []
    for c in norms:
        rid = f"uwm-{c}"
        trials.append(_trial(rid, f"rule=uwm|outgoing_norm={c}", outgoing_norm=c))
        for s in range(12):
            rows += [(rid, 250, s, "eval_reward", 0.5), (rid, 250, s, "diverged", 0.0),
                     (rid, 250, s, "init_unit_max_outgoing_l1", 0.75 * c), (rid, 250, s, "init_beyond_radius_l1",
                                                                             float(c > math.pi) * 0.25),
                     (rid, 250, s, "init_radius_ratio_l1", 0.3 * c)]
            for label, planted in labels.items():
                for layer in (1, 2):
                    value = (planted(c) if layer == 1 else 0.0) + 0.005 * rng.standard_normal()
                    split = value - planted(c) * (layer == 1) + (planted(c) if layer == 1 else 0.0) \
                        + 0.005 * rng.standard_normal()
                    rows += [(rid, 250, s, f"init_probe_{label}_bias_sq_l{layer}", value),
                             (rid, 250, s, f"init_probe_{label}_bias_sq_se_l{layer}", 0.005),
                             (rid, 250, s, f"init_probe_{label}_bias_split_l{layer}", split),
                             (rid, 250, s, f"init_probe_{label}_var_l{layer}", 7000.0),
                             (rid, 250, s, f"init_probe_{label}_exact_sq_l{layer}", 1.0)]
    return _study(trials, rows)


def test_pi_boundary_from_the_debiased_bias_at_initialisation():
    """uwm unbiased at every norm (no breakdown, with the power stated); hwm of order 3 (relative bias 0.08
    below π, 0.39 above) breaks down at norm 4, the first above π, though a bias is detected below too;
    the order x norm interaction has the planted signs."""
    from analysis.norm_stress import init_bias_breakdown, init_bias_table, order_norm_interaction

    table = init_bias_table(_init_bias_study())
    bd = init_bias_breakdown(table).set_index("label")
    assert math.isnan(bd.loc["uwm", "breakdown_norm"]) and "any bias at any norm: not shown (power" in \
        bd.loc["uwm", "verdict"] and "unbiased" not in bd.loc["uwm", "verdict"]
    assert bd.loc["uwm", "min_power_below"] > 0.95
    assert bd.loc["hwm_order-3", "breakdown_norm"] == 4.0 and "above π" in bd.loc["hwm_order-3", "verdict"]
    assert {"1", "2"} <= set(bd.loc["hwm_order-3", "biased_norms"].split(", "))  # a bias below π too, below the margin
    row = table[(table["label"] == "hwm_order-3") & (table["outgoing_norm"] == 4.0) & (table["layer"] == 1)].iloc[0]
    assert row["relative_bias"] == pytest.approx(math.sqrt(0.15), rel=0.05)
    assert row["unit_max_outgoing"] == pytest.approx(3.0) and row["beyond_radius"] == pytest.approx(0.25)
    assert row["radius_ratio"] == pytest.approx(1.2)
    assert table["beyond_radius"].dropna().between(0, 1).all()          # a fraction (the old code: 1 750)
    inter = order_norm_interaction(table)
    assert inter["order_below"] < 0 and inter["order_x_above"] > 0 and inter["order_x_above_p"] < 0.01


def test_the_stated_power_ignores_layers_without_gradient():
    """A layer whose exact gradient is a vanishing share of the network's (here 1e-6 of it) has no power
    against a relative bias (relative to ~0); the power of a "no breakdown" claim is stated over the layers
    that carry the gradient, so uwm's stays high (the old minimum over every layer read 0%)."""
    from analysis.norm_stress import init_bias_breakdown, init_bias_table

    table = init_bias_table(_init_bias_study())
    idle = table[(table["label"] == "uwm") & (table["layer"] == 2)].assign(layer=3, exact_sq=1e-6, power=0.0)
    bd = init_bias_breakdown(pd.concat([table, idle], ignore_index=True)).set_index("label")
    assert bd.loc["uwm", "min_power_below"] > 0.95
    assert "not shown (power 100% against a 20% relative bias)" in bd.loc["uwm", "verdict"]


def test_the_verdict_says_up_to_which_norm_the_test_has_power():
    """Planted: uwm's test loses power from norm 4 on (its variance grows with the norm), and again at 1 in
    another variant: "80% power up to norm 3" for the first, "under 80% power from norm 0.5 on" when the
    smallest norm already lacks it. The output layer (REINFORCE in every rule: no power, whatever the norm)
    does not count."""
    from analysis.norm_stress import init_bias_breakdown, init_bias_table

    table = init_bias_table(_init_bias_study())
    uwm = table["label"] == "uwm"
    output = table[table["layer"] == 2].assign(layer=3, power=0.0)                # carries gradient, no power
    table.loc[uwm & (table["layer"] == 1) & (table["outgoing_norm"] >= 4), "power"] = 0.3
    table.loc[uwm & (table["layer"] == 2) & (table["outgoing_norm"] == 1.0), "power"] = 0.5
    bd = init_bias_breakdown(pd.concat([table, output], ignore_index=True)).set_index("label")
    assert bd.loc["uwm", "powered_up_to"] == 0.5 and "80% power up to norm 0.5" in bd.loc["uwm", "verdict"]
    table.loc[uwm & (table["layer"] == 2), "power"] = 0.99
    bd = init_bias_breakdown(pd.concat([table, output], ignore_index=True)).set_index("label")
    assert bd.loc["uwm", "powered_up_to"] == 3.0 and bd.loc["uwm", "verdict"].endswith("80% power up to norm 3")
    assert bd.loc["uwm", "min_power_below"] == pytest.approx(0.3)
    table.loc[uwm & (table["layer"] == 1) & (table["outgoing_norm"] == 0.5), "power"] = 0.1
    bd = init_bias_breakdown(pd.concat([table, output], ignore_index=True)).set_index("label")
    assert math.isnan(bd.loc["uwm", "powered_up_to"])
    assert bd.loc["uwm", "verdict"].endswith("under 80% power from norm 0.5 on")


# ----------------------------------------------------------------------------- variance versus speed


def test_within_setting_correlation_survives_a_sign_flipping_confound():
    """Planted: in each of two settings (width 8, width 512) the 5 rules' speed falls with their variance;
    the wide setting has 100x the variance (parameter count) and learns faster. Pooled raw (old 'all rules'
    scope), rho is positive; within settings, pooled, it is -1 with an interval below 0."""
    from analysis.variance_speed import pooled_within_setting, variance_speed_correlations

    rows = []
    for width, scale, base in ((8, 1.0, 0.5), (512, 100.0, 0.9)):
        for i, rule in enumerate(["reinforce", "ste", "wm", "hwm", "uwm"]):
            rows.append({"layer": "total", "rule_variant": rule, "setting": f"width={width}", "cell": f"{rule}|{width}",
                         "variance": scale * (1 + i), "auc_reward": base - 0.02 * i})
    table = pd.DataFrame(rows)
    old = variance_speed_correlations(table, n_boot=500)
    assert old[old["scope"] == "all rules"]["rho"].iloc[0] > 0.5
    new = pooled_within_setting(table, n_boot=500).iloc[0]
    assert new["rho"] == pytest.approx(-1, abs=1e-3) and new["rho_hi"] < 0 and new["n_settings"] == 2


def _seed_rows(speed_of):
    """Per-seed rows of 2 settings x 5 rules x 6 seeds: variance 1..5 by rule, speed from speed_of."""
    rows = []
    for setting in ("width=8", "width=64"):
        for i, rule in enumerate(["reinforce", "ste", "wm", "hwm", "uwm"]):
            for s in range(6):
                rows.append({"layer": "total", "setting": setting, "cell": f"{rule}|{setting}", "seed": s,
                             "variance": 1.0 + i, "auc_reward": speed_of(setting, i, s)})
    seeds = pd.DataFrame(rows)
    table = seeds.groupby(["layer", "setting", "cell"], as_index=False)[["variance", "auc_reward"]].mean()
    return table, seeds


def test_correlation_bootstrap_pairs_seeds_across_the_rules_of_a_setting():
    """Planted: each seed number moves every rule of a setting alike (same initial parameters and streams:
    a shared seed effect of sd 0.2), and within it speed falls by 0.01 per step of variance. Paired seeds
    cancel the shared effect: the interval sits at -1. Resampling seeds per cell (unpaired) adds the shared
    effect as noise (0.2 / sqrt(6) ~ 0.08 per cell mean against steps of 0.01): the interval spans 0."""
    from analysis.variance_speed import pooled_within_setting

    effect = np.random.default_rng(5).normal(0, 0.2, (2, 6))
    table, seeds = _seed_rows(lambda setting, i, s: 0.7 - 0.01 * i + effect[int(setting == "width=64"), s])
    paired = pooled_within_setting(table, n_boot=1000, seeds=seeds).iloc[0]
    unpaired = pooled_within_setting(table, n_boot=1000, seeds=seeds, pairing="independent").iloc[0]
    assert paired["rho"] == pytest.approx(-1, abs=1e-3) and paired["rho_hi"] < -0.99 and paired["seeds"] == "paired"
    assert unpaired["rho_lo"] < 0 < unpaired["rho_hi"]


def test_correlation_bootstrap_propagates_seed_noise_that_cells_only_resampling_ignores():
    """Planted: per-seed speeds carry large noise independent between cells (sd 0.3), built so that the cell
    means fall exactly with variance (steps of 0.01). The old cells-only bootstrap treats those means as
    exact: interval at -1. Resampling the seeds (paired) shows the order is within seed noise: it spans 0."""
    from analysis.variance_speed import pooled_within_setting

    noise = np.random.default_rng(6).normal(0, 0.3, (2, 5, 6))
    noise -= noise.mean(2, keepdims=True)                       # cell means exactly 0.7 - 0.01 i
    table, seeds = _seed_rows(lambda setting, i, s: 0.7 - 0.01 * i + noise[int(setting == "width=64"), i, s])
    old = pooled_within_setting(table, n_boot=1000).iloc[0]
    new = pooled_within_setting(table, n_boot=1000, seeds=seeds).iloc[0]
    assert old["rho_hi"] < -0.99 and old["seeds"] == "none"
    assert new["rho"] == pytest.approx(-1, abs=1e-3) and new["rho_lo"] < 0 < new["rho_hi"]


@pytest.mark.slow
def test_variance_at_matched_reward_levels_is_read_where_each_seed_reached_the_level():
    """Planted: 2 settings x 5 rules, 4 seeds; speed (AUC) falls with the rule index i. On the states where
    each seed first reached reward 0.7 (``at_reward_0.7_probe_*``) rule i's variance is 1 + i: rho -1. On
    the initial parameters it is 5 - i: rho +1, so an analysis reading the only matched state it had before
    (initialisation) gets the opposite answer. One seed per cell of one setting never reaches 0.7: it has
    no probe there, and the fraction of seeds probed (35 / 40) is reported."""
    from analysis.variance_speed import matched_state_correlations

    rules = ["reinforce", "ste", "wm", "hwm", "uwm"]
    trials, rows, means = [], [], []
    for norm in (1.0, 2.0):
        for i, rule in enumerate(rules):
            rid = f"{rule}-{norm}"
            trials.append(_trial(rid, f"rule={rule}|outgoing_norm={norm}", rule=rule, outgoing_norm=norm, width=8))
            per = {}
            for s in range(4):
                reached = not (norm == 2.0 and s == 3)
                for ep in (250, 500, 750, 1000):
                    vals = {"eval_reward": 0.5 - 0.05 * i + 0.01 * s, "diverged": 0.0}
                    if ep == 250:
                        vals["init_probe_var_l1"] = 5.0 - i
                        vals.update({f"init_probe_{r}_var_l1": 5.0 - j for j, r in enumerate(rules)})
                    if reached and ep >= 500:
                        vals["at_reward_0.7_probe_var_l1"] = 1.0 + i
                        vals.update({f"at_reward_0.7_probe_{r}_var_l1": 1.0 + j for j, r in enumerate(rules)})
                    for metric, v in vals.items():
                        rows.append((rid, ep, s, metric, v))
                        per.setdefault((ep, metric), []).append(v)
            means += [(rid, ep, f"{metric}_mean", float(np.mean(v))) for (ep, metric), v in per.items()]
    curves = pd.DataFrame(means, columns=["run_id", "episode", "metric", "value"])
    st = _study(trials, rows, curves=curves)
    states = matched_state_correlations(st, n_boot=500).set_index("state")
    init, level = states.loc["initial parameters"], states.loc["reward 0.7"]
    assert init["rho"] == pytest.approx(1, abs=1e-3) and init["rho_lo"] > 0 and init["reached"] == 1
    assert level["rho"] == pytest.approx(-1, abs=1e-3) and level["rho_hi"] < 0
    assert level["reached"] == pytest.approx(35 / 40) and level["seeds"] == "paired" and level["n_settings"] == 2


def test_one_setting_at_rho_minus_one_does_not_decide_the_pooled_rho():
    """Planted: 7 settings at rho = +0.8 and one at exactly -1 (as resamples that repeat cells often are).
    The cell-weighted mean is (7 x 0.8 - 1) / 8 = 0.575. The old Fisher-z pooling clipped -1 to z = -7.25,
    which cancelled the 7 others: tanh((7 x 1.10 - 7.25) / 8) = 0.05, so a few ±1 resamples swung every
    bootstrap draw (the reduced norm-stress run's interval was [-0.69, 1.00])."""
    from analysis.variance_speed import _pooled_rho

    up = (np.arange(5.0), np.array([0.0, 2.0, 1.0, 4.0, 3.0]))            # rho 0.8
    down = (np.arange(5.0), -np.arange(5.0))                               # rho -1
    assert _pooled_rho([up] * 7 + [down]) == pytest.approx((7 * 0.8 - 1) / 8)
    old = math.tanh((7 * math.atanh(0.8) + math.atanh(-0.999999)) / 8)
    assert old < 0.1


def test_order_norm_interaction_resolves_a_geometric_growth_above_pi():
    """Planted: hwm's relative squared bias is 0.02 / k below π and 0.01 (4 c / π)^k above (it grows
    geometrically with the order k, as the Taylor remainder does outside its radius), times log-normal noise.
    The old OLS on the raw scale, where the largest rows carry all the leverage, leaves both the fall below π
    (p ~ 1) and the growth above (p ~ 0.1) unresolved; on the log scale both are resolved."""
    import statsmodels.formula.api as smf

    from analysis.norm_stress import order_norm_interaction

    rng = np.random.default_rng(4)
    rows = []
    for k in (1, 3, 5, 7):
        for c in (0.5, 1, 2, 3, 4, 6, 8):
            for layer in (1, 2):
                rel = (0.02 / k if c < math.pi else 0.01 * (4 * c / math.pi) ** k) * math.exp(0.5 * rng.standard_normal())
                rows.append({"label": f"hwm_order-{k}", "outgoing_norm": c, "layer": layer, "bias_sq": rel,
                             "exact_sq": 1.0})
    rows += [{"label": "uwm", "outgoing_norm": c, "layer": 3, "bias_sq": 0.0, "exact_sq": 1.0} for c in (0.5, 8)]
    table = pd.DataFrame(rows)
    new = order_norm_interaction(table)
    assert new["order_below"] < 0 and new["order_below_p"] < 0.01
    assert new["order_x_above"] > 0 and new["order_x_above_p"] < 0.01
    hwm = table[table["layer"] < 3].assign(order=lambda d: d["label"].str[-1].astype(float),
                                           above=lambda d: (d["outgoing_norm"] > math.pi).astype(float))
    old = smf.ols("bias_sq ~ order * above + C(layer)", data=hwm).fit(cov_type="HC3")
    assert old.pvalues["order"] > 0.05 and old.pvalues["order:above"] > 0.05


def test_the_order_by_radius_interaction_reads_the_per_weight_axis_and_reports_without_order_1():
    """Finding 3, planted: in layer 1 the column norm exceeds π at norms 4 and 6 but no weight lies beyond its
    radius (beyond_radius 0); in layer 2 a share of 0.3 does. The log10 relative squared bias is
    -2 - 0.1 k + 2 k·share (per unit of the beyond share, the order's slope grows by 2). Coded per weight the
    fit recovers 2 and -0.1; coded by column norm (the old axis) the layer-1 rows above π dilute it to ~0.3.
    The fit without order 1 is reported beside it and recovers the same slope."""
    from analysis.norm_stress import order_norm_interaction

    rng = np.random.default_rng(5)
    rows = []
    for k in (1, 3, 5, 7):
        for c in (0.5, 1, 2, 4, 6):
            for layer in (1, 2):
                share = 0.3 if (layer == 2 and c > math.pi) else 0.0
                rel = 10 ** (-2 - 0.1 * k + 2 * k * share + 0.02 * rng.standard_normal())
                rows.append({"label": f"hwm_order-{k}", "outgoing_norm": c, "layer": layer, "bias_sq": rel,
                             "exact_sq": 1.0, "beyond_radius": share})
    rows += [{"label": "uwm", "outgoing_norm": c, "layer": 3, "bias_sq": 0.0, "exact_sq": 1.0,
              "beyond_radius": math.nan} for c in (0.5, 6)]
    inter = order_norm_interaction(pd.DataFrame(rows))
    assert inter["axis"].startswith("share of weights beyond")
    assert inter["order_x_above"] == pytest.approx(2.0, abs=0.1) and inter["order_below"] == pytest.approx(-0.1, abs=0.02)
    assert inter["order_x_above_wo1"] == pytest.approx(2.0, abs=0.1) and inter["n_wo1"] == 30
    old = order_norm_interaction(pd.DataFrame(rows).drop(columns="beyond_radius"))
    assert old["axis"].startswith("column norm") and old["order_x_above"] < 1.0


def test_verdict_words_follow_the_statistics():
    """A rejection is "shown"; a non-rejection "not shown" with its power against the stated effect; a
    design that cannot answer says why; never a claim of the null."""
    from analysis.verdicts import verdict

    assert verdict(True, 0.3, "x") == "shown" and verdict(True) == "shown"
    assert verdict(False, 0.015, "a 20% relative bias") == "not shown (power 2% against a 20% relative bias)"
    assert verdict(False) == "not shown (power not computed)"
    assert verdict(True, unanswerable="no split-half statistic") == "not answerable (no split-half statistic)"


def test_scaling_fits_the_scale_free_noise_per_layer():
    """Finding 7: the width exponent of the noise is read per layer from nsr_exact (V / (B ||∇J||²) on the
    initial parameters), not from the variance summed over layers. Planted: layer 1's ratio grows as
    width^0.5, layer 2's is flat; the fits recover 0.5 and 0 per layer."""
    from analysis.scaling import scaling_data, scaling_fits

    rng = np.random.default_rng(6)
    widths = [8, 16, 32, 64, 128]
    trials = [_trial(f"uwm-{w}", f"rule=uwm|hidden=[{w}, {w}]", width=w, hidden=[w, w],
                     final_episodes_to_threshold_mean=500.0) for w in widths]
    rows = []
    for w in widths:
        for s in range(4):
            noise = np.exp(0.05 * rng.standard_normal(2))
            rows += [(f"uwm-{w}", 250, s, "eval_reward", 0.5),
                     (f"uwm-{w}", 250, s, "init_probe_nsr_exact_l1", 3.0 * w ** 0.5 * noise[0]),
                     (f"uwm-{w}", 250, s, "init_probe_nsr_exact_l2", 7.0 * noise[1])]
    data = scaling_data(_study(trials, rows))
    fits = scaling_fits(data, n_boot=200)[0].set_index("quantity")
    assert fits.loc["noise_to_signal_l1", "exponent"] == pytest.approx(0.5, abs=0.05)
    assert fits.loc["noise_to_signal_l2", "exponent"] == pytest.approx(0.0, abs=0.05)


def test_the_reference_noise_is_fitted_per_layer_with_its_undefined_share_and_no_false_power_law():
    """Findings 7 and 8 where no exact gradient exists (nsr_ref). Planted, 6 widths x 4 seeds: layer 1's ratio
    is w²/8 + 3w (the parameter count's shape: local slopes rising 1.34 → 1.89), layer 2's is 7·w^0.5. The
    debiased nsr is logged for one seed in four (undefined in 75 %); the reference refused one state at width
    256 in layer 2. Layer 1 gets no exponent (lack of fit) but its local slopes; layer 2 gets 0.5 with an
    interval; every noise line carries the undefined and refused shares."""
    from analysis.questions import Answer
    from analysis.questions.scaling import noise_lines
    from analysis.scaling import scaling_data, scaling_fits

    rng = np.random.default_rng(19)
    widths = [8, 16, 32, 64, 128, 256]
    trials = [_trial(f"uwm-{w}", f"rule=uwm|hidden=[{w}, {w}]", width=w, hidden=[w, w],
                     final_episodes_to_threshold_mean=500.0) for w in widths]
    rows = []
    for w in widths:
        for s in range(4):
            noise = np.exp(0.05 * rng.standard_normal(2))
            rows += [(f"uwm-{w}", 250, s, "eval_reward", 0.5),
                     (f"uwm-{w}", 250, s, "init_probe_var_l1", 1.0), (f"uwm-{w}", 250, s, "init_probe_var_l2", 1.0),
                     (f"uwm-{w}", 250, s, "init_probe_ref_samples_l1", 4096.0),
                     (f"uwm-{w}", 250, s, "init_probe_ref_samples_l2", 4096.0),
                     (f"uwm-{w}", 250, s, "init_probe_nsr_ref_l1", (w * w / 8 + 3 * w) * noise[0])]
            if not (w == 256 and s == 0):
                rows.append((f"uwm-{w}", 250, s, "init_probe_nsr_ref_l2", 7.0 * w ** 0.5 * noise[1]))
            if s == 0:
                rows += [(f"uwm-{w}", 250, s, "init_probe_nsr_l1", 0.01), (f"uwm-{w}", 250, s, "init_probe_nsr_l2", 0.01)]
    data = scaling_data(_study(trials, rows))
    assert data.attrs["noise_source"].startswith("a REINFORCE reference")
    undefined = data.attrs["undefined"].set_index(["quantity", "width"])
    assert (undefined["debiased_undefined"] == 0.75).all() and (undefined["states"] == 4).all()
    assert undefined.loc[("noise_to_signal_l2", 256), "reference_refused"] == 0.25
    assert undefined.loc[("noise_to_signal_l1", 256), "reference_refused"] == 0.0
    fits, objs = scaling_fits(data, n_boot=200)
    fits = fits.set_index("quantity")
    l1, l2 = fits.loc["noise_to_signal_l1"], fits.loc["noise_to_signal_l2"]
    assert l1["verdict"].startswith("no single exponent") and l1["lack_of_fit_p"] < 0.01
    slopes = [float(v) for v in l1["local_slopes"].split(", ")]
    assert slopes == sorted(slopes) and slopes[0] < 1.45 and slopes[-1] > 1.8
    assert l2["verdict"].startswith("exponent 0.5") and l2["exponent_lo"] < 0.5 < l2["exponent_hi"]
    sec = Answer("scaling", "Scaling", True)
    noise_lines(sec, data, fits.reset_index())
    lines = dict(sec.answer)
    assert "undefined in 75%–75% of states" in lines["noise exponent, layer 1, uwm"]
    assert "reference refused in 25% at most" in lines["noise exponent, layer 2, uwm"]


def test_the_pi_figure_plots_relative_bias_against_the_per_weight_radius():
    """Deliverable 3's figure: relative bias at initialisation against the layer's largest |W_ji| / radius,
    not the column norm. Planted: layer 1's largest ratio stays below 1 up to norm 4 (its |W| 2.6–3.0 < π,
    finding 3), layer 2's passes 1 at norm 3.5; the points sit at the planted ratios, with the 10 % line and
    the radius (ratio 1) drawn, the layout clean; a study without the metric gets no such figure."""
    from analysis.figures import layout_problems, pi_boundary_figure

    rows = []
    for label in ("hwm_order-3", "uwm"):
        for norm_c in (1.0, 2.0, 3.5, 4.0):
            for layer, ratio in ((1, 0.2 * norm_c), (2, 0.3 * norm_c)):
                rel = 0.3 if (label != "uwm" and ratio > 1) else 0.02
                rows.append({"label": label, "context": "", "outgoing_norm": norm_c, "layer": layer,
                             "radius_ratio": ratio, "bias_sq": rel ** 2, "bias_sq_lo": 0.0,
                             "bias_sq_hi": (1.5 * rel) ** 2, "exact_sq": 1.0, "relative_bias": rel})
    init = pd.DataFrame(rows)
    fig = pi_boundary_figure(init)
    ax = fig.axes[0]
    xs = sorted({round(float(x), 6) for line in ax.get_lines() for x in line.get_xdata() if len(line.get_xdata()) > 2})
    assert xs == sorted({round(r, 6) for r in init["radius_ratio"]})
    flat = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2]
    assert any(line.get_ydata()[0] == 0.1 for line in flat)
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.get_lines())
    assert "|W_ji| / sqrt(z'_j² + π²)" in fig._supxlabel.get_text()
    assert layout_problems(fig) == []
    with pytest.raises(ValueError):
        pi_boundary_figure(init.drop(columns="radius_ratio"))


def test_variance_versus_speed_prefers_the_noise_against_the_true_gradient():
    """Deliverable 5, "before any correlation with speed": where the probe logged nsr_exact beside the
    debiased nsr, the variance-speed table reads nsr_exact (the debiased one is undefined in most draws on
    wide nets and biased low where defined); on the initial state without the oracle, nsr_ref."""
    from analysis.variance_speed import variance_speed_table

    trials = [_trial(f"uwm-{w}", f"rule=uwm|hidden=[{w}]", width=w, hidden=[w], outgoing_norm=math.nan)
              for w in (8, 16)]
    rows = []
    for w in (8, 16):
        for s in range(4):
            rows += [(f"uwm-{w}", 250, s, "eval_reward", 0.5), (f"uwm-{w}", 250, s, "probe_nsr_l1", 0.01),
                     (f"uwm-{w}", 250, s, "probe_nsr_exact_l1", float(w)), (f"uwm-{w}", 250, s, "probe_var_l1", 1.0),
                     (f"uwm-{w}", 250, s, "init_probe_nsr_l1", 0.01), (f"uwm-{w}", 250, s, "init_probe_nsr_ref_l1", 2.0 * w)]
    study = _study(trials, rows)
    curves = study.seed_curves.groupby(["run_id", "episode", "metric"], as_index=False)["value"].mean()
    study.curves = curves.assign(metric=curves["metric"] + "_mean")
    table = variance_speed_table(study, points="all")
    assert table.attrs["kind"] == "nsr_exact" and set(table["var_own"].dropna()) <= {8.0, 16.0}
    init = variance_speed_table(study, points="all", state="init")
    assert init.attrs["kind"] == "nsr_ref" and set(init["var_own"].dropna()) <= {16.0, 32.0}
