"""Batched episodic environments: a population of P members x B environments stepped in one call.

Pure functions over a typed batched state, in the manner of gymnax: ``reset`` builds an
:class:`EnvState`, ``step(state, action)`` returns a :class:`Transition` holding the next state;
nothing is kept on the environment object, so a state can be copied, checkpointed or stepped
under ``torch.compile`` like any other tensors.

Shapes (population first, then batch):
    physics: [P, B, D]    steps, episodes: [P, B] int64    keys: [P, 2] int64
    action:  [P, B] int64 (an index into the discrete actions)
    obs:     [P, B, O]    reward, terminated, truncated: [P, B]

Auto-reset happens in the same step (as gymnax and gymnasium's SAME_STEP mode): where an episode
ends, ``obs`` is the first observation of the next episode and ``final_obs`` the observation the
ending step reached (what a critic bootstraps from at a truncation); elsewhere the two are equal.
Termination and truncation follow gymnasium: ``terminated`` is the task's own end, ``truncated``
means the time limit was reached (``max_steps`` steps taken; both may be true at that step,
exactly as gymnasium's TimeLimit reports them).

Start states come from each member's own counter-based stream (:mod:`uwm_model.streams`, purpose
ENV_RESET): episode ``e`` of environment ``b`` of a member starts from Philox block ``b`` of
counter ``e`` of that member's key, so a member's episodes do not depend on which other members
share its population, nor on when its other environments reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import streams


@dataclass
class EnvState:
    """The state of P x B environments. ``physics`` is the task's own state vector (float);
    ``steps`` counts the steps of the current episode, ``episodes`` the episodes begun before it
    (the reset stream's counter); ``keys`` are the members' ENV_RESET stream keys."""

    physics: torch.Tensor
    steps: torch.Tensor
    episodes: torch.Tensor
    keys: torch.Tensor


class Transition(NamedTuple):
    state: EnvState
    obs: torch.Tensor          # [P, B, O] what to act on next (a fresh episode's first where one ended)
    reward: torch.Tensor       # [P, B] in the physics' dtype
    terminated: torch.Tensor   # [P, B] bool
    truncated: torch.Tensor    # [P, B] bool
    final_obs: torch.Tensor    # [P, B, O] the observation this step reached, before any reset


class ClassicControl:
    """A discrete-action environment given by its physics: subclasses define ``start`` (start
    states from four uniforms), ``advance`` (one step of the dynamics), ``terminal``, ``reward``
    and ``observe``; this class batches them, counts steps and resets."""

    name: str
    observation_size: int
    num_actions: int
    state_size: int = 4                    # one Philox block of four uniforms per reset

    def __init__(self, max_steps: int = 500):
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer; got {max_steps!r}")
        self.max_steps = max_steps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_steps={self.max_steps})"

    # --- the physics (subclasses) ---
    def start(self, u: torch.Tensor) -> torch.Tensor:
        """Start states [..., D] from uniforms u in (0, 1): [..., 4]."""
        raise NotImplementedError

    def advance(self, physics: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def terminal(self, physics: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reward(self, physics: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, physics: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- batching, counting, resetting ---
    def _starts(self, keys: torch.Tensor, episodes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        index = torch.arange(episodes.shape[-1], dtype=torch.int64, device=episodes.device)
        return self.start(streams.block_uniforms(keys, episodes, index, dtype))

    def reset(self, seeds: torch.Tensor, envs: int, dtype: torch.dtype = torch.float32,
              device=None) -> tuple[EnvState, torch.Tensor]:
        """First episodes of ``envs`` environments for each member seed ([P] integers in [0, 2^32)).
        Returns the state and the first observations [P, envs, O]."""
        if isinstance(envs, bool) or not isinstance(envs, int) or envs < 1:
            raise ValueError(f"envs must be a positive integer; got {envs!r}")
        seeds = torch.as_tensor(seeds, device=device)
        if seeds.dim() != 1:
            raise ValueError(f"seeds must be one integer per member, shape [P]; got shape {tuple(seeds.shape)}")
        keys = streams.member_keys(seeds, streams.ENV_RESET)
        zeros = torch.zeros(len(seeds), envs, dtype=torch.int64, device=keys.device)
        physics = self._starts(keys, zeros, dtype)
        return EnvState(physics, zeros, zeros.clone(), keys), self.observe(physics)

    def step(self, state: EnvState, action: torch.Tensor) -> Transition:
        """One step of every environment; ended episodes restart in the same call."""
        physics = self.advance(state.physics, action)
        terminated = self.terminal(physics)
        reward = self.reward(physics, terminated)
        steps = state.steps + 1
        truncated = steps >= self.max_steps
        done = terminated | truncated
        final_obs = self.observe(physics)
        episodes = state.episodes + done
        if torch.compiler.is_compiling():
            # compiled: every environment draws a next start (one Philox block, fused, nearly free)
            # and keeps it where its episode ended; no data-dependent shapes, no graph break
            physics = torch.where(done.unsqueeze(-1), self._starts(state.keys, episodes, physics.dtype), physics)
            obs = torch.where(done.unsqueeze(-1), self.observe(physics), final_obs)
        else:
            # eager: only the environments that ended draw (the ten Philox rounds over the whole
            # batch would be most of the step); the same numbers as the compiled path
            obs = final_obs
            if bool(done.any()):
                p, b = done.nonzero(as_tuple=True)
                u = streams.block_uniforms(state.keys[p], episodes[p, b].unsqueeze(-1), b.unsqueeze(-1), physics.dtype)
                fresh = self.start(u.squeeze(-2))
                physics = physics.index_put((p, b), fresh)
                obs = final_obs.index_put((p, b), self.observe(fresh))
        steps = torch.where(done, 0, steps)
        return Transition(EnvState(physics, steps, episodes, state.keys), obs, reward, terminated, truncated, final_obs)
