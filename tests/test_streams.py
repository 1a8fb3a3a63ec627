"""Counter-based streams: uniform, independent across draws, counters, members and purposes."""

import math

import torch

from uwm_model import streams


def test_uniforms_are_uniform_and_in_the_open_interval():
    keys = streams.member_keys(torch.arange(8), streams.TRAIN)
    u = streams.uniforms(keys, torch.arange(64), 4096, torch.float64)    # [64, 8, 4096], 2M draws
    assert u.shape == (64, 8, 4096)
    assert 0 < u.min() and u.max() < 1
    n = u.numel()
    # mean and variance within 5 standard errors of 1/2 and 1/12
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    # chi-square over 64 bins: 63 degrees of freedom, mean 63, sd ~11; 63 + 5 sd = 120
    counts = torch.bincount((u * 64).long().flatten(), minlength=64).double()
    chi2 = ((counts - n / 64) ** 2 / (n / 64)).sum().item()
    assert chi2 < 120, chi2


def test_neighbouring_draws_counters_members_and_purposes_are_uncorrelated():
    seeds = torch.arange(16)
    a = streams.uniforms(streams.member_keys(seeds, streams.TRAIN), torch.arange(256), 512, torch.float64)
    b = streams.uniforms(streams.member_keys(seeds, streams.EVAL), torch.arange(256), 512, torch.float64)

    def corr(x, y):
        x, y = x.flatten() - x.mean(), y.flatten() - y.mean()
        return (x @ y / (x.norm() * y.norm())).item()

    limit = 5 / math.sqrt(a[:, :, 1:].numel())   # 5 standard errors of a correlation of independent draws
    assert abs(corr(a[:, :, 1:], a[:, :, :-1])) < limit        # neighbouring draws
    assert abs(corr(a[1:], a[:-1])) < limit                    # neighbouring counters (steps)
    assert abs(corr(a[:, 1:], a[:, :-1])) < limit              # neighbouring member seeds
    assert abs(corr(a, b)) < limit                             # purposes


def test_a_members_draws_depend_only_on_its_own_seed():
    alone = streams.uniforms(streams.member_keys(torch.tensor([42]), streams.TRAIN), torch.arange(5), 100, torch.float32)
    packed = streams.uniforms(streams.member_keys(torch.tensor([3, 42, 7]), streams.TRAIN), torch.arange(5), 100, torch.float32)
    assert torch.equal(alone[:, 0], packed[:, 1])
    single = streams.uniforms(streams.member_keys(torch.tensor([42]), streams.TRAIN), 3, 100, torch.float64)
    assert torch.equal(single.float(), alone[3])   # 24-bit uniforms are exact in both precisions
