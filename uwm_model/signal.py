"""The squared norm of the true gradient where the exact oracle is out of reach (a reference gradient).

The scale-free noise V / (B ||∇J||²) needs ||∇J||². The rule's own debiased ||mean||² - V/K is, at the
probe's K on wide nets, <= 0 in most draws (the ratio undefined), and where it is positive the draws kept
are those whose noise inflated it, so the ratio comes out far too low (issue 23, finding 8). Here ||∇J||²
comes from a separate *reference*: per-sample estimates of an unbiased rule on fresh episodes, summed in
G groups. The group means m_1 .. m_G are independent and unbiased for ∇J, so

    S = sum_{i != j} m_i . m_j / (G (G - 1))

is unbiased for ||∇J||² at any K, and the jackknife over groups gives its standard error. K is grown by
doubling from ``start`` until S > z · se(S) in every layer (the signal resolved: relative error at most
1/z) or K would pass ``max_samples``; a layer still unresolved there is refused (NaN), and the analysis
reports the fraction of states refused beside every exponent. Memory: G sums of each layer's estimate
per member (G · n_out · (n_in + 1) float64 values each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

GROUPS = 16          # independent group means per layer: the jackknife's units
RESOLVED_Z = 3.0     # S must exceed this many of its standard errors


@dataclass
class ReferenceSignal:
    """Per layer, [P] each: ``signal`` S (NaN where refused), its standard error ``se``, and ``samples``,
    the reference episodes each member drew (the same for all its layers)."""

    signal: list[torch.Tensor]
    se: list[torch.Tensor]
    samples: torch.Tensor


def group_signal(sums: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S and its jackknife standard error from group sums [P, G, ...] of ``count`` [P] samples per group."""
    P, G = sums.shape[:2]
    m = sums.reshape(P, G, -1) / count.view(P, 1, 1).to(sums.dtype)
    gram = m @ m.transpose(1, 2)                                    # [P, G, G]: m_i . m_j
    diag = gram.diagonal(dim1=1, dim2=2)
    total = gram.sum((1, 2)) - diag.sum(1)                          # sum over i != j
    signal = total / (G * (G - 1))
    r = gram.sum(2) - diag                                          # r_i = sum_{j != i} m_i . m_j
    loo = (total.unsqueeze(1) - 2 * r) / ((G - 1) * (G - 2))        # S without group i
    se = ((G - 1) / G * (loo - loo.mean(1, keepdim=True)).pow(2).sum(1)).sqrt()
    return signal, se


def reference_signal(draw: Callable[[torch.Tensor, int, int], list[torch.Tensor]], members: int, start: int,
                     max_samples: int, z: float = RESOLVED_Z, groups: int = GROUPS) -> ReferenceSignal:
    """Grow the reference until every layer's S is resolved (S > z · se) or ``max_samples`` is reached.

    ``draw(index, round, per_group)`` returns, for the members ``index`` (a [p] index tensor), one tensor per
    layer [p, groups, ...] of group sums of ``per_group`` fresh per-sample estimates each (round r draws new
    episodes: round 0 ``start`` in all, then as many again each round). A member stops drawing once all its
    layers are resolved; the estimate is the one at its last round (all its samples)."""
    if start < 2 * groups or max_samples < start:
        raise ValueError(f"reference K: start {start} must be >= {2 * groups} and <= max_samples {max_samples}")
    sums: list[torch.Tensor] | None = None
    count = torch.zeros(members, dtype=torch.int64)
    active = torch.ones(members, dtype=torch.bool)
    signal = se = None
    rnd, total = 0, start
    while True:
        index = active.nonzero().squeeze(1)
        per_group = (total - int(count[index[0]]) * groups) // groups
        parts = draw(index, rnd, per_group)
        if sums is None:
            sums = [torch.zeros((members, *p.shape[1:]), dtype=p.dtype, device=p.device) for p in parts]
            signal = [torch.full((members,), torch.nan, dtype=p.dtype) for p in parts]
            se = [torch.full((members,), torch.nan, dtype=p.dtype) for p in parts]
        count[index] += per_group
        done = torch.ones(len(index), dtype=torch.bool)
        for l, part in enumerate(parts):
            sums[l][index.to(part.device)] += part
            s, e = group_signal(sums[l][index.to(part.device)], count[index].to(part.device))
            signal[l][index], se[l][index] = s.cpu(), e.cpu()
            done &= (s > z * e).cpu()
        active[index[done]] = False
        rnd, total = rnd + 1, total * 2
        if not bool(active.any()) or total > max_samples:
            break
    for l in range(len(signal)):
        signal[l] = torch.where(signal[l] > z * se[l], signal[l], torch.nan)
    return ReferenceSignal(signal, se, count * groups)
