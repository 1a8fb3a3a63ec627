"""CartPole-v1, batched: gymnasium's classic-control cart-pole (Barto, Sutton & Anderson 1983),
its constants, explicit Euler integration, thresholds and rewards, over [P, B] tensors.

physics = (x, x_dot, theta, theta_dot); observation = physics; action 0 pushes left, 1 right.
Reward 1 every step, the terminating one included (gymnasium's default, not the Sutton-Barto
variant); terminated when |x| > 2.4 or |theta| > 12 degrees; start states uniform in
[-0.05, 0.05]^4. The formulas keep gymnasium's order of operations so that float64 runs agree with
it to rounding (tests/test_envs.py).
"""

from __future__ import annotations

import math

import torch

from .base import ClassicControl

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASS_POLE + MASS_CART
POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH
THETA_LIMIT = 12 * 2 * math.pi / 360
X_LIMIT = 2.4
START_BOUND = 0.05


class CartPole(ClassicControl):
    name = "CartPole-v1"
    observation_size = 4
    num_actions = 2

    def start(self, u: torch.Tensor) -> torch.Tensor:
        return -START_BOUND + (2 * START_BOUND) * u

    def advance(self, physics: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x, x_dot, theta, theta_dot = physics.unbind(-1)
        force = torch.where(action == 1, FORCE, -FORCE).to(physics.dtype)
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + POLE_MASS_LENGTH * theta_dot.square() * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * costheta.square() / TOTAL_MASS))
        xacc = temp - POLE_MASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        return torch.stack([x + TAU * x_dot, x_dot + TAU * xacc,
                            theta + TAU * theta_dot, theta_dot + TAU * thetaacc], -1)

    def terminal(self, physics: torch.Tensor) -> torch.Tensor:
        return (physics[..., 0].abs() > X_LIMIT) | (physics[..., 2].abs() > THETA_LIMIT)

    def reward(self, physics: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(physics[..., 0])

    def observe(self, physics: torch.Tensor) -> torch.Tensor:
        return physics
