import math

import pytest
import torch

import uwm_model as um
from uwm_model.settings import torch_settings


@pytest.fixture(scope="session", autouse=True)
def training_torch_settings():
    """The process-wide torch settings an entry point sets before training (restored after the session)."""
    with torch_settings():
        yield


def spec_table_networks():
    """The networks of the spec's figures table: sizes [3, 3, 2, 1] from one generator seeded 0,
    per layer W = (2 rand - 1) sqrt(6 / (n_in + n_out)), then b = (2 rand - 1) 0.5; the norm-4
    network is the next one drawn from the same stream with every column of W2, W3 at norm 4."""
    gen = torch.Generator().manual_seed(0)
    sizes = [3, 3, 2, 1]

    def draw():
        weights, biases = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            weights.append(((2 * torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) - 1)
                            * math.sqrt(6 / (n_in + n_out))).unsqueeze(0))
            biases.append(((2 * torch.rand(n_out, generator=gen, dtype=torch.float64) - 1) * 0.5).unsqueeze(0))
        return um.Network(weights, biases)

    small = draw()
    norm4 = draw()
    for w in norm4.weights[1:]:
        w *= 4 / w.norm(dim=1, keepdim=True)
    return small, norm4


@pytest.fixture(scope="session")
def table_networks():
    return spec_table_networks()


@pytest.fixture(scope="session")
def mux3():
    return um.Multiplexer(address_bits=1, inputs="pm1", rewards="pm1")
