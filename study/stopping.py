"""Member-level early stopping: points stop, the packs they train in carry on.

Ray Tune's schedulers stop whole trials, and a trial here is a pack of points. So the rungs
live in one small Ray actor per study (:class:`RungBoard`, named ``uwm-rungs-<study>``): when
a point's report first reaches a rung (``grace_period * reduction_factor^k`` episodes), its
trainable asks the board, which records the point's metric at that rung and answers whether it
continues. A point told to stop is stopped inside its trainer (``Trainer.stop_points``) and
ends as ``stopped`` in its own MLflow run; the other members of its pack train on.

Rungs are per *cell*: points compete only with points of the same grid cell (the same rule,
width, ...), because the study compares cells and a slow rule must not be stopped for being
slower than another rule.

- ``asha`` (asynchronous successive halving): continue when the value is in the top
  ``1 / reduction_factor`` of the values recorded at the rung so far.
- ``median``: continue when the value is at least the median of the values recorded so far.

Neither stops anyone while the rung holds fewer than ``max(min_points, reduction_factor)``
(asha) or ``min_points`` (median) values. A point that reports a rung twice (a retried or
resumed trial) gets the answer of its first report. The board's state is saved with the
searcher's, so a resumed study keeps its rungs.
"""

from __future__ import annotations

import math


def rung_episodes(grace_period: int, reduction_factor: float, episodes: int) -> list[int]:
    """Rungs below ``episodes``: grace_period, grace_period * eta, grace_period * eta^2, ..."""
    rungs, r = [], float(grace_period)
    while round(r) < episodes:
        if not rungs or round(r) > rungs[-1]:
            rungs.append(round(r))
        r *= reduction_factor
    return rungs


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method)."""
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


class RungBoard:
    """Rung values per (cell, rung) and the stop/continue decisions (run as a Ray actor)."""

    def __init__(self, kind: str, reduction_factor: float, min_points: int, mode: str, state: dict | None = None):
        self.kind, self.eta, self.min_points = kind, reduction_factor, min_points
        self.sign = 1.0 if mode == "max" else -1.0
        self.rungs: dict[str, dict[str, float]] = {}   # "cell@rung" -> point_id -> value
        self.decisions: dict[str, bool] = {}          # "point_id@rung" -> continue?
        if state:
            self.load(state)

    def decide(self, cell: str, rung: int, point_id: str, value: float) -> bool:
        """Record ``value`` of ``point_id`` at ``rung`` of ``cell``; True to continue, False to stop."""
        seen = self.decisions.get(f"{point_id}@{rung}")
        if seen is not None:
            return seen
        value = self.sign * value if math.isfinite(value) else -math.inf
        recorded = self.rungs.setdefault(f"{cell}@{rung}", {})
        recorded[point_id] = value
        values = list(recorded.values())
        if self.kind == "asha":
            enough = len(values) >= max(self.min_points, self.eta)
            keep = not enough or value >= _quantile(values, 1 - 1 / self.eta)
        else:
            enough = len(values) >= self.min_points
            keep = not enough or value >= _quantile(values, 0.5)
        self.decisions[f"{point_id}@{rung}"] = keep
        return keep

    def state(self) -> dict:
        return {"rungs": self.rungs, "decisions": self.decisions}

    def load(self, state: dict) -> None:
        self.rungs = {k: dict(v) for k, v in state.get("rungs", {}).items()}
        self.decisions = dict(state.get("decisions", {}))


def board_name(study: str) -> str:
    return f"uwm-rungs-{study}"
