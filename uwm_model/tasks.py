"""Tasks: the k-bit multiplexer, and the registry of task families (:func:`make_task`).

A task declares what the trainer and the oracle read: ``input_size``, ``input_draws`` (uniforms an
episode's input takes), ``output_units`` and ``output_size`` (the output layer's unit type and width),
``num_inputs``; ``sample(u, dtype) -> (x, target)`` (an episode's input and its target from uniforms),
``score(target, action) -> reward``, ``enumerate(dtype, device) -> (x, target)`` (every training input,
for the exact oracle), ``eval_set(dtype, device)``: a fixed evaluation set ``(x, target)`` (the eval reward,
which a study tunes on), or None when evaluation draws fresh inputs, and ``test_set(dtype, device)``: a held-out
set read only for reporting (``test_reward``), or None.

``a`` address bits select one of ``2^a`` data bits; ``k = a + 2^a``. Input layout: address
bits first (most significant first), then data bits. The target is the selected data bit;
the network's single output unit acts ``a in {0, 1}`` and is rewarded +1 (or 1) when the
action equals the target, else -1 (or 0).
"""

from __future__ import annotations

import torch

from .units import BERNOULLI

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
        self.output_units = BERNOULLI
        self.input_draws = self.input_size
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
        return self.score(self.target(x), action).to(x.dtype)

    def score(self, target: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Reward of actions [...] (or [..., 1]) against targets [...] in {0, 1}, in the action's dtype."""
        if action.dim() == target.dim() + 1:
            action = action.squeeze(-1)
        correct = (action == target.to(action.dtype)).to(action.dtype)
        return 2 * correct - 1 if self.rewards == "pm1" else correct

    def sample(self, u: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """An episode's input and target from its uniforms u: [..., k]."""
        x = self.inputs_from_uniforms(u, dtype)
        return x, self.target(x)

    def enumerate(self, dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.all_inputs(dtype, device)
        return x, self.target(x)

    def eval_set(self, dtype=None, device=None):
        return None

    def test_set(self, dtype=None, device=None):
        return None

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


def _multiplexer(cfg, device=None, dtype=None) -> Multiplexer:
    return Multiplexer(cfg.address_bits, inputs=cfg.inputs, rewards=cfg.rewards)


def _dataset(cfg, device=None, dtype=None):
    from .datasets import DatasetTask
    return DatasetTask.from_config(cfg, device=device, dtype=dtype)


TASKS = {"multiplexer": _multiplexer, "dataset": _dataset}


def make_task(cfg, device=None, dtype: torch.dtype | None = None):
    """The task of a :class:`uwm_model.config.TaskConfig`, its data (if any) on ``device`` in ``dtype``."""
    return TASKS[cfg.name](cfg, device=device, dtype=dtype)
