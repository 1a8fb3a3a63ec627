"""Control trials through ``uwm-study train`` (study/control_trial.py): the published trial files, one-line
errors before any work, and a tiny end-to-end run whose curves equal the actor-critic's own returns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from study import cli
from study.control_trial import control_config, summary
from study.spec import read_yaml
from uwm_model.control import ActorCritic, ControlResult

ROOT = Path(__file__).resolve().parent.parent
TINY = {"task": {"env": "cartpole"}, "actor_hidden": [4], "critic_hidden": [3], "actor_lr_start": [0.01, 0.01],
        "actor_lr_end": [0.01, 0.01], "critic_lr_start": [0.01, 0.01], "critic_lr_end": [0.01, 0.01],
        "episodes": 4, "seeds": 2, "seed": 7}


def test_the_published_trial_files_are_chungs_configs():
    cp = control_config(read_yaml(ROOT / "tune_configs/trials/chung2022-cartpole.yaml", "config"))
    ab = control_config(read_yaml(ROOT / "tune_configs/trials/chung2022-acrobot.yaml", "config"))
    assert (cp.env, ab.env) == ("CartPole-v1", "Acrobot-v1")
    for cfg in (cp, ab):
        assert (cfg.rule, cfg.rule_options, cfg.actor_hidden, cfg.critic_hidden) == ("wm", {"p": 2.0}, [64, 32], [64, 32])
        assert (cfg.gamma, cfg.critic_lambda, cfg.episodes, cfg.seeds, cfg.envs) == (0.98, 0.8, 1000, 10, 1)
        assert cfg.adam_bias_correction_steps == 1000 and cfg.output_logits == "pin_last" and cfg.compile == "auto"
    assert cp.actor_lr_start == [0.02, 2e-4, 2e-5] and cp.end_t == 50_000
    assert ab.actor_lr_start == [0.1, 1e-3, 1e-4] and ab.end_t == 1_000_000


@pytest.mark.parametrize("change,words", [
    ({"task": {"env": "pong"}}, ["task.env", "unknown environment 'pong'"]),
    ({"task": {"env": "cartpole", "address_bits": 2}}, ["task.address_bits", "unknown field"]),
    ({"gamma": 2.0}, ["gamma"]),
    ({"hidden": [4]}, ["hidden", "unknown field"]),
    ({"actor_lr_start": [0.1]}, ["actor_lr_start lists 1 learning rates for 2 layers"]),
    ({"env": "CartPole-v1"}, ["env", "task.env"]),
])
def test_a_bad_control_trial_is_one_error_line_before_any_work(tmp_path, capsys, change, words):
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump({**TINY, **change}))
    assert cli.main(["train", str(tmp_path / "trial.yaml"), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(w in err[0] for w in words), err
    assert not list(tmp_path.glob("x*"))


def test_train_runs_a_control_trial_and_writes_its_returns(tmp_path, capsys):
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(TINY))
    out = tmp_path / "c.csv"
    assert cli.main(["train", str(tmp_path / "trial.yaml"), "--out", str(out), "--set", "episodes=5"]) == 0
    text = capsys.readouterr().out
    assert "average return over all episodes" in text and "2 seeds x 5 episodes" in text
    per_seed, agg = pd.read_csv(tmp_path / "c_per_seed.csv"), pd.read_csv(out)
    ref = ActorCritic(control_config({**TINY, "episodes": 5})).run().returns
    assert sorted(set(per_seed["seed"])) == [7, 8] and list(agg["episode"]) == [1, 2, 3, 4, 5]
    for k, seed in enumerate((7, 8)):
        assert per_seed[per_seed["seed"] == seed]["return"].tolist() == ref[k].tolist()
    assert agg["return_mean"].tolist() == pytest.approx(ref.mean(0).tolist())


def test_summary_counts_seeds_that_reach_the_threshold_and_censors_the_rest():
    returns = torch.tensor([[200.0] * 150, [100.0] * 150, [float("nan")] * 150], dtype=torch.float64)
    s = summary(ControlResult(returns, 0, 0.0, torch.tensor([-1, -1, 5])), 195.0)
    assert (s["seeds"], s["diverged"], s["reached"], s["episodes_to_threshold_mean"]) == (2, 1, 1, 100.0)
    assert s["average_return_mean"] == 150.0 and s["average_return_se"] == pytest.approx(50.0)
    short = summary(ControlResult(returns[:2, :99], 0, 0.0, torch.tensor([-1, -1])), 195.0)
    assert short["reached"] == 0 and short["seeds"] == 2        # no full window of 100: none reached, no error
