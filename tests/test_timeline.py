"""A pack's timeline (study/timeline.py): phases that add up, and the trainer's own clocks read correctly."""

import json
import time

import pytest

from study.timeline import PHASES, PackTimeline


class Clocked:
    """A trainer's clocks as the timeline reads them: compile and training-step seconds."""

    def __init__(self, wall=0.0):
        self.compile_seconds, self.wall_seconds = 0.0, wall

    def run(self, reports=3):
        self.compile_seconds = 0.02
        time.sleep(0.02)
        for k in range(reports):
            time.sleep(0.03)         # the steps, on the trainer's clock
            self.wall_seconds += 0.03
            time.sleep(0.01)         # evaluation and probes: inside the trainer, off its step clock
            yield k


def test_the_phases_add_up_and_split_the_trainers_time():
    timeline = PackTimeline()
    with timeline.phase("setup"):
        trainer = Clocked(wall=5.0)   # restored from a checkpoint: 5 s of training in earlier attempts
        timeline.trainer_ready(trainer)
        time.sleep(0.02)
    seen = []
    for report in timeline.timed(trainer.run()):
        seen.append(report)
        with timeline.phase("mlflow"):
            time.sleep(0.01)
        with timeline.phase("checkpoint"):
            time.sleep(0.005)
        time.sleep(0.004)             # the loop's own work: other
    t = json.loads(timeline.as_tag(trainer))
    assert seen == [0, 1, 2] and set(t) == {"started", "total", *PHASES}
    assert sum(t[k] for k in PHASES) == pytest.approx(t["total"], abs=1e-3)
    assert t["train"] == pytest.approx(0.09, abs=1e-9)       # this attempt's steps only, not the restored 5 s
    assert t["compile"] == 0.02 and 0.029 <= t["report"] < 0.06    # 3 x 10 ms of evaluation (sleeps overshoot)
    assert t["setup"] >= 0.02 and t["mlflow"] >= 0.03 and t["checkpoint"] >= 0.015 and t["other"] >= 0.01
    assert abs(t["started"] - time.time()) < 60


def test_a_phase_counts_its_time_even_when_it_raises():
    timeline = PackTimeline()
    with pytest.raises(RuntimeError), timeline.phase("mlflow"):
        time.sleep(0.01)
        raise RuntimeError("server gone")
    assert timeline.measured["mlflow"] >= 0.01
