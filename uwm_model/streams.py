"""Counter-based random streams, one per member and purpose: Philox4x32-10 in torch integer ops.

A draw is a pure function of (member seed, purpose, counter, index), computed by the published
counter-based generator Philox4x32 with 10 rounds (Salmon, Moraes, Dror & Shaw, "Parallel random
numbers: as easy as 1, 2, 3", SC 2011; the generator of Random123, cuRAND and JAX):

    key     = (seed, purpose)                                    two 32-bit words, per member
    block j = philox4x32_10(key, counter words (step mod 2^32, step div 2^32, j, 0))
    u[i*B + j] = (2 * (block_j[i] >> 9) + 1) / 2^24              word i = 0..3 of block j = 0..B-1

Key and counter stay separate words: two members never share a key, so their streams are
distinct bijections of the counter space (no member replays another's numbers at any step), and
within a stream every (step, j) is a distinct counter, so no step reuses another's draws (the old
32-bit hash merged key and counter by XOR and did both; tests/test_streams.py shows it).

Everything is int64 holding 32-bit words. Philox needs the full 64-bit product of two 32-bit
words, which overflows int64, so each product is split at the multiplier's 16-bit halves (two
products below 2^48). That keeps it exact on CPU and CUDA, eager and under torch.compile, with no
Python loop over members (only over the 10 rounds).

Uniforms are the odd multiples of 2^-24: strictly inside (0, 1), symmetric about 1/2, and exact in
float32 and float64 alike (24 significant bits; resolution 1.2e-7, far below any probability that
matters here), so a float32 run draws exactly the numbers of a float64 run. Because a member's
draws depend only on its own seed, member k of a packed population draws exactly the numbers of
the same point trained alone: packing is invisible to the science.
"""

from __future__ import annotations

import torch

MASK = 0xFFFFFFFF
ROUNDS = 10
# Philox4x32's multipliers and Weyl key increments (Salmon et al. 2011, table 2 / Random123).
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85

TRAIN, EVAL, PROBE, ENV_RESET, TEST = 1, 2, 3, 4, 5


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of a * m for words a (int64 in [0, 2^32)) and a 32-bit constant m.

    a * m = a * m_hi * 2^16 + a * m_lo, each partial product below 2^48."""
    low = a * (m & 0xFFFF)
    high = a * (m >> 16)
    return (high + (low >> 16)) >> 16, (((high & 0xFFFF) << 16) + low) & MASK


def philox4x32(counter: tuple, key: tuple, rounds: int = ROUNDS) -> tuple[torch.Tensor, ...]:
    """The Philox4x32 bijection of four counter words under two key words (int64 tensors holding
    32-bit words, broadcast together). Returns the four output words."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & MASK, (k1 + _W1) & MASK
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def member_keys(seeds: torch.Tensor, purpose: int) -> torch.Tensor:
    """[P, 2] int64 key words (seed, purpose) of the members' streams for one purpose (TRAIN, EVAL, PROBE, ENV_RESET, TEST)."""
    seeds = seeds.to(torch.int64)
    if seeds.numel() and (int(seeds.min()) < 0 or int(seeds.max()) > MASK):
        raise ValueError("stream seeds must lie in [0, 2^32)")
    return torch.stack([seeds, torch.full_like(seeds, purpose)], -1)


def words(keys: torch.Tensor, counter, blocks: int) -> tuple[torch.Tensor, ...]:
    """The four 32-bit output words (int64) of Philox blocks ``0..blocks-1`` of counter ``counter`` of each stream.

    keys: [P, 2]; counter: an int, or an int64 tensor of shape [T]. Returns four [P, blocks] or [T, P, blocks].
    """
    counter = torch.as_tensor(counter, dtype=torch.int64, device=keys.device)
    step = counter.reshape(*counter.shape, 1, 1)                               # [(T,) 1, 1]
    j = torch.arange(blocks, dtype=torch.int64, device=keys.device)            # [blocks]
    k0, k1 = keys[:, 0:1], keys[:, 1:2]                                        # [P, 1]
    return philox4x32((step & MASK, step >> 32, j, torch.zeros_like(j)), (k0, k1))


def block_uniforms(keys: torch.Tensor, counter: torch.Tensor, block: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The four uniforms of Philox block ``block`` of counter ``counter``, per element: [P, B, 4].

    keys: [P, 2]; counter: int64 [P, B] (each element its own counter, e.g. an environment's episode
    number); block: int64 [B] (e.g. the environment's index). The same words as :func:`words` gives
    for that counter and block, for when every element of a batch is at its own counter."""
    k0, k1 = keys[:, 0:1], keys[:, 1:2]                                        # [P, 1]
    block = block.to(torch.int64).expand_as(counter)
    out = philox4x32((counter & MASK, counter >> 32, block, torch.zeros_like(block)), (k0, k1))
    return torch.stack([to_uniform(w, dtype) for w in out], -1)


def to_uniform(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """32-bit words -> uniforms (2 * (w >> 9) + 1) / 2^24: exact, strictly inside (0, 1)."""
    return ((w >> 9) * 2 + 1).to(dtype) * 2.0**-24


def uniform_parts(keys: torch.Tensor, counter, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The uniforms of :func:`uniforms` as four [..., P, B] tensors (B = ceil(n / 4)), part i holding word i
    of blocks 0..B-1: four outputs of one loop when compiled (a concatenation inside the loop would make
    the compiler recompute the generator per output word)."""
    return tuple(to_uniform(w, dtype) for w in words(keys, counter, -(-n // 4)))


def uniforms(keys: torch.Tensor, counter, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Uniforms in (0, 1): draws ``0..n-1`` of counter ``counter`` of each stream.

    keys: [P, 2] from :func:`member_keys`; counter: an int, or an int64 tensor of shape [T] for T
    consecutive counters at once. Returns [P, n], or [T, P, n]. Draw ``i * B + j`` (B = ceil(n / 4)
    blocks) is word i of block j (word-major).
    """
    return join(uniform_parts(keys, counter, n, dtype), n)


def join(parts: tuple[torch.Tensor, ...], n: int) -> torch.Tensor:
    """The first n draws of the four parts of :func:`uniform_parts`, in draw order."""
    shape = torch.broadcast_shapes(*(p.shape for p in parts))
    return torch.cat([p.expand(shape) for p in parts], -1)[..., :n].contiguous()
