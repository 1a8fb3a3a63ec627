"""The compiled control step (uwm_model/control.py, ``compile: on``): the same numbers as the eager step in
float64, and packing stays invisible under the compiler. Slow: each run compiles its graphs (~1 min on
2 idle cores, several under load)."""

from __future__ import annotations

import pytest
import torch

from uwm_model.control import ActorCritic, ControlConfig
from uwm_model.settings import torch_settings

pytestmark = pytest.mark.slow


def config(**kw):
    base = dict(actor_hidden=[6, 4], critic_hidden=[5, 3], episodes=6, seeds=2, envs=2, seed=3)
    return ControlConfig(**{**base, **kw})


def test_compiled_steps_equal_eager_ones_in_float64():
    """Same config (Acrobot's RK4, uwm's own uniforms), eager and compiled (4 steps unrolled a call, then single
    steps to the cut): the same episode returns and step count, and parameters, Adam moments and traces equal
    to 1e-9 relative."""
    runs = {}
    with torch_settings(threads=1):
        for mode in ("off", "on"):
            ac = ActorCritic(config(env="Acrobot-v1", rule="uwm", max_steps=40, episodes=100, dtype="float64",
                                    compile=mode))
            runs[mode] = (ac, ac.run(max_steps=203))     # 203: 50 unrolled calls and 3 single steps
    (eager, r_eager), (compiled, r_compiled) = runs["off"], runs["on"]
    assert compiled._steps is not None and eager._steps is None
    assert r_eager.steps == r_compiled.steps == 203
    assert eager.returns == compiled.returns and sum(map(len, eager.returns)) > 4
    for a, b in zip(eager.state.actor_w + eager.state.critic_b + eager.state.adam_actor[1] + eager.state.traces,
                    compiled.state.actor_w + compiled.state.critic_b + compiled.state.adam_actor[1]
                    + compiled.state.traces):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_a_member_trains_alike_packed_or_alone_when_compiled():
    with torch_settings(threads=1):
        packed = ActorCritic(config(seeds=3, seed=4, episodes=4, compile="on")).run()
        alone = ActorCritic(config(seeds=1, seed=5, episodes=4, compile="on")).run()
    assert torch.equal(packed.returns[1], alone.returns[0])
    assert not torch.equal(packed.returns[0], packed.returns[1])
