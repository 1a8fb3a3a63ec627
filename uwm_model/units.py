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


def contract(x: Tensor, w: Tensor) -> Tensor:
    """``sum_j x[..., j] w[..., j, i]``: x [P, B, n'], w [P, n', m] (shared by the batch) or [P, B, n', m] (per
    sample: a categorical layer's switch directions, which depend on the sampled value)."""
    if w.dim() == 4:
        return (x.unsqueeze(-1) * w).sum(-2)
    return batched_matmul(x, w)


def softmax_kappas(h_minus_pi: Tensor, pi_groups: Tensor, w: Tensor, order: int) -> list[Tensor]:
    r""":math:`\kappa_m` of HWM above a layer of softmax groups (a categorical output is one group):
    :math:`\kappa_1 = \sum_j W_{ji}(h'_j - \pi'_j)`; for m >= 2, :math:`\kappa_m = -\sum_g c^g_m`, minus the m-th
    cumulants of :math:`W_{Ji}` with :math:`J \sim \pi'` within each group g (the derivatives of a log-sum-exp
    are the cumulants of the shift), from the moments :math:`\mu_m = \sum_{j \in g} \pi'_j W_{ji}^m`:
    :math:`c_m = \mu_m - \sum_{k=1}^{m-1}\binom{m-1}{k-1} c_k \mu_{m-k}`.
    pi_groups: [P, B, G, K']; w: [P, (B,) G*K', m]."""
    P, B, G, K = pi_groups.shape
    w_groups = w.reshape(*w.shape[:-2], G, K, w.shape[-1])            # [P, (B,) G, K', m]
    if w.dim() == 3:
        w_groups = w_groups.unsqueeze(1)
    moments = [(pi_groups.unsqueeze(-1) * w_groups.pow(m)).sum(-2) for m in range(1, order + 1)]   # [P, B, G, m]
    cumulants: list[Tensor] = []
    for m in range(1, order + 1):
        cumulants.append(moments[m - 1] - sum(math.comb(m - 1, k - 1) * cumulants[k - 1] * moments[m - k - 1]
                                              for k in range(1, m)))
    return [contract(h_minus_pi, w)] + [-c.sum(-2) for c in cumulants[1:]]


class Bernoulli:
    """Independent Bernoulli-logistic units: :math:`\\pi = \\sigma(z)`, :math:`h_i = [u_i < \\pi_i]`."""

    name = "bernoulli"
    categories = None

    def draws(self, n: int) -> int:
        """Uniforms a layer of n units draws per episode."""
        return n

    def u_draws(self, n: int) -> int:
        """UWM's uniforms per episode for a hidden layer of n units: one per unit."""
        return n

    def signal_grad(self, h: Tensor, pi: Tensor, delta: Tensor, form: str) -> tuple[Tensor, Tensor]:
        r"""(:math:`\hat g`, :math:`S`) of a hidden layer from :math:`\hat\Delta = r(1) - r(0)` (spec 3.0):
        :math:`S = h\hat\Delta`, :math:`\hat g = S(h - \pi) = h(1-\pi)\hat\Delta` or (rb) :math:`\pi(1-\pi)\hat\Delta`."""
        grad = h * (1 - pi) * delta if form == "reinforce" else pi * (1 - pi) * delta
        return grad, h * delta

    def ste_backward(self, back: Tensor, pi: Tensor) -> Tensor:
        """The sigmoid surrogate's Jacobian applied to the back-propagated signal."""
        return back * pi * (1 - pi)

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
        return [contract(h_next - pi_next if m == 1 else -sigmoid_derivative(pi_next, m - 1), w.pow(m))
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
        return softmax_kappas(h_next - pi_next, pi_next.unsqueeze(2), w, order)


class CategoricalHidden:
    r"""A hidden layer of G categorical units with K values each (spec 3.8), held as G*K logits and a one-hot
    sample per unit: logits and samples ``[..., G*K]``, unit g owning entries ``g*K .. g*K + K - 1``. All K logits
    are free (the softmax ignores a shift, which the estimates respect). Value 0 is each unit's reference:
    with K = 2, value 1 is a Bernoulli unit's ``h = 1`` (logit ``z_1 - z_0``, outgoing weights
    ``W[:, 1] - W[:, 0]``), and the sampler picks value K-1 iff ``u < pi_{K-1}``, then K-2, ... (inverse CDF from
    the top), so a K = 2 layer draws the Bernoulli layer's samples from the same uniforms."""

    name = "categorical"

    def __init__(self, categories: int):
        if isinstance(categories, bool) or not isinstance(categories, int) or categories < 2:
            raise ValueError(f"a categorical hidden unit needs categories >= 2 (an integer); got {categories!r}")
        self.categories = categories

    def __repr__(self):
        return f"CategoricalHidden({self.categories})"

    def __eq__(self, other):
        return isinstance(other, CategoricalHidden) and other.categories == self.categories

    def __hash__(self):
        return hash(("categorical", self.categories))

    def groups(self, width: int) -> int:
        if width % self.categories:
            raise ValueError(f"a layer of width {width} is not a whole number of units of {self.categories} values")
        return width // self.categories

    def _blocks(self, t: Tensor) -> Tensor:
        return t.reshape(*t.shape[:-1], t.shape[-1] // self.categories, self.categories)

    def draws(self, width: int) -> int:
        return self.groups(width)

    def u_draws(self, width: int) -> int:
        """UWM's uniforms: one per unit and alternative value 1..K-1 (one per unit when K = 2, as Bernoulli)."""
        return self.groups(width) * (self.categories - 1)

    def outcomes_count(self, width: int) -> int:
        return self.categories ** self.groups(width)

    def log_probabilities(self, z: Tensor) -> Tensor:
        return CATEGORICAL.log_probabilities(self._blocks(z)).flatten(-2)

    def probabilities(self, z: Tensor) -> Tensor:
        return CATEGORICAL.probabilities(self._blocks(z)).flatten(-2)

    def sample(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """(one-hot h, pi) for logits z [..., G*K] and uniforms u [..., G]."""
        K = self.categories
        pi = CATEGORICAL.probabilities(self._blocks(z))                             # [..., G, K]
        from_top = (pi.flip(-1).cumsum(-1) <= u.unsqueeze(-1)).sum(-1, keepdim=True).clamp_max(K - 1)
        h = (torch.arange(K - 1, -1, -1, device=z.device) == from_top).to(z.dtype)
        return h.flatten(-2), pi.flatten(-2)

    def log_prob(self, h: Tensor, z: Tensor) -> Tensor:
        return (h * self.log_probabilities(z)).sum(-1)

    def outcomes(self, width: int, dtype=torch.float64, device=None) -> Tensor:
        """Every sample, [K^G, G*K] (first unit most significant)."""
        G, K = self.groups(width), self.categories
        codes = torch.arange(K ** G, device=device)
        digits = (codes.unsqueeze(-1) // K ** torch.arange(G - 1, -1, -1, device=device)) % K      # [K^G, G]
        return F.one_hot(digits, K).to(dtype).flatten(-2)

    def log_transition(self, z: Tensor, outcomes: Tensor) -> Tensor:
        return self.log_probabilities(z) @ outcomes.T

    def hwm_kappas(self, w: Tensor, h_next: Tensor, pi_next: Tensor, order: int) -> list[Tensor]:
        """As :meth:`Categorical.hwm_kappas`, the cumulants summed over this layer's independent units."""
        return softmax_kappas(h_next - pi_next, self._blocks(pi_next), w, order)

    def signal_grad(self, h: Tensor, pi: Tensor, delta: Tensor, form: str) -> tuple[Tensor, Tensor]:
        r"""From :math:`\hat\Delta_{k}` per value ([..., G*K]; :math:`r(k) - r(0)` or any per-unit offset of it):
        :math:`S = \langle h, \hat\Delta\rangle`, :math:`\hat g = S (h - \pi)` or (rb)
        :math:`\hat g = \pi \odot (\hat\Delta - \langle\pi, \hat\Delta\rangle)` (the offset cancels); S is
        passed to every logit of the unit."""
        hb, pib, db = self._blocks(h), self._blocks(pi), self._blocks(delta)
        S = (hb * db).sum(-1, keepdim=True)
        grad = S * (hb - pib) if form == "reinforce" else pib * (db - (pib * db).sum(-1, keepdim=True))
        return grad.flatten(-2), S.expand_as(hb).flatten(-2)

    def ste_backward(self, back: Tensor, pi: Tensor) -> Tensor:
        """The softmax Jacobian per unit: ``pi * (b - <pi, b>)``."""
        bb, pib = self._blocks(back), self._blocks(pi)
        return (pib * (bb - (pib * bb).sum(-1, keepdim=True))).flatten(-2)

    def switch_directions(self, w: Tensor, h: Tensor) -> Tensor:
        """``W[:, (g, k')] - W[:, (g, k_g)]`` for every unit g and value k' at the sampled values k_g:
        the shift of the next layer's logits when unit g switches to k'. w [P, n', G*K], h [P, B, G*K]
        -> [P, B, n', G*K]."""
        wb = self._blocks(w).unsqueeze(1)                                  # [P, 1, n', G, K]
        chosen = (wb * self._blocks(h).unsqueeze(2)).sum(-1, keepdim=True)  # [P, B, n', G, 1]
        return (wb - chosen).flatten(-2)

    def reference_offset(self, values: Tensor) -> Tensor:
        """``values[k] - values[0]`` within every unit: a value's change against the reference value 0."""
        vb = self._blocks(values)
        return (vb - vb[..., :1]).flatten(-2)


BERNOULLI = Bernoulli()
CATEGORICAL = Categorical()
UNITS = {"bernoulli": BERNOULLI, "categorical": CATEGORICAL}


def hidden_unit_type(kind: str = "bernoulli", categories: int | None = None):
    """The unit type of hidden layers: ``bernoulli`` or ``categorical`` with ``categories`` values per unit."""
    if kind == "bernoulli":
        if categories is not None:
            raise ValueError("categories is only for categorical hidden units")
        return BERNOULLI
    if kind == "categorical":
        return CategoricalHidden(categories)
    raise ValueError(f"unknown hidden unit type {kind!r}; valid: bernoulli, categorical")


def layer_units(task, layers: int, hidden=None) -> list:
    """The unit type of every layer of a network for ``task``: ``hidden`` (default Bernoulli) hidden layers,
    then the task's output units (``task.output_units``; Bernoulli when a task does not declare one)."""
    return [hidden or BERNOULLI] * (layers - 1) + [getattr(task, "output_units", BERNOULLI)]
