"""Populations of Bernoulli-logistic networks held as batched tensors.

Shapes (population first, then batch):
    weights[l]: [P, n_{l+1}, n_l]      biases[l]: [P, n_{l+1}]
    h[l]:       [P, B, n_l]            (h[0] is the input x)

Layer ``l`` of the code is layer ``l + 1`` of the spec (``W^{l+1}``): lists are 0-based.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` picks CUDA when present, else the CPU; anything else is taken as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was requested but CUDA is not available here")
    return device


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype {dtype} is not supported; use float32 or float64")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype '{dtype}' is not supported; use one of: {', '.join(DTYPES)}")
    return DTYPES[dtype]


@dataclass
class Network:
    """A population of P independent networks. ``weights``/``biases`` are assignable lists. ``masks``: a fixed 0/1
    connectivity mask per weight matrix ([P, n_{l+1}, n_l] or None for a dense layer; :mod:`uwm_model.fanout`),
    or None when no layer has one; a masked weight is zero and its estimates are zero."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    masks: list[torch.Tensor | None] | None = None

    @property
    def sizes(self) -> list[int]:
        return [self.weights[0].shape[2]] + [w.shape[1] for w in self.weights]

    @property
    def population(self) -> int:
        return self.weights[0].shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def _masks(self, fn) -> list[torch.Tensor | None] | None:
        return None if self.masks is None else [None if m is None else fn(m) for m in self.masks]

    def clone(self) -> "Network":
        return Network([w.clone() for w in self.weights], [b.clone() for b in self.biases],
                       self._masks(torch.Tensor.clone))

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "Network":
        convert = lambda t: t.to(device=device, dtype=dtype)   # noqa: E731
        return Network([convert(w) for w in self.weights], [convert(b) for b in self.biases], self._masks(convert))

    def member(self, k: int) -> "Network":
        """Member k as a population of one."""
        pick = lambda t: t[k:k + 1].clone()   # noqa: E731
        return Network([pick(w) for w in self.weights], [pick(b) for b in self.biases], self._masks(pick))

    def masked(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Weight-shaped tensors ([P, ..., n', n], e.g. per-sample estimates [P, B, n', n]) with the masked entries
        set to exactly 0 (the tensors themselves when the network has no mask)."""
        if self.masks is None:
            return tensors
        return [t if m is None else torch.where(m.reshape(m.shape[:1] + (1,) * (t.dim() - 3) + m.shape[1:]) != 0,
                                                t, torch.zeros((), dtype=t.dtype, device=t.device))
                for t, m in zip(tensors, self.masks)]


def _member_values(value, population: int, name: str) -> list:
    if value is None or isinstance(value, (int, float)):
        return [value] * population
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    value = list(value)
    if len(value) != population:
        raise ValueError(f"{name} has {len(value)} values for a population of {population}")
    return value


def init_member(sizes: Sequence[int], seed: int, outgoing_norm: float | None = None, fan_out=None):
    """One member's parameters in float64 on the CPU, drawn from ``torch.Generator`` seeded ``seed``.

    ``W ~ U(-s, s)``, ``s = sqrt(6 / (n_in + n_out))``; ``b ~ U(-1e-3, 1e-3)``, drawn
    ``W1, b1, W2, b2, ...`` with ``torch.rand`` (as in Chung's published code). ``fan_out`` = (cv, density,
    categories) draws connectivity masks from the same generator after the parameters (so the unmasked weights
    are the dense network's) and zeroes the masked weights (:func:`uwm_model.fanout.member_masks`). With
    ``outgoing_norm = c`` every column of every weight matrix but the first is then rescaled to
    Euclidean norm ``c``: the outgoing weight vector of each hidden unit. Returns (weights, biases, masks), masks
    None without ``fan_out``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        scale = math.sqrt(6.0 / (n_in + n_out))
        weights.append((2 * torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) - 1) * scale)
        biases.append((2 * torch.rand(n_out, generator=gen, dtype=torch.float64) - 1) * 1e-3)
    masks = None
    if fan_out is not None:
        from .fanout import member_masks
        masks = member_masks(sizes, seed, *fan_out, generator=gen)
        weights = [w if m is None else w * m for w, m in zip(weights, masks)]
    if outgoing_norm is not None:
        for w in weights[1:]:
            w *= outgoing_norm / w.norm(dim=0, keepdim=True).clamp_min(1e-300)
    return weights, biases, masks


def init_network(
    sizes: Sequence[int],
    population: int = 1,
    seed: int | Sequence[int] = 0,
    outgoing_norm: float | Sequence[float | None] | None = None,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = "auto",
    fan_out: tuple[float, float, int] | None = None,
) -> Network:
    """A population of ``population`` networks with layer sizes ``sizes = [d0, n1, ..., nL]``.

    Member ``k`` is initialised from its own generator seeded ``seed + k`` (or ``seed[k]`` when a
    sequence of seeds is given), so member k equals a population of one built with that seed,
    and adding members never changes the existing ones. ``outgoing_norm`` may be one value or
    one per member (packed sweeps). Parameters are drawn in float64 on the CPU and then cast,
    so float32 and float64 networks, and CPU and CUDA ones, start from the same numbers. ``fan_out`` =
    (cv, density, categories per hidden unit): random connectivity masks per member (:mod:`uwm_model.fanout`).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least an input and an output size, all >= 1; got {sizes}")
    if population < 1:
        raise ValueError(f"population must be >= 1; got {population}")
    seeds = [seed + k for k in range(population)] if isinstance(seed, int) else _member_values(seed, population, "seed")
    norms = _member_values(outgoing_norm, population, "outgoing_norm")
    for c in norms:
        if c is not None and not (c > 0 and math.isfinite(c)):
            raise ValueError(f"outgoing_norm must be a positive finite number; got {c}")
    if len(sizes) == 2 and any(c is not None for c in norms):
        raise ValueError("outgoing_norm needs at least one hidden layer")
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    members = [init_member(sizes, s, c, fan_out) for s, c in zip(seeds, norms)]
    stack = lambda i, l: torch.stack([m[i][l] for m in members]).to(device=device, dtype=dtype)   # noqa: E731
    weights = [stack(0, l) for l in range(len(sizes) - 1)]
    biases = [stack(1, l) for l in range(len(sizes) - 1)]
    masks = None if fan_out is None else [None if members[0][2][l] is None else stack(2, l)
                                          for l in range(len(sizes) - 1)]
    return Network(weights, biases, masks)


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for a: [P, B, n], b: [P, n, m]. On a CPU, with one sample per member (B = 1 or n = 1), it is
    written as a broadcast product and a sum, which a compiled step fuses into its kernels instead of paying
    a batched-GEMM call (about 15 us each) for a matrix-vector product. On a GPU it is always a batched GEMM:
    fused there, the compiled step recomputed every sampled unit once per parameter entry in the update
    (measured on an H100, 65 536 members at batch 1: 9.3M network-episodes/s fused, 10.8M as GEMMs)."""
    if a.is_cuda:
        return torch.bmm(a, b)
    if a.shape[2] == 1:                       # contraction over one sample: an outer product
        return a * b
    if a.shape[1] == 1:
        return (a.transpose(1, 2) * b).sum(1, keepdim=True)
    return torch.bmm(a, b)


@dataclass
class Episode:
    """One sampled pass: ``h[0] = x`` and ``h[l+1]`` the sample of layer l; ``z[l]``, ``pi[l]`` its logits and
    probabilities; ``units[l]`` its unit type (:mod:`uwm_model.units`; all Bernoulli when not given)."""

    h: list[torch.Tensor]
    z: list[torch.Tensor]
    pi: list[torch.Tensor]
    units: list | None = None

    def __post_init__(self):
        if self.units is None:
            from .units import BERNOULLI
            self.units = [BERNOULLI] * len(self.z)

    @property
    def action(self) -> torch.Tensor:
        """The output layer's action: its sample ([..., 1]) for a Bernoulli unit, the class index for a categorical one."""
        return self.units[-1].action(self.h[-1])

    def samples(self, s: slice) -> "Episode":
        """The episode restricted to the samples ``s`` of the batch axis."""
        return Episode([t[:, s] for t in self.h], [t[:, s] for t in self.z], [t[:, s] for t in self.pi], self.units)


def sigmoid(z: torch.Tensor) -> torch.Tensor:
    """The logistic function 1 / (1 + exp(-z)), written out. On a CPU, torch.sigmoid rounds the few elements of
    a tensor after its last full vector differently from the rest (a scalar tail loop), so in float32 a
    member's probabilities, and so its whole trajectory, would depend on the size of its population: packing
    would change the numbers. exp, the sum and the division round alike on both paths. Compiled kernels
    already treat every element alike, so a compiled step keeps torch.sigmoid (and its numbers)."""
    if torch.compiler.is_compiling():
        return torch.sigmoid(z)
    return 1 / (1 + torch.exp(-z))


def sample_episode(weights, biases, x: torch.Tensor, unit_uniforms: Sequence[torch.Tensor],
                   units: Sequence | None = None) -> Episode:
    """Sample every layer: ``z = W h + b``, then the layer's unit type draws ``h'`` from ``z`` and its uniforms
    (Bernoulli: ``pi = sigmoid(z)``, ``h' = [u < pi]``).

    x: [P, B, d0]; unit_uniforms[l]: [P, B, draws of layer l] (n_{l+1} for Bernoulli units, 1 for a
    categorical one); units: one unit type per layer (default all Bernoulli).
    """
    if units is None:
        from .units import BERNOULLI
        units = [BERNOULLI] * len(weights)
    h, zs, pis = [x], [], []
    for w, b, u, kind in zip(weights, biases, unit_uniforms, units):
        z = batched_matmul(h[-1], w.transpose(1, 2)) + b.unsqueeze(1)
        sample, pi = kind.sample(z, u)
        zs.append(z)
        pis.append(pi)
        h.append(sample)
    return Episode(h, zs, pis, list(units))
