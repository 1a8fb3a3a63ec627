"""Counter-based streams: the published generator, uniform, independent across draws, counters,
members and purposes, and no stream replaying another's numbers or its own."""

import math

import numpy as np
import pytest
import torch

from uwm_model import streams

# Known-answer vectors of Philox4x32 from Random123's tests/kat_vectors
# (https://github.com/DEShawResearch/random123, release v1.14.0): counter words, key words, output words.
PHILOX_KAT = {
    7: [((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
         (0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48)),
        ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
         (0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A))],
    10: [((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
          (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
         ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
          (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
         ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
          (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))],
}


@pytest.mark.parametrize("rounds", [7, 10])
def test_philox_matches_the_published_known_answers(rounds):
    counters, keys, expected = zip(*PHILOX_KAT[rounds])
    as_words = lambda rows: [torch.tensor(col, dtype=torch.int64) for col in zip(*rows)]  # noqa: E731
    out = streams.philox4x32(as_words(counters), as_words(keys), rounds)
    assert [tuple(int(w[i]) for w in out) for i in range(len(expected))] == list(expected)
    assert streams.ROUNDS == 10


@pytest.mark.slow
def test_the_members_first_blocks_never_repeat_across_a_real_studys_seeds_and_steps():
    """The first block of every (seed, step), seeds 0..199 x steps 0..799 999 (1.6e8 values), cut to its
    top 40 bits: distinct streams and counters collide only by chance. All 1.6e8 are generated; those
    whose top 4 bits are 0 (1/16 of them, and both members of any equal pair) are sorted and their
    repeats counted: expected n^2 / 2 / 2^40 / 16 = 727.6 (Poisson, sd 27), tested within 6 sd either
    side. The old design (32-bit key XOR counter) repeats over 300 000 of them."""
    keys = streams.member_keys(torch.arange(200), streams.TRAIN)
    n = 200 * 800_000
    expected = n * (n - 1) / 2 / 2**40 / 16
    repeats = repeated_values(first_block_40_bits, keys, steps=800_000, top_zero_bits=4)
    assert abs(repeats - expected) < 6 * math.sqrt(expected), (repeats, expected)


def first_block_40_bits(keys: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """[steps, members] int64: the top 40 of the 64 bits of words 0 and 1 of block 0 of each stream."""
    w = streams.words(keys, steps, 1)
    return ((w[0] << 8) | (w[1] >> 24))[..., 0]


def repeated_values(values_of, keys: torch.Tensor, steps: int, top_zero_bits: int, bits: int = 40,
                    chunk: int = 100_000) -> int:
    """Repeats among the ``bits``-bit values ``values_of(keys, steps 0..steps-1)`` whose top ``top_zero_bits``
    bits are 0 (equal values fall in the same slice, so every repeat within it is found). Computed
    compiled in chunks of steps; the slice is sorted and adjacent equal values counted."""
    fn = torch.compile(values_of, dynamic=False, fullgraph=True)
    kept = []
    for start in range(0, steps, chunk):
        v = fn(keys, torch.arange(start, min(start + chunk, steps))).numpy().ravel()
        kept.append(v[v < 2 ** (bits - top_zero_bits)] if top_zero_bits else v)   # the values are non-negative
    values = np.concatenate(kept)
    values.sort()
    return int(np.count_nonzero(values[1:] == values[:-1]))


def test_a_stream_never_reuses_its_own_draws_at_another_step():
    """Within one stream every (step, block) is a distinct counter of a bijection, so no pair of
    consecutive 32-bit words (64 bits) comes back at another step: 2^17 steps x 64 pairs, expected
    chance repeats 5e-6. The old design (state = hash(key ^ step), draw = hash(state ^ index))
    replays a step's draws, permuted, at every step whose state differs only in its low bits."""
    keys = streams.member_keys(torch.tensor([12345]), streams.TRAIN)
    assert repeated_values(word_pairs, keys, steps=2**17, top_zero_bits=0, bits=64, chunk=2**15) == 0


def word_pairs(keys: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """[steps, members, 64]: the 64-bit pairs (words 0, 1) and (2, 3) of blocks 0..31 of each stream."""
    w = streams.words(keys, steps, 32)
    return torch.cat([(w[0] << 32) | w[1], (w[2] << 32) | w[3]], -1)


def test_uniforms_are_odd_multiples_of_2_pow_minus_24_strictly_inside_the_unit_interval():
    """The extreme words map to 2^-24 and 1 - 2^-24, exactly, in float32 as in float64."""
    for dtype in (torch.float32, torch.float64):
        u = streams.to_uniform(torch.tensor([0, 2**9 - 1, 2**9, 2**32 - 1], dtype=torch.int64), dtype)
        assert u.tolist() == [2.0**-24, 2.0**-24, 3 * 2.0**-24, 1 - 2.0**-24]
        assert 0 < u.min() and u.max() < 1
    keys = streams.member_keys(torch.arange(4), streams.TRAIN)
    assert torch.equal(streams.uniforms(keys, torch.arange(9), 37, torch.float32).double(),
                       streams.uniforms(keys, torch.arange(9), 37, torch.float64))


def test_keys_keep_seed_and_purpose_apart_and_refuse_seeds_beyond_32_bits():
    keys = streams.member_keys(torch.tensor([0, 7, 2**32 - 1]), streams.EVAL)
    assert keys.tolist() == [[0, streams.EVAL], [7, streams.EVAL], [2**32 - 1, streams.EVAL]]
    with pytest.raises(ValueError, match="2\\^32"):
        streams.member_keys(torch.tensor([2**32]), streams.TRAIN)


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


def test_a_counter_is_the_four_words_step_low_step_high_block_zero():
    """words() feeds Philox the counter (step mod 2^32, step div 2^32, block j, 0) under the key (seed, purpose):
    steps past 2^32 use the high word (a study of 2^32 steps never wraps onto its first draws)."""
    keys = streams.member_keys(torch.tensor([5, 9]), streams.PROBE)
    for step in (3, 2**32 + 3, 2**33 + 2**31):
        got = streams.words(keys, step, 3)
        j = torch.arange(3)
        for m, seed in enumerate((5, 9)):
            want = streams.philox4x32((torch.full_like(j, step % 2**32), torch.full_like(j, step >> 32), j,
                                       torch.zeros_like(j)), (torch.tensor(seed), torch.tensor(streams.PROBE)))
            assert [w[m].tolist() for w in got] == [w.tolist() for w in want], (step, seed)
    assert not torch.equal(streams.words(keys, 3, 1)[0], streams.words(keys, 2**32 + 3, 1)[0])


def test_draws_are_word_major_and_exactly_n_of_them():
    """Draw i * B + j is word i of block j (B = ceil(n / 4)), for an n that is not a multiple of 4."""
    keys = streams.member_keys(torch.tensor([1, 2]), streams.TRAIN)
    n, B = 10, 3
    u = streams.uniforms(keys, 7, n, torch.float64)
    w = streams.words(keys, 7, B)
    assert u.shape == (2, n)
    for k in range(n):
        assert torch.equal(u[:, k], streams.to_uniform(w[k // B][:, k % B], torch.float64)), k
