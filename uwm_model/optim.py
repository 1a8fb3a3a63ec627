"""Optimisers that ascend the expected reward, one learning rate or one per layer.

The update functions are elementwise on any tensors, so the trainer applies them to one flat
``[P, N]`` parameter buffer (learning rates and betas as per-member tensors) and the classes
below apply them to a :class:`Network`'s lists. ``grad`` is always the ascent direction (the
mean estimate); Adam on it equals a minimising Adam handed ``-grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .network import Network
from .rules import Gradient


def sgd_update(param, grad, lr):
    """theta <- theta + lr * grad."""
    return param + lr * grad


def adam_update(param, grad, m, v, beta1_power, beta2_power, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step towards higher reward. Returns (param, m, v).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    theta <- theta + lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    ``beta1_power = b1^t`` and ``beta2_power = b2^t`` (t counts this step from 1) are passed in
    rather than computed: kept as running products they cost a multiply, where a fused kernel
    would otherwise evaluate ``pow`` once per parameter.
    """
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    # m_hat / (sqrt(v_hat) + eps) rewritten with the bias corrections folded into two per-member
    # factors: one sqrt and one division per parameter (as torch.optim.Adam does)
    correction2 = (1 - beta2_power) ** 0.5
    step_size = lr * correction2 / (1 - beta1_power)
    return param + step_size * m / (v.sqrt() + eps * correction2), m, v


def layer_learning_rates(lr: float | Sequence[float], layers: int) -> list[float]:
    """One learning rate per layer from one number or a list of ``layers`` numbers."""
    if isinstance(lr, (int, float)):
        lrs = [float(lr)] * layers
    else:
        lrs = [float(x) for x in lr]
        if len(lrs) != layers:
            raise ValueError(f"lr lists {len(lrs)} learning rates for a network of {layers} layers")
    if any(not (x >= 0) or x == float("inf") for x in lrs):
        raise ValueError(f"learning rates must be finite and >= 0; got {lrs}")
    return lrs


class SGD:
    """Plain gradient ascent on a Network: ``opt.step(estimate.mean())``."""

    def __init__(self, net: Network, lr: float | Sequence[float]):
        self.net, self.lrs = net, layer_learning_rates(lr, len(net.weights))

    def step(self, grad: Gradient) -> None:
        masked = self.net.masked(grad.weights)     # a masked weight never moves
        for l, lr in enumerate(self.lrs):
            self.net.weights[l] = sgd_update(self.net.weights[l], masked[l], lr)
            self.net.biases[l] = sgd_update(self.net.biases[l], grad.biases[l], lr)


class Adam:
    """Adam (beta 0.9/0.999, eps 1e-8 by default) ascending J on a Network."""

    def __init__(self, net: Network, lr: float | Sequence[float], betas=(0.9, 0.999), eps: float = 1e-8):
        self.net, self.lrs, self.betas, self.eps = net, layer_learning_rates(lr, len(net.weights)), betas, eps
        self.m = [torch.zeros_like(t) for t in net.weights + net.biases]
        self.v = [torch.zeros_like(t) for t in net.weights + net.biases]
        self.steps = 0

    def step(self, grad: Gradient) -> None:
        self.steps += 1
        L = len(self.lrs)
        # a masked weight's gradient is 0, so its moments stay 0 and its step is exactly 0
        params, grads = self.net.weights + self.net.biases, self.net.masked(grad.weights) + grad.biases
        for i, (p, g) in enumerate(zip(params, grads)):
            params[i], self.m[i], self.v[i] = adam_update(
                p, g, self.m[i], self.v[i], self.betas[0] ** self.steps, self.betas[1] ** self.steps, self.lrs[i % L],
                *self.betas, self.eps)
        self.net.weights[:], self.net.biases[:] = params[:L], params[L:]
