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


def exact_objective(params, x, R, hidden):
    """J = E[R(a)] for one state x [d], by enumerating every hidden configuration and action; params:
    the actor's weights then biases (autograd differentiates J exactly)."""
    L = len(hidden) + 1
    W, b = params[:L], params[L:]

    def expected(l, h):
        z = h @ W[l][0].T + b[l][0]
        if l == L - 1:
            return (torch.softmax(z, -1) * R).sum()
        p = torch.sigmoid(z)
        total = 0.0
        for s in itertools.product([0.0, 1.0], repeat=hidden[l]):
            s = torch.tensor(s, dtype=torch.float64)
            total = total + (s * p + (1 - s) * (1 - p)).prod() * expected(l + 1, s)
        return total

    return expected(0, x)


@pytest.mark.parametrize("output_logits", ["pin_last", "free"])
@pytest.mark.parametrize("env", ["CartPole-v1", "Acrobot-v1"])
def test_reinforce_logit_estimates_are_delta_times_the_score_of_the_categorical_output(env, output_logits):
    """Per sample, reinforce's estimate of every layer's logits is delta * d log p(omega|s) / dz, the
    output's logits being the K of a units.Categorical (pinned or free alike)."""
    ac = ActorCritic(small(env=env, output_logits=output_logits))
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randn(1, 1, ac.env.observation_size, generator=gen, dtype=torch.float64)
        ep, action = ac.act(x, torch.rand(1, 1, 6, generator=gen, dtype=torch.float64))
        assert ep.h[-1][0, 0, int(action)] == 1 and ep.h[-1].sum() == 1
        delta = torch.randn(1, 1, generator=gen, dtype=torch.float64)
        grads = RULES["reinforce"].fn(ac.actor[0], ep, delta, None, baseline=0.0)
        zs = [z.detach().clone().requires_grad_(True) for z in ep.z]
        lp = sum((s * torch.nn.functional.logsigmoid(z) + (1 - s) * torch.nn.functional.logsigmoid(-z)).sum()
                 for z, s in zip(zs[:-1], ep.h[1:-1]))
        lp = lp + torch.log_softmax(zs[-1], -1)[0, 0, int(action)]
        autograd = torch.autograd.grad(lp, zs)
        for g, a in zip(grads, autograd):
            assert torch.allclose(g, delta.unsqueeze(-1) * a, atol=1e-12)


def test_pin_last_keeps_the_last_logit_at_zero_and_free_moves_it():
    for output_logits, moved in (("pin_last", False), ("free", True)):
        ac = ActorCritic(small(output_logits=output_logits, episodes=2))
        ac.run()
        last = torch.cat([ac.actor[0][-1][:, -1].flatten(), ac.actor[1][-1][:, -1]])
        assert bool(last.abs().max() > 0) == moved, output_logits


N_ENUM = 40_000
CONTROL_RULES = [("reinforce", {"baseline": 0.0}, False), ("uwm", {"signal": "individual"}, False),
                 ("uwm", {"signal": "global", "form": "rb"}, False), ("wm", {"p": 2.0}, True),
                 ("hwm", {"order": 1}, True), ("ste", {}, True)]


@pytest.mark.parametrize("output_logits", ["pin_last", "free"])
@pytest.mark.parametrize("rule,options,caught", CONTROL_RULES, ids=lambda v: str(v))
def test_actor_estimates_against_exact_enumeration(rule, options, caught, output_logits):
    """Fixed state, reward table R(a): J = sum over hidden configurations and actions, its exact gradient by
    autograd. reinforce and uwm (individual and global signals, both forms) have mean estimates over N samples
    within 5 standard errors of it in every free parameter; the same test catches wm, hwm (order 1) and ste
    beyond 10 (their bias, §3.3-3.4, with the next layer a softmax, §9). The weights are tripled so the biased
    rules' bias is well above the noise."""
    ac = ActorCritic(small(env="Acrobot-v1", actor_hidden=[3, 2], rule=rule, rule_options=options,
                           output_logits=output_logits))
    ac.actor[0] = [3 * w for w in ac.actor[0]]
    x = torch.tensor([[[0.3, -0.8, 0.5, 0.1, 0.7, -1.2]]], dtype=torch.float64)
    R = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    params = [t.clone().requires_grad_(True) for t in ac.actor[0] + ac.actor[1]]
    exact = torch.autograd.grad(exact_objective(params, x[0, 0], R, [3, 2]), params)
    u = torch.rand(1, N_ENUM, 6 + 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ep, action = ac.act(x.expand(1, N_ENUM, 6), u[..., :6])
    U = ac.uwm_uniforms(u[..., 6:]) if ac.rule.needs_uniforms else None
    logit_grads = ac.rule.fn(ac.actor[0], ep, R[action], U, **ac.rule_options)
    per_sample = [g.unsqueeze(-1) * h.unsqueeze(-2) for g, h in zip(logit_grads, ep.h[:-1])] + logit_grads
    if output_logits == "pin_last":     # the pinned row is no parameter: its estimate is dropped
        per_sample[2], per_sample[5] = per_sample[2][:, :, :-1], per_sample[5][:, :, :-1]
        exact = list(exact)
        exact[2], exact[5] = exact[2][:, :-1], exact[5][:, :-1]
    z = torch.cat([((s.mean(1) - e) / (s.std(1) / N_ENUM**0.5).clamp_min(1e-12)).flatten()
                   for s, e in zip(per_sample, exact) if s.std(1).max() > 0])
    assert (z.abs().max() > 10) if caught else (z.abs().max() < 5), (rule, float(z.abs().max()))


@pytest.mark.parametrize("output_logits", ["pin_last", "free"])
def test_the_trainers_step_is_the_rules_batch_mean_with_the_pinned_row_masked(output_logits):
    ac = ActorCritic(small(rule="uwm", output_logits=output_logits))
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 7, 4, generator=gen, dtype=torch.float64)
    u = torch.rand(1, 7, 11, generator=gen, dtype=torch.float64)
    ep, _ = ac.act(x, u[..., :6])
    delta = torch.randn(1, 7, generator=gen, dtype=torch.float64)
    step = ac.actor_gradient(ep, delta, ac.uwm_uniforms(u[..., 6:]))
    grads = RULES["uwm"].fn(ac.actor[0], ep, delta, ac.uwm_uniforms(u[..., 6:]), signal="individual", form="reinforce")
    ref = [(g.unsqueeze(-1) * h.unsqueeze(-2)).mean(1) for g, h in zip(grads, ep.h[:-1])] + [g.mean(1) for g in grads]
    if output_logits == "pin_last":
        ref[2][:, -1], ref[5][:, -1] = 0.0, 0.0
    for ours, r in zip(step, ref):
        assert torch.allclose(ours, r, atol=1e-12)
    assert output_logits == "pin_last" or step[2][:, -1].abs().max() > 0


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
        ControlConfig(rule="backprop")
    with pytest.raises(ValidationError, match="output_logits"):
        ControlConfig(output_logits="last")
    with pytest.raises(ValidationError, match="rule 'uwm' option signal='local' is not one of"):
        ControlConfig(rule="uwm", rule_options={"signal": "local"})
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


def test_uwm_gets_its_own_uniform_for_every_hidden_unit():
    ac = ActorCritic(small(rule="uwm"))
    u = torch.arange(5.0).reshape(1, 1, 5)
    assert [t.flatten().tolist() for t in ac.uwm_uniforms(u)] == [[0.0, 1.0, 2.0], [3.0, 4.0]]


def test_resume_from_a_checkpoint_equals_not_stopping(tmp_path):
    """Run 25 steps, save, load into a fresh trainer, finish: every return, parameter and Adam moment equals a
    run that never stopped (uwm: its own uniforms too)."""
    cfg = small(seeds=2, envs=2, episodes=8, rule="uwm")
    with torch_settings(threads=1):
        whole = ActorCritic(cfg)
        ref = whole.run()
        first = ActorCritic(cfg)
        first.run(max_steps=25)
        assert first.t == 25 and not first.finished()
        first.save(tmp_path / "ckpt.pt")
        resumed = ActorCritic(cfg)
        resumed.load(tmp_path / "ckpt.pt")
        out = resumed.run()
    assert out.steps == ref.steps and torch.equal(out.returns, ref.returns)
    for a, b in zip(resumed.actor[0] + resumed.critic[1] + resumed.adam["actor"][1], whole.actor[0] + whole.critic[1]
                    + whole.adam["actor"][1]):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="different ControlConfig"):
        ActorCritic(small(seeds=2, envs=2, episodes=9, rule="uwm")).load(tmp_path / "ckpt.pt")


def test_a_diverging_member_is_frozen_and_marked_while_the_others_go_on_as_if_alone():
    with torch_settings(threads=1):
        packed = ActorCritic(small(seeds=2, seed=4, episodes=4))
        packed.start()
        packed.critic[0][-1][1] = 1e308          # member 1's value overflows: its updates turn non-finite
        out = packed.run()
        alone = ActorCritic(small(seeds=1, seed=4, episodes=4)).run()
    assert out.diverged_at.tolist() == [-1, 1]
    assert torch.equal(out.returns[0], alone.returns[0]) and out.returns[1].isnan().all()
    assert all(torch.isfinite(p[1]).all() for p in packed.actor[0] + packed.actor[1] + packed.critic[1])
    assert out.average_return[1].isnan() and not out.average_return[0].isnan()


def test_running_mean_and_episodes_to_threshold_match_plain_loops():
    from uwm_model.control import ControlResult
    returns = torch.tensor([[float(x) for x in range(1, 251)], [10.0] * 250], dtype=torch.float64)
    result = ControlResult(returns, 0, 0.0, torch.tensor([-1, -1]))
    running = result.running_mean()
    for p in range(2):
        for e in (0, 5, 99, 100, 249):
            window = returns[p, max(0, e - 99): e + 1]
            assert running[p, e] == pytest.approx(float(window.mean()))
    # member 0: the mean of episodes e-99..e is e - 49.5 (1-based e), >= 100 first at e = 150
    reached = result.episodes_to_threshold(100.0)
    assert reached[0] == 150 and reached[1].isnan()
    assert result.episodes_to_threshold(10.0)[1] == 100      # a full window first
    assert result.average_return.tolist() == [125.5, 10.0]


def test_each_step_draws_counter_t_of_the_members_train_stream():
    """Uniforms come in blocks of DRAW_STEPS steps; every step still reads its own counter t, wherever a block
    starts (a block boundary, a resumed run, four steps at once)."""
    from uwm_model import streams
    ac = ActorCritic(small(seeds=2, envs=3, rule="uwm"))
    P, B, n = 2, 3, ac.n_draws
    for t in (0, 5, 63, 64, 130, 127, 3):
        ref = streams.uniforms(ac.train_keys, t, B * n, ac.dtype).reshape(P, n, B).transpose(1, 2)
        assert torch.equal(ac._uniforms(t, 1)[0], ref), t
    four = ac._uniforms(60, 4)
    for i in range(4):
        assert torch.equal(four[i], ac._uniforms(60 + i, 1)[0])


def test_schedules_are_chungs_per_step_rates_and_adams_powers():
    cfg = small(adam_bias_correction_steps=3, end_t=4)
    ac = ActorCritic(cfg)
    rows = ac._schedules(0, 6)
    for i, t in enumerate(range(1, 7)):
        lrs = schedule(cfg.actor_lr_start, cfg.actor_lr_end, 4, t - 1) + \
            schedule(cfg.critic_lr_start, cfg.critic_lr_end, 4, t - 1)
        powers = [0.0, 0.0] if t >= 3 else [0.9**t, 0.999**t]
        assert rows[i].tolist() == lrs + powers + [float(t)], t


def test_four_steps_in_one_call_equal_four_single_steps():
    cfg = small(seeds=2, envs=2, episodes=50, rule="uwm")
    with torch_settings(threads=1):
        one, four = ActorCritic(cfg), ActorCritic(cfg)
        for _ in range(40):
            one.step(1)
        for _ in range(10):
            four.step(4)
    assert one.t == four.t == 40 and one.returns == four.returns
    for a, b in zip(one.state.actor_w + one.state.critic_w + one.state.traces + one.state.adam_critic[1],
                    four.state.actor_w + four.state.critic_w + four.state.traces + four.state.adam_critic[1]):
        assert torch.equal(a, b)


def test_cartpole_returns_are_the_episode_lengths():
    """CartPole pays 1 a step: a member's finished returns plus its episodes in progress add up to its steps."""
    with torch_settings(threads=1):
        ac = ActorCritic(small(seeds=2, envs=3, episodes=10))
        ac.run()
    for p in range(2):
        assert sum(ac.returns[p]) + float(ac.ret[p].sum()) == ac.t * 3
    assert all(r >= 1 and r == int(r) for rs in ac.returns for r in rs)


def test_each_network_moves_by_its_own_learning_rates():
    zero_critic = small(critic_lr_start=[0.0] * 3, critic_lr_end=[0.0] * 3, episodes=50)
    zero_actor = small(actor_lr_start=[0.0] * 3, actor_lr_end=[0.0] * 3, episodes=50)
    for cfg, still, moved in ((zero_critic, "critic", "actor"), (zero_actor, "actor", "critic")):
        ac = ActorCritic(cfg)
        before = {k: [t.clone() for t in getattr(ac, k)[0] + getattr(ac, k)[1]] for k in ("actor", "critic")}
        for _ in range(3):
            ac.step(1)
        after = {k: getattr(ac, k)[0] + getattr(ac, k)[1] for k in ("actor", "critic")}
        assert all(torch.equal(a, b) for a, b in zip(before[still], after[still])), still
        assert all(not torch.equal(a, b) for a, b in zip(before[moved][:2], after[moved][:2])), moved
