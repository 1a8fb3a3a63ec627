"""Starting a study over, in-process on a real SQLite MLflow store (no Ray: everything checked here happens
before Ray starts). A study whose results are gone from MLflow says so in one line and how to start over;
``uwm-study run --fresh`` forgets the study of that name (its folder and its MLflow runs) and nothing else."""

import shutil

import pytest
import yaml
from mlflow import MlflowClient

from study import cli, progress, runner, tracking
from study.spec import validate_spec
from uwm_model import layout

SPEC = {"base": {"task": {"address_bits": 1}, "hidden": [4], "episodes": 100, "report_every": 50, "seeds": 2},
        "grid": {"rule": ["wm"]}, "search": {"lr": {"low": 0.01, "high": 0.1}}, "samples_per_cell": 1}


def ran(tmp_path, name: str, uri: str, storage: str):
    """A study that ran to the end as `uwm-study run` leaves it: its folder (record, progress: complete)
    and its MLflow parent run with one child run. Returns the spec file and the parent run id."""
    spec = validate_spec({**SPEC, "name": name})
    tracker = tracking.StudyTracker(uri, name)
    parent = tracker.open_parent(spec.to_yaml(), spec.spec_hash())
    point = {"point_id": "c000-search-000", "cell": "rule=wm", "stage": "search", "axes": {"rule": "wm"},
             "config": spec.cells()[0].config}
    tracking.PointRun(tracker.client, tracker.experiment_id(), parent, name, "pack-0", point).finish(layout.FINISHED, {}, [])
    runner.write_meta(storage, name, {"name": name, "spec": spec.model_dump(mode="json"), "tracking_uri": uri,
                                      "experiment_id": tracker.experiment_id(), "parent_run_id": parent,
                                      "storage": storage})
    progress.write_json(runner.experiment_path(storage, name), progress.PROGRESS,
                        {"spec_hash": spec.spec_hash(), "stage": "done", "complete": True})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "name": name}))
    return path, parent


def one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in words:
        assert word in err[0], (word, err[0])


@pytest.mark.slow
def test_a_study_whose_store_was_deleted_says_so_and_how_to_start_over(tmp_path, capsys):
    db, storage = tmp_path / "mlflow.db", str(tmp_path / "runs")
    spec, _ = ran(tmp_path, "gone", f"sqlite:///{db}", storage)
    db.unlink()
    shutil.rmtree(tmp_path / "mlruns", ignore_errors=True)
    argv = ["run", str(spec), "--tracking-uri", f"sqlite:///{db}", "--storage", storage]
    assert cli.main(argv) == 2
    one_error_line(capsys, "study 'gone'", "results are gone", str(db), "uwm-study run <spec> --fresh")
    assert not db.exists()   # said before anything was created
    assert cli.main(["resume", "gone", "--storage", storage]) == 2
    one_error_line(capsys, "results are gone", "--fresh")


@pytest.mark.slow
def test_fresh_forgets_that_study_only(tmp_path, capsys):
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "runs")
    spec, old_parent = ran(tmp_path, "again", uri, storage)
    _, other_parent = ran(tmp_path, "other", uri, storage)
    client = MlflowClient(uri)
    # its parent run deleted (by hand in the UI): gone as well
    client.delete_run(old_parent)
    assert cli.main(["run", str(spec), "--tracking-uri", uri, "--storage", storage]) == 2
    one_error_line(capsys, "results are gone")
    client.restore_run(old_parent)

    runner.start_fresh("again", uri, storage)
    assert runner.read_meta(storage, "again") is None and not (tmp_path / "runs/again").exists()
    assert runner.prepare_run(validate_spec({**SPEC, "name": "again"}), uri, storage) is None   # the name is free
    assert tracking.StudyTracker(uri, "again").parent() is None
    exp = client.get_experiment_by_name("again").experiment_id
    assert {r.info.lifecycle_stage for r in client.search_runs([exp], run_view_type=3)} == {"deleted"}   # restorable
    # the other study: folder, record and runs as they were
    assert runner.read_meta(storage, "other")["parent_run_id"] == other_parent
    assert runner.study_complete(validate_spec({**SPEC, "name": "other"}), storage)
    other = client.search_runs([client.get_experiment_by_name("other").experiment_id])
    assert len(other) == 2 and {r.info.lifecycle_stage for r in other} == {"active"}
    runner.start_fresh("never-ran", uri, storage)   # nothing to forget: no error
