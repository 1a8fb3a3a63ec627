"""A rule is one registry entry: a toy sixth rule, registered in RULES alone, is validated, packed
with a per-member option, searched, and trained by the generic trainer."""

import pytest
import torch

from study.spec import searchable_fields
from uwm_model.config import TrialConfig, per_member_fields
from uwm_model.rules import RULES, Rule, _per_member
from uwm_model.trainer import Trainer


def scaled_reinforce(weights, ep, R, U, scale=1.0, baseline=0.0):
    """REINFORCE times a per-member factor: ``scale`` x (R - b)(h - pi)."""
    advantage = (R - _per_member(baseline, R)).unsqueeze(-1)
    return [_per_member(scale, h) * advantage * (h - pi) for h, pi in zip(ep.h[1:], ep.pi)]


@pytest.fixture
def toy_rule(monkeypatch):
    monkeypatch.setitem(RULES, "scaled", Rule("scaled", scaled_reinforce, {"scale": 1.0, "baseline": 0.0},
                                              numbers={"scale": (float, 0.0), "baseline": (float, None)},
                                              per_member=("scale",), reward_baseline=True))


def config(**kw):
    base = dict(rule="scaled", hidden=[4], episodes=256, report_every=128, seeds=2, optimizer="sgd", lr=0.5,
                threshold_window=64, compile="off", device="cpu", dtype="float64", probe={"enabled": False})
    return TrialConfig(**{**base, **kw})


def test_toy_rule_is_validated_packed_and_searchable(toy_rule):
    assert "rule_options.scale" in per_member_fields() and "rule_options.scale" in searchable_fields()
    a, b = config(rule_options={"scale": 0.0}), config(rule_options={"scale": 2.0}, seed=7)
    assert a.pack_key() == b.pack_key()                       # a per-member option does not split a pack
    assert config(baseline="ema").baseline == "ema"           # it takes the trainer's reward baseline
    with pytest.raises(ValueError, match="scale=-1.0 must be >= 0.0"):
        config(rule_options={"scale": -1.0})
    with pytest.raises(ValueError, match="rule 'scaled' has no option 'p'"):
        config(rule_options={"p": 2.0})


def test_toy_rule_trains_per_member_options_like_separate_runs(toy_rule):
    frozen, moving = config(rule_options={"scale": 0.0}), config(rule_options={"scale": 2.0}, seed=7, baseline="ema")
    with pytest.raises(ValueError, match="shape-fixing"):
        Trainer([frozen, moving])                               # baseline: ema is not per member
    moving = moving.model_copy(update={"baseline": "none"})
    packed = Trainer([frozen, moving])
    start = packed.theta.clone()
    reports = list(packed.run())
    assert [r.episode for r in reports] == [128, 256] and reports[-1].points[1].status == "finished"
    # scale 0: no update at all; scale 2: the members of the packed run equal those of a run of their own
    torch.testing.assert_close(packed.theta[:2], start[:2], rtol=0, atol=0)
    alone = Trainer(moving)
    list(alone.run())
    assert (alone.theta - start[2:]).abs().max() > 0.1
    torch.testing.assert_close(packed.theta[2:], alone.theta, rtol=1e-9, atol=1e-9)   # BLAS sums differ by P
    # the option enters the step as declared: SGD with scale 2 and lr 0.5 is scale 1 with lr 1
    unit = Trainer(config(rule_options={"scale": 1.0}, seed=7, lr=1.0))
    list(unit.run())
    torch.testing.assert_close(unit.theta, alone.theta, rtol=1e-9, atol=1e-9)
