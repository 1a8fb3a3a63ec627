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

from .network import Network
from .rules import Gradient, check_network_for_task
from .units import configurations, layer_units  # noqa: F401  (configurations: re-exported)

MAX_TRANSITION_ENTRIES = 2**24
MAX_ENUMERABLE_INPUTS = 2**20


def _log_transition(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, kind, outcomes: torch.Tensor) -> torch.Tensor:
    """log Pr(next = o | h) for every outcome o: h [P, A, n], outcomes [O, n'] -> [P, A, O]."""
    z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))          # [P, A, n']
    return kind.log_transition(z, outcomes)


def oracle_fits(sizes, task, population: int = 1, hidden_units=None) -> bool:
    """Whether the oracle can enumerate a population of networks ``sizes`` on ``task`` (see :func:`expected_reward`)."""
    return not _too_large(sizes, task, population, hidden_units)


def _too_large(sizes, task, population: int, hidden_units=None) -> str | None:
    units = layer_units(task, len(sizes) - 1, hidden_units)
    if task.num_inputs > MAX_ENUMERABLE_INPUTS:
        return f"{task!r} has {task.num_inputs} inputs: too many to enumerate (at most {MAX_ENUMERABLE_INPUTS})"
    counts = [task.num_inputs] + [kind.outcomes_count(n) for kind, n in zip(units, sizes[1:])]
    for n_out, n_in, out in zip(sizes[1:], counts[:-1], counts[1:]):
        if population * n_in * out > MAX_TRANSITION_ENTRIES:
            return (f"network {list(sizes)} (population {population}) is too large for the exact oracle: a layer of "
                    f"{n_out} units after {n_in} configurations needs {population * n_in * out} transition "
                    f"entries (at most {MAX_TRANSITION_ENTRIES}); use at most ~10 units per layer")
    return None


def expected_reward(net: Network, task, hidden_units=None) -> torch.Tensor:
    """J for every member, [P], differentiable in the network's tensors: the mean over the task's enumerated
    inputs (a dataset task: its training split) of the expected reward. ``hidden_units``: the hidden layers'
    unit type (default Bernoulli); a categorical layer's outcomes are its K^G one-hot configurations."""
    check_network_for_task(net, task)
    P, sizes = net.population, net.sizes
    problem = _too_large(sizes, task, P, hidden_units)
    if problem:
        raise ValueError(problem)
    units = layer_units(task, len(sizes) - 1, hidden_units)
    x, target = task.enumerate(dtype=net.dtype, device=net.device)
    h = x.unsqueeze(0).expand(P, -1, -1)
    prob = None                                                        # [P, |X|, configs of the current layer]
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        outcomes = units[l].outcomes(sizes[l + 1], net.dtype, net.device)
        transition = _log_transition(h, w, b, units[l], outcomes).exp()      # [P, A, O]
        prob = transition if prob is None else torch.bmm(prob, transition)
        h = outcomes.unsqueeze(0).expand(P, -1, -1)
    actions = units[-1].action(outcomes)                               # [O, 1] (Bernoulli) or [O]
    if actions.dim() == 2:
        actions = actions.squeeze(-1)
    rewards = task.score(target.unsqueeze(1), actions.unsqueeze(0))   # [|X|, O]
    return (prob * rewards).sum(-1).mean(-1)


def exact_gradient(net: Network, task, hidden_units=None) -> tuple[torch.Tensor, Gradient]:
    """``(J, grad)``: the exact expected reward [P] and its gradient (``grad.weights[l]``: [P, n_{l+1}, n_l]),
    computed in float64 whatever the network's dtype; with respect to the free parameters of a masked network
    (masked weights: gradient 0)."""
    with torch.enable_grad():
        params = [t.detach().to(torch.float64).requires_grad_(True) for t in net.weights + net.biases]
        L = len(net.weights)
        J = expected_reward(Network(params[:L], params[L:]), task, hidden_units)
        grads = torch.autograd.grad(J.sum(), params)
    # a masked weight is no parameter: its gradient is 0 (the derivative of J along it is not)
    return J.detach(), Gradient(net.masked(list(grads[:L])), list(grads[L:]))
