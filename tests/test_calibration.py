"""Calibration of the tests and intervals the reports use, on simulated data whose truth is known: under H0
the rejection rate is within Monte-Carlo error of the nominal level (5 % ± 2 % over >= 1 000 simulations),
95 % intervals cover at least 93 %, and the power against a stated effect is measured. Simulations are
tensor/array dimensions (simulation x seed x sample), so the file runs in seconds.

Each planted case runs the project's own functions: the probe's per-layer statistics
(``uwm_model.trainer._layer_statistics``) on planted per-sample estimates, and the analysis primitives.
"""

import math

import numpy as np
import pytest
import torch

from analysis.stats import sign_flip_p
from uwm_model.trainer import _layer_statistics

SIMS = 2000          # Monte-Carlo error of a 5 % rate: 0.5 %, so ± 2 % is four standard errors
SEEDS = 12           # initial states per (variant, norm, layer), as in the norm-stress study
LEVEL = 0.05


def _probe(n_out, n_in, K, bias=0.0, state_spread=0.0, seed=0, sims=SIMS):
    """The probe's statistics of SIMS x SEEDS planted states of one layer: per-sample estimates
    x_k = (g_k h_k^T, g_k) with Bernoulli(1/2) inputs h and Gaussian logit gradients g of mean m (1 per
    unit) and sd 3, so E x = (m/2 1^T, m); the "exact" gradient is E x minus a bias of ``bias`` times its
    norm (per state scaled by a log-normal factor of sd ``state_spread``: states differ in their bias).
    Returns the statistics [SIMS, SEEDS] and the true squared bias of every state."""
    gen = torch.Generator().manual_seed(seed)
    P = sims * SEEDS
    g = 1.0 + 3.0 * torch.randn(P, K, n_out, generator=gen, dtype=torch.float64)
    h = (torch.rand(P, K, n_in, generator=gen, dtype=torch.float64) < 0.5).double()
    mean_w = torch.einsum("pko,pki->poi", g, h) / K
    mean_b = g.mean(1)
    true_w = torch.full((P, n_out, n_in), 0.5, dtype=torch.float64)
    true_b = torch.ones(P, n_out, dtype=torch.float64)
    norm = math.sqrt(n_out * n_in * 0.25 + n_out)
    direction = torch.randn(P, n_out * n_in + n_out, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    scale = bias * norm * torch.exp(state_spread * torch.randn(P, 1, generator=gen, dtype=torch.float64))
    offset = scale * direction                                               # estimate mean - exact
    exact_w = true_w - offset[:, : n_out * n_in].view(P, n_out, n_in)
    exact_b = true_b - offset[:, n_out * n_in:]
    stats = _layer_statistics(g, h, mean_w, mean_b, 1, (exact_w, exact_b))
    out = {k: v.view(sims, SEEDS).numpy() for k, v in stats.items()}
    return out, offset.pow(2).sum(1).view(sims, SEEDS).numpy()


@pytest.mark.parametrize("n_out, n_in", [(1, 4), (4, 6)])
def test_the_split_half_sign_flip_test_holds_its_level_where_the_old_z_leans_to_unbiased(n_out, n_in):
    """Finding 1, planted: unbiased estimates through the probe. The old per-seed z = bias_sq / bias_sq_se
    (Stouffer over 12 seeds) leans negative and almost never rejects at 5 % (measured: mean -3.5 / -1.1 for
    the 1x4 / 4x6 layer, rejection 0.0 % / 0.1 %); the sign-flip test over seeds of bias_split rejects at
    5 % within Monte-Carlo error (measured 5.2 % / 4.9 %)."""
    stats, _ = _probe(n_out, n_in, K=64)
    old = (stats["bias_sq"] / stats["bias_sq_se"]).sum(1) / math.sqrt(SEEDS)
    assert old.mean() < -0.5 and (old > 1.645).mean() < 0.02          # the old statistic fails its level
    rate = (sign_flip_p(stats["bias_split"]) <= LEVEL).mean()
    assert abs(rate - LEVEL) < 0.02, rate


@pytest.mark.slow
def test_the_bias_test_has_power_against_a_ten_percent_relative_bias():
    """Power, stated: a relative bias of 10 % of the exact gradient's norm in a 4x6 layer, K = 1 024
    episodes per state, 12 states: the sign-flip test rejects in 93 % of simulations at 5 % and in 42 % at
    the Bonferroni level of 24 tests (measured over 500; K = 256: 22 % and 1 %)."""
    stats, _ = _probe(4, 6, K=1024, bias=0.1, sims=300)
    p = sign_flip_p(stats["bias_split"])
    assert (p <= LEVEL).mean() > 0.85
    assert (p <= LEVEL / 24).mean() > 0.25


@pytest.mark.slow
def test_the_random_effects_interval_covers_the_mean_squared_bias_over_states():
    """States differ in their bias (log-normal factor of sd 0.25 on the bias's norm): init_bias_table's
    interval (expanded bootstrap over the 12 seeds) covers the population mean of the squared bias in >= 93 %
    of simulations (measured 94.3 % over 1 000); the old interval of the probe's Monte-Carlo error alone (sqrt(sum se²)/n,
    states held fixed) covers far less (measured 16 % at sd 0.5). Limit, measured: at sd 0.5 (squared bias
    log-normal with sd 1) 12 states are too few for any of these intervals (bootstrap 89 %, t 86 %)."""
    from analysis.stats import bootstrap_ci

    stats, _ = _probe(4, 6, K=256, bias=0.3, state_spread=0.25, seed=1, sims=1000)
    target = 0.3 ** 2 * (4 * 6 * 0.25 + 4) * math.exp(2 * 0.25 ** 2)    # E over states of the squared bias
    cover = np.mean([bootstrap_ci(row, n_boot=1000, seed=i).contains(target) for i, row in enumerate(stats["bias_sq"])])
    assert cover >= 0.93, cover
    mean = stats["bias_sq"].mean(1)
    old_half = 1.96 * np.sqrt((stats["bias_sq_se"] ** 2).sum(1)) / SEEDS
    assert ((mean - old_half <= target) & (target <= mean + old_half)).mean() < 0.85


@pytest.mark.slow
def test_the_breakdown_t_test_holds_its_level_at_the_margin():
    """H0 at its boundary: every state's relative bias exactly 10 %. The one-sided t-test over seeds of
    bias_sq - 0.01 exact_sq (init_bias_table's breakdown test) rejects at 5 % in at most 5 % + 2 % of the
    simulations (measured 2.6 % at K = 1 024: conservative)."""
    from scipy.stats import t

    stats, _ = _probe(4, 6, K=256, bias=0.1, seed=2, sims=1000)
    excess = stats["bias_sq"] - 0.01 * stats["exact_sq"]
    tt = excess.mean(1) / (excess.std(1, ddof=1) / math.sqrt(SEEDS))
    rate = (t.sf(tt, SEEDS - 1) <= LEVEL).mean()
    assert rate < LEVEL + 0.02, rate


def test_sign_flip_p_is_exact_and_its_sampled_version_agrees():
    """All positive: p = 2^-n; all negative: 1; the sampled patterns (n > 14) agree with the exact
    enumeration's rate under H0 (symmetric values: P(p <= 5 %) within Monte-Carlo error)."""
    assert sign_flip_p(np.ones(5)) == pytest.approx(1 / 32)
    assert sign_flip_p(-np.ones(5)) == 1.0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)) * rng.exponential(size=(300, 16))   # heteroscedastic, symmetric
    rate = np.mean([sign_flip_p(row, seed=i) <= LEVEL for i, row in enumerate(x)])
    assert abs(rate - LEVEL) < 0.04


def _init_bias_study(stats):
    """A study of one trial whose cross-rule probe holds one 'variant' per simulation (label sim{i}), each
    on the 12 seeds' planted layer-1 statistics: init_bias_table then runs every simulation at once."""
    import pandas as pd

    from analysis.load import Study

    sims = stats["bias_sq"].shape[0]
    frames = []
    for kind in ("bias_sq", "bias_split", "exact_sq"):
        frames.append(pd.DataFrame({
            "run_id": "r", "episode": 0, "seed": np.tile(np.arange(SEEDS), sims),
            "metric": np.repeat([f"init_probe_sim{i}_{kind}_l1" for i in range(sims)], SEEDS),
            "value": stats[kind].ravel()}))
    trial = {"run_id": "r", "cell": "c", "status": "finished", "stage": "search", "rule": "uwm",
             "rule_variant": "uwm", "lr": 0.01, "episodes": 1, "seeds": SEEDS, "outgoing_norm": 1.0}
    empty = pd.DataFrame(columns=["run_id", "episode", "metric", "value"])
    return Study(name="calibration", parent_run_id="p", experiment_id="0", tracking_uri=None, tags={}, spec=None,
                 trials=pd.DataFrame([trial]), curves=empty, seed_curves=pd.concat(frames, ignore_index=True))


@pytest.mark.slow
def test_init_bias_table_holds_both_levels_end_to_end():
    """init_bias_table on 1 000 planted simulations (one test per variant, so no Bonferroni): unbiased
    estimates are called biased in 5 % ± 2 % (measured 4.8 %); at the breakdown margin (relative bias
    exactly 10 %) "broken" in at most 7 % (measured 2.1 %)."""
    from analysis.norm_stress import init_bias_table

    stats, _ = _probe(1, 4, K=64, sims=1000, seed=3)
    table = init_bias_table(_init_bias_study(stats))
    assert len(table) == 1000 and abs(table["biased"].mean() - LEVEL) < 0.02, table["biased"].mean()
    stats, _ = _probe(4, 6, K=256, bias=0.1, sims=1000, seed=4)
    table = init_bias_table(_init_bias_study(stats))
    assert table["broken"].mean() < LEVEL + 0.02, table["broken"].mean()


# ----------------------------------------------------------------------------- compute


def _timings(scale=1.5, slow_at=256, slow=3.0, seed=0, repeats=4):
    """Planted timings of two rules, both exactly a + b n² (noise 3 %), uwm ``scale`` times reinforce's at
    every width, with a shared slowdown ``slow`` at width ``slow_at`` (a cache step both rules meet): the
    trap of finding 6."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    widths = np.repeat([16, 32, 64, 128, 256, 512], repeats).astype(float)
    rows = []
    for rule, factor in (("uwm", scale), ("reinforce(baseline=ema)", 1.0)):
        slowdown = np.where(widths == slow_at, slow, 1.0)
        t = factor * (5e-5 + 2e-9 * widths ** 2) * slowdown * np.exp(0.03 * rng.standard_normal(widths.size))
        rows += [{"quantity": "seconds_per_episode", "rule_variant": rule, "context": "", "width": w, "value": v}
                 for w, v in zip(widths, t)]
    return pd.DataFrame(rows)


def test_a_shared_slowdown_yields_no_exponent_difference_and_the_ratio_stays_flat():
    """Finding 6, planted: both rules O(n²) with a shared 3x slowdown at width 256. The exponent comparison
    finds the labelled variant reinforce(baseline=ema) (the old bare-name lookup found no row) and says no
    verdict ("not answerable": the curve lacks fit against the replicate noise) instead of a spurious difference; the cost
    ratio is 1.5 at every width and its trend is not shown."""
    from analysis.scaling import compare_compute, compute_fits, compute_ratio

    fits = compute_fits(_timings())[1]
    row = compare_compute(fits).iloc[0]
    assert row["reference"] == "reinforce(baseline=ema)" and "not answerable (" in row["verdict"]
    ratio, trend = compute_ratio(_timings())
    assert np.allclose(ratio["ratio"], 1.5, rtol=0.05) and len(ratio) == 6
    assert trend.iloc[0]["verdict"].startswith("t_uwm/t_reinforce(baseline=ema) changes with width: not shown (power")


def _cost_sims(sims, k_uwm=2.5, b_uwm=1e-10, noise=lambda w: 0.03, seed=41):
    """Planted timings for compute's difference: reinforce t = 5e-5 + 2e-9 n², uwm t = 5e-5 + b_uwm n^k_uwm,
    widths 16 .. 1 024, 4 timings each with log-normal noise of sd ``noise(width)``; yields (widths, uwm, ref)."""
    rng = np.random.default_rng(seed)
    widths = np.repeat([16, 32, 64, 128, 256, 512, 1024], 4).astype(float)
    for _ in range(sims):
        ref = (5e-5 + 2e-9 * widths ** 2) * np.exp(noise(widths) * rng.standard_normal(widths.size))
        uwm = (5e-5 + b_uwm * widths ** k_uwm) * np.exp(noise(widths) * rng.standard_normal(widths.size))
        yield widths, uwm, ref


def _old_percentile_difference(widths, uwm, ref, seed, n_boot=100):
    """The old interval of k(uwm) - k(reinforce), kept here to pin its failure: each fit's stratified bootstrap
    (timings resampled within each width and refitted, the spread widened by sqrt(m/(m-1))), the percentiles of
    the differences of the two fits' draws."""
    from analysis.stats import _fit_cost

    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(widths == v) for v in np.unique(widths)]
    draws = []
    for y in (uwm, ref):
        a, b, k = _fit_cost(widths, y)
        start = (math.log(max(a, 1e-26)), math.log(b), k)
        resamples = (np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups]) for _ in range(n_boot))
        out = np.array([_fit_cost(widths[i], y[i], start=start)[2] for i in resamples])
        draws.append(k + (out - k) * math.sqrt(4 / 3))
    return np.quantile(draws[0] - draws[1], [0.025, 0.975])


def test_the_compute_exponent_difference_interval_covers_where_noise_differs_between_widths():
    """k(uwm) - k(reinforce) (cost_exponent_difference: each fit's HC3 error, Welch degrees of freedom), planted
    difference 0.5, 4 timings per width, noise growing with width (1.5 % at 16 to 6 % at 1 024). The 95 %
    interval covers 0.5 in >= 93 % of 300 simulations (measured 94.3 % here, 95.5 % and 96.7 % with other seeds);
    a classical error (the residual variance, as if every width were equally noisy) covers 88 % (measured). Each
    fit's own interval on k covers in >= 92 % of these 600 (Monte-Carlo error 0.9 %; measured 92.7 % here,
    95.5 % over 1 200 with another seed, 93.7 % with 3 % noise at every width)."""
    from analysis.stats import cost_exponent_difference, fit_cost

    covered, own = [], []
    for widths, uwm, ref in _cost_sims(300, noise=lambda w: 0.015 * (w / 16) ** (1 / 3), seed=42):
        fu, fr = fit_cost(widths, uwm), fit_cost(widths, ref)
        covered.append(cost_exponent_difference(fu, fr).contains(0.5))
        own += [fu.contains(2.5), fr.contains(2.0)]
    assert np.mean(covered) >= 0.93 and np.mean(own) >= 0.92, (np.mean(covered), np.mean(own))


@pytest.mark.slow
def test_the_compute_exponent_difference_covers_holds_its_level_and_states_its_power():
    """The same interval with 3 % noise at every width: it covers the planted 0.5 in >= 93 % of 400 simulations
    (measured 94.25 %; each fit's own interval 96.25 %); under H0 (both rules n², uwm's power-law part 1.5x
    reinforce's) it excludes 0 in 5 % ± 2 % of 1 000 (measured 3.6 %: HC3 leans conservative); against a true
    difference of 0.05 (about two standard errors: the difference's error is 0.023) the power that
    cost_difference_power states is within 10 points of the rate realised over 300 (measured: stated 59 %,
    realised 55 %), and against compare_compute's 0.25 it is 100 %."""
    from analysis.stats import cost_difference_power, cost_exponent_difference, fit_cost

    def fits(sims, **kw):
        return [(fit_cost(w, u), fit_cost(w, r)) for w, u, r in _cost_sims(sims, **kw)]

    covered = [cost_exponent_difference(fu, fr).contains(0.5) for fu, fr in fits(400)]
    assert np.mean(covered) >= 0.93, np.mean(covered)
    null = [not cost_exponent_difference(fu, fr).contains(0.0) for fu, fr in fits(1000, k_uwm=2, b_uwm=3e-9, seed=43)]
    assert abs(np.mean(null) - LEVEL) < 0.02, np.mean(null)
    near = fits(300, k_uwm=2.05, b_uwm=3e-9 / 16 ** 0.05, seed=44)
    stated = np.mean([cost_difference_power(fu, fr, 0.05) for fu, fr in near])
    realised = np.mean([not cost_exponent_difference(fu, fr).contains(0.0) for fu, fr in near])
    assert abs(stated - realised) < 0.1, (stated, realised)
    assert min(cost_difference_power(fu, fr, 0.25) for fu, fr in near) > 0.99


@pytest.mark.slow
def test_the_old_bootstrap_interval_of_the_compute_difference_under_covers():
    """Pins why the method changed: on the first 100 of the planted simulations (difference 0.5, 3 % noise) the
    old interval (_old_percentile_difference: stratified percentile bootstrap of each fit, 100 draws) covers
    0.5 in under 93 % (measured 89 % here, 88.9 % over 207; ~1.4 s of CPU per simulation, hence slow): its k
    is unbiased (+0.0006) but 4 timings per width understate the spread and its normal tails ignore how few
    they are. The HC3 t-interval covers on the same simulations."""
    from analysis.stats import cost_exponent_difference, fit_cost

    old, new = [], []
    for s, (widths, uwm, ref) in enumerate(_cost_sims(100)):
        lo, hi = _old_percentile_difference(widths, uwm, ref, seed=s)
        old.append(lo <= 0.5 <= hi)
        new.append(cost_exponent_difference(fit_cost(widths, uwm), fit_cost(widths, ref)).contains(0.5))
    assert np.mean(old) < 0.93 <= np.mean(new), (np.mean(old), np.mean(new))


def test_two_fits_of_identical_data_give_a_difference_interval_with_a_width():
    """Finding 9: two rules with identical timings; their exponent difference's interval must have a width
    (the two fits' errors combined as independent), not collapse to [0, 0]."""
    from analysis.scaling import compare_compute, compute_fits

    data = _timings(scale=1.0, slow=1.0)
    same = data[data["rule_variant"] == "uwm"].assign(rule_variant="reinforce")
    fits = compute_fits(data[data["rule_variant"] == "uwm"].pipe(lambda d: __import__("pandas").concat([d, same])))[1]
    row = compare_compute(fits).iloc[0]
    assert row["difference"] == 0 and row["difference_lo"] < 0 < row["difference_hi"]


def test_the_ratio_interval_covers_and_its_trend_test_holds_its_level():
    """Coverage and level over 1 000 planted timing sets (4 windows per width, 3 % noise, ratio 1.5 flat):
    the ratio interval at one width (log scale, Welch) covers 1.5 in >= 93 % (a percentile bootstrap of the
    4 windows per rule covered 84 %), and the trend test's level is 5 % ± 2 %."""
    from scipy.stats import t as student

    rng = np.random.default_rng(7)
    sims, widths = 1000, np.array([16, 32, 64, 128, 256, 512], float)
    base = 5e-5 + 2e-9 * widths ** 2
    ref = base[:, None] * np.exp(0.03 * rng.standard_normal((sims, 6, 4)))
    mine = 1.5 * base[:, None] * np.exp(0.03 * rng.standard_normal((sims, 6, 4)))
    ly = np.log(mine.mean(-1) / ref.mean(-1))
    lx = np.log(widths)
    dx = lx - lx.mean()
    slope = (ly - ly.mean(1, keepdims=True)) @ dx / (dx @ dx)
    resid = ly - ly.mean(1, keepdims=True) - slope[:, None] * dx
    se = np.sqrt((resid ** 2).sum(1) / 4 / (dx @ dx))
    rate = (np.abs(slope / se) > student.ppf(0.975, 4)).mean()
    assert abs(rate - LEVEL) < 0.02, rate
    from analysis.scaling import compute_ratio
    import pandas as pd

    covered = []
    for s in range(300):
        rows = [{"quantity": "seconds_per_episode", "rule_variant": r, "context": "", "width": 64.0, "value": v}
                for r, vals in (("uwm", mine[s, 2]), ("reinforce", ref[s, 2])) for v in vals]
        row = compute_ratio(pd.DataFrame(rows))[0].iloc[0]
        covered.append(row["ratio_lo"] <= 1.5 <= row["ratio_hi"])
    assert np.mean(covered) >= 0.93, np.mean(covered)


def test_the_interleaved_schedule_shares_a_slow_spell_between_rules():
    """Finding 6's design, planted: two rules of equal cost at 6 widths, 6 windows each; the machine is 3x
    slower during the middle third of the run. Timed in blocks (rule after rule, widths rising, windows back
    to back: the old design) the spell lands on some widths of one rule: ratios of 3 (or 1/3). Timed by
    timing_schedule (every configuration once per round, fresh random order) every configuration meets the
    spell about equally: every ratio within [0.7, 1.4]."""
    import pandas as pd

    from analysis.scaling import compute_ratio
    from study.timing import timing_schedule

    rules, widths, rounds = ["uwm", "reinforce"], [16, 32, 64, 128, 256, 512], 6
    configs = [(r, w) for r in rules for w in widths]
    schedule = timing_schedule(len(configs), rounds, seed=0)
    assert all(sorted(order) == list(range(len(configs))) for order in schedule)
    assert len({tuple(order) for order in schedule}) == rounds                  # a fresh order every round

    def measured(slots):
        n = len(slots)
        rows = [{"quantity": "seconds_per_episode", "rule_variant": configs[i][0], "context": "",
                 "width": float(configs[i][1]),
                 "value": (5e-5 + 2e-9 * configs[i][1] ** 2) * (3.0 if n / 3 <= slot < 2 * n / 3 else 1.0)}
                for slot, i in enumerate(slots)]
        return compute_ratio(pd.DataFrame(rows))[0]["ratio"]

    blocked = [i for i in range(len(configs)) for _ in range(rounds)]
    interleaved = [i for order in schedule for i in order]
    assert measured(blocked).max() >= 2.9 or measured(blocked).min() <= 1 / 2.9
    assert measured(interleaved).between(0.7, 1.4).all()


# ----------------------------------------------------------------------------- the other intervals the reports use


@pytest.mark.parametrize("n", [8, 40])
def test_spearman_interval_covers(n):
    """rho and its bootstrap (variance versus speed: 8 cells per rule, ~40 pooled): bivariate normal with
    r = 0.5, true Spearman rho = (6/π) asin(r/2); the percentile bootstrap covers it in >= 93 % of 400
    simulations (measured 95 % at n = 8 and at n = 40)."""
    from analysis.stats import spearman_ci

    rng = np.random.default_rng(n)
    truth = 6 / math.pi * math.asin(0.25)
    z = rng.standard_normal((400, n, 2))
    x, y = z[..., 0], 0.5 * z[..., 0] + math.sqrt(0.75) * z[..., 1]
    cover = np.mean([spearman_ci(a, b, n_boot=500, seed=i).contains(truth) for i, (a, b) in enumerate(zip(x, y))])
    assert cover >= 0.93, cover


def test_restricted_mean_interval_covers():
    """Kaplan-Meier restricted mean (speed to threshold, 8 seeds, censored at the budget): exponential times
    of mean 1 000 episodes, budget 2 000 (14 % censored); the expanded bootstrap covers the true restricted
    mean (1 - e^-2) 1 000 in >= 93 % of 400 simulations (measured 95 %)."""
    from analysis.stats import km_summary

    rng = np.random.default_rng(11)
    truth, tau = (1 - math.exp(-2)) * 1000, 2000.0
    times = rng.exponential(1000, size=(400, 8))
    cover = [km_summary(t, t <= tau, tau, n_boot=500, seed=i) for i, t in enumerate(times)]
    assert np.mean([c.rmst_lo <= truth <= c.rmst_hi for c in cover]) >= 0.93


def test_kaplan_meier_median_interval_covers():
    """The KM median's interval (statsmodels' Brookmeyer-Crowley, as km_summary reports it) at 8 seeds,
    exponential times of mean 1 000 censored at 2 000: covers the true median 1 000 ln 2 in >= 93 % of 400
    simulations (measured 95.3 %)."""
    from analysis.stats import km_summary

    rng = np.random.default_rng(30)
    truth, tau = 1000 * math.log(2), 2000.0
    times = rng.exponential(1000, size=(400, 8))
    cover = [km_summary(t, t <= tau, tau, n_boot=20, seed=i) for i, t in enumerate(times)]
    assert np.mean([c.median_lo <= truth <= c.median_hi for c in cover]) >= 0.93


@pytest.mark.slow
def test_the_restricted_mean_comparison_holds_its_level_and_covers():
    """The fastest-rule comparison RMST(rule) - RMST(ref) (analysis.fastest._difference, expanded bootstrap), 8
    seeds each, censored at 2 000. Under H0 (both exponential of mean 1 000) the interval excludes 0 in at most
    5 % + 2 % of 1 000 simulations, paired (same seeds) and unpaired (measured 5.8 % and 2.9 % over 2 000: the
    unpaired one is conservative); against a planted difference (means 1 000 and 1 500) it covers the true
    RMST difference in >= 93 % of 400 (measured 96.3 %)."""
    import pandas as pd

    from analysis.fastest import _difference

    rng = np.random.default_rng(32)
    tau = 2000.0

    def frame(x, seeds):
        return pd.DataFrame({"episodes_to_threshold": np.minimum(x, tau), "reached": x <= tau}, index=seeds)

    def rmst(mu):
        return mu * (1 - math.exp(-tau / mu))

    a, b, c = (rng.exponential(mu, size=(1000, 8)) for mu in (1000, 1000, 1500))
    excluded = {"paired": [], "unpaired": []}
    covered = []
    for i in range(1000):
        for kind, seeds in (("paired", range(8)), ("unpaired", range(8, 16))):
            d = _difference(frame(a[i], range(8)), frame(b[i], seeds), tau, 500, 0.95, i)
            excluded[kind].append(d["difference_lo"] > 0 or d["difference_hi"] < 0)
        if i < 400:
            d = _difference(frame(a[i], range(8)), frame(c[i], range(8, 16)), tau, 500, 0.95, i)
            covered.append(d["difference_lo"] <= rmst(1000) - rmst(1500) <= d["difference_hi"])
    assert all(np.mean(v) <= LEVEL + 0.02 for v in excluded.values()), {k: np.mean(v) for k, v in excluded.items()}
    assert np.mean(covered) >= 0.93, np.mean(covered)


def test_power_law_exponent_interval_covers():
    """Width exponents (stratified bootstrap, 4 seeds per width, 6 widths, log-normal noise of sd 0.2): the
    interval covers the planted 1.5 in >= 93 % of 400 simulations (measured 97 %)."""
    from analysis.stats import fit_power_law

    rng = np.random.default_rng(12)
    w = np.repeat([8, 16, 32, 64, 128, 256], 4).astype(float)
    y = 2 * w ** 1.5 * np.exp(0.2 * rng.standard_normal((400, w.size)))
    assert np.mean([fit_power_law(w, row, n_boot=500, seed=i).contains(1.5) for i, row in enumerate(y)]) >= 0.93


def test_the_power_law_lack_of_fit_test_holds_its_level_and_catches_a_drifting_slope():
    """The refusal of one exponent (PowerLawFit.lack_of_fit_p, F-test of the per-width log means against the
    replicate noise): under a true power law (6 widths x 4 seeds, log-normal sd 0.2) it rejects at 5 % in
    5 % ± 2 % of 2 000 simulations (measured 5.4 % and 5.7 % over 4 000 with two seeds). Against finding 7's
    shape w²/8 + 3w (local slopes 1.3 → 1.9) it refuses (p < 1 %) in >= 90 % at noise sd 0.05 (the per-layer
    ratios' spread over seeds in the planted study); its power is only 31 % at sd 0.2 (measured): the
    local slopes are reported beside every exponent for that reason."""
    from analysis.stats import MIN_LACK_OF_FIT_P, fit_power_law

    rng = np.random.default_rng(21)
    w = np.repeat([8, 16, 32, 64, 128, 256], 4).astype(float)
    noise = np.exp(0.2 * rng.standard_normal((SIMS, w.size)))
    null = [fit_power_law(w, 2 * w ** 1.5 * e, n_boot=2, seed=i).lack_of_fit_p for i, e in enumerate(noise)]
    assert abs(np.mean(np.array(null) < LEVEL) - LEVEL) < 0.02, np.mean(np.array(null) < LEVEL)
    curved = [fit_power_law(w, (w * w / 8 + 3 * w) * e ** 0.25, n_boot=2, seed=i) for i, e in enumerate(noise[:200])]
    assert np.mean([not f.one_power_law for f in curved]) >= 0.9
    assert np.mean([f.lack_of_fit_p < MIN_LACK_OF_FIT_P for f in curved]) >= 0.9


@pytest.mark.slow
def test_the_stated_power_of_the_breakdown_test_is_honest():
    """init_bias_table's ``power`` (noncentral t against a 20 % relative bias) against the rejection rate it
    predicts, on 400 simulations planted at exactly 20 %: stated 91 %, realised 97 % (measured): within 10
    points, and not above the realised rate by more than Monte-Carlo error (a stated power must not flatter)."""
    from analysis.norm_stress import init_bias_table

    stats, _ = _probe(4, 6, K=256, bias=0.2, sims=400, seed=9)
    table = init_bias_table(_init_bias_study(stats))
    stated, realised = table["power"].mean(), table["broken"].mean()
    assert abs(stated - realised) < 0.1 and stated < realised + 0.03, (stated, realised)


# ----------------------------------------------------------------------------- scale-free variance


def test_the_exact_noise_to_signal_ratio_is_defined_and_unbiased_where_the_debiased_one_is_not():
    """Finding 8, planted: a 16 x 16 layer whose per-sample noise swamps its gradient at the probe's K = 128
    (every entry of the estimate has mean 0.02 and variance 9: true V / ||∇J||² = 9 / 0.02²). The debiased
    nsr (||mean||² - V/K in the denominator) is undefined in 55 % of draws and, where defined, 0.10 of the
    truth on average (measured: the draws kept are those whose noise inflated the denominator). nsr_exact,
    V / (B ||∇J||²), is defined in every draw and its mean is the truth within 3 % (measured 0.999)."""
    gen = torch.Generator().manual_seed(13)
    P, K, n = 4000, 128, 16
    mean_g = 0.02
    g = mean_g + 3.0 * torch.randn(P, K, n, generator=gen, dtype=torch.float64)
    h = torch.ones(P, K, n, dtype=torch.float64)                       # constant inputs: E x = (m 1^T, m)
    exact_w = torch.full((P, n, n), mean_g, dtype=torch.float64)
    exact_b = torch.full((P, n), mean_g, dtype=torch.float64)
    stats = _layer_statistics(g, h, torch.einsum("pko,pki->poi", g, h) / K, g.mean(1), 1, (exact_w, exact_b))
    # x_k = (g_k 1^T, g_k): n + 1 copies of each entry of g_k, so V and ||∇J||² both count (n + 1) n entries
    truth = 9.0 / mean_g ** 2
    old = stats["nsr"].numpy()
    assert np.isnan(old).mean() > 0.4 and np.nanmean(old) < 0.5 * truth
    new = stats["nsr_exact"].numpy()
    assert np.isfinite(new).all() and new.mean() == pytest.approx(truth, rel=0.03)


def test_the_reference_noise_to_signal_ratio_recovers_the_truth_where_the_debiased_one_cannot():
    """Finding 8 where no exact gradient exists, planted: a 16 x 16 layer (272 entries of mean 0.02, sd 3:
    true V / ||∇J||² = 9 / 0.02²), 1 000 states. The probe's own debiased nsr at K = 128 is undefined in
    most states and, where defined, far below the truth (selection on the draws kept). The reference
    (uwm_model.signal: 16 groups, K doubled from 256 until S > 3 se) resolves every state, its K grows to
    what the signal needs (measured median 16 384, far above 128), and V / S recovers the truth within 6 %
    (measured 0.966: the stopping rule leans it a little low)."""
    from uwm_model.signal import GROUPS, reference_signal

    gen = torch.Generator().manual_seed(17)
    P, K, n, mean_g, sd = 1000, 128, 16, 0.02, 3.0
    g = mean_g + sd * torch.randn(P, K, n, generator=gen, dtype=torch.float64)
    h = torch.ones(P, K, n, dtype=torch.float64)
    probe = _layer_statistics(g, h, torch.einsum("pko,pki->poi", g, h) / K, g.mean(1), 1, None)
    truth = sd ** 2 / mean_g ** 2
    old = probe["nsr"].numpy()
    assert np.isnan(old).mean() > 0.4 and np.nanmean(old) < 0.5 * truth

    def draw(index, round_, per_group):
        # a group sum of per_group samples x_k = (g_k 1^T, g_k): each g entry counted n + 1 times
        s = per_group * mean_g + math.sqrt(per_group) * sd * torch.randn(len(index), GROUPS, n, generator=gen,
                                                                           dtype=torch.float64)
        return [s.repeat(1, 1, n + 1)]

    ref = reference_signal(draw, P, 256, 1 << 20)
    new = (probe["var"] / ref.signal[0]).numpy()
    assert np.isfinite(new).all() and ref.samples.median() > 16 * K
    assert new.mean() == pytest.approx(truth, rel=0.06), new.mean() / truth


def test_the_reference_refuses_a_state_it_cannot_resolve():
    """A zero gradient never resolves: the state is refused (NaN) at the cap, not given a ratio; and the cap
    is respected."""
    from uwm_model.signal import GROUPS, reference_signal

    gen = torch.Generator().manual_seed(18)

    def draw(index, round_, per_group):
        mean = torch.tensor([0.0, 1.0], dtype=torch.float64)[index].view(-1, 1, 1)
        return [per_group * mean + math.sqrt(per_group) * torch.randn(len(index), GROUPS, 8, generator=gen,
                                                                      dtype=torch.float64)]

    ref = reference_signal(draw, 2, 256, 4096)
    assert math.isnan(ref.signal[0][0]) and ref.samples[0] == 4096
    assert ref.signal[0][1] == pytest.approx(8.0, rel=0.5) and ref.samples[1] < 4096
    with pytest.raises(ValueError):
        reference_signal(draw, 2, 16, 4096)


def test_a_mild_shared_slowdown_with_unequal_fixed_costs_gives_no_spurious_exponent_difference():
    """The subtler trap: both rules exactly O(n²), uwm's power-law part 3x reinforce's (so the fixed cost
    weighs differently in the two fits), a shared 1.5x slowdown at width 256. Both fits look good (R² >= 0.98)
    and their exponent difference is 0.20 (measured), though both are 2; the old bootstrap interval [0.15, 0.24]
    called it "uwm's exponent exceeds" (the HC3 errors see the slow width's residuals and widen it to include
    0). The lack-of-fit test against the replicate noise (p ~ 1e-13) makes the verdict "not answerable"."""
    import pandas as pd

    from analysis.scaling import compare_compute, compute_fits

    rng = np.random.default_rng(0)
    widths = np.repeat([16, 32, 64, 128, 256, 512], 4).astype(float)
    rows = []
    for rule, b in (("uwm", 6e-9), ("reinforce", 2e-9)):
        t = (5e-5 + b * widths ** 2) * np.where(widths == 256, 1.5, 1.0) * np.exp(0.03 * rng.standard_normal(widths.size))
        rows += [{"quantity": "seconds_per_episode", "rule_variant": rule, "context": "", "width": w, "value": v}
                 for w, v in zip(widths, t)]
    table, fits = compute_fits(pd.DataFrame(rows))
    assert (table["r2"] > 0.98).all()
    row = compare_compute(fits).iloc[0]
    assert row["difference"] > 0.15 and "not answerable (" in row["verdict"]
    assert all(f.lack_of_fit_p < 1e-6 for f in fits.values())


@pytest.mark.slow
def test_the_usable_learning_rate_range_holds_the_true_best_rate():
    """lr-sensitivity, planted: 8 rates on a half-decade grid, AUC a parabola in log10(lr) peaking at 0.01
    (0.4, falling 0.02 per half decade squared), 8 seeds of noise sd 0.05 per cell, the cells' expanded
    bootstrap intervals. The usable range (rates not resolved worse than the best) holds the true best rate
    in >= 95 % of 400 simulations (measured 100 %) and the narrowing is shown in >= 90 % (measured 100 %; the
    cells' errors read back from their intervals). The best cell, picked and scored on the same seeds, leans
    high (measured +0.004) and its interval covers its own truth in only 91 % (measured): the winner's curse,
    which the report's answer now names instead of quoting that interval as calibrated."""
    from analysis.lr_sensitivity import answer_text, curve_summary
    from analysis.stats import bootstrap_ci

    rng = np.random.default_rng(14)
    lr = 10.0 ** np.arange(-4, 0, 0.5)
    truth = 0.4 - 0.02 * ((np.log10(lr) + 2) / 0.5) ** 2
    seeds = truth[None, :, None] + 0.05 * rng.standard_normal((400, lr.size, 8))
    held, excess, covered, shown = [], [], [], []
    for s, sim in enumerate(seeds):
        ivs = [bootstrap_ci(cell, n_boot=300, seed=s) for cell in sim]
        row = curve_summary(lr, np.array([i.estimate for i in ivs]), np.array([i.lo for i in ivs]),
                            np.array([i.hi for i in ivs]), np.full(lr.size, 8))
        shown.append(row["narrowing_shown"])
        held.append(row["usable_lr_min"] <= 0.01 <= row["usable_lr_max"])
        excess.append(row["best"] - truth.max())
        best = int(np.argmax([i.estimate for i in ivs]))
        covered.append(ivs[best].contains(truth[best]))
    assert np.mean(held) >= 0.95 and np.mean(shown) >= 0.9
    assert np.mean(excess) > 0 and np.mean(covered) < 0.93
    assert "picked and scored on the same seeds" in answer_text(row)


def _lr_curves(truth, sims, seed):
    """Planted lr-sensitivity curves: 8 seeds of noise sd 0.05 per cell around ``truth`` (one value per rate),
    summarised as the cells table does (mean, expanded bootstrap interval); yields curve_summary's rows and
    the intervals."""
    from analysis.lr_sensitivity import curve_summary
    from analysis.stats import bootstrap_ci

    rng = np.random.default_rng(seed)
    lr = 10.0 ** np.arange(-4, 0, 0.5)
    for s, sim in enumerate(np.asarray(truth)[None, :, None] + 0.05 * rng.standard_normal((sims, lr.size, 8))):
        ivs = [bootstrap_ci(cell, n_boot=300, seed=s) for cell in sim]
        lo, hi = np.array([i.lo for i in ivs]), np.array([i.hi for i in ivs])
        se = sim.std(1, ddof=1) / math.sqrt(sim.shape[1])              # the cells table's {measure}_se
        yield curve_summary(lr, np.array([i.estimate for i in ivs]), lo, hi, np.full(lr.size, 8), se=se), ivs


def test_the_usable_learning_rate_range_under_a_flat_truth():
    """The narrowing test's level, planted H0: every rate equally good (AUC 0.4, 8 rates, 8 seeds of sd 0.05,
    the cells' expanded bootstrap intervals and standard errors). The Games-Howell comparisons with the best
    (resolved_worse) narrow the range ("narrower than the grid: shown") in at most 5 % + 2 Monte-Carlo errors
    of 400 simulations (measured 4.5 %; 5.5 % over 1 500 with another seed); the old rule (a rate's interval
    wholly below the best's) narrows it in 13 % (measured here 13.25 %): the best is the maximum of 8, so its
    lower bound leans high."""
    narrowed, old = [], []
    for row, ivs in _lr_curves(np.full(8, 0.4), 400, 33):
        narrowed.append(row["narrowing_shown"])
        ib = int(np.argmax([i.estimate for i in ivs]))
        old.append(any(i.hi < ivs[ib].lo for i in ivs))
        assert row["narrowing_shown"] == (row["n_usable"] < 8)
    se = math.sqrt(LEVEL * (1 - LEVEL) / len(narrowed))
    assert np.mean(narrowed) <= LEVEL + 2 * se and np.mean(old) > 0.08, (np.mean(narrowed), np.mean(old))


def test_the_narrowing_test_states_its_power_honestly():
    """Power, planted: 7 rates at 0.4 and the smallest at 0.32 (20 % below, the stated effect), 8 seeds of sd
    0.05. The narrowing is shown in 71 % of 200 simulations (measured); the stated power (one comparison of
    the best with a typical rate at the Games-Howell critical value) is 51 % on average: a lower bound (the
    best is the largest of 7 equal rates, so its gap to the worse rate is larger than the effect), never above
    the realised rate by more than Monte-Carlo error (a stated power must not flatter), within 25 points."""
    truth = np.full(8, 0.4)
    truth[0] = 0.32
    rows = [row for row, _ in _lr_curves(truth, 200, 34)]
    realised, stated = np.mean([r["narrowing_shown"] for r in rows]), np.mean([r["narrowing_power"] for r in rows])
    assert realised - 0.25 < stated < realised + 0.07, (stated, realised)


@pytest.mark.slow
def test_the_order_by_radius_interaction_test_holds_its_level():
    """The interaction's HC3 test under H0, planted: log10 relative squared bias = -2 - 0.05 k + share + noise
    (sd 0.3), the beyond-radius share 0 below norm 3.5 and growing above (unequal between layers), orders
    1/3/5/7, 8 norms, 2 layers: an order effect and a radius effect but no interaction. Over 1 000
    simulations the interaction is rejected at 5 % in 4.7 % (measured; 6.3 % without order 1, 48 rows)."""
    import pandas as pd

    from analysis.norm_stress import order_norm_interaction

    rng = np.random.default_rng(15)
    keys = [(k, c, layer) for k in (1, 3, 5, 7) for c in (0.5, 1, 2, 3, 3.5, 4, 6, 8) for layer in (1, 2)]
    share = np.array([0.0 if c < 3.5 else min(1.0, (0.05 if layer == 1 else 0.3) * c / 3.5) for _, c, layer in keys])
    order = np.array([k for k, _, _ in keys], float)
    frame = pd.DataFrame({"label": [f"hwm_order-{k}" for k, _, _ in keys], "outgoing_norm": [c for _, c, _ in keys],
                          "layer": [layer for _, _, layer in keys], "exact_sq": 1.0, "beyond_radius": share})
    output = pd.DataFrame([{"label": "uwm", "outgoing_norm": 1.0, "layer": 3, "bias_sq": 0.0, "exact_sq": 1.0}])
    full, wo1 = [], []
    for _ in range(1000):
        rel = 10 ** (-2 - 0.05 * order + share + 0.3 * rng.standard_normal(len(keys)))
        r = order_norm_interaction(pd.concat([frame.assign(bias_sq=rel), output], ignore_index=True))
        full.append(r["order_x_above_p"] < LEVEL)
        wo1.append(r["order_x_above_p_wo1"] < LEVEL)
    assert abs(np.mean(full) - LEVEL) < 0.02 and abs(np.mean(wo1) - LEVEL) < 0.02, (np.mean(full), np.mean(wo1))


def test_two_power_law_fits_of_identical_data_do_not_share_their_stream():
    """Finding 9 for the width exponents too: two rules with identical observations; compare_exponents'
    interval of their difference has a width (independent draws), not [0, 0]."""
    import pandas as pd

    from analysis.scaling import compare_exponents, scaling_fits

    rng = np.random.default_rng(16)
    w = np.repeat([8, 16, 32, 64, 128], 4).astype(float)
    y = w ** 1.2 * np.exp(0.2 * rng.standard_normal(w.size))
    data = pd.concat([pd.DataFrame({"quantity": "probe_variance", "rule_variant": r, "context": "", "width": w,
                                    "value": y}) for r in ("uwm", "reinforce")], ignore_index=True)
    row = compare_exponents(scaling_fits(data, n_boot=500)[1]).iloc[0]
    assert row["difference"] == 0 and row["difference_lo"] < -0.01 and row["difference_hi"] > 0.01


def test_no_analysis_writes_a_claim_of_the_null():
    """Verdict words: the analysis code writes no "unbiased by", "no breakdown" or "no bias detected"
    (a non-rejection says "not shown", with its power; analysis/verdicts.py)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "analysis"
    for path in root.glob("*.py"):
        if path.name == "verdicts.py":     # names the forbidden words in its docstring
            continue
        text = path.read_text()
        for phrase in ('unbiased by', 'no breakdown up to', 'no bias detected'):
            assert phrase not in text, f"{path.name}: {phrase!r}"
