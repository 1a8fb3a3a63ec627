"""The batched classic-control environments (uwm_model/envs) against gymnasium, the reference.

From the same start states and action sequences, our float64 states, observations, rewards,
terminations and truncations equal gymnasium's over thousands of steps with resets; gymnasium's
environment is set to our start state at every reset (the two draw start states from different
generators). Tolerance 1e-6 (the issue's); states are compared to it as well as observations,
which gymnasium rounds to float32 (relative error 6e-8: below 1e-6 for |values| < 16, and
Acrobot's velocities are bounded by 9 pi).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from scipy import stats

from uwm_model import envs, streams
from uwm_model.envs.acrobot import wrap

TOL = 1e-6
SEEDS = torch.tensor([7, 123456789])


def policy(name: str, obs: torch.Tensor, step: int, generator: torch.Generator) -> torch.Tensor:
    """Actions [P, B] for both envs: column 0 random, column 1 a controller that keeps episodes going
    to the time limit (CartPole) or swings up quickly (Acrobot), column 2 that controller with 20%
    random actions. So the run sees terminations, truncations and plain steps."""
    P, B, _ = obs.shape
    n = envs.ENVS[name].num_actions
    random = torch.randint(0, n, (P, B), generator=generator)
    if name == "CartPole-v1":
        x, x_dot, theta, theta_dot = obs.unbind(-1)
        control = (0.1 * x + 0.5 * x_dot + 10 * theta + 2 * theta_dot > 0).long()
    else:    # torque against the first link's velocity: swings up within about 70 steps
        control = torch.where(obs[..., 4] > 0, 0, 2)
    noisy = torch.where(torch.rand(P, B, generator=generator) < 0.2, random, control)
    return torch.stack([random[:, 0], control[:, 1], noisy[:, 2]], 1)


def gym_state(name: str, physics: np.ndarray) -> np.ndarray:
    """Our start state as gymnasium holds one (Acrobot keeps its start state in float32)."""
    return physics.astype(np.float32) if name == "Acrobot-v1" else physics.astype(np.float64)


@pytest.mark.parametrize("name, steps", [("CartPole-v1", 1300), ("Acrobot-v1", 1100)])
def test_float64_trajectories_equal_gymnasiums_over_thousands_of_steps_with_resets(name, steps):
    env = envs.make(name)
    state, obs = env.reset(SEEDS, 3, torch.float64)
    P, B = obs.shape[:2]
    refs = [[gymnasium.make(name) for _ in range(B)] for _ in range(P)]
    for p in range(P):
        for b in range(B):
            refs[p][b].reset(seed=0)
            refs[p][b].unwrapped.state = gym_state(name, state.physics[p, b].numpy())
    generator = torch.Generator().manual_seed(0)
    counts = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        action = policy(name, obs, t, generator)
        out = env.step(state, action)
        reached = env.advance(state.physics, action).numpy()       # the state before any reset
        for p in range(P):
            for b in range(B):
                ref = refs[p][b]
                r_obs, r_reward, r_term, r_trunc, _ = ref.step(int(action[p, b]))
                assert np.abs(out.final_obs[p, b].numpy() - r_obs).max() < TOL, (t, p, b)
                assert np.abs(reached[p, b] - ref.unwrapped.state).max() < TOL, (t, p, b)
                assert (float(out.reward[p, b]), bool(out.terminated[p, b]), bool(out.truncated[p, b])) == \
                       (r_reward, r_term, r_trunc), (t, p, b)
                counts["terminated"] += r_term
                counts["truncated"] += r_trunc
                if r_term or r_trunc:
                    r_obs, _ = ref.reset()
                    ref.unwrapped.state = gym_state(name, out.state.physics[p, b].numpy())
                    r_obs = ref.unwrapped._get_ob() if name == "Acrobot-v1" else np.float32(ref.unwrapped.state)
                assert np.abs(out.obs[p, b].numpy() - r_obs).max() < TOL, (t, p, b)
        state, obs = out.state, out.obs
    assert counts["terminated"] >= 10 and counts["truncated"] >= 2, counts



@pytest.mark.parametrize("name", list(envs.ENVS))
def test_a_members_episodes_are_its_own_whatever_shares_its_population(name):
    """Member k of a packed population sees exactly the start states and trajectories it sees alone:
    its resets come from its own stream, at its own environments' episode counters."""
    env = envs.make(name, max_steps=30)            # short episodes: many resets in few steps
    seeds = torch.tensor([5, 9, 2**32 - 1])
    packed, packed_obs = env.reset(seeds, 4, torch.float64)
    alone, alone_obs = env.reset(seeds[1:2], 4, torch.float64)
    generator = torch.Generator().manual_seed(1)
    for _ in range(100):
        action = torch.randint(0, env.num_actions, (3, 4), generator=generator)
        p, a = env.step(packed, action), env.step(alone, action[1:2])
        assert torch.equal(p.obs[1:2], a.obs) and torch.equal(p.state.episodes[1:2], a.state.episodes)
        packed, alone = p.state, a.state
    assert int(alone.episodes.min()) >= 3                   # resets happened


def test_start_states_are_uniform_on_gymnasiums_box_and_differ_across_members_envs_and_episodes():
    """CartPole starts uniform on [-0.05, 0.05]^4, Acrobot on [-0.1, 0.1]^4 (rounded to float32 as
    gymnasium's are): a Kolmogorov-Smirnov test per coordinate (fixed seeds; level 1e-3 each)."""
    for env, bound in ((envs.make("CartPole-v1"), 0.05), (envs.make("Acrobot-v1"), 0.1)):
        keys = streams.member_keys(torch.arange(50), streams.ENV_RESET)
        episodes = torch.arange(40).repeat(50, 1)          # [P=50, B=40], each env at its own episode
        starts = env._starts(keys, episodes, torch.float64)  # [50, 40, 4]
        assert starts.abs().max() <= bound
        for i in range(4):
            assert stats.kstest(starts[..., i].flatten().numpy(), stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
        assert len(torch.unique(starts[..., 0])) == starts[..., 0].numel()      # no start repeats
    acrobot = starts
    assert torch.equal(acrobot, acrobot.float().double())


def test_step_is_pure_and_time_limit_truncates_at_max_steps():
    env = envs.make("CartPole-v1", max_steps=3)
    state, obs = env.reset(torch.tensor([1]), 2, torch.float64)
    first = before = state.physics.clone()
    action = torch.ones(1, 2, dtype=torch.long)
    one, two = env.step(state, action), env.step(state, action)
    assert torch.equal(state.physics, before) and torch.equal(one.obs, two.obs)
    flags = []
    for _ in range(3):
        out = env.step(state, torch.tensor([[0, 1]]))
        flags.append(out.truncated.tolist())
        state = out.state
    assert flags == [[[False, False]], [[False, False]], [[True, True]]]
    assert state.steps.tolist() == [[0, 0]] and state.episodes.tolist() == [[1, 1]]
    assert not torch.equal(out.obs, out.final_obs)           # the ended episode's last observation is kept
    # episode e of an environment starts from its stream's counter e: a new start, never a replay
    assert torch.equal(state.physics, env._starts(state.keys, torch.ones(1, 2, dtype=torch.long), torch.float64))
    assert not torch.equal(state.physics, first)


def test_wrap_moves_angles_by_whole_periods_like_gymnasium():
    from gymnasium.envs.classic_control.acrobot import wrap as reference
    x = torch.tensor([-20.0, -7.0, -3.2, -np.pi, 0.0, 3.0, np.pi, 3.5, 6.0, 9.5, 19.0], dtype=torch.float64)
    ours = wrap(x, -np.pi, np.pi)
    assert torch.allclose(ours, torch.tensor([reference(float(v), -np.pi, np.pi) for v in x], dtype=torch.float64),
                          rtol=0, atol=1e-12)


def test_bad_arguments_fail_with_one_clear_line():
    with pytest.raises(ValueError, match="unknown environment 'Pong-v5'.*CartPole-v1"):
        envs.make("Pong-v5")
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        envs.make("Acrobot-v1", max_steps=0)
    with pytest.raises(ValueError, match="envs must be a positive integer"):
        envs.make("CartPole-v1").reset(torch.tensor([1]), 0)
    with pytest.raises(ValueError, match=r"seeds must be one integer per member, shape \[P\]"):
        envs.make("CartPole-v1").reset(torch.tensor([[1]]), 2)
    with pytest.raises(ValueError, match="stream seeds must lie in"):
        envs.make("CartPole-v1").reset(torch.tensor([-1]), 2)


@pytest.mark.cuda
def test_cuda_steps_equal_cpu_steps_in_float64():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    for name in envs.ENVS:
        env = envs.make(name, max_steps=40)
        cpu, _ = env.reset(torch.arange(8), 16, torch.float64)
        gpu, _ = env.reset(torch.arange(8), 16, torch.float64, device="cuda")
        generator = torch.Generator().manual_seed(2)
        for _ in range(120):
            action = torch.randint(0, env.num_actions, (8, 16), generator=generator)
            c, g = env.step(cpu, action), env.step(gpu, action.cuda())
            assert torch.allclose(c.obs, g.obs.cpu(), rtol=0, atol=1e-9) and torch.equal(c.terminated, g.terminated.cpu())
            cpu, gpu = c.state, g.state


@pytest.mark.slow
def test_compiled_step_equals_eager_step_resets_included():
    """Under torch.compile the step always draws next starts (no graph break); the numbers stay the eager ones."""
    env = envs.make("CartPole-v1", max_steps=25)
    eager, _ = env.reset(torch.arange(3), 4, torch.float64)
    compiled_state = eager
    step = torch.compile(env.step, dynamic=False)
    generator = torch.Generator().manual_seed(3)
    for _ in range(60):
        action = torch.randint(0, 2, (3, 4), generator=generator)
        e, c = env.step(eager, action), step(compiled_state, action)
        assert torch.allclose(e.obs, c.obs, rtol=0, atol=1e-12) and torch.equal(e.truncated, c.truncated)
        assert torch.equal(e.state.episodes, c.state.episodes)
        eager, compiled_state = e.state, c.state
    assert int(eager.episodes.min()) >= 2
