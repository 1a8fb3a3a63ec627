"""One best point per cell: the terminal summary, the parent run's ``best_per_cell.csv`` and ``uwm.best_point``
tag, and the report all read :func:`uwm_model.layout.chosen_points`, so a study whose best search point and best
confirm point differ shows one answer everywhere (the confirm point, saying so)."""

import csv
import io
import math

import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis.load import load_study
from analysis.speed import cell_summary, select_tuned
from analysis.synthetic import write_synthetic_study
from analysis.tuning import tuning_table
from study import runner, tracking
from study.spec import validate_spec
from uwm_model import layout


def point(cell, stage, value, status=layout.FINISHED, **extra):
    return {"cell": cell, "stage": stage, "value": value, "status": status, **extra}


def test_the_confirm_stage_answers_a_cell_that_has_one_even_when_a_search_point_scored_higher():
    pts = [point("a", "search", 0.99, id=1), point("a", "confirm", 0.80, id=2), point("a", "confirm", 0.85, id=3),
           point("b", "search", 0.70, id=4), point("b", "search", 0.75, id=5)]
    chosen = layout.chosen_points(pts, "max")
    assert chosen["a"]["id"] == 3 and chosen["b"]["id"] == 5
    assert layout.chosen_points(pts, "min")["a"]["id"] == 2     # min: the smallest confirm value


def test_only_trained_points_count_and_a_cell_without_values_gives_its_first_point():
    pts = [point("a", "confirm", 0.99, status=layout.FAILED, id=1), point("a", "search", 0.5, id=2),
           point("a", "search", 0.6, status=layout.RUNNING, id=3), point("a", "search", 0.4, status=layout.DIVERGED, id=4),
           point("b", "search", None, id=5), point("b", "search", math.nan, id=6),
           point("c", "search", 0.3, status=layout.FAILED, id=7)]
    chosen = layout.chosen_points(pts, "max")
    assert chosen["a"]["id"] == 2                      # a failed confirm point does not make the cell a confirm cell
    assert chosen["b"]["id"] == 5 and chosen["b"]["value"] is None
    assert "c" not in chosen
    ties = layout.chosen_points([point("a", "search", 0.5, id=1), point("a", "search", 0.5, id=2)], "max")
    assert ties["a"]["id"] == 1                        # ties: the first in the given order


def test_cell_metric_names_are_in_mlflows_alphabet():
    assert layout.cell_metric("best_x", "rule=uwm|hidden=[16, 16]|outgoing_norm=null") == \
        "best_x/rule_uwm hidden_16x16 outgoing_norm_null"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two cells whose confirm stage re-ran two learning rates that are not the search's best (lr 0.03)."""
    root = tmp_path_factory.mktemp("best")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    syn = write_synthetic_study(uri, "bestpoint", rules=("uwm", "wm"), widths=(8,), lrs=(0.01, 0.03, 0.1),
                                confirm_lrs=(0.01, 0.1), seeds=3, episodes=1600, report_every=400, cross_rule=False)
    client = MlflowClient(uri)
    spec_dict = yaml.safe_load(open(client.download_artifacts(syn.parent_run_id, layout.SPEC_ARTIFACT, str(root))))
    tracker = tracking.StudyTracker(uri, "bestpoint")
    runs = tracker.children(syn.parent_run_id)
    meta = {"name": "bestpoint", "spec": spec_dict, "parent_run_id": syn.parent_run_id, "tracking_uri": uri,
            "experiment_id": tracker.experiment_id(), "storage": str(root / "storage")}
    return {"uri": uri, "syn": syn, "spec": validate_spec(spec_dict), "runs": runs, "tracker": tracker, "meta": meta,
            "client": client}


def _lr(run) -> float:
    return float(run.data.params["lr"])


def test_summary_csv_tag_and_report_give_one_best_point_per_cell(study):
    spec, runs, client, parent = study["spec"], study["runs"], study["client"], study["syn"].parent_run_id
    by_pid = {r.data.tags[layout.POINT_ID]: r for r in runs}
    rows = runner.best_per_cell(spec, runs)
    assert len(rows) == 2
    for row in rows:
        cell_runs = [r for r in runs if r.data.tags[layout.CELL] == row["cell"]]
        search = [r for r in cell_runs if r.data.tags[layout.STAGE] == "search"]
        search_best = min(search, key=lambda r: r.data.metrics[spec.metric])
        chosen = by_pid[row["point_id"]]
        # the planted trap: the best search point is not among the points the confirm stage re-ran
        assert _lr(search_best) == 0.03 and _lr(chosen) in (0.01, 0.1)
        assert row["stage"] == "confirm" and chosen.data.tags[layout.STAGE] == "confirm"
        confirm = [r for r in cell_runs if r.data.tags[layout.STAGE] == "confirm"]
        assert row["value"] == min(r.data.metrics[spec.metric] for r in confirm)

    # the parent run: the table artifact, one metric per cell, and the tag of the best of all
    study["tracker"].log_best(parent, spec.metric, spec.mode, rows)
    table = list(csv.DictReader(io.StringIO(open(client.download_artifacts(parent, layout.BEST_PER_CELL)).read())))
    assert [(r["cell"], r["point_id"], r["stage"], float(r["lr"])) for r in table] == [
        (row["cell"], row["point_id"], "confirm", float(row["params"]["lr"])) for row in rows]
    parent_run = client.get_run(parent)
    best = min(rows, key=lambda r: r["value"])
    assert parent_run.data.tags[layout.BEST_POINT] == f"{best['point_id']} ({best['cell']}; confirm stage)"
    for row in rows:
        assert parent_run.data.metrics[layout.cell_metric(f"best_{spec.metric}", row["cell"])] == row["value"]

    # the terminal summary names the same points and says they are confirm points
    text = runner.summary("bestpoint", study["meta"], study["tracker"])
    for row in rows:
        line = next(x for x in text.splitlines() if x.strip().startswith(row["cell"]))
        assert row["point_id"] in line and f"lr={row['params']['lr']}" in line and "(confirm, 3 seeds)" in line

    # the report: the tuned point, the cell summary's lr and the tuning table's chosen lr
    st = load_study("bestpoint", study["uri"], seed_curves=False)
    tuned = select_tuned(st)
    cells = cell_summary(st, n_boot=50).set_index("cell")
    tt = tuning_table(st).set_index("cell")
    for row in rows:
        chosen_lr = _lr(by_pid[row["point_id"]])
        picked = tuned[tuned["cell"] == row["cell"]]
        assert set(picked["point_id"]) == {row["point_id"]} and (picked["stage"] == "confirm").all()
        assert cells.loc[row["cell"], "lr"] == pytest.approx(chosen_lr)
        assert tt.loc[row["cell"], "lr"] == pytest.approx(chosen_lr)
