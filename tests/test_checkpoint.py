"""Trainer checkpoints (save / load): what a resume needs beyond the numbers test_trainer.py compares: the whole
resume history, the float64 accumulators of a float32 run, and a refusal of a checkpoint of other points."""

import pytest
import torch

import uwm_model as um


def config(**overrides):
    base = dict(task={"address_bits": 1}, hidden=[4], lr=0.05, batch_size=4, episodes=400, report_every=100,
                seeds=2, threshold=0.2, threshold_window=40, device="cpu", compile="off", probe={"enabled": False},
                eval_episodes=16)
    return um.TrialConfig(**{**base, **overrides})


def _resume(trainer: um.Trainer, path, reports: int) -> um.Trainer:
    run = trainer.run()
    for _ in range(reports):
        next(run)
    trainer.save(path)
    return um.Trainer.load(path)


def test_a_resumed_runs_checkpoint_keeps_every_resume_and_its_float64_sums(tmp_path):
    cfg = config(dtype="float32")
    whole = um.Trainer(cfg)
    expected = list(whole.run())
    once = _resume(um.Trainer(cfg), tmp_path / "a.pt", 1)
    twice = _resume(once, tmp_path / "b.pt", 1)
    assert once.resumed_from == [100] and twice.resumed_from == [100, 200]   # the study reads every resume
    assert twice.reward_sum.dtype == torch.float64   # accumulated in float64 whatever the training dtype
    rest = list(twice.run())
    assert rest[-1].points[0].per_seed == expected[-1].points[0].per_seed
    assert torch.equal(twice.reward_sum, whole.reward_sum)


def test_a_checkpoint_of_other_points_is_refused(tmp_path):
    trainer = um.Trainer(config())
    next(trainer.run())
    trainer.save(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="other configurations"):
        um.Trainer.load(tmp_path / "c.pt", [config(lr=0.06)])
    assert um.Trainer.load(tmp_path / "c.pt", [config()]).episode == 100
