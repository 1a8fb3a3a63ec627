"""What a researcher sees in MLflow, checked on a real SQLite store in-process: the experiment opens as a
training experiment with the study's description, child runs are named by what tells them apart, and the
parent run carries the study's answer (best point per cell) without opening anything."""

import csv
import io

import pytest
from mlflow.tracking import MlflowClient

from study import tracking
from uwm_model import layout
from uwm_model.config import TrialConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"   # one store: its migrations take seconds


@pytest.fixture()
def tracker(store, request):
    return tracking.StudyTracker(store, request.node.name.replace("[", "-").replace("]", "")[:60])


def point(pid: str, cell: str, **fields) -> dict:
    config = TrialConfig.model_validate({"task": {"address_bits": 1}, "hidden": [8, 4], **fields}).model_dump(mode="json")
    return {"point_id": pid, "cell": cell, "stage": "search", "config": config, "axes": {"rule": config["rule"]}}


def test_the_experiment_is_a_described_training_experiment(tracker):
    tracker.open_parent("name: demo\n", "abc", description="what this study asks")
    exp = tracker.client.get_experiment(tracker.experiment_id())
    assert exp.tags[layout.EXPERIMENT_KIND] == layout.KIND_TRAINING
    assert exp.tags[layout.NOTE] == "what this study asks"


@pytest.mark.parametrize("fields, words", [
    ({"rule": "uwm", "rule_options": {"signal": "global"}, "lr": 0.0123, "seed": 0, "seeds": 4},
     ["c001-search-002", "uwm signal=global", "[8x4]", "lr 0.012", "s0-3"]),
    ({"rule": "hwm", "rule_options": {"order": 5}, "outgoing_norm": 4.0, "lr": [0.01, 0.002, 0.003], "seed": 10, "seeds": 1},
     ["hwm order=5", "norm 4", "lr 0.01/0.002/0.003", "s10"]),
    ({"rule": "reinforce", "baseline": "ema", "lr": 0.1, "seeds": 2}, ["reinforce baseline=ema", "lr 0.1", "s0-1"]),
])
def test_child_runs_are_named_by_what_tells_points_apart(tracker, fields, words):
    parent = tracker.open_parent("name: demo\n", "abc")
    p = point("c001-search-002", "rule=x", **fields)
    run = tracking.PointRun(tracker.client, tracker.experiment_id(), parent, tracker.study, "pack-0", p)
    name = tracker.client.get_run(run.ensure()).info.run_name
    assert name == layout.point_run_name("c001-search-002", p["config"])
    assert all(w in name for w in words), name
    # the run is still found by its point id (not by its name) on a retry
    again = tracking.PointRun(tracker.client, tracker.experiment_id(), parent, tracker.study, "pack-0", p)
    assert again.ensure() == run.run_id


def test_the_parent_run_answers_what_won(tracker):
    parent = tracker.open_parent("name: demo\n", "abc")
    rows = [{"cell": "rule=uwm", "value": 0.91, "point_id": "c000-search-001", "params": {"lr": "0.012"}},
            {"cell": "rule=wm", "value": 0.95, "point_id": "c001-search-003", "params": {"lr": "0.03"}},
            {"cell": "rule=ste", "value": None, "point_id": "-", "params": {}}]
    tracker.log_best(parent, "eval_reward_mean", "max", rows)
    client = MlflowClient(tracker.uri)
    run = client.get_run(parent)
    assert run.data.tags[layout.BEST_POINT] == "c001-search-003 (rule=wm)"
    assert run.data.metrics["best_eval_reward_mean"] == 0.95
    path = client.download_artifacts(parent, layout.BEST_PER_CELL)
    table = list(csv.DictReader(io.StringIO(open(path).read())))
    assert [(r["cell"], r["point_id"], r["final_eval_reward_mean"], r["lr"]) for r in table] == [
        ("rule=uwm", "c000-search-001", "0.91", "0.012"), ("rule=wm", "c001-search-003", "0.95", "0.03"),
        ("rule=ste", "-", "", "")]
    tracker.log_best(parent, "episodes_to_threshold_mean", "min", rows)   # min picks the smallest
    assert client.get_run(parent).data.tags[layout.BEST_POINT] == "c000-search-001 (rule=uwm)"
