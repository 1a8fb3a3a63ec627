"""Every metric the trainer reports is named in the registry (uwm_model.metrics) that the study spec
validates against and the analysis reads; names outside it are refused."""

import pytest

from uwm_model import layout, metrics
from uwm_model.config import TrialConfig
from uwm_model.trainer import Trainer


def test_every_reported_metric_is_in_the_registry():
    cfg = TrialConfig(task={"address_bits": 1}, hidden=[3, 2], rule="wm", episodes=64, report_every=32, seeds=3,
                      lr=5.0, optimizer="sgd", threshold=-1.0, threshold_window=8, eval_episodes=8, compile="off",
                      device="cpu", probe={"samples": 4, "cross_rule": True, "rules": [{"rule": "uwm"}, {"rule": "wm", "options": {"p": 3}}]})
    report = list(Trainer(cfg).run())[-1]
    point = report.points[0]
    assert point.status in (metrics.FINISHED, metrics.DIVERGED)
    per_seed = {k for row in point.per_seed for k in row}
    # the run reaches the (trivial) threshold, so every kind of name shows up, layers 1 and 2 included
    assert {"episodes_to_threshold", "probe_uwm_var_l2", "probe_wm_p-3_bias_l1", "max_abs_outgoing_l2"} <= per_seed
    assert all(metrics.is_point_metric(f"{name}_{kind}") for name in per_seed for kind in metrics.AGGREGATES)
    assert all(metrics.is_point_metric(name) for name in point.metrics), sorted(point.metrics)
    assert {n for n in metrics.PER_POINT if "{" not in n} <= set(point.metrics)
    # every reward level's censored summary, from the first report on (the median once half the seeds reached)
    assert {f"at_reward_{lv:g}_reached_fraction" for lv in cfg.probe.reward_levels} <= set(point.metrics)
    for unknown in ("eval_rewrd_mean", "eval_reward", "probe_var_l1_median", "diverged_fraction_mean"):
        assert not metrics.is_point_metric(unknown)


def test_the_registry_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, uwm_model.metrics, uwm_model.layout, analysis.load; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_child_runs_chart_one_series_per_quantity():
    """What a child run logs (metrics.is_series, as study.trainable applies it): the mean of every per-seed
    quantity and the point metrics, no std/sem beside the mean, no mean over a set of seeds that changes
    while the point trains, and the study's objective whatever it is."""
    from study.trainable import _series

    cfg = TrialConfig(task={"address_bits": 1}, hidden=[3, 2], rule="uwm", episodes=96, report_every=32, seeds=4,
                      lr=0.5, optimizer="sgd", threshold=-1.0, threshold_window=8, eval_episodes=8, compile="off",
                      device="cpu", probe={"samples": 4})
    reports = list(Trainer(cfg).run())
    curve = [[r.episode, r.points[0].metrics["eval_reward_mean"]] for r in reports]
    every = reports[-1].points[0].metrics
    charted = _series(every, curve, "eval_reward_mean")
    assert {"eval_reward_mean", "probe_var_l1_mean", "threshold_reached_fraction", "episodes_to_threshold_median",
            "auc_reward_mean", "diverged_fraction"} <= set(charted)
    assert not [k for k in charted if k.endswith(("_std", "_sem"))]
    assert not {"episodes_to_threshold_mean", "diverged_mean", "diverged_at_mean"} & set(charted)
    # one chart per quantity: every logged per-seed mean stands for a quantity whose std and sem are not logged
    assert len(charted) < len(every) / 2, (len(charted), len(every))
    assert set(_series(every, curve, "episodes_to_threshold_sem")) == set(charted) | {"episodes_to_threshold_sem"}
    assert charted["auc_reward_mean"] == pytest.approx(layout.auc_reward([tuple(x) for x in curve]))


@pytest.mark.parametrize("reached, seeds, median", [
    ([], 4, None), ([300.0], 4, None), ([300.0, 100.0], 4, 300.0), ([300.0, 100.0, 500.0], 4, 300.0),
    ([300.0, 100.0, 500.0, 900.0], 4, 300.0), ([700.0], 1, 700.0), ([200.0, 100.0], 3, 200.0)])
def test_episodes_to_threshold_median_counts_seeds_not_reached_as_later(reached, seeds, median):
    assert metrics.threshold_median(reached, seeds) == median


@pytest.mark.slow
def test_episodes_to_threshold_median_never_moves_once_reported():
    """Unlike the mean over the seeds that have reached, which rises as slower seeds reach."""
    cfg = TrialConfig(task={"address_bits": 1}, hidden=[4], rule="wm", episodes=2000, report_every=100, seeds=6,
                      lr=0.5, optimizer="adam", threshold=0.5, threshold_window=50, eval_episodes=8, compile="off",
                      device="cpu")
    points = [r.points[0].metrics for r in Trainer(cfg).run()]
    medians = [m["episodes_to_threshold_median"] for m in points if "episodes_to_threshold_median" in m]
    means = [m["episodes_to_threshold_mean"] for m in points if "episodes_to_threshold_mean" in m]
    assert medians and len(set(medians)) == 1, medians
    assert len(set(means)) > 1, means   # the planted contrast: this run's seeds reach at different reports


def test_reward_levels_are_summarised_over_all_seeds_with_the_unreached_censored():
    """A level's episode over the seeds that reached it climbs as slower seeds reach (the flaw the issue found
    in at_reward_0.6_episode_mean: 6 000 -> 7 500); the censored median and the reached fraction count every seed."""
    rows = [{"at_reward_0.6_episode": 100.0}, {"at_reward_0.6_episode": 300.0}, {}, {}]
    out = metrics.level_summary(rows, [0.6, 0.8])
    assert out == {"at_reward_0.6_reached_fraction": 0.5, "at_reward_0.6_episode_median": 300.0,
                   "at_reward_0.8_reached_fraction": 0.0}
    assert metrics.level_summary(rows[:1] + [{}, {}], [0.6]) == {"at_reward_0.6_reached_fraction": 1 / 3}
    for name in out:
        assert metrics.is_point_metric(name) and metrics.is_series(name)
    # the means at a level are logged once, when the point ends, never as a series
    for name in ("at_reward_0.6_episode_mean", "at_reward_0.6_probe_var_l1_mean", "at_reward_0.6_probe_uwm_var_l2_mean"):
        assert metrics.is_point_metric(name) and metrics.is_logged_at_end(name) and not metrics.is_series(name)
    assert not metrics.is_logged_at_end("probe_var_l1_mean") and not metrics.is_logged_at_end("at_reward_0.6_episode_std")


def test_a_trained_point_charts_its_levels_censored_and_logs_their_means_at_the_end():
    from study.trainable import _series

    cfg = TrialConfig(task={"address_bits": 1}, hidden=[4], rule="wm", episodes=1500, report_every=100, seeds=6,
                      lr=0.5, optimizer="adam", threshold=0.5, threshold_window=50, eval_episodes=8, compile="off",
                      device="cpu", probe={"samples": 4, "reward_levels": [0.5]})
    points = [r.points[0].metrics for r in Trainer(cfg).run()]
    fractions = [m["at_reward_0.5_reached_fraction"] for m in points]
    medians = [m["at_reward_0.5_episode_median"] for m in points if "at_reward_0.5_episode_median" in m]
    means = [m["at_reward_0.5_episode_mean"] for m in points if "at_reward_0.5_episode_mean" in m]
    assert fractions == sorted(fractions) and fractions[-1] > fractions[0]
    assert medians and len(set(medians)) == 1, medians          # never moves once reported
    assert len(set(means)) > 1, means    # the planted contrast: the mean over the seeds reached so far moves
    charted = _series(points[-1], [], "eval_reward_mean")
    assert "at_reward_0.5_reached_fraction" in charted and "at_reward_0.5_episode_median" in charted
    assert not [k for k in charted if metrics.is_logged_at_end(k)]


def test_every_metric_of_a_control_pack_is_registered_with_its_unit():
    """A control task's points report the multiplexer's names (uwm_model.control_trainer); their rewards are
    returns, which the glossary's unit says."""
    from uwm_model.control import ControlConfig
    from uwm_model.control_trainer import ControlTrainer

    cfg = ControlConfig(actor_hidden=[3], critic_hidden=[3], actor_lr_start=[0.01] * 2, actor_lr_end=[0.01] * 2,
                        critic_lr_start=[0.01] * 2, critic_lr_end=[0.01] * 2, episodes=4, report_every=2, seeds=2,
                        max_steps=20, compile="off", threshold=0.0)
    point = list(ControlTrainer(cfg).run())[-1].points[0]
    assert all(metrics.is_point_metric(name) for name in point.metrics), sorted(point.metrics)
    for name in point.metrics:
        assert metrics.unit(name) != "see meaning", name
    for name in ("train_reward_mean", "eval_reward_mean", "running_reward_mean", "train_reward_all_mean",
                 "auc_reward_mean"):
        assert "a control task: the return" in metrics.unit(name), name
    assert metrics.unit("episodes_to_threshold_median") == "episodes"
