"""analysis.reference: each rule's test accuracy on a dataset study and the reference points beside it."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.load import Study
from analysis.reference import reference_points, reference_tables, rule_accuracies

TASK = {"name": "dataset", "dataset": "digits", "classes": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]}


def planted_study() -> tuple[Study, dict]:
    """Two cells (uwm, wm), each with a search trial and a confirm trial; planted per-seed test accuracies at the
    last report of the confirm trials (the tuned ones), a decoy last value in the search trials, and a decoy
    validation accuracy everywhere."""
    rng = np.random.default_rng(3)
    trials, seeds, planted = [], [], {}
    for cell, rule in (("rule=uwm", "uwm"), ("rule=wm", "wm")):
        for stage, run in (("search", f"{rule}-s"), ("confirm", f"{rule}-c")):
            trials.append({"run_id": run, "cell": cell, "stage": stage, "status": "finished", "lr": 0.01,
                           "rule_variant": rule, "hidden": [8], "auc_reward_mean": 0.5,
                           **{f"task.{k}": v for k, v in TASK.items()}})
            values = rng.uniform(0.7, 0.9, 6) if stage == "confirm" else np.full(4, 0.1)
            if stage == "confirm":
                planted[rule] = values
            for seed, value in enumerate(values):
                seeds += [{"run_id": run, "episode": 100, "seed": seed, "metric": "test_accuracy", "value": 0.0},
                          {"run_id": run, "episode": 200, "seed": seed, "metric": "test_accuracy", "value": value},
                          # the validation split's accuracy (what tuning read): a decoy the table must not quote
                          {"run_id": run, "episode": 200, "seed": seed, "metric": "eval_accuracy", "value": 1.0}]
    study = Study("planted", "p", "e", None, {}, {}, pd.DataFrame(trials), pd.DataFrame(), pd.DataFrame(seeds))
    return study, planted


def test_rule_accuracies_recover_the_planted_last_values_of_the_tuned_trials():
    study, planted = planted_study()
    table = rule_accuracies(study).set_index("rule")
    for rule, values in planted.items():
        row = table.loc[rule]
        assert row["accuracy"] == pytest.approx(values.mean())
        half = stats.t.ppf(0.975, 5) * values.std(ddof=1) / np.sqrt(6)
        assert (row["lo"], row["hi"]) == pytest.approx((values.mean() - half, values.mean() + half))
        assert row["seeds"] == 6 and row["episodes"] == 200 and row["task"] == TASK and row["hidden"] == [8]


def test_a_study_without_dataset_trials_has_no_accuracy_table():
    study, _ = planted_study()
    study.seed_curves["metric"] = "eval_reward"
    assert rule_accuracies(study).empty


def test_reference_points_are_computed_once_per_machine(tmp_path, monkeypatch):
    """The second report of a setting reads the cache; another setting, or a cache of another version, computes."""
    import analysis.reference as reference

    monkeypatch.setenv("UWM_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_compute(task, hidden, seeds, level, updates):
        calls.append((json.dumps(task), tuple(hidden)))
        return pd.DataFrame([{"reference": "r", "accuracy": 0.5 + len(calls) / 100, "lo": np.nan, "hi": np.nan,
                              "note": "n"}])

    monkeypatch.setattr(reference, "compute_reference_points", fake_compute)
    first = reference_points(TASK, [8], seeds=2, updates=200)
    again = reference_points(TASK, [8], seeds=2, updates=200)
    assert len(calls) == 1 and again["accuracy"].tolist() == first["accuracy"].tolist() == [0.51]
    assert np.isnan(again["lo"].iloc[0])
    reference_points(TASK, [16], seeds=2, updates=200)
    reference_points(TASK, [8], seeds=3, updates=200)
    assert len(calls) == 3
    monkeypatch.setattr(reference, "CACHE_VERSION", reference.CACHE_VERSION + 1)
    assert reference_points(TASK, [8], seeds=2, updates=200)["accuracy"].tolist() == [0.54]
    path = max(tmp_path.iterdir(), key=lambda p: p.stat().st_mtime_ns)   # the one just written
    path.write_text("{not json")                                    # a damaged cache file is recomputed
    assert reference_points(TASK, [8], seeds=2, updates=200)["accuracy"].tolist() == [0.55]


@pytest.mark.slow
def test_reference_points_on_the_digits_split():
    refs = reference_points(TASK, [8], seeds=2, updates=1500).set_index("note")
    assert refs.loc["exact", "accuracy"] == pytest.approx(0.5, abs=0.01)   # 0-4 against 5-9: balanced
    assert refs.loc["deterministic fit", "accuracy"] > 0.8                  # logistic regression
    backprop = refs.iloc[2]
    assert backprop["accuracy"] > 0.8 and backprop["lo"] <= backprop["accuracy"] <= backprop["hi"]


def test_reference_tables_put_rules_beside_the_references():
    study, _ = planted_study()
    [(caption, table)] = reference_tables(rule_accuracies(study), seeds=2, updates=200)
    assert "digits" in caption and "[8]" in caption
    assert list(table["method"][:2]) == ["rule uwm", "rule wm"]
    assert any("logistic regression" in m for m in table["method"]) and any("ceiling" in m for m in table["method"])


def test_the_reference_csv_holds_the_numbers_the_tables_print():
    from analysis.reference import reference_rows

    study, _ = planted_study()
    accuracies = rule_accuracies(study)
    [(_, table)] = reference_tables(accuracies, seeds=2, updates=200)
    rows = reference_rows(accuracies, seeds=2, updates=200)
    assert len(rows) == 3 and (rows["task"] == [TASK] * 3).all() and (rows["hidden"] == [[8]] * 3).all()
    printed = table.set_index("method")["test accuracy"]
    for _, r in rows.iterrows():
        assert printed[r["reference"]] == f"{r['accuracy']:.3f}"
