"""Where a pack's time goes: the trial function's wall time split into phases (issue 28's profile).

A pack's timeline, written as JSON to the tag ``uwm.timeline`` of each of its point runs when the pack ends:

``started``     the trial function's start, Unix seconds (the study's own clock: where the pack sat in the study);
``setup``       torch settings, the trainer built or restored from its checkpoint, the rung board found;
``compile``     compiling the trainer's step (``Trainer.compile_seconds``; 0 when it runs eager);
``train``       the training steps themselves (``Trainer.wall_seconds``);
``report``      the rest of the time inside the trainer: evaluation, probes, the report's metrics;
``mlflow``      creating the point runs, logging series, ending points;
``checkpoint``  saving the trainer and ``tune.report`` (Ray's own bookkeeping of the result);
``other``       everything else inside the trial function (rung decisions, the loop itself);
``total``       the trial function's wall time, start to end.

The process start, Ray's scheduling and imports before the trial function runs are not in it: the study-level
view (``benchmarks/study_overhead.py``) reads them from the gaps between ``started`` and the study's clock.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Iterator

PHASES = ("setup", "compile", "train", "report", "mlflow", "checkpoint", "other")


class PackTimeline:
    """Accumulates the phases of one run of the trial function (a resumed pack starts a new timeline)."""

    def __init__(self):
        self.started = time.time()
        self._tic = time.perf_counter()
        self.measured = {"setup": 0.0, "trainer": 0.0, "mlflow": 0.0, "checkpoint": 0.0}
        self.wall_before = 0.0    # the trainer's step clock when this attempt got it (see trainer_ready)

    @contextmanager
    def phase(self, name: str):
        tic = time.perf_counter()
        try:
            yield
        finally:
            self.measured[name] += time.perf_counter() - tic

    def timed(self, reports: Iterator) -> Iterator:
        """The trainer's reports, the time spent producing each counted as the trainer's."""
        while True:
            with self.phase("trainer"):
                report = next(reports, None)
            if report is None:
                return
            yield report

    def trainer_ready(self, trainer) -> None:
        """Call once the trainer is built: a restored trainer's clock already holds earlier attempts' time."""
        self.wall_before = float(trainer.wall_seconds)

    def seconds(self, trainer) -> dict[str, float]:
        """The phases in seconds, from what was measured here and the trainer's own clocks."""
        total = time.perf_counter() - self._tic
        compile_s = float(trainer.compile_seconds)
        train_s = float(trainer.wall_seconds) - self.wall_before
        out = {"setup": self.measured["setup"], "compile": compile_s, "train": train_s,
               "report": max(self.measured["trainer"] - compile_s - train_s, 0.0),
               "mlflow": self.measured["mlflow"], "checkpoint": self.measured["checkpoint"]}
        out["other"] = max(total - sum(out.values()), 0.0)
        return {"started": self.started, **{k: round(v, 4) for k, v in out.items()}, "total": round(total, 4)}

    def as_tag(self, trainer) -> str:
        return json.dumps(self.seconds(trainer))
