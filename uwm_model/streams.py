"""Counter-based random streams, one per member and purpose, with no Python loop over members.

A draw is a pure function of (member seed, purpose, counter, index):

    key   = mix(mix(seed) ^ mix(purpose + C))                 once per member and purpose
    u     = mix(mix(key ^ counter) ^ index) -> top 24 bits -> (bits + 1/2) / 2^24

``mix`` is a 32-bit integer hash (two xor-shift-multiply rounds, the constant 0x45d9f3b, and a
final xor-shift), computed in int64 with every product below 2^63, so it is exact on CPU and
CUDA and under torch.compile. Because a member's draws depend only on its own seed, member k
of a packed population draws exactly the numbers of the same point trained alone, whatever
else shares its population: packing is invisible to the science. 24 bits make the uniforms
exact in float32 and float64 alike (resolution 6e-8, far below any probability that matters
here). Statistical checks are in tests/test_streams.py.
"""

from __future__ import annotations

import torch

MASK = 0xFFFFFFFF
_MULT = 0x45D9F3B
_PURPOSE_SALT = 0x2545F491

TRAIN, EVAL, PROBE = 1, 2, 3


def mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash of int64 values in [0, 2^32)."""
    x = ((x >> 16) ^ x) * _MULT & MASK
    x = ((x >> 16) ^ x) * _MULT & MASK
    return (x >> 16) ^ x


def member_keys(seeds: torch.Tensor, purpose: int) -> torch.Tensor:
    """[P] int64 keys of the members' streams for one purpose (TRAIN, EVAL or PROBE)."""
    seeds = seeds.to(torch.int64) & MASK
    return mix(mix(seeds) ^ mix(torch.full_like(seeds, (purpose + _PURPOSE_SALT) & MASK)))


def uniforms(keys: torch.Tensor, counter, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Uniforms in (0, 1): draws ``0..n-1`` of counter ``counter`` of each stream.

    keys: [P]; counter: an int, or an int64 tensor of shape [T] for T consecutive counters at once.
    Returns [P, n], or [T, P, n].
    """
    counter = torch.as_tensor(counter, dtype=torch.int64, device=keys.device)
    state = mix(keys ^ (counter.unsqueeze(-1) & MASK) if counter.dim() else keys ^ (counter & MASK))
    index = torch.arange(n, dtype=torch.int64, device=keys.device)
    bits = mix(state.unsqueeze(-1) ^ index) >> 8
    return (bits.to(dtype) + 0.5) * (2.0**-24)
