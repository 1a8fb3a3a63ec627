"""Control tasks in studies, in process: the spec accepts ``task: {env: ...}`` and refuses what does not apply in
one line; the study's trainer of a control pack (uwm_model.control_trainer) reports the multiplexer's metric
names per member, packs points without changing their numbers, resumes exactly and records divergence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from study import cli
from study.control_trial import trial_config
from study.errors import UserError
from study.spec import load_spec, validate_spec
from uwm_model import metrics
from uwm_model.control import ActorCritic, ControlConfig
from uwm_model.control_trainer import ControlTrainer, member_metrics

ROOT = Path(__file__).resolve().parent.parent
TINY = {"task": {"env": "cartpole"}, "actor_hidden": [4], "critic_hidden": [3], "actor_lr_start": [0.01, 0.01],
        "actor_lr_end": [0.01, 0.01], "critic_lr_start": [0.01, 0.01], "critic_lr_end": [0.01, 0.01],
        "episodes": 6, "report_every": 3, "seeds": 2, "max_steps": 30, "compile": "off"}
SPEC = {"name": "c", "base": TINY, "grid": {"rule": ["wm", "uwm"], "task.env": ["cartpole", "acrobot"]},
        "search": {"lr": {"low": 1e-3, "high": 0.1, "log": True}}, "samples_per_cell": 2}


def points(*lrs_seeds, cell=0, **change):
    spec = validate_spec({**SPEC, "base": {**TINY, **change}})
    return [trial_config(spec.point_config(spec.cells()[cell], {"lr": lr}, seed=seed)) for lr, seed in lrs_seeds]


def test_a_control_spec_holds_its_cells_in_the_trial_files_form():
    spec = validate_spec(SPEC)
    assert spec.control
    assert [c.key for c in spec.cells()] == ["rule=wm|task.env=cartpole", "rule=wm|task.env=acrobot",
                                             "rule=uwm|task.env=cartpole", "rule=uwm|task.env=acrobot"]
    config = spec.point_config(spec.cells()[1], {"lr": 0.05})
    assert config["task"] == {"env": "acrobot"} and config["lr"] == 0.05 and "env" not in config
    cfg = trial_config(config)
    assert isinstance(cfg, ControlConfig) and cfg.env == "Acrobot-v1" and cfg.threshold == -100.0
    assert cfg.lr_scale == pytest.approx(5.0)     # 0.05 over the schedule's first rate 0.01
    layered = trial_config({**TINY, "actor_lr_start": [0.02, 0.001], "lr": 0.04})
    assert layered.lr_scale == pytest.approx(2.0)    # the first layer's starting rate sets the factor
    # the points of a cell share their pack; the environments do not
    assert len({c.pack_key for c in spec.cells()}) == 4
    assert trial_config(spec.point_config(spec.cells()[0], {"lr": 0.002})).pack_key() == \
        trial_config(spec.point_config(spec.cells()[0], {"lr": 0.05}, seed=9)).pack_key()


def test_the_shipped_control_rules_spec_has_every_rule_on_both_tasks():
    spec = load_spec(ROOT / "tune_configs/control-rules.yaml")
    assert spec.control and spec.confirm is not None and "lr" in spec.search
    combos = {(c.config["task"]["env"], c.config["rule"], c.config["rule_options"].get("order")) for c in spec.cells()}
    assert combos == {(env, rule, 3 if rule == "hwm" else None) for env in ("cartpole", "acrobot")
                      for rule in ("reinforce", "ste", "wm", "hwm", "uwm")}
    chung = {"cartpole": 0.02, "acrobot": 0.1}     # the published first rates lie inside the searched range
    assert all(spec.search["lr"].low < chung[c.config["task"]["env"]] < spec.search["lr"].high for c in spec.cells())


@pytest.mark.parametrize("change,words", [
    ({"base": {**TINY, "task": {"env": "pong"}}}, ["base.task.env", "unknown environment 'pong'"]),
    ({"base": {**TINY, "hidden": [4]}}, ["base.hidden", "unknown field"]),
    ({"base": {**TINY, "task": {"env": "cartpole", "address_bits": 2}}}, ["base.task.address_bits", "only env"]),
    ({"grid": {"task.address_bits": [2, 3]}}, ["grid.task.address_bits", "only env"]),
    ({"grid": {"task.env": ["cartpole", "pong"]}}, ["grid.task.env", "cell task.env=pong", "unknown environment"]),
    ({"grid": {"method": [{"rule": "wm", "hidden": [3]}]}}, ["grid.method[0].hidden", "not a field"]),
    ({"early_stopping": {"grace_period": 3}}, ["early_stopping", "does not apply to a control task"]),
    ({"search": {"gamma": {"low": 0.9, "high": 0.99}}}, ["search.gamma", "only per-member"]),
    ({"search": {"lr": {"low": 0.001, "high": 0.1, "per_layer": True}}}, ["search.lr.per_layer", "one number"]),
])
def test_a_bad_control_spec_is_one_error_line_before_any_work(tmp_path, capsys, change, words):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**SPEC, **change}))
    assert cli.main(["check", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(w in err[0] for w in words), err


def test_a_grid_of_environments_needs_a_control_base():
    with pytest.raises(UserError, match="base.task.env"):
        validate_spec({"name": "c", "grid": {"task.env": ["cartpole", "acrobot"]}})


def test_member_metrics_read_returns_by_episode_with_the_unreached_censored():
    returns = [10.0] * 100 + [300.0] * 100 + [250.0] * 20          # a member ahead of the report by 20 episodes
    row = member_metrics(returns, 200, 100, 195.0, False)
    assert row["train_reward"] == row["eval_reward"] == 300.0       # episodes 101..200 only
    assert row["train_reward_all"] == pytest.approx(155.0) and row["running_reward"] == 300.0
    # the running mean of 100 first reaches 195 at episode 100 + k where (100 - k) 10 + 300 k >= 19 500: k = 64
    assert row["episodes_to_threshold"] == 164.0
    assert "episodes_to_threshold" not in member_metrics(returns, 200, 100, 301.0, False)   # censored: absent
    assert "episodes_to_threshold" not in member_metrics(returns[:99], 99, 99, 0.0, False)  # no full window yet
    diverged = member_metrics(returns[:150], 200, 100, 195.0, True)
    assert diverged["diverged"] == 1.0 and diverged["diverged_at"] == 150.0
    assert diverged["train_reward"] == 300.0                         # the window's returns it ended (101..150)


def test_a_control_pack_reports_every_member_as_it_would_alone():
    pack = points((0.05, 0), (0.002, 10))
    reports = list(ControlTrainer(pack).run())
    assert [r.episode for r in reports] == [3, 6]
    assert [p.status for p in reports[-1].points] == [metrics.FINISHED] * 2
    alone = list(ControlTrainer(pack[1:]).run())
    assert [r.points[0].per_seed for r in alone] == [r.points[1].per_seed for r in reports]
    first = reports[-1].points[0]
    assert all(metrics.is_point_metric(name) for name in first.metrics), sorted(first.metrics)
    assert {"eval_reward_mean", "train_reward_all_mean", "running_reward_mean", "diverged_fraction",
            "threshold_reached_fraction", "episodes", "seconds_per_episode"} <= set(first.metrics)
    # the learning rate is per member: the two points learn differently from the same seeds
    same_seeds = list(ControlTrainer(points((0.05, 10))).run())
    assert same_seeds[-1].points[0].per_seed != reports[-1].points[1].per_seed
    # each member's figures are its own returns', read by episode
    ac = ActorCritic(pack[1:])
    ac.run()
    for k, row in enumerate(alone[-1].points[0].per_seed):
        assert row["train_reward_all"] == pytest.approx(sum(ac.returns[k][:6]) / 6)


def test_a_resumed_control_pack_continues_as_if_it_had_not_stopped(tmp_path):
    pack = points((0.05, 0), (0.002, 10), episodes=9)
    whole = [r.points for r in ControlTrainer(pack).run()]
    first = ControlTrainer(pack)
    run = first.run()
    early = [next(run).points]
    first.save(tmp_path / "trainer.pt")
    resumed = ControlTrainer.load(tmp_path / "trainer.pt", pack)
    later = [r.points for r in resumed.run()]
    strip = lambda reps: [[(p.status, p.per_seed) for p in r] for r in reps]   # noqa: E731 (timings differ)
    assert strip(early + later) == strip(whole)
    with pytest.raises(ValueError, match="different ControlConfigs"):
        ControlTrainer.load(tmp_path / "trainer.pt", points((0.05, 0), (0.003, 10), episodes=9))


def test_a_diverged_point_is_recorded_as_diverged_and_its_pack_trains_on():
    pack = points((1e38, 0), (0.002, 10), cell=2)          # uwm; an actor step of 1e38 overflows float32
    reports = list(ControlTrainer(pack).run())
    bad, good = reports[-1].points
    assert bad.status == metrics.DIVERGED and bad.metrics["diverged_fraction"] == 1.0
    assert all(row["diverged"] == 1.0 and row["diverged_at"] < 6 for row in bad.per_seed)
    assert all("episodes_to_threshold" not in row for row in bad.per_seed)
    alone = list(ControlTrainer(pack[1:]).run())
    assert good.status == metrics.FINISHED and good.per_seed == alone[-1].points[0].per_seed


def test_trial_files_keep_their_schedule_when_lr_is_not_set():
    cfg = trial_config(TINY)
    assert cfg.lr is None and cfg.lr_scale == 1.0 and ActorCritic(cfg).lr_scale is None
    scaled = ActorCritic(trial_config({**TINY, "lr": 0.01}))      # lr at the schedule's own first rate: factor 1
    assert torch.equal(scaled.lr_scale, torch.ones(2))
    assert not math.isnan(float(scaled.run().returns.mean()))


def test_a_diverged_control_seed_scores_its_tasks_lowest_return():
    import pandas as pd

    from analysis.speed import reward_floor

    trials = pd.DataFrame({"run_id": ["a", "b", "c"], "task.env": ["cartpole", "acrobot", None],
                           "max_steps": ["500", "200", None], "task.rewards": [None, None, "10"]})
    assert reward_floor(trials).tolist() == [0.0, -200.0, 0.0]
    assert reward_floor(trials.drop(columns=["task.env", "max_steps"])).tolist() == [-1.0, -1.0, 0.0]
