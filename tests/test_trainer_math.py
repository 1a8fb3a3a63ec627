"""The trainer's own step checked against the library's estimator and against the exact oracle.

The oracle z-tests in test_unbiasedness.py go through ``um.estimate``; training samples and averages
with its own code (stream layout, batch mean, flat parameters, optimiser). These tests close that gap:
the update of ``Trainer.train_step`` on given uniforms equals ``estimate(...).mean()`` on the same draws,
and many independent steps from one state average to the exact gradient.
"""

import math

import pytest
import torch

import uwm_model as um

TINY = dict(task={"address_bits": 1}, hidden=[3, 2], device="cpu", compile="off", probe={"enabled": False},
            optimizer="sgd", episodes=64, report_every=64, eval_episodes=16)


def trainer_for(rule, batch, dtype, seeds=3, lr=(0.5, 0.25, 1.0), **overrides):
    cfg = um.TrialConfig(rule=rule, batch_size=batch, dtype=dtype, seeds=seeds, lr=list(lr), **{**TINY, **overrides})
    return um.Trainer(cfg)


def step_update(trainer, u, theta=None, baseline=None):
    """The parameter change of one SGD step from ``theta`` on uniforms u, divided by each entry's lr."""
    state = trainer.train_state
    if theta is not None:
        state = state._replace(theta=theta)
    if baseline is not None:
        state = state._replace(baseline=baseline)
    new, _ = trainer.train_step(state, u)
    return (new.theta - state.theta) / trainer.lr


CASES = [("uwm", {}), ("uwm", {"signal": "global", "form": "rb"}), ("wm", {}), ("wm", {"p": 3.0}),
         ("hwm", {"order": 2}), ("ste", {}), ("reinforce", {})]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("rule,options", CASES)
def test_train_step_update_equals_estimate_mean_on_the_same_draws(rule, options, batch, dtype):
    trainer = trainer_for(rule, batch, dtype, rule_options=options,
                          **({"baseline": "ema"} if rule == "reinforce" else {}))
    P, sizes, dt = trainer.P, trainer.sizes, trainer.dtype
    gen = torch.Generator().manual_seed(11)
    # estimate's order: unit uniforms of every layer, then (uwm) U per hidden unit; the trainer's layout
    # per episode: input bits, each layer's units, then U (Trainer._draws_per_episode)
    x_u = torch.rand(P, batch, sizes[0], generator=gen, dtype=dt)
    state = gen.get_state()
    units = [torch.rand(P, batch, n, generator=gen, dtype=dt) for n in sizes[1:]]
    U = [torch.rand(P, batch, n, generator=gen, dtype=dt) for n in sizes[1:-1]] if trainer.rule.needs_uniforms else []
    u = torch.cat([x_u, *units, *U], 2).reshape(P, -1)
    assert u.shape[1] == trainer._draws_per_step()

    baseline = torch.tensor([0.3, -0.2, 0.7], dtype=dt) if rule == "reinforce" else None
    update = step_update(trainer, u, baseline=baseline)

    x = trainer.task.inputs_from_uniforms(x_u, dt)
    gen.set_state(state)
    extra = {"baseline": baseline} if rule == "reinforce" else {}
    mean = um.estimate(rule, trainer.network, trainer.task, x, generator=gen, **options, **extra).mean()
    expected = trainer.flatten(mean.weights, mean.biases)
    atol = 1e-12 if dtype == "float64" else 2e-5
    assert torch.allclose(update, expected, rtol=0, atol=atol), (update - expected).abs().max()
    assert expected.abs().max() > 0      # a step that moves nothing would pass vacuously


UNBIASED = [("uwm", {}, "none"), ("uwm", {"signal": "global", "form": "rb"}, "none"), ("reinforce", {}, "ema")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("rule,options,baseline", UNBIASED)
@pytest.mark.slow
def test_many_independent_train_steps_average_to_the_exact_gradient(rule, options, baseline, batch, dtype):
    """z-test per parameter entry: 24 000 / batch members start from one state (member 0's) and each takes
    one step on its own stream (no optimiser state carried); the mean update must match the exact gradient
    within |z| < 4.5 for each of the 23 entries (a false alarm has probability < 2e-4 per case)."""
    members = 24000 // batch
    trainer = trainer_for(rule, batch, dtype, seeds=members, outgoing_norm=2.0, rule_options=options, baseline=baseline)
    theta = trainer.theta[:1].expand(members, -1).clone()
    ema = torch.full((members,), 0.25, dtype=trainer.dtype)
    u = trainer.draw_steps(torch.arange(1))[0]
    updates = step_update(trainer, u, theta=theta, baseline=ema).double()
    weights, biases = trainer.unflatten(theta[:1].double())
    _, exact = um.exact_gradient(um.Network(list(weights), list(biases)), trainer.task)
    exact = trainer.flatten(exact.weights, exact.biases)[0]
    mean, sem = updates.mean(0), updates.std(0) / math.sqrt(members)
    z = (mean - exact) / sem.clamp_min(1e-12)
    assert z.abs().max() < 4.5, (z.abs().max(), (mean - exact).abs().max())
    # the test has power: the exact gradient is far from zero in the units of its standard error
    assert (exact.abs() / sem.clamp_min(1e-12)).max() > 8


def test_uwm_importance_weights_at_outgoing_norm_8_in_float32_are_finite_and_close_to_float64():
    """Outgoing norm 8 makes log rho large; float32 must still give finite weights close to float64's."""
    from uwm_model.rules import uwm_delta

    gen = torch.Generator().manual_seed(3)
    P, B, n, n_next = 4, 64, 16, 16
    w = torch.randn(P, n_next, n, generator=gen, dtype=torch.float64)
    w *= 8 / w.norm(dim=1, keepdim=True)                         # every unit's outgoing weights at norm 8
    h = (torch.rand(P, B, n, generator=gen, dtype=torch.float64) < 0.5).double()
    z_next = torch.randn(P, B, n_next, generator=gen, dtype=torch.float64) * 4
    h_next = (torch.rand(P, B, n_next, generator=gen, dtype=torch.float64) < torch.sigmoid(z_next)).double()
    target = torch.randn(P, B, n_next, generator=gen, dtype=torch.float64)
    U = torch.rand(P, B, n, generator=gen, dtype=torch.float64)
    exact = uwm_delta(w, h, h_next, z_next, target, U)
    single = uwm_delta(*(t.float() for t in (w, h, h_next, z_next, target, U))).double()
    assert torch.isfinite(single).all()
    assert exact.abs().max() > 10                                  # large weights do occur
    assert torch.allclose(single, exact, rtol=1e-3, atol=1e-3 * exact.abs().max().item())


def test_a_float32_run_stays_close_to_the_same_float64_run():
    """Same config and seeds in both precisions: the float32 trajectory follows float64's for a short run
    (same streams: the uniforms are rounded, the comparisons u < p almost never flip)."""
    common = dict(rule="uwm", task={"address_bits": 1}, hidden=[4, 3], batch_size=2, episodes=64, report_every=32,
                  seeds=2, lr=0.01, device="cpu", compile="off", probe={"enabled": False}, eval_episodes=64)
    runs = {}
    for dtype in ("float32", "float64"):
        trainer = um.Trainer(um.TrialConfig(dtype=dtype, **common))
        reports = list(trainer.run())
        runs[dtype] = trainer.theta.double(), reports
    (t32, r32), (t64, r64) = runs["float32"], runs["float64"]
    assert trainer.dtype == torch.float64 and t32.dtype == torch.float64
    assert torch.allclose(t32, t64, rtol=0, atol=1e-4), (t32 - t64).abs().max()
    assert [r.points[0].metrics["train_reward_mean"] for r in r32] == pytest.approx(
        [r.points[0].metrics["train_reward_mean"] for r in r64], abs=0.1)


def test_the_ema_baseline_and_adam_follow_their_equations_over_steps():
    """Three steps of the real trainer: the baseline is decay * b + (1 - decay) * batch-mean reward, and the
    parameters follow torch.optim.Adam (minimising -update) with each member's betas, eps and per-layer lr."""
    cfg = um.TrialConfig(rule="reinforce", baseline="ema", baseline_decay=0.7, batch_size=4, dtype="float64", seeds=2,
                         lr=[0.05, 0.02, 0.1], adam_beta1=0.8, adam_beta2=0.95, adam_eps=1e-3,
                         **{**TINY, "optimizer": "adam"})
    trainer = um.Trainer(cfg)
    params = [trainer.theta[:, trainer.layer_of_param == l].clone().requires_grad_(True) for l in range(3)]
    adam = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(params, cfg.layer_lrs)],
                            betas=(0.8, 0.95), eps=1e-3)
    state, baseline = trainer.train_state, torch.zeros(2, dtype=torch.float64)
    u = trainer.draw_steps(torch.arange(3))
    for step in range(3):
        # the step's update direction from the same draws with SGD at lr 1 (train_step at the current state)
        sgd = um.Trainer(cfg.model_copy(update={"optimizer": "sgd", "lr": 1.0}))
        sgd_state = sgd.train_state._replace(theta=state.theta, baseline=state.baseline)
        direction = sgd.train_step(sgd_state, u[step])[0].theta - state.theta
        state, reward = trainer.train_step(state, u[step])
        baseline = 0.7 * baseline + 0.3 * reward
        assert torch.allclose(state.baseline, baseline, rtol=0, atol=1e-14)
        adam.zero_grad()
        for l, p in enumerate(params):
            p.grad = -direction[:, trainer.layer_of_param == l]
        adam.step()
        expected = torch.empty_like(state.theta)
        for l, p in enumerate(params):
            expected[:, trainer.layer_of_param == l] = p.detach()
        assert torch.allclose(state.theta, expected, rtol=0, atol=1e-12), (step, (state.theta - expected).abs().max())
    assert state.updates.tolist() == [3, 3]


def test_episodes_to_threshold_and_running_reward_match_a_plain_running_mean():
    """One report per step gives each step's batch-mean reward; the first episode at which the running mean
    over threshold_window episodes reaches the threshold, and the running reward, recomputed by hand."""
    batch, window = 2, 12
    # rewards +-1: running means over 6 steps of batch 2 are multiples of 1/6, so 0.5 can be met exactly
    # (the boundary counts as reached: >=, not >)
    cfg = um.TrialConfig(rule="uwm", batch_size=batch, dtype="float64", seeds=4, lr=0.2, threshold=0.5,
                         threshold_window=window,
                         **{**TINY, "optimizer": "adam", "episodes": 160, "report_every": batch, "eval_episodes": 2})
    reports = list(um.Trainer(cfg).run())
    per_step = torch.tensor([[row["train_reward"] for row in r.points[0].per_seed] for r in reports],
                            dtype=torch.float64)   # [T, P]
    steps = window // batch
    reached_any = exactly = False
    for m in range(cfg.seeds):
        running = [per_step[t - steps + 1: t + 1, m].mean().item() for t in range(steps - 1, len(per_step))]
        hits = [t for t, value in zip(range(steps - 1, len(per_step)), running) if value >= cfg.threshold]
        row = reports[-1].points[0].per_seed[m]
        if hits:
            reached_any = True
            exactly |= running[hits[0] - steps + 1] == cfg.threshold
            assert row["episodes_to_threshold"] == (hits[0] + 1) * batch, m
        else:
            assert "episodes_to_threshold" not in row
        assert row["running_reward"] == pytest.approx(running[-1], abs=1e-12)
    assert reached_any and exactly


def test_wm_p2_fast_path_equals_the_general_power():
    """wm with p = 2 takes a shortcut (2 w); the general |w|^(p-1) sign(w) path with p a [P] tensor of 2s must agree."""
    from uwm_model.rules import wm

    trainer = trainer_for("wm", 4, "float64")
    weights, ep, reward, _ = trainer._draw_episode(trainer.theta, trainer.train_keys, 0, 4, False)
    fast = wm(weights, ep, reward, None, p=2.0)
    general = wm(weights, ep, reward, None, p=torch.full((trainer.P,), 2.0, dtype=torch.float64))
    for a, b in zip(fast, general):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    assert any(g.abs().max() > 0 for g in fast[:-1])
