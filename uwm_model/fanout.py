r"""Connectivity masks: uneven fan-out (docs/learning-rules.md, section 3.9).

A layer may carry a fixed 0/1 mask on its weights: a masked weight is zero at initialisation and stays exactly
zero (the trainer masks the gradient, so Adam's moments of a masked weight stay zero and its step is exactly 0).
The forward pass, and every rule's signal, then read the masked weights as they are: a hidden unit's individual
reward in WM, HWM and UWM comes from its actual outgoing connections, with no further change to the rules.

Random masks set the *fan-out* of every hidden unit that feeds another hidden layer (its number of outgoing
connections, counted in units of the next layer): the counts have a given coefficient of variation (population
CV over the layer's units) at a fixed mean ``density * n'`` (``n'`` the next layer's units), each count between
1 (no unit is cut off) and ``n'``. The counts are a deterministic, lognormal-shaped profile (quantiles
``exp(sigma z_i)`` of a standard normal, scaled and clipped into [1, n'] to the fixed total, then rounded),
``sigma`` chosen by bisection to match the CV; each member then deals the counts to its units in a random order
and picks each unit's targets at random, from a generator seeded by the member's seed. The last hidden layer
feeds the output densely (a one-unit output has nothing to spread). With categorical units a connection joins
two units: all K x K' weights between them share its mask entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

CV_TOLERANCE = 0.05      # a profile's achieved CV is within this of the requested one (integer counts)
_SIGMA_MAX = 60.0


def _allocate(shape: torch.Tensor, total: int, cap: int) -> torch.Tensor:
    """Integer counts in [1, cap] proportional to ``shape`` (clipped) that sum to ``total``."""
    lo, hi = math.log(1.0 / float(shape.max())), math.log(float(cap) / float(shape.min()))   # log of the scale
    for _ in range(64):
        mid = (lo + hi) / 2
        if float((math.exp(mid) * shape).clamp(1, cap).sum()) < total:
            lo = mid
        else:
            hi = mid
    real = (math.exp(hi) * shape).clamp(1, cap)
    counts = real.floor()
    short = int(total - counts.sum())
    if short > 0:   # the largest remainders get one more (never beyond the cap)
        room = torch.where(counts < cap, real - counts, torch.tensor(-1.0, dtype=real.dtype))
        counts[room.argsort(descending=True, stable=True)[:short]] += 1
    return counts.to(torch.int64)


def _cv(counts: torch.Tensor) -> float:
    c = counts.double()
    return float(c.std(unbiased=False) / c.mean())


def _profile(units: int, sigma: float, total: int, cap: int) -> torch.Tensor:
    q = (torch.arange(units, dtype=torch.float64) + 0.5) / units
    z = math.sqrt(2) * torch.erfinv(2 * q - 1)
    return _allocate(torch.exp(sigma * (z - z.max())), total, cap)


def max_fan_out_cv(units: int, next_units: int, density: float) -> float:
    """The largest CV of fan-outs in [1, n'] at mean ``density * n'``: as many units as possible at n', the rest at 1."""
    return _cv(_profile(units, _SIGMA_MAX, _total(units, next_units, density), next_units))


def _total(units: int, next_units: int, density: float) -> int:
    return min(units * next_units, max(units, round(density * next_units * units)))


def fan_out_counts(units: int, next_units: int, cv: float, density: float) -> torch.Tensor:
    """Fan-outs of ``units`` units into ``next_units`` ([units] int64, sorted ascending): mean ``density * n'``
    (rounded to a whole total, at least 1 per unit), population CV ``cv`` (within CV_TOLERANCE)."""
    total = _total(units, next_units, density)
    top = max_fan_out_cv(units, next_units, density)
    if cv > top + CV_TOLERANCE:
        raise ValueError(f"fan_out cv {cv:g} is out of reach for {units} units feeding {next_units} at density "
                         f"{density:g} (mean fan-out {total / units:.3g}): at most {top:.2f}; lower the density or cv")
    if cv >= top:
        return _profile(units, _SIGMA_MAX, total, next_units)
    lo, hi = 0.0, _SIGMA_MAX
    for _ in range(48):
        mid = (lo + hi) / 2
        if _cv(_profile(units, mid, total, next_units)) < cv:
            lo = mid
        else:
            hi = mid
    # the CV of integer counts is a step function of sigma: take whichever end of the last step is closer
    best = min((_profile(units, s, total, next_units) for s in (lo, hi)), key=lambda c: abs(_cv(c) - cv))
    return best


def fan_out_mask(counts: torch.Tensor, next_units: int, generator: torch.Generator) -> torch.Tensor:
    """A [n', n] 0/1 mask (float64) whose column i has ``counts[j]`` ones for a random unit j (the counts dealt to the
    units in a random order), at random rows."""
    units = counts.shape[0]
    dealt = counts[torch.randperm(units, generator=generator)]
    rank = torch.rand(next_units, units, generator=generator, dtype=torch.float64).argsort(0).argsort(0)
    return (rank < dealt.unsqueeze(0)).to(torch.float64)


def member_masks(sizes: Sequence[int], seed: int, cv: float, density: float, categories: int = 1,
                 generator: torch.Generator | None = None) -> list[torch.Tensor | None]:
    """One member's masks, one per weight matrix of a network ``sizes`` (widths in logits): None for the first
    (inputs) and the last (into the output), a [n', n] mask for every matrix between two hidden layers, drawn from
    ``generator`` (default one seeded ``seed``). ``categories``: values per hidden unit (K logits per unit)."""
    gen = generator or torch.Generator().manual_seed(int(seed))
    masks: list[torch.Tensor | None] = [None] * (len(sizes) - 1)
    for l in range(1, len(sizes) - 2):
        units, next_units = sizes[l] // categories, sizes[l + 1] // categories
        mask = fan_out_mask(fan_out_counts(units, next_units, cv, density), next_units, gen)
        masks[l] = mask.repeat_interleave(categories, 0).repeat_interleave(categories, 1)
    return masks


def fan_outs(mask: torch.Tensor, categories: int = 1) -> torch.Tensor:
    """Every unit's fan-out from a mask [..., n', n] (in units when ``categories`` K > 1): [..., n / K]."""
    return mask[..., ::categories, ::categories].sum(-2)


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks along the last axis (0-based), ties given their average rank: [..., n]."""
    below = (x.unsqueeze(-1) > x.unsqueeze(-2)).sum(-1)
    ties = (x.unsqueeze(-1) == x.unsqueeze(-2)).sum(-1)
    return below.to(torch.float64) + (ties.to(torch.float64) - 1) / 2


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's rho between x and y along the last axis (tie-averaged ranks), per leading index: [...].
    NaN where either has no spread (every fan-out equal: cv 0) or a value is not finite."""
    rx, ry = _average_ranks(x.double()), _average_ranks(y.double())
    rx, ry = rx - rx.mean(-1, keepdim=True), ry - ry.mean(-1, keepdim=True)
    denominator = (rx.pow(2).sum(-1) * ry.pow(2).sum(-1)).sqrt()
    rho = (rx * ry).sum(-1) / denominator
    finite = torch.isfinite(x).all(-1) & torch.isfinite(y).all(-1) & (denominator > 0)
    return torch.where(finite, rho, torch.full_like(rho, math.nan))


def unit_statistics(g: torch.Tensor, reference: torch.Tensor | None, paired: bool, incoming_change: torch.Tensor,
                    categories: int = 1) -> dict[str, torch.Tensor]:
    """Per-unit probe statistics of a hidden layer ([P, units] each) from the rule's per-sample logit estimates
    g [P, K, n]: ``var`` the per-sample variance of the unit's estimate; ``bias`` the debiased squared bias
    (mean d)^2 - var(d) / K of d = g - reference, against the exact gradient ([P, n], ``paired`` False) or
    another rule's estimates on the same episodes ([P, K, n], ``paired`` True), summed over a categorical unit's
    K logits (absent without a reference); ``speed`` the squared distance its incoming parameters moved since
    initialisation (``incoming_change`` [P, n])."""
    K = g.shape[1]
    blocks = lambda t: t.reshape(*t.shape[:-1], t.shape[-1] // categories, categories).sum(-1)   # noqa: E731
    out = {"var": blocks(g.var(1)), "speed": blocks(incoming_change)}
    if reference is not None:
        d = g - (reference if paired else reference.unsqueeze(1))
        out["bias"] = blocks(d.mean(1).pow(2) - d.var(1) / K)
    return out
