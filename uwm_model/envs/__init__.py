"""Episodic environments batched over [P, B] (see :mod:`uwm_model.envs.base`), by gymnasium id."""

from __future__ import annotations

from .acrobot import Acrobot
from .base import ClassicControl, EnvState, Transition
from .cartpole import CartPole

ENVS = {env.name: env for env in (CartPole, Acrobot)}


def make(name: str, max_steps: int = 500) -> ClassicControl:
    """The environment registered as ``name`` (a gymnasium id), with its time limit."""
    if name not in ENVS:
        raise ValueError(f"unknown environment '{name}'; choose one of: {', '.join(ENVS)}")
    return ENVS[name](max_steps=max_steps)


__all__ = ["Acrobot", "CartPole", "ClassicControl", "ENVS", "EnvState", "Transition", "make"]
