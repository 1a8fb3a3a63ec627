r"""The exact-gradient oracle.

For a network with few stochastic units per layer, :math:`J(\theta) = E_x E_h[R]` is a finite
sum. The layers form a Markov chain over configurations, so

.. math:: J = \frac{1}{|X|}\sum_x e_x^\top T^1 T^2 \cdots T^L r(x),\qquad
          T^l[a, b] = \Pr(h^l = b \mid h^{l-1} = a)

which costs :math:`\sum_l 2^{n_{l-1}} 2^{n_l}` per input instead of :math:`2^{\sum_l n_l}`;
autograd of that sum (float64) gives :math:`\nabla J` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .network import Network
from .rules import Gradient, check_network_for_task

MAX_TRANSITION_ENTRIES = 2**24


def configurations(n: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """All 2^n binary configurations of n units, [2^n, n] (first unit most significant)."""
    codes = torch.arange(2**n, device=device)
    return ((codes.unsqueeze(-1) >> torch.arange(n - 1, -1, -1, device=device)) & 1).to(dtype)


def _log_transition(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, configs: torch.Tensor) -> torch.Tensor:
    """log Pr(next = c | h) for every c: h [P, A, n], configs [C, n'] -> [P, A, C]."""
    z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))          # [P, A, n']
    return F.logsigmoid(-z) @ (1 - configs).T + F.logsigmoid(z) @ configs.T


def expected_reward(net: Network, task) -> torch.Tensor:
    """J for every member, [P], differentiable in the network's tensors."""
    check_network_for_task(net, task)
    P, sizes = net.population, net.sizes
    x = task.all_inputs(dtype=net.dtype, device=net.device)
    for n_in, n_out in zip([x.shape[0]] + [2**n for n in sizes[1:-1]], sizes[1:]):
        if P * n_in * 2**n_out > MAX_TRANSITION_ENTRIES:
            raise ValueError(f"network {sizes} (population {P}) is too large for the exact oracle: a layer of "
                             f"{n_out} units after {n_in} configurations needs {P * n_in * 2**n_out} transition "
                             f"entries (at most {MAX_TRANSITION_ENTRIES}); use at most ~10 units per layer")
    h = x.unsqueeze(0).expand(P, -1, -1)
    prob = None                                                        # [P, |X|, configs of the current layer]
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        configs = configurations(sizes[l + 1], net.dtype, net.device)
        transition = _log_transition(h, w, b, configs).exp()          # [P, A, C]
        prob = transition if prob is None else torch.bmm(prob, transition)
        h = configs.unsqueeze(0).expand(P, -1, -1)
    actions = configurations(sizes[-1], net.dtype, net.device)        # [2, 1]
    rewards = task.reward(x.unsqueeze(1), actions.unsqueeze(0))       # [|X|, 2]
    return (prob * rewards).sum(-1).mean(-1)


def exact_gradient(net: Network, task) -> tuple[torch.Tensor, Gradient]:
    """``(J, grad)``: the exact expected reward [P] and its gradient (``grad.weights[l]``: [P, n_{l+1}, n_l]),
    computed in float64 whatever the network's dtype."""
    with torch.enable_grad():
        params = [t.detach().to(torch.float64).requires_grad_(True) for t in net.weights + net.biases]
        L = len(net.weights)
        J = expected_reward(Network(params[:L], params[L:]), task)
        grads = torch.autograd.grad(J.sum(), params)
    return J.detach(), Gradient(list(grads[:L]), list(grads[L:]))
