"""Acrobot-v1, batched: gymnasium's classic-control acrobot (Sutton 1996; Sutton & Barto 2018),
its 'book' dynamics (gymnasium's default), one RK4 step of dt = 0.2 s, angle wrapping to
[-pi, pi] and velocity bounds (4 pi, 9 pi), over [P, B] tensors; no torque noise (gymnasium's
default).

physics = (theta1, theta2, dtheta1, dtheta2); observation = (cos theta1, sin theta1, cos theta2,
sin theta2, dtheta1, dtheta2); actions 0, 1, 2 apply torque -1, 0, +1. Reward -1 per step, 0 on
the terminating step (the free end above the bar by more than one link length). Start states are
uniform in [-0.1, 0.1]^4 rounded to float32, as gymnasium's are. The formulas keep gymnasium's
order of operations so that float64 runs agree with it to rounding (tests/test_envs.py).
"""

from __future__ import annotations

import math

import torch

from .base import ClassicControl

PI = math.pi
DT = 0.2
M1 = M2 = 1.0          # link masses [kg]
L1 = 1.0               # length of link 1 [m]
LC1 = LC2 = 0.5        # positions of the links' centres of mass [m]
I1 = I2 = 1.0          # moments of inertia
G = 9.8
MAX_VEL_1, MAX_VEL_2 = 4 * PI, 9 * PI
START_BOUND = 0.1


def wrap(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """x moved by whole periods into [low, high] (gymnasium subtracts or adds the period until it
    lies there; one period, the usual case, gives the same float)."""
    period = high - low
    above = torch.ceil((x - high) / period).clamp(min=0)
    below = torch.ceil((low - x) / period).clamp(min=0)
    return x - above * period + below * period


class Acrobot(ClassicControl):
    name = "Acrobot-v1"
    observation_size = 6
    num_actions = 3

    def start(self, u: torch.Tensor) -> torch.Tensor:
        return (-START_BOUND + (2 * START_BOUND) * u).to(torch.float32).to(u.dtype)

    @staticmethod
    def derivatives(s: torch.Tensor, torque: torch.Tensor) -> torch.Tensor:
        """d/dt of (theta1, theta2, dtheta1, dtheta2) under a torque on the second joint: [..., 4]."""
        theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
        cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
        d1 = M1 * LC1**2 + M2 * (L1**2 + LC2**2 + 2 * L1 * LC2 * cos2) + I1 + I2
        d2 = M2 * (LC2**2 + L1 * LC2 * cos2) + I2
        phi2 = M2 * LC2 * G * torch.cos(theta1 + theta2 - PI / 2.0)
        phi1 = (-M2 * L1 * LC2 * dtheta2**2 * sin2 - 2 * M2 * L1 * LC2 * dtheta2 * dtheta1 * sin2
                + (M1 * LC1 + M2 * L1) * G * torch.cos(theta1 - PI / 2) + phi2)
        ddtheta2 = ((torque + d2 / d1 * phi1 - M2 * L1 * LC2 * dtheta1**2 * sin2 - phi2)
                    / (M2 * LC2**2 + I2 - d2**2 / d1))
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], -1)

    def advance(self, physics: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        torque = (action - 1).to(physics.dtype)
        half = DT / 2.0
        k1 = self.derivatives(physics, torque)
        k2 = self.derivatives(physics + half * k1, torque)
        k3 = self.derivatives(physics + half * k2, torque)
        k4 = self.derivatives(physics + DT * k3, torque)
        s = physics + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
        return torch.stack([wrap(theta1, -PI, PI), wrap(theta2, -PI, PI),
                            dtheta1.clamp(-MAX_VEL_1, MAX_VEL_1), dtheta2.clamp(-MAX_VEL_2, MAX_VEL_2)], -1)

    def terminal(self, physics: torch.Tensor) -> torch.Tensor:
        theta1, theta2 = physics[..., 0], physics[..., 1]
        return -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0

    def reward(self, physics: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        return torch.where(terminated, 0.0, -1.0).to(physics.dtype)

    def observe(self, physics: torch.Tensor) -> torch.Tensor:
        theta1, theta2, dtheta1, dtheta2 = physics.unbind(-1)
        return torch.stack([torch.cos(theta1), torch.sin(theta1), torch.cos(theta2), torch.sin(theta2),
                            dtheta1, dtheta2], -1)
