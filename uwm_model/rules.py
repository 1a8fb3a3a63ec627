r"""The five learning rules, each one short function beside its equation.

Notation follows ``docs/learning-rules.md`` (the project's statement of the math). Every rule maps a sampled episode to a
per-sample estimate :math:`\hat g^l_i` of :math:`\partial J/\partial z^l_i` for every layer
(``[P, B, n_l]``); weight and bias estimates follow as :math:`\hat g^l_i h^{l-1}_j` and
:math:`\hat g^l_i`. The mean over the batch is the update (ascending J); the spread over the
batch is the estimator's variance.

Code layers are 0-based: ``weights[l]`` is :math:`W^{l+1}`, ``ep.h[l + 1]`` the sample of layer
``l`` and ``ep.h[0]`` the input. In a hidden layer ``l`` the primes (next layer) are
``w = weights[l + 1]`` (``[P, n', n]``), ``h' = ep.h[l + 2]``, ``z' = ep.z[l + 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from .network import Episode, Network, batched_matmul, sample_episode
from .units import BERNOULLI, layer_units

Tensor = torch.Tensor


def _per_member(value, like: Tensor) -> Tensor | float:
    """A number, or a [P] tensor reshaped to broadcast over [P, ...] tensors like ``like``."""
    if isinstance(value, Tensor):
        return value.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))
    return value


def output_reinforce(ep: Episode, R: Tensor) -> Tensor:
    r"""The output layer of wm, hwm and uwm: REINFORCE with the global reward, :math:`\hat g^L = R (a - \pi^L)`."""
    return R.unsqueeze(-1) * (ep.h[-1] - ep.pi[-1])


def signal_recursion(weights, ep: Episode, R: Tensor, hidden_delta: Callable, form: str) -> list[Tensor]:
    r"""Shared top-down recursion of wm, hwm and uwm (spec section 3.0).

    :math:`S^L = R`; for each hidden layer, top down, ``hidden_delta(l, S_next)`` returns
    :math:`\hat\Delta^l`, and then
    :math:`S^l = h^l \hat\Delta^l`, and :math:`\hat g^l = S^l (h^l - \pi^l) = h^l (1 - \pi^l)\hat\Delta^l`
    (``form="reinforce"``) or :math:`\hat g^l = \sigma'(z^l)\hat\Delta^l` (``form="rb"``); a categorical
    hidden layer's unit type forms them from one :math:`\hat\Delta` per value (spec 3.8).
    """
    grads = [None] * len(weights)
    grads[-1] = output_reinforce(ep, R)
    signal = R.unsqueeze(-1).expand_as(ep.h[-1])
    for l in range(len(weights) - 2, -1, -1):
        grads[l], signal = ep.units[l].signal_grad(ep.h[l + 1], ep.pi[l], hidden_delta(l, signal), form)
    return grads


def reinforce(weights, ep: Episode, R: Tensor, U, baseline=0.0) -> list[Tensor]:
    r"""REINFORCE: :math:`\hat g^l_i = (R - \beta)(h^l_i - \pi^l_i)` for every layer.

    Unbiased for any baseline :math:`\beta` that does not depend on the current sample (a
    number or a ``[P]`` tensor; the trainer keeps the EMA). Variance grows with the number of
    units sharing the one reward.
    """
    advantage = (R - _per_member(baseline, R)).unsqueeze(-1)
    return [advantage * (h - pi) for h, pi in zip(ep.h[1:], ep.pi)]


def ste(weights, ep: Episode, R: Tensor, U, surrogate="sigmoid") -> list[Tensor]:
    r"""Straight-through backprop: :math:`\delta^L = R(a - \pi^L)`,
    :math:`\delta^l = \sigma'(z^l) \odot (W^{l+1})^\top \delta^{l+1}` (``identity`` drops :math:`\sigma'`).

    Biased: it differentiates through the samples as if they were their probabilities.
    """
    grads = [None] * len(weights)
    grads[-1] = output_reinforce(ep, R)
    for l in range(len(weights) - 2, -1, -1):
        back = batched_matmul(grads[l + 1], weights[l + 1])
        grads[l] = ep.units[l].ste_backward(back, ep.pi[l]) if surrogate == "sigmoid" else back
    return grads


def wm(weights, ep: Episode, R: Tensor, U, p=2.0) -> list[Tensor]:
    r"""Weight Maximization (Chung 2022): the individual reward is the change of the unit's
    outgoing-weight :math:`L^p` norm under the next layer's raw update :math:`\Delta W_{ji} = \hat g'_j h_i`:

    .. math:: \hat\Delta_i = \sum_j p |W_{ji}|^{p-1} \mathrm{sign}(W_{ji}) (h'_j - \pi'_j) S'_j

    Biased: a first-order expansion around :math:`h_i = 1`, times :math:`p`. ``p`` is a number
    or a ``[P]`` tensor (>= 1).
    """
    def hidden_delta(l, signal):
        w = weights[l + 1]
        if isinstance(p, Tensor) or p != 2:
            p_ = _per_member(p, w)
            dnorm = p_ * w.abs().pow(p_ - 1) * torch.sign(w)
        else:
            dnorm = 2 * w
        return batched_matmul((ep.h[l + 2] - ep.pi[l + 1]) * signal, dnorm)

    return signal_recursion(weights, ep, R, hidden_delta, "reinforce")


@lru_cache(maxsize=None)
def sigmoid_derivative_polynomial(k: int) -> tuple[int, ...]:
    r"""Integer coefficients (lowest power first) of :math:`P_k` with :math:`\sigma^{(k)}(z) = P_k(\sigma(z))`:
    :math:`P_0(s) = s`, :math:`P_{k+1}(s) = P_k'(s)\, s(1-s)`."""
    if k == 0:
        return (0, 1)
    prev = sigmoid_derivative_polynomial(k - 1)
    derivative = [i * c for i, c in enumerate(prev)][1:]
    out = [0] * (len(derivative) + 2)
    for i, c in enumerate(derivative):  # multiply by s - s^2
        out[i + 1] += c
        out[i + 2] -= c
    return tuple(out)


def sigmoid_derivative(s: Tensor, k: int) -> Tensor:
    """:math:`\\sigma^{(k)}(z)` evaluated from ``s = sigmoid(z)`` (Horner)."""
    result = torch.zeros_like(s)
    for c in reversed(sigmoid_derivative_polynomial(k)):
        result = result * s + c
    return result


def hwm(weights, ep: Episode, R: Tensor, U, order=3, form="reinforce") -> list[Tensor]:
    r"""High-order Weight Maximization: a Taylor series of :math:`r_i(u)` around the sampled point
    evaluated at the other end, truncated at order :math:`P`:

    .. math::
        \kappa_m = \sum_j W_{ji}^m c_m(h'_j, z'_j),\quad c_1 = h'_j - \sigma(z'_j),\quad c_m = -\sigma^{(m-1)}(z'_j)\\
        Y_0 = 1,\quad Y_{n+1} = \sum_{k=0}^{n} \binom{n}{k} Y_{n-k}\kappa_{k+1}\\
        \hat\Delta_i = R \sum_{n=1}^{P} (-1)^{n+1} Y_n / n!

    (``form="rb"``: the sign of term n is :math:`(1 - 2h_i)^{n+1}`.) Above a categorical layer the
    :math:`\kappa_m` are the derivatives of its log-probability instead (spec 3.7,
    :meth:`uwm_model.units.Categorical.hwm_kappas`). The signal is the global
    reward. Biased for finite P; the sigmoid's Taylor series has radius :math:`\pi`, so with
    outgoing weights above :math:`\pi` bias and variance grow with P.
    """
    def hidden_delta(l, signal):
        kind = ep.units[l]
        # a categorical unit's series runs from its sampled value k to every value k' along W[:, k'] - W[:, k]
        w = weights[l + 1] if kind.categories is None else kind.switch_directions(weights[l + 1], ep.h[l + 1])
        kappa = ep.units[l + 1].hwm_kappas(w, ep.h[l + 2], ep.pi[l + 1], order)
        bell = [torch.ones_like(kappa[0])]
        for n in range(order):
            bell.append(sum(math.comb(n, k) * bell[n - k] * kappa[k] for k in range(n + 1)))
        if kind.categories is not None:          # r(k') - r(k), then against the reference value: r(k') - r(0)
            series = sum(bell[n] / math.factorial(n) for n in range(1, order + 1))
            return R.unsqueeze(-1) * kind.reference_offset(series)
        sign = -1.0 if form == "reinforce" else 1 - 2 * ep.h[l + 1]
        series = sum(sign ** (n + 1) * bell[n] / math.factorial(n) for n in range(1, order + 1))
        return R.unsqueeze(-1) * series

    return signal_recursion(weights, ep, R, hidden_delta, form)


def importance_slope(z_shift: Tensor, dz: Tensor, h_next: Tensor, z_next: Tensor, target: Tensor, units) -> Tensor:
    r""":math:`\rho\, \sum_j dz_j (h'_j - \sigma(z^{shift}_j)) T_j` with :math:`\log\rho = \log q_{z^{shift}}(h') -
    \log q_{z'}(h')`: UWM's importance-weighted derivative of the next layer's log-likelihood along a shift of its
    logits. z_shift, dz: [P, B, *alt, n']; h_next, z_next, target: [P, B, n'] (broadcast over the alternatives)."""
    extra = z_shift.dim() - h_next.dim()
    lift = lambda t: t.reshape(t.shape[:2] + (1,) * extra + t.shape[2:])   # noqa: E731
    log_rho = units.log_prob(lift(h_next), z_shift) - units.log_prob(h_next, z_next).reshape(z_shift.shape[:2] + (1,) * extra)
    slope = (dz * (lift(h_next) - units.probabilities(z_shift)) * lift(target)).sum(-1)
    return torch.exp(log_rho) * slope


def uwm_delta(w: Tensor, h: Tensor, h_next: Tensor, z_next: Tensor, target: Tensor, u: Tensor, units=None) -> Tensor:
    r"""Unbiased estimate of :math:`\Delta_i = E_{U}[r_i'(U)]` by importance sampling over the next layer.

    .. math::
        z^{(i)}_j = z'_j + W_{ji}(U_i - h_i)\\
        \log\rho_i = \sum_j \log \mathrm{Bern}(h'_j; \sigma(z^{(i)}_j)) - \log \mathrm{Bern}(h'_j; \sigma(z'_j))\\
        \hat\Delta_i = \rho_i \sum_j W_{ji}(h'_j - \sigma(z^{(i)}_j))\, T_j

    A rank-1 shift of the known logits: ``[P, B, n, n']`` work and memory, O(n n') per
    sample, never the next layer recomputed once per unit. w: [P, n', n]; h, u: [P, B, n];
    h_next, z_next, target: [P, B, n']. ``units``: the next layer's unit type (default Bernoulli, where
    ``log Bern(h; s(z)) = logsigmoid((2h-1) z)``); above a categorical unit :math:`\sigma` becomes the softmax
    and the log-probabilities its log-softmax (spec 3.7).
    """
    units = units or BERNOULLI
    w_t = w.transpose(1, 2).unsqueeze(1)                                 # [P, 1, n, n']
    z_shift = z_next.unsqueeze(2) + w_t * (u - h).unsqueeze(-1)          # [P, B, n, n']
    return importance_slope(z_shift, w_t, h_next, z_next, target, units)


def uwm_delta_categorical(kind, w: Tensor, h: Tensor, h_next: Tensor, z_next: Tensor, target: Tensor, u: Tensor,
                          units=None) -> Tensor:
    r"""UWM for a layer of G categorical units of K values (spec 3.8). For unit g at its sampled value k and every
    other value k', :math:`D_{gk'} = r_g(k') - r_g(k)` is estimated on the segment between the two values (which
    holds the sample, so the importance weight is 1 at one end, as for a Bernoulli unit): with lo < hi the two
    values, :math:`r(hi) - r(lo) = E_U[r'(U)]`, the next layer's known logits shifted by
    :math:`(U - [k = hi])(W_{:,g\,hi} - W_{:,g\,lo})`: one rank-1 shift per unit and alternative, O(K n n') per
    sample. Returns :math:`\hat\Delta_{gk'} = \hat D_{gk'} - \hat D_{g0}` (against value 0: ``[P, B, G*K]``),
    for :meth:`uwm_model.units.CategoricalHidden.signal_grad`. u: [P, B, G*(K-1)], the alternatives of a unit
    in value order (for K = 2 this is the Bernoulli unit's estimate, from the same uniform)."""
    units = units or BERNOULLI
    K = kind.categories
    P, B, width = h.shape
    G = width // K
    k = (h.reshape(P, B, G, K) * torch.arange(K, dtype=h.dtype, device=h.device)).sum(-1, keepdim=True)
    values = torch.arange(K, dtype=h.dtype, device=h.device)
    sign = torch.sign(values - k)                                        # [P, B, G, K]: +1 above k, -1 below
    slot = (values - (values > k).to(h.dtype)).clamp(0, K - 2).long()   # alternative k' -> its uniform
    u_all = torch.gather(u.reshape(P, B, G, K - 1), -1, slot)
    towards = kind.switch_directions(w, h).reshape(P, B, w.shape[1], G, K).permute(0, 1, 3, 4, 2)  # W_k' - W_k
    t = torch.where(sign > 0, u_all, 1 - u_all).unsqueeze(-1)           # the shift is t (W_k' - W_k)
    z_shift = z_next[:, :, None, None, :] + t * towards                 # [P, B, G, K, n']
    D = sign * importance_slope(z_shift, sign.unsqueeze(-1) * towards, h_next, z_next, target, units)
    return kind.reference_offset(D.reshape(P, B, width))


def uwm(weights, ep: Episode, R: Tensor, U, signal="individual", form="reinforce") -> list[Tensor]:
    r"""Unbiased Weight Maximization: :math:`\Delta_i = r_i(1) - r_i(0) = E_{U \sim U(0,1)}[r_i'(U)]`,
    estimated by :func:`uwm_delta` with one :math:`U_i` per unit and sample (``U[l]``: [P, B, n]).

    :math:`T_j = S'_j` (``signal="individual"``) or :math:`T_j = R` (``"global"``); both unbiased.
    """
    def hidden_delta(l, next_signal):
        target = next_signal if signal == "individual" else R.unsqueeze(-1).expand_as(ep.h[l + 2])
        args = (weights[l + 1], ep.h[l + 1], ep.h[l + 2], ep.z[l + 1], target, U[l], ep.units[l + 1])
        kind = ep.units[l]
        return uwm_delta(*args) if kind.categories is None else uwm_delta_categorical(kind, *args)

    return signal_recursion(weights, ep, R, hidden_delta, form)


# ----------------------------------------------------------------------------- registry


REWARD_BASELINE = "baseline"   # the option through which a rule receives the trainer's reward baseline


@dataclass(frozen=True)
class Rule:
    """A rule and its options: how they are checked and how they enter the trainer's step.

    Every option is passed to ``fn`` by keyword. The trainer passes each option as the trial's
    ``rule_options`` set it, except the options in ``per_member``, which may differ between the
    members of one population: they are numbers, passed as a ``[P]`` tensor (or one number when
    all members agree), so ``fn`` must broadcast them (:func:`_per_member`). A rule with
    ``reward_baseline`` takes option :data:`REWARD_BASELINE`, which the trainer fills with its
    per-member EMA of the rewards when the trial sets ``baseline: ema`` (and 0 otherwise).
    """

    name: str
    fn: Callable
    defaults: dict
    choices: dict = field(default_factory=dict)    # option -> allowed string values
    numbers: dict = field(default_factory=dict)    # option -> (type, minimum)
    needs_uniforms: bool = False                   # fn takes U: one U(0, 1) per hidden unit and sample
    per_member: tuple[str, ...] = ()               # number options that may differ per member
    reward_baseline: bool = False                  # fn takes the trainer's reward baseline
    hints: dict = field(default_factory=dict)      # option this rule lacks -> why


RULES: dict[str, Rule] = {
    "reinforce": Rule("reinforce", reinforce, {REWARD_BASELINE: 0.0}, numbers={REWARD_BASELINE: (float, None)},
                      reward_baseline=True),
    "ste": Rule("ste", ste, {"surrogate": "sigmoid"}, choices={"surrogate": ("sigmoid", "identity")}),
    "wm": Rule("wm", wm, {"p": 2.0}, numbers={"p": (float, 1.0)}, per_member=("p",),
               hints={"form": "wm has no rb form: its estimate is a first-order term around u = 1"}),
    "hwm": Rule("hwm", hwm, {"order": 3, "form": "reinforce"}, choices={"form": ("reinforce", "rb")},
                numbers={"order": (int, 1)}),
    "uwm": Rule("uwm", uwm, {"signal": "individual", "form": "reinforce"},
                choices={"signal": ("individual", "global"), "form": ("reinforce", "rb")}, needs_uniforms=True),
}


def resolve_rule(name: str, options: dict | None = None) -> tuple[Rule, dict]:
    """The rule and its complete options; an unknown rule, option or value is a ValueError naming it."""
    if name not in RULES:
        raise ValueError(f"unknown rule '{name}'; valid rules: {', '.join(RULES)}")
    rule = RULES[name]
    options = dict(options or {})
    for key, value in options.items():
        if key not in rule.defaults:
            extra = f" ({rule.hints[key]})" if key in rule.hints else ""
            raise ValueError(f"rule '{name}' has no option '{key}'{extra}; valid options: {', '.join(rule.defaults)}")
        if key in rule.choices and value not in rule.choices[key]:
            raise ValueError(f"rule '{name}' option {key}={value!r} is not one of: {', '.join(rule.choices[key])}")
        if key in rule.numbers:
            kind, minimum = rule.numbers[key]
            if isinstance(value, Tensor):
                if value.dim() != 1:
                    raise ValueError(f"rule '{name}' option {key} must be a number or a [P] tensor")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
                raise ValueError(f"rule '{name}' option {key}={value!r} must be {'an integer' if kind is int else 'a number'}")
            if minimum is not None and value < minimum:
                raise ValueError(f"rule '{name}' option {key}={value!r} must be >= {minimum}")
            options[key] = kind(value)
    return rule, {**rule.defaults, **options}


# ----------------------------------------------------------------------------- estimates


@dataclass
class Gradient:
    """Parameter-shaped tensors: ``weights[l]``: [P, n_{l+1}, n_l], ``biases[l]``: [P, n_{l+1}]."""

    weights: list[Tensor]
    biases: list[Tensor]


@dataclass
class Estimate:
    """Per-sample estimates: ``weights[l]``: [P, B, n_{l+1}, n_l], ``biases[l]`` (also the estimates of
    the logits): [P, B, n_{l+1}], ``reward``: [P, B]. ``mean()`` is the update (ascent direction)."""

    weights: list[Tensor]
    biases: list[Tensor]
    reward: Tensor

    def mean(self) -> Gradient:
        return Gradient([w.mean(1) for w in self.weights], [b.mean(1) for b in self.biases])


def per_sample_parameters(logit_grads: Sequence[Tensor], ep: Episode) -> tuple[list[Tensor], list[Tensor]]:
    """Weight estimates ``g_i h_j`` ([P, B, n', n]) and bias estimates ``g_i`` from logit estimates."""
    return [g.unsqueeze(-1) * h.unsqueeze(-2) for g, h in zip(logit_grads, ep.h[:-1])], list(logit_grads)


def batch_mean_parameters(logit_grads: Sequence[Tensor], ep: Episode) -> Gradient:
    """The batch mean of the weight and bias estimates, without materialising per-sample weights."""
    batch = ep.h[0].shape[1]
    # each weight mean is computed as its transpose h^T g ([P, n_in, n_out], contiguous) and returned as a
    # view: the trainer stores weights transposed, so its flat gradient is then the product as written,
    # not a strided copy (on a GPU, strided reads of a large population cost a pass over memory)
    return Gradient([batched_matmul(h.transpose(1, 2), g).transpose(1, 2) / batch for g, h in zip(logit_grads, ep.h[:-1])],
                    [g.mean(1) for g in logit_grads])


def population_inputs(x: Tensor, population: int, dtype, device) -> Tensor:
    """Inputs as [P, B, k]: a [B, k] batch is shared by all members."""
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(population, -1, -1)
    elif x.dim() != 3 or x.shape[0] != population:
        raise ValueError(f"inputs must be [B, k] or [P={population}, B, k]; got shape {tuple(x.shape)}")
    return x.to(device=device, dtype=dtype)


def check_network_for_task(net: Network, task) -> None:
    sizes = net.sizes
    if sizes[0] != task.input_size or sizes[-1] != task.output_size:
        raise ValueError(f"network sizes {sizes} do not fit {task!r}: it needs input size {task.input_size} "
                         f"and output size {task.output_size}")


def estimate(rule: str, net: Network, task, x: Tensor, generator: torch.Generator, targets: Tensor | None = None,
             hidden_units=None, **options) -> Estimate:
    """Per-sample estimates of dJ/dtheta by ``rule`` on one sampled episode per input row.

    x: [B, k] (shared by all members) or [P, B, k]; ``targets`` ([B] or [P, B]) the inputs' targets, needed
    by a dataset task (the multiplexer computes them from x). The generator draws, in order, the unit
    samples of every layer (``torch.rand``, [P, B, draws of layer l] each: n_l for Bernoulli units, 1 for a
    categorical one) and then, for uwm, one U ~ U(0, 1) per hidden unit and sample (per unit and alternative value
    of a categorical hidden unit). ``hidden_units``: the hidden layers' unit type (default Bernoulli;
    :func:`uwm_model.units.hidden_unit_type`). Options as in :data:`RULES`. A masked network's masked weights
    are estimated as exactly 0 (the rules read the masked weights, which are zero, so nothing else changes).
    """
    if not isinstance(generator, torch.Generator):
        raise ValueError("estimate needs generator=torch.Generator(...): library code never uses the global RNG")
    spec, opts = resolve_rule(rule, options)
    check_network_for_task(net, task)
    P = net.population
    x = population_inputs(x, P, net.dtype, net.device)
    B = x.shape[1]
    draw = lambda n: torch.rand((P, B, n), generator=generator, device=net.device, dtype=net.dtype)  # noqa: E731
    units = layer_units(task, len(net.weights), hidden_units)
    unit_uniforms = [draw(kind.draws(n)) for kind, n in zip(units, net.sizes[1:])]
    U = [draw(kind.u_draws(n)) for kind, n in zip(units, net.sizes[1:-1])] if spec.needs_uniforms else None
    ep = sample_episode(net.weights, net.biases, x, unit_uniforms, units)
    if targets is None:
        R = task.reward(x, ep.action)
    else:
        R = task.score(targets.to(net.device).expand(P, B), ep.action).to(net.dtype)
    logit_grads = spec.fn(net.weights, ep, R, U, **opts)
    weights, biases = per_sample_parameters(logit_grads, ep)
    return Estimate(net.masked(weights), biases, R)
