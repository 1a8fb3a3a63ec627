"""The control trainer's estimator probe (docs/learning-rules.md §9): it changes no training number, its mean
estimate on a fixed state is the exact one-step gradient of the expected TD error for the unbiased rules, and it
reports under the multiplexer probe's names."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from uwm_model.control import ControlConfig, softplus_critic_value, td_error
from uwm_model.control_trainer import ControlTrainer

SMALL = dict(actor_hidden=[3], critic_hidden=[3], actor_lr_start=[0.01] * 2, actor_lr_end=[0.01] * 2,
             critic_lr_start=[0.01] * 2, critic_lr_end=[0.01] * 2, max_steps=30, compile="off", threshold=0.0)


def _trained(**over) -> ControlTrainer:
    trainer = ControlTrainer(ControlConfig(**{**SMALL, "episodes": 6, "report_every": 2, "seeds": 2, "envs": 2,
                                              "rule": "uwm", **over}))
    trainer.reports = list(trainer.run())
    return trainer


def test_probing_changes_no_training_number():
    with_probe, without = _trained(probe_samples=16), _trained(probe_samples=0)
    for a, b in zip(with_probe.ac.actor[0] + with_probe.ac.actor[1] + with_probe.ac.critic[0] + with_probe.ac.critic[1],
                    without.ac.actor[0] + without.ac.actor[1] + without.ac.critic[0] + without.ac.critic[1]):
        assert torch.equal(a, b)
    assert with_probe.ac.returns == without.ac.returns
    names = set(with_probe.reports[-1].points[0].metrics)
    assert {"probe_var_l1_mean", "probe_mean_sq_l2_mean", "init_probe_var_l1_mean"} <= names
    assert not any("probe" in n for n in without.reports[-1].points[0].metrics)


def test_probe_values_follow_its_counter_and_survive_a_checkpoint(tmp_path):
    trainer = _trained(probe_samples=8)
    first, again, other = trainer.probe(5), trainer.probe(5), trainer.probe(6)
    for k in first:                                   # nsr is NaN where undefined
        torch.testing.assert_close(first[k], again[k], rtol=0, atol=0, equal_nan=True)
    assert not torch.equal(first["probe_var_l1"], other["probe_var_l1"])
    # a subset of members (what a report probes: the members that just ended its episode) gets the same numbers
    for m in ([1], [0]):
        part = trainer.probe(5, torch.tensor(m))
        for k in first:
            torch.testing.assert_close(part[k], first[k][m], rtol=0, atol=0, equal_nan=True)
    # with B = 2 environments a member's numbers are the means over its two states of each state's statistics
    grads, inputs = trainer.ac.probe_estimates(5, 8)
    for l, (g, h) in enumerate(zip(grads, inputs), start=1):
        x = torch.cat([torch.einsum("pbko,pbki->pbkoi", g, h), g.unsqueeze(-1)], -1).flatten(3)   # [P, B, K, coords]
        torch.testing.assert_close(first[f"probe_var_l{l}"], x.var(2).sum(-1).mean(1))
        torch.testing.assert_close(first[f"probe_mean_sq_l{l}"], x.mean(2).pow(2).sum(-1).mean(1))
        var, signal = x.var(2).sum(-1).mean(1), x.mean(2).pow(2).sum(-1).mean(1) - x.var(2).sum(-1).mean(1) / 8
        torch.testing.assert_close(first[f"probe_nsr_l{l}"], torch.where(signal > 0, var / (2 * signal), torch.nan),
                                   equal_nan=True)
    trainer.save(tmp_path / "c.pt")
    restored = ControlTrainer.load(tmp_path / "c.pt", trainer.points)
    assert restored.init_probe.keys() == trainer.init_probe.keys()
    for k in trainer.init_probe:
        torch.testing.assert_close(restored.init_probe[k], trainer.init_probe[k], rtol=0, atol=0, equal_nan=True)


def test_the_probe_draws_from_the_members_probe_stream_not_the_training_stream():
    from uwm_model import streams

    ac = ControlTrainer(ControlConfig(**{**SMALL, "seeds": 2, "episodes": 1})).ac
    assert torch.equal(ac.probe_keys, streams.member_keys(ac.seeds, streams.PROBE))
    assert not torch.equal(ac.probe_keys, ac.train_keys)


def test_one_probe_sample_is_refused():
    with pytest.raises(ValueError, match="probe_samples is 1"):
        ControlConfig(**SMALL, probe_samples=1)


def _exact_gradient(ac) -> list[torch.Tensor]:
    """Per actor layer [P, n_out, n_in + 1]: the gradient of E[delta] over the actor's one step from each member's
    (single) current state, by enumerating every hidden configuration and action (the environment and critic are
    deterministic given the action)."""
    P, A = ac.P, ac.env.num_actions
    env = type(ac.env_state)(**{k: v if k == "keys" else v.repeat_interleave(A, 1) for k, v in vars(ac.env_state).items()})
    x = ac.obs.repeat_interleave(A, 1)
    out = ac.env.step(env, torch.arange(A).expand(P, A))
    delta = td_error(out.reward, out.terminated, out.truncated, softplus_critic_value(*ac.critic, x)[0],
                     softplus_critic_value(*ac.critic, out.final_obs)[0], ac.cfg.gamma, ac.cfg.truncation)   # [P, A]
    (w1, w2), (b1, b2) = [[t.detach().clone().requires_grad_() for t in ts] for ts in ac.actor]
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=w1.shape[1])), dtype=w1.dtype)       # [H, n]
    pi1 = torch.sigmoid(torch.einsum("pod,pd->po", w1, ac.obs[:, 0]) + b1)                             # [P, n]
    p_h = (hs * pi1.unsqueeze(1).log() + (1 - hs) * (1 - pi1).unsqueeze(1).log()).sum(-1).exp()      # [P, H]
    pi2 = torch.softmax(torch.einsum("pai,hi->pha", w2, hs) + b2.unsqueeze(1), -1)                     # [P, H, A]
    (p_h.unsqueeze(-1) * pi2 * delta.unsqueeze(1)).sum().backward()
    return [torch.cat([w.grad, b.grad.unsqueeze(-1)], -1) for w, b in ((w1, b1), (w2, b2))]


def _z_scores(rule: str, logits: str, K: int = 6000):
    """Per actor layer [P, coords]: z of the probe's mean estimate (weights and biases) over K copies of one state
    against the exact gradient, and the exact gradient over the standard error; also the trainer and its estimates."""
    cfg = ControlConfig(**{**SMALL, "rule": rule, "output_logits": logits, "seeds": 2, "dtype": "float64",
                           "episodes": 1, "probe_samples": K})
    trainer = ControlTrainer(cfg)
    ac, gen = trainer.ac, torch.Generator().manual_seed(3)
    with torch.no_grad():          # parameters off their initial scale, so the TD errors of the actions differ
        for t in ac.actor[0][1:] + ac.critic[0]:                        # clearly and no gradient is small
            t.normal_(0, 3.0, generator=gen)
    grads, inputs = ac.probe_estimates(7, K)
    zs, signal = [], []
    for l, (g, h, e) in enumerate(zip(grads, inputs, _exact_gradient(ac))):
        g, h = g[:, 0], h[:, 0]                                           # the member's one state: [P, K, ...]
        if logits == "pin_last" and l == len(grads) - 1:
            e = e[:, :-1]                                                 # the pinned logit has no gradient
        x = torch.cat([torch.einsum("pko,pki->pkoi", g, h), g.unsqueeze(-1)], -1).flatten(2)     # [P, K, coords]
        se = x.std(1) / math.sqrt(K)
        zs.append((x.mean(1) - e.flatten(1)) / se)
        signal.append(e.flatten(1).abs() / se)
    return zs, signal, trainer, grads, inputs


@pytest.mark.parametrize("rule,logits", [("reinforce", "pin_last"), ("uwm", "pin_last"), ("uwm", "free")])
def test_the_probes_mean_estimate_is_the_exact_one_step_gradient_for_unbiased_rules(rule, logits):
    """z-test per weight over K = 6000 copies of one state (Bonferroni over the ~30 coordinates: |z| < 4.5 has a
    false-alarm rate of ~2e-4), with power: some exact coordinate is over 8 standard errors from 0."""
    zs, signal, trainer, grads, inputs = _z_scores(rule, logits)
    for l, (z, s) in enumerate(zip(zs, signal)):
        assert z.abs().max() < 4.5, (l, z)
        assert s.amax(1).min() > 8, "power: some coordinate stands far out of the noise"
    stats = trainer.probe(7)                        # the reported numbers are these estimates' statistics
    g, h = grads[0][:, 0], inputs[0][:, 0]
    x = torch.cat([torch.einsum("pko,pki->pkoi", g, h), g.unsqueeze(-1)], -1).flatten(2)
    torch.testing.assert_close(stats["probe_var_l1"], x.var(1).sum(-1))
    torch.testing.assert_close(stats["probe_mean_sq_l1"], x.mean(1).pow(2).sum(-1))


@pytest.mark.parametrize("rule", ["wm", "ste"])
def test_the_same_z_test_tells_a_biased_rule_apart(rule):
    """wm and ste are biased for a hidden layer (§4): the first layer's mean misses the exact gradient."""
    zs, _, _, _, _ = _z_scores(rule, "pin_last")
    assert zs[0].abs().max() > 4.5
