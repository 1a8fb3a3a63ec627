"""study.tracking against a real MLflow (SQLite file): a point's run records the values it was given,
a reopened run resumes after its last logged step."""

import pytest

from study import tracking
from uwm_model import layout


def test_auc_reward_of_a_planted_curve():
    assert layout.auc_reward([(100, 0.0), (200, 0.5), (400, 1.0)]) == pytest.approx((0 * 100 + 0.5 * 100 + 1.0 * 200) / 400)
    assert layout.auc_reward([(50, 1.0), (100, 1.0)]) == 1.0


def test_a_point_run_logs_values_and_a_reopened_run_resumes_after_its_last_step(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = tracking.StudyTracker(uri, "tracked")
    parent = study.open_parent("name: tracked\n", "hash0")
    exp = study.experiment_id()
    point = {"point_id": "p0", "cell": "c0", "stage": "search", "axes": {"lr": 0.1},
             "config": {"rule": "uwm", "hidden": [4], "lr": 0.1, "episodes": 300, "report_every": 100}}
    run = tracking.PointRun(study.client, exp, parent, "tracked", "pack0", point)
    run.log(100, {"eval_reward_mean": 0.25, "episodes": 100.0, "bad": float("nan")})
    run.log(200, {"eval_reward_mean": 0.5, "episodes": 200.0})

    again = tracking.PointRun(study.client, exp, parent, "tracked", "pack0", point)   # a retried attempt
    assert again.ensure() == run.run_id and again.last_step == 200
    again.log(200, {"eval_reward_mean": 99.0, "episodes": 200.0})     # already logged: skipped
    again.log(300, {"eval_reward_mean": 0.75, "episodes": 300.0})
    again.finish(layout.FINISHED, {}, [(300, 0, "eval_reward", 0.5)])

    history = study.client.get_metric_history(run.run_id, "eval_reward_mean")
    assert sorted((m.step, m.value) for m in history) == [(100, 0.25), (200, 0.5), (300, 0.75)]
    data = study.client.get_run(run.run_id).data
    assert "bad" not in data.metrics
    assert data.metrics["eval_reward_mean"] == 0.75   # the runs table's value: the series' latest
    assert data.tags[layout.STATUS] == layout.FINISHED and data.tags[layout.POINT_ID] == "p0"
    assert data.params["lr"] == "0.1" and data.params["cell.lr"] == "0.1"
    text = study.client.download_artifacts(run.run_id, layout.SEED_CURVES, str(tmp_path))
    assert open(text).read().splitlines() == [",".join(layout.SEED_CURVE_COLUMNS), "300,0,eval_reward,0.5"]
    counts = study.close_parent(parent)
    assert counts[layout.FINISHED] == 1 and sum(counts.values()) == 1


def test_an_unreachable_server_is_told_apart_from_a_bad_request(tmp_path, monkeypatch):
    """What MLflow raises once its retries run out against a server that is gone counts as an outage (the study
    ends with one line and resume records its end); an error of the request itself does not."""
    import socket

    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Exception) as gone:
        tracking.client(f"http://127.0.0.1:{port}").get_run("0" * 32)
    assert tracking.is_outage(gone.value), repr(gone.value)
    with pytest.raises(MlflowException) as missing:
        tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run("0" * 32)
    assert not tracking.is_outage(missing.value)
