"""Tasks: the k-bit multiplexer.

``a`` address bits select one of ``2^a`` data bits; ``k = a + 2^a``. Input layout: address
bits first (most significant first), then data bits. The target is the selected data bit;
the network's single output unit acts ``a in {0, 1}`` and is rewarded +1 (or 1) when the
action equals the target, else -1 (or 0).
"""

from __future__ import annotations

import torch

MAX_ENUMERABLE_INPUT_BITS = 20


class Multiplexer:
    def __init__(self, address_bits: int = 2, inputs: str = "pm1", rewards: str = "pm1"):
        if not isinstance(address_bits, int) or not 1 <= address_bits <= 5:
            raise ValueError(f"address_bits must be an integer from 1 to 5; got {address_bits!r}")
        if inputs not in ("pm1", "01"):
            raise ValueError(f"inputs must be 'pm1' or '01'; got {inputs!r}")
        if rewards not in ("pm1", "10"):
            raise ValueError(f"rewards must be 'pm1' or '10'; got {rewards!r}")
        self.address_bits, self.inputs, self.rewards = address_bits, inputs, rewards
        self.input_size = address_bits + 2**address_bits
        self.output_size = 1
        self._powers = 2 ** torch.arange(address_bits - 1, -1, -1)

    def __repr__(self) -> str:
        return f"Multiplexer(address_bits={self.address_bits}, inputs={self.inputs!r}, rewards={self.rewards!r})"

    @property
    def num_inputs(self) -> int:
        return 2**self.input_size

    def encode(self, bits: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Bits in {0, 1} to the network's input values."""
        bits = bits.to(dtype)
        return 2 * bits - 1 if self.inputs == "pm1" else bits

    def bits(self, x: torch.Tensor) -> torch.Tensor:
        """Input values back to bits: with +-1 inputs a bit counts as 1 when it is +1."""
        return (x > 0).long()

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The selected data bit, in {0, 1}, for inputs x: [..., k] -> [...]."""
        bits = self.bits(x)
        address = (bits[..., : self.address_bits] * self._powers.to(x.device)).sum(-1)
        return bits[..., self.address_bits:].gather(-1, address.unsqueeze(-1)).squeeze(-1)

    def reward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Reward of action in {0, 1} ([..., 1] or [...]) for inputs x: [..., k] -> [...], in x's dtype."""
        if action.dim() == x.dim():
            action = action.squeeze(-1)
        correct = (action == self.target(x).to(action.dtype)).to(x.dtype)
        return 2 * correct - 1 if self.rewards == "pm1" else correct

    def all_inputs(self, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """Every input, [2^k, k], in counting order (first bit most significant)."""
        if self.input_size > MAX_ENUMERABLE_INPUT_BITS:
            raise ValueError(f"the {self.input_size}-bit multiplexer has 2^{self.input_size} inputs: "
                             f"too many to enumerate (at most 2^{MAX_ENUMERABLE_INPUT_BITS})")
        k = self.input_size
        codes = torch.arange(2**k, device=device)
        bits = (codes.unsqueeze(-1) >> torch.arange(k - 1, -1, -1, device=device)) & 1
        return self.encode(bits, dtype)

    def inputs_from_uniforms(self, u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Uniform inputs from uniforms u: [..., k] (each bit is 1 when u < 1/2)."""
        return self.encode(u < 0.5, dtype)

    def sample_inputs(self, batch: int, generator: torch.Generator | None = None, population: int | None = None,
                      dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """Uniformly random inputs: [B, k], or [P, B, k] with ``population=P``."""
        shape = (batch, self.input_size) if population is None else (population, batch, self.input_size)
        if device is None and generator is not None:
            device = generator.device
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
        return self.inputs_from_uniforms(u, dtype)


TASKS = {"multiplexer": Multiplexer}
