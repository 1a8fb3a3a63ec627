"""The actor-critic of uwm_model/control.py (docs/learning-rules.md §9): its categorical output's
scores against autograd and an exact enumeration, the critic's gradient against autograd, packing,
bad configs, and (slow) that WM learns CartPole."""

from __future__ import annotations

import itertools

import pytest
import torch
from pydantic import ValidationError

from uwm_model.control import (ActorCritic, ControlConfig, schedule, softplus_critic_gradient, softplus_critic_value,
                               td_error)
from uwm_model.rules import RULES
from uwm_model.settings import torch_settings


def small(**kw):
    base = dict(actor_hidden=[3, 2], critic_hidden=[4, 3], dtype="float64", episodes=3, seeds=1)
    return ControlConfig(**{**base, **kw})


def log_prob(ac, x, ep, action):
    """log p(omega | s) of the actor's samples, from its parameters (autograd's reference)."""
    weights, biases = ac.actor
    total, h = 0.0, x
    for w, b, sample in zip(weights[:-1], biases[:-1], ep.h[1:-1]):
        z = h @ w[0].T + b[0]
        total = total + (sample * torch.nn.functional.logsigmoid(z) + (1 - sample) * torch.nn.functional.logsigmoid(-z)).sum()
        h = sample
    logits = torch.cat([h @ weights[-1][0].T + biases[-1][0], torch.zeros(h.shape[:-1] + (1,), dtype=h.dtype)], -1)
    return total + torch.log_softmax(logits, -1)[..., action].sum()


@pytest.mark.parametrize("env", ["CartPole-v1", "Acrobot-v1"])
def test_reinforce_logit_estimates_are_delta_times_the_score_of_the_categorical_output(env):
    """Per sample, reinforce's estimate of every layer's logits is delta * d log p(omega|s) / dz: the
    categorical output enters the rules as h = e_a[:K-1], pi = softmax[:K-1] of the free logits."""
    ac = ActorCritic(small(env=env))
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randn(1, 1, ac.env.observation_size, generator=gen, dtype=torch.float64)
        ep, action = ac.act(x, torch.rand(1, 1, 6, generator=gen, dtype=torch.float64))
        delta = torch.randn(1, 1, generator=gen, dtype=torch.float64)
        grads = RULES["reinforce"].fn(ac.actor[0], ep, delta, None, baseline=0.0)
        zs = [z.detach().clone().requires_grad_(True) for z in ep.z]
        # the log-probability as a function of the logits themselves
        lp = sum((s * torch.nn.functional.logsigmoid(z) + (1 - s) * torch.nn.functional.logsigmoid(-z)).sum()
                 for z, s in zip(zs[:-1], ep.h[1:-1]))
        logits = torch.cat([zs[-1], torch.zeros_like(zs[-1][..., :1])], -1)
        lp = lp + torch.log_softmax(logits, -1)[0, 0, int(action)]
        autograd = torch.autograd.grad(lp, zs)
        for g, a in zip(grads, autograd):
            assert torch.allclose(g, delta.unsqueeze(-1) * a, atol=1e-12)


def test_reinforce_through_the_categorical_output_is_unbiased_against_exact_enumeration():
    """Fixed state, reward table R(a): J = sum over hidden configurations and actions, its exact
    gradient by autograd; reinforce's mean estimate over N samples is within 5 standard errors of it
    in every parameter, while the same test catches wm (biased, §3.3) far beyond 5."""
    ac = ActorCritic(small(env="Acrobot-v1", actor_hidden=[3, 2]))
    N = 40_000
    x = torch.tensor([[[0.3, -0.8, 0.5, 0.1, 0.7, -1.2]]], dtype=torch.float64)
    R = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    params = [t.clone().requires_grad_(True) for t in ac.actor[0] + ac.actor[1]]
    W, b = params[:3], params[3:]
    J = 0.0
    for h1 in itertools.product([0.0, 1.0], repeat=3):
        h1 = torch.tensor(h1, dtype=torch.float64)
        p1 = torch.sigmoid(x[0, 0] @ W[0][0].T + b[0][0])
        q1 = (h1 * p1 + (1 - h1) * (1 - p1)).prod()
        for h2 in itertools.product([0.0, 1.0], repeat=2):
            h2 = torch.tensor(h2, dtype=torch.float64)
            p2 = torch.sigmoid(h1 @ W[1][0].T + b[1][0])
            q2 = (h2 * p2 + (1 - h2) * (1 - p2)).prod()
            pa = torch.softmax(torch.cat([h2 @ W[2][0].T + b[2][0], torch.zeros(1, dtype=torch.float64)]), -1)
            J = J + q1 * q2 * (pa * R).sum()
    exact = torch.autograd.grad(J, params)
    u = torch.rand(1, N, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ep, action = ac.act(x.expand(1, N, 6), u)
    for rule, options, caught in (("reinforce", {"baseline": 0.0}, False), ("wm", {"p": 2.0}, True)):
        logit_grads = RULES[rule].fn(ac.actor[0], ep, R[action], None, **options)
        per_sample = [g.unsqueeze(-1) * h.unsqueeze(-2) for g, h in zip(logit_grads, ep.h[:-1])] + logit_grads
        z = torch.cat([((s.mean(1) - e) / (s.std(1) / N**0.5).clamp_min(1e-12)).flatten()
                       for s, e in zip(per_sample, exact) if s.std(1).max() > 0])
        assert (z.abs().max() > 10) if caught else (z.abs().max() < 5), (rule, float(z.abs().max()))


def test_critic_gradient_equals_autograd():
    ac = ActorCritic(small())
    x = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    params = [t.clone().requires_grad_(True) for t in ac.critic[0] + ac.critic[1]]
    v, cache = softplus_critic_value(params[:3], params[3:], x)
    gw, gb = softplus_critic_gradient([p.detach() for p in params[:3]], cache)
    for k in range(5):
        auto = torch.autograd.grad(v[0, k], params, retain_graph=True)
        for ours, ref in zip(gw + gb, auto):
            assert torch.allclose(ours[0, k], ref[0], atol=1e-12)


def test_schedule_is_chungs_linear_interpolation():
    assert schedule([1.0, 0.1], [0.0, 0.1], 10, 0) == [1.0, 0.1]
    assert schedule([1.0, 0.1], [0.0, 0.1], 10, 5) == [0.5, 0.1]
    assert schedule([1.0, 0.1], [0.0, 0.1], 10, 30) == [0.0, 0.1]


def test_td_error_bootstraps_except_after_terminations_and_zeroes_truncations_as_published():
    r = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    term = torch.tensor([[False, True, True, False]])
    trunc = torch.tensor([[False, False, True, True]])
    v, v_next = torch.tensor([[2.0, 2.0, 2.0, 2.0]]), torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert td_error(r, term, trunc, v, v_next, 0.5).tolist() == [[0.5, -1.0, -1.0, 0.0]]
    assert td_error(r, term, trunc, v, v_next, 0.5, "bootstrap").tolist() == [[0.5, -1.0, -1.0, -0.5]]


def test_a_member_trains_alike_packed_or_alone():
    with torch_settings(threads=1):
        packed = ActorCritic(small(seeds=3, seed=4, episodes=4)).run()
        alone = ActorCritic(small(seeds=1, seed=5, episodes=4)).run()
    assert torch.equal(packed.returns[1], alone.returns[0])
    assert not torch.equal(packed.returns[0], packed.returns[1])


def test_bad_configs_fail_naming_the_field():
    with pytest.raises(ValidationError, match="actor_lr_start lists 2 learning rates for 3 layers"):
        ControlConfig(actor_lr_start=[0.1, 0.1])
    with pytest.raises(ValidationError, match="rule"):
        ControlConfig(rule="uwm")
    with pytest.raises(ValidationError, match="env"):
        ControlConfig(env="Pong-v5")
    with pytest.raises(ValidationError, match="rule 'wm' option p=0.5 must be >= 1"):
        ControlConfig(rule_options={"p": 0.5})


@pytest.mark.slow
def test_wm_learns_cartpole():
    """Four members, 80 episodes of the published CartPole config: a uniformly random policy returns
    about 22 (SD about 12); each member's last 20 episodes average above its first 20, and the
    population's last-20 mean exceeds 35 (10 standard errors above random; measured: 43)."""
    with torch_settings(threads=1):
        result = ActorCritic(ControlConfig(episodes=80, seeds=4)).run()
    first, last = result.returns[:, :20].mean(1), result.returns[:, -20:].mean(1)
    assert (last > first).all() and last.mean() > 35, (first, last)
