"""Small float64 networks for the exact tests: the spec's initialisation drawn from one seeded generator."""

from __future__ import annotations

import math

import torch

import uwm_model as um


def glorot_pair(sizes, outgoing_norm: float, seed: int = 0):
    """Two networks of these sizes drawn one after the other from a generator seeded ``seed``: per layer
    W = (2 rand - 1) sqrt(6 / (n_in + n_out)), then b = (2 rand - 1) 0.5. The second has every column of its
    layers after the first rescaled to ``outgoing_norm`` (the large-weight case)."""
    gen = torch.Generator().manual_seed(seed)

    def draw():
        weights, biases = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            weights.append(((2 * torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) - 1)
                            * math.sqrt(6 / (n_in + n_out))).unsqueeze(0))
            biases.append(((2 * torch.rand(n_out, generator=gen, dtype=torch.float64) - 1) * 0.5).unsqueeze(0))
        return um.Network(weights, biases)

    small, large = draw(), draw()
    for w in large.weights[1:]:
        w *= outgoing_norm / w.norm(dim=1, keepdim=True)
    return small, large
