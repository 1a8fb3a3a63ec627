"""Process-wide torch settings for training, set once by each entry point.

Torch keeps its thread count, denormal handling and compile cache size per process, so a library
object must not change them behind its caller's back (one exception: a trainer about to compile raises the
compile cache's size, never lowers it: :func:`compile_cache`). The entry points that own a process (the
``uwm-study`` CLI, the Ray trainable, the training workers of :mod:`uwm_model.parallel`, the
benchmarks, the test session) call :func:`torch_settings` before they build a
:class:`~uwm_model.trainer.Trainer`; used as a context manager it restores the previous values on
exit:

    torch_settings(threads=cfg.threads, device=cfg.device)          # for the rest of the process
    with torch_settings(threads=1):                                  # for a block only
        ...
"""

from __future__ import annotations

import sys

import torch

from .network import resolve_device

COMPILED_TRAINERS = 64     # see torch_settings
_flush_denormal = False   # torch cannot report it; a process starts without it


class torch_settings:
    """Set the process-wide torch settings for training (and restore them on leaving a ``with`` block).

    - ``threads``: CPU threads of torch's operators. A trial's tensors are small, so one thread per
      trial and several trials at once use the cores best (``TrialConfig.threads``).
    - flush-to-zero of subnormal floats: Adam's moments of parameters whose estimate is often exactly
      zero (units that did not fire) decay into subnormal floats, which cost x86 cores ~100 cycles per
      operation; flushing them to zero halved the step time of the replication config.
    - ``compiled_trainers``: torch.compile's cache holds at least this many graphs per function: every
      Trainer compiles its own bound methods, and one process may build many (tests, reused workers).
      Set here only where torch's compiler is already loaded (loading it costs a worker 1-2 s, and an eager
      trial never needs it); a trainer that compiles raises it first (:func:`compile_cache`).

    Threads and flush-to-zero apply to CPU training only: on another ``device`` they are left alone.
    """

    def __init__(self, threads: int = 1, device: str | torch.device = "cpu", compiled_trainers: int = COMPILED_TRAINERS):
        global _flush_denormal
        dynamo = sys.modules.get("torch._dynamo")
        self._previous = (torch.get_num_threads(), _flush_denormal, dynamo and dynamo.config.cache_size_limit)
        if resolve_device(device).type == "cpu":
            torch.set_num_threads(threads)
            _flush_denormal = torch.set_flush_denormal(True)
        if dynamo is not None:
            compile_cache(compiled_trainers)

    def __enter__(self) -> "torch_settings":
        return self

    def __exit__(self, *exc) -> None:
        global _flush_denormal
        threads, flush, cache = self._previous
        torch.set_num_threads(threads)
        torch.set_flush_denormal(flush)
        _flush_denormal = flush
        if cache is not None:
            torch._dynamo.config.cache_size_limit = cache


def compile_cache(compiled_trainers: int = COMPILED_TRAINERS) -> None:
    """Let torch.compile's cache hold at least ``compiled_trainers`` graphs per function (loads the compiler)."""
    dynamo = torch._dynamo.config
    dynamo.cache_size_limit = max(dynamo.cache_size_limit, compiled_trainers)
