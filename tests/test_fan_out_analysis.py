"""The fan-out question (analysis/fan_out.py) on planted answers.

Planted per-unit data go through the trainer's own per-seed summary (uwm_model.fanout.rank_correlation) and the
analysis's test over seeds: each seed is a layer of 32 units with fan-outs at CV 1 (density 0.25 into 32 units)
dealt at random, and a statistic log-normal around fan-out^b. b = 0.5 (planted dependence, rho ~ 0.35 per seed)
must be shown with the right direction in nearly every replicate; b = 0 (planted null) may be shown no more often
than the nominal 5% (within three binomial standard errors, 400 replicates of 8 seeds).
"""

import numpy as np
import pandas as pd
import torch

from analysis.fan_out import fan_out_rhos, fan_out_tests
from analysis.load import Study
from analysis.questions import Context, questions
from uwm_model.fanout import fan_out_counts, rank_correlation

UNITS, SEEDS = 32, 8


def planted_rhos(b: float, replicates: int, seed: int = 0) -> torch.Tensor:
    """[replicates, SEEDS] per-seed rho of a statistic ~ fan-out^b * lognormal(0, 1) over UNITS units."""
    gen = torch.Generator().manual_seed(seed)
    counts = fan_out_counts(UNITS, 32, 1.0, 0.25).double()
    order = torch.rand(replicates, SEEDS, UNITS, generator=gen).argsort(-1)
    fan = counts[order]
    stat = fan.pow(b) * torch.exp(torch.randn(replicates, SEEDS, UNITS, generator=gen, dtype=torch.float64))
    return rank_correlation(fan, stat)


def table(rhos: torch.Tensor, rule="wm", statistic="speed") -> pd.DataFrame:
    return pd.DataFrame({"rule_variant": rule, "cv": 1.0, "density": 0.25, "layer": 1, "statistic": statistic,
                         "when": "trained", "seed": np.arange(len(rhos)), "rho": rhos.numpy()})


def test_a_planted_dependence_is_shown_with_its_direction():
    rhos = planted_rhos(0.5, 50)
    results = [fan_out_tests(table(r)).iloc[0] for r in rhos]
    assert sum(r["shown"] for r in results) >= 45
    assert all(r["reading"] == "units with more outgoing connections learn faster" for r in results if r["shown"])
    down = fan_out_tests(table(-rhos[0]))
    assert down.iloc[0]["reading"] == "units with more outgoing connections learn slower"


def test_a_planted_null_is_shown_no_more_often_than_the_nominal_rate():
    rhos = planted_rhos(0.0, 400, seed=1)
    shown = np.mean([fan_out_tests(table(r)).iloc[0]["shown"] for r in rhos])
    assert shown <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400), shown
    not_shown = fan_out_tests(table(rhos[0])).iloc[0]
    assert not_shown["shown"] or not_shown["verdict"].startswith("not shown (power ")


def test_too_few_seeds_to_reach_the_level_are_not_answerable():
    rhos = planted_rhos(0.5, 1)[0][:4]
    got = fan_out_tests(table(rhos)).iloc[0]
    assert not got["shown"] and got["power"] == 0
    assert got["verdict"] == ("not answerable (4 seeds: the sign-flip test's smallest p-value 0.125 is above its "
                              "level 0.05; it needs 6 seeds)")


def test_bonferroni_over_a_rules_tests():
    rhos = planted_rhos(0.5, 1)[0]
    both = pd.concat([table(rhos), table(rhos, statistic="var")])
    tests = fan_out_tests(both)
    assert np.allclose(tests["alpha"], 0.025)


def study(seed_curves: pd.DataFrame, trials: pd.DataFrame) -> Study:
    return Study("s", "p", "e", None, {}, None, trials, pd.DataFrame(), seed_curves)


def test_the_question_reads_the_probe_metrics_of_a_study():
    trials = pd.DataFrame({"run_id": ["a", "b", "c"], "rule_variant": ["wm", "uwm", "wm"], "fan_out.cv": [1.5] * 3,
                           "fan_out.density": [0.25] * 3, "cell": ["w", "u", "w"], "status": "finished",
                           "stage": ["confirm", "confirm", "search"], "eval_reward_mean": 0.5,
                           "lr": 0.01})
    rhos = planted_rhos(0.5, 1)[0].numpy()
    rows = []
    for run, sign in (("a", 1.0), ("b", 0.0)):
        for s, r in enumerate(rhos):
            rows += [{"run_id": run, "episode": 0, "seed": s, "metric": "init_fanout_rho_var_l1", "value": r},
                     {"run_id": run, "episode": 500, "seed": s, "metric": "fanout_rho_speed_l1", "value": -r},
                     {"run_id": run, "episode": 1000, "seed": s, "metric": "fanout_rho_speed_l1",
                      "value": sign * r + (1 - sign) * (-1) ** s * 0.01},
                     {"run_id": run, "episode": 1000, "seed": s, "metric": "probe_bias_l1", "value": 1.0}]
        # a search trial of wm's cell that the confirm stage replaced: left out (its seeds repeat the confirm's)
        rows.append({"run_id": "c", "episode": 1000, "seed": s, "metric": "fanout_rho_speed_l1", "value": -1.0})
    st = study(pd.DataFrame(rows), trials)
    got = fan_out_rhos(st)
    assert set(got["when"]) == {"init", "trained"} and len(got) == 4 * SEEDS
    trained = got[(got["when"] == "trained") & (got["rule_variant"] == "wm")]
    assert np.allclose(np.sort(trained["rho"]), np.sort(rhos))          # the last report, not the first
    assert len(fan_out_rhos(st, ["a", "b"])) == 4 * SEEDS
    mod = next(m for m in questions() if m.KEY == "fan_out")
    a = mod.answer(Context(st))
    assert a.present and len(a.csv["fan_out_tests"]) == 4 and (a.csv["fan_out_rho"]["rho"] > -1).all()
    glance = dict(a.answer)
    assert "learn faster" in glance["wm"] and "not shown (power" in glance["uwm"]


def test_the_question_is_not_answerable_without_the_probe():
    st = study(pd.DataFrame(columns=["run_id", "episode", "seed", "metric", "value"]),
               pd.DataFrame({"run_id": ["a"], "rule_variant": ["wm"]}))
    mod = next(m for m in questions() if m.KEY == "fan_out")
    a = mod.answer(Context(st))
    assert not a.present and "fan-out probe" in a.text[0]
