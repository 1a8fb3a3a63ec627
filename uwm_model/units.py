r"""Unit types: how a layer of stochastic units turns logits into a sample, and what the rules and the
oracle need to know about its law (docs/learning-rules.md, sections 1 and 3.7).

A layer's unit type is declared, not named: the trainer, the rules and the oracle call these methods
instead of branching on a name, so a new unit type is one class here and its tests.

- :class:`Bernoulli`: ``n`` independent Bernoulli-logistic units, ``h_i ~ Bern(sigmoid(z_i))``.
- :class:`Categorical`: one categorical (softmax) unit over ``C`` classes held as ``C`` logits (all of them
  free; the softmax is invariant to a shift, which the gradient respects), its sample one-hot,
  ``h = e_k`` with ``k ~ softmax(z)``. Used as the output layer of a C-class task; an actor over C actions
  or a categorical hidden layer (a block of C logits) reads the same methods.

Shapes: logits and samples ``[..., n]`` (the unit axis last, ``n = C`` for a categorical unit).
Every method is written with element-wise operations that round alike on every member, so packing stays
invisible in float32 (see :func:`uwm_model.network.sigmoid`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .network import batched_matmul, sigmoid

Tensor = torch.Tensor


def configurations(n: int, dtype=torch.float64, device=None) -> Tensor:
    """All 2^n binary configurations of n units, [2^n, n] (first unit most significant)."""
    codes = torch.arange(2**n, device=device)
    return ((codes.unsqueeze(-1) >> torch.arange(n - 1, -1, -1, device=device)) & 1).to(dtype)


class Bernoulli:
    """Independent Bernoulli-logistic units: :math:`\\pi = \\sigma(z)`, :math:`h_i = [u_i < \\pi_i]`."""

    name = "bernoulli"

    def draws(self, n: int) -> int:
        """Uniforms a layer of n units draws per episode."""
        return n

    def outcomes_count(self, n: int) -> int:
        return 2**n

    def probabilities(self, z: Tensor) -> Tensor:
        return sigmoid(z)

    def sample(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """(h, pi) for logits z [..., n] and uniforms u [..., n]."""
        pi = sigmoid(z)
        return (u < pi).to(z.dtype), pi

    def log_prob(self, h: Tensor, z: Tensor) -> Tensor:
        """log Pr(h | z), summed over the unit axis: log Bern(h; sigma(z)) = logsigmoid((2h - 1) z)."""
        return F.logsigmoid((2 * h - 1) * z).sum(-1)

    def outcomes(self, n: int, dtype=torch.float64, device=None) -> Tensor:
        """Every sample of n units, [2^n, n] (first unit most significant)."""
        return configurations(n, dtype, device)

    def log_transition(self, z: Tensor, outcomes: Tensor) -> Tensor:
        """log Pr(h = o | z) for every outcome o: z [P, A, n], outcomes [O, n] -> [P, A, O]."""
        return F.logsigmoid(-z) @ (1 - outcomes).T + F.logsigmoid(z) @ outcomes.T

    def action(self, h: Tensor) -> Tensor:
        """The action of an output layer (one unit): its sample, [..., 1]."""
        return h

    def hwm_kappas(self, w: Tensor, h_next: Tensor, pi_next: Tensor, order: int) -> list[Tensor]:
        r""":math:`\kappa_m = d^m/du^m \log q_u(h')` at the sample, for a next layer of Bernoulli units:
        :math:`\kappa_1 = \sum_j W_{ji}(h'_j - \pi'_j)`, :math:`\kappa_m = -\sum_j W_{ji}^m \sigma^{(m-1)}(z'_j)`.
        w: [P, n', n]; h_next, pi_next: [P, B, n'] -> ``order`` tensors [P, B, n]."""
        from .rules import sigmoid_derivative
        return [batched_matmul(h_next - pi_next if m == 1 else -sigmoid_derivative(pi_next, m - 1), w.pow(m))
                for m in range(1, order + 1)]


class Categorical:
    r"""One categorical unit over C classes: :math:`\pi = \mathrm{softmax}(z)`, :math:`k` the first class whose
    cumulative probability exceeds one uniform :math:`u`, :math:`h = e_k` (one-hot). The score of its log
    probability is :math:`\partial \log \pi_k / \partial z = e_k - \pi = h - \pi`, the Bernoulli unit's form,
    so REINFORCE's :math:`R (h - \pi)` reads the same for both."""

    name = "categorical"

    def draws(self, n: int) -> int:
        return 1

    def outcomes_count(self, n: int) -> int:
        return n

    def log_probabilities(self, z: Tensor) -> Tensor:
        """log softmax, written out (exp, sums and logs round alike on every element: packing stays exact)."""
        shifted = z - z.amax(-1, keepdim=True)
        return shifted - torch.log(torch.exp(shifted).sum(-1, keepdim=True))

    def probabilities(self, z: Tensor) -> Tensor:
        e = torch.exp(z - z.amax(-1, keepdim=True))
        return e / e.sum(-1, keepdim=True)

    def sample(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """(one-hot h, pi) for logits z [..., C] and one uniform u [..., 1] (inverse CDF)."""
        pi = self.probabilities(z)
        k = (pi.cumsum(-1) <= u).sum(-1, keepdim=True).clamp_max(z.shape[-1] - 1)   # rounding may leave cdf < 1
        return (torch.arange(z.shape[-1], device=z.device) == k).to(z.dtype), pi

    def log_prob(self, h: Tensor, z: Tensor) -> Tensor:
        """log Pr(h | z) = <h, log softmax(z)> for one-hot h."""
        return (h * self.log_probabilities(z)).sum(-1)

    def outcomes(self, n: int, dtype=torch.float64, device=None) -> Tensor:
        """The C one-hot samples, [C, C] (class order)."""
        return torch.eye(n, dtype=dtype, device=device)

    def log_transition(self, z: Tensor, outcomes: Tensor) -> Tensor:
        return self.log_probabilities(z) @ outcomes.T

    def action(self, h: Tensor) -> Tensor:
        """The class index of a one-hot sample, [...] (in h's dtype)."""
        return (h * torch.arange(h.shape[-1], device=h.device, dtype=h.dtype)).sum(-1)

    def hwm_kappas(self, w: Tensor, h_next: Tensor, pi_next: Tensor, order: int) -> list[Tensor]:
        r"""For a categorical next layer, :math:`\log q_u(h') = \langle h', z'(u)\rangle - \log\sum_j e^{z'_j(u)}`
        with :math:`z'(u) = z' + W_{:,i}(u - h_i)`, so :math:`\kappa_1 = \sum_j W_{ji}(h'_j - \pi'_j)` and, for
        m >= 2, :math:`\kappa_m = -c_m`: minus the m-th cumulant of :math:`W_{Ji}` with :math:`J \sim \pi'`
        (the derivatives of a log-sum-exp are the cumulants of the shift). Cumulants from the moments
        :math:`\mu_m = \sum_j \pi'_j W_{ji}^m`: :math:`c_m = \mu_m - \sum_{k=1}^{m-1}\binom{m-1}{k-1} c_k \mu_{m-k}`."""
        moments = [batched_matmul(pi_next, w.pow(m)) for m in range(1, order + 1)]
        cumulants: list[Tensor] = []
        for m in range(1, order + 1):
            cumulants.append(moments[m - 1] - sum(math.comb(m - 1, k - 1) * cumulants[k - 1] * moments[m - k - 1]
                                                  for k in range(1, m)))
        return [batched_matmul(h_next - pi_next, w)] + [-c for c in cumulants[1:]]


BERNOULLI = Bernoulli()
CATEGORICAL = Categorical()
UNITS = {"bernoulli": BERNOULLI, "categorical": CATEGORICAL}


def layer_units(task, layers: int) -> list:
    """The unit type of every layer of a network for ``task``: Bernoulli hidden layers, then the task's
    output units (``task.output_units``; Bernoulli when a task does not declare one)."""
    return [BERNOULLI] * (layers - 1) + [getattr(task, "output_units", BERNOULLI)]
