"""Device memory of a population: bytes per member, and how many members fit a device.

The estimate is an upper bound of the peak a trainer reaches (compiled or eager), per member:

    itemsize x (15 N + 3 B N + 6 B D)  bytes,  plus FIXED_BYTES per population

N parameters per member, B the batch, D the uniforms of one episode (inputs, units, and uwm's U).
15 N: parameters and Adam's m and v (3 N of state), the same at the start of the report window (3 N:
a member that diverges is set back to it), and the step's temporaries (gradient, new parameters and
moments, and what the compiler keeps between unrolled steps: 9 N).
3 B N: per-sample weight estimates (the outer products some rules form before the batch mean).
6 B D: the step's uniforms, the episode's logits, probabilities and samples. Evaluation and
probes run in member slices within the draw budget (``trainer.DRAW_BUDGET_BYTES``), counted in
FIXED_BYTES with the CUDA context and workspaces. ``tests/test_gpu.py`` checks the bound against
the measured peak of a P = 65 536 pack.
"""

from __future__ import annotations

from .config import TrialConfig
from .network import resolve_dtype
from .rules import RULES

FIXED_BYTES = 2 * 2**30
MAX_MEMBERS = 65_536   # a pack of 65 536 members x batch 8 fills an H100's cores; more only queues


def member_bytes(cfg: TrialConfig) -> int:
    """Upper estimate of the device memory one member of ``cfg``'s population needs (see module doc)."""
    inputs = cfg.task.input_size
    sizes = cfg.sizes()
    params = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    widths = sizes[1:]
    draws = inputs + sum(widths) + (sum(widths[:-1]) if RULES[cfg.rule].needs_uniforms else 0)
    itemsize = resolve_dtype(cfg.dtype).itemsize
    B = cfg.batch_size
    return itemsize * (15 * params + 3 * B * params + 6 * B * draws)


def members_that_fit(cfg: TrialConfig, device_bytes: float, fraction: float = 0.8) -> int:
    """Members of ``cfg`` that fit ``fraction`` of ``device_bytes`` (at least 1, at most MAX_MEMBERS)."""
    usable = fraction * device_bytes - FIXED_BYTES
    return max(1, min(MAX_MEMBERS, int(usable // member_bytes(cfg))))
