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
    assert name.startswith(p["config"]["rule"]) and name.endswith("c001-search-002"), name
    run_data = tracker.client.get_run(run.run_id).data
    # the architecture as numbers the runs table sorts and charts, and a one-line description of the point
    assert (run_data.params["width"], run_data.params["depth"]) == ("8", "2")
    assert run_data.params["width.l1"] == "8" and run_data.params["width.l2"] == "4"   # layers of unequal widths
    note = run_data.tags[layout.NOTE]
    assert "\n" not in note and note.startswith(name.split(" [")[0] + " on 2 hidden layers [8x4]") and layout.GLOSSARY in note
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


def test_equal_widths_give_width_and_depth_only():
    params = layout.point_params({"hidden": [16, 16, 16], "lr": 0.1}, {})
    assert (params["width"], params["depth"]) == ("16", "3") and not [k for k in params if k.startswith("width.l")]


def test_the_parent_run_carries_a_glossary_of_every_metric_with_its_unit(tracker):
    from uwm_model import metrics

    parent = tracker.open_parent("name: demo\n", "abc", metric="eval_reward_mean")
    text = open(MlflowClient(tracker.uri).download_artifacts(parent, layout.GLOSSARY)).read()
    rows = {line.split("`")[1]: line.rsplit("|", 2)[1].strip() for line in text.splitlines() if line.startswith("| `")}
    for name in [*metrics.PER_SEED, *metrics.PER_POINT]:
        key = next(k for k in rows if k == name or k.startswith(f"{name}_mean"))
        assert rows[key] and rows[key] != "see meaning", (key, rows[key])
    assert rows["eval_reward_mean (_std, _sem)"].startswith("reward") and rows["seconds_per_episode"].startswith("seconds")
    assert rows["probe_var_l{l}_mean (_std, _sem)"].startswith("gradient units squared")
    assert rows["best_eval_reward_mean"].startswith("reward") and "best_eval_reward_mean/{cell}" in rows


def test_an_ending_point_logs_its_reward_level_means_once_at_its_last_step(tracker):
    """The means at a reward level cover only the seeds that reached it: never a series, one value when the point
    ends (at its last step), beside the censored series of the level."""
    from study.trainable import PackState, _end

    parent = tracker.open_parent("name: demo\n", "abc")
    run = tracking.PointRun(tracker.client, tracker.experiment_id(), parent, tracker.study, "pack-0",
                            point("c000-search-000", "rule=uwm", rule="uwm"))
    run.log(100, {"eval_reward_mean": 0.5, "at_reward_0.6_reached_fraction": 0.25})
    run.log(200, {"eval_reward_mean": 0.7, "at_reward_0.6_reached_fraction": 0.5})
    state = PackState(1)
    _end(run, state, 0, layout.FINISHED, {"eval_reward_mean": 0.7, "at_reward_0.6_episode_mean": 150.0,
                                          "at_reward_0.6_probe_var_l1_mean": 2.5, "at_reward_0.6_reached_fraction": 0.5})
    client = tracker.client
    for name, value in (("at_reward_0.6_episode_mean", 150.0), ("at_reward_0.6_probe_var_l1_mean", 2.5)):
        history = client.get_metric_history(run.run_id, name)
        assert [(m.step, m.value) for m in history] == [(200, value)], name
    assert len(client.get_metric_history(run.run_id, "eval_reward_mean")) == 2      # no second copy of a series
    assert client.get_run(run.run_id).data.tags[layout.STATUS] == layout.FINISHED and state.ended[0] == layout.FINISHED
