"""CLI paths the end-to-end tests do not reach, run in-process: ``train --workers``, and ``report``,
``ui`` and ``status`` where there is nothing to read (one error line naming the problem, exit 2)."""

import pandas as pd
import pytest
import yaml

from study import cli

TINY = {"task": {"address_bits": 1}, "hidden": [4], "seeds": 3, "episodes": 64, "report_every": 32, "batch_size": 2,
        "eval_episodes": 16, "compile": "off", "device": "cpu", "probe": {"enabled": False}, "rule": "wm"}


def one_error_line(capsys, *words):
    """Exactly one ``error: ...`` line, the last one, naming the problem (progress lines may come before)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    for word in words:
        assert word in errors[0], (word, errors[0])


@pytest.mark.slow
def test_train_with_two_workers_writes_the_same_curves_as_one(tmp_path, capsys):
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(TINY))
    tables = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.csv"
        assert cli.main(["train", str(tmp_path / "trial.yaml"), "--out", str(out), "--workers", str(workers)]) == 0
        tables[workers] = pd.read_csv(out), pd.read_csv(tmp_path / f"w{workers}_per_seed.csv")
    assert "status finished" in capsys.readouterr().out
    (agg1, seeds1), (agg2, seeds2) = tables[1], tables[2]
    assert list(agg1["episode"]) == [32, 64] and set(seeds1["seed"]) == {0, 1, 2}
    drop = ["seconds_per_episode_mean", "seconds_per_episode"]
    pd.testing.assert_frame_equal(agg1.drop(columns=drop, errors="ignore"), agg2.drop(columns=drop, errors="ignore"))
    pd.testing.assert_frame_equal(seeds1, seeds2)


def test_train_refuses_zero_workers_and_a_bad_output(tmp_path, capsys):
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(TINY))
    assert cli.main(["train", str(tmp_path / "trial.yaml"), "--out", str(tmp_path / "x.csv"), "--workers", "0"]) == 2
    one_error_line(capsys, "--workers")
    assert cli.main(["train", str(tmp_path / "trial.yaml"), "--out", str(tmp_path / "x.txt")]) == 2
    one_error_line(capsys, "--out", ".csv")
    assert not list(tmp_path.glob("x*"))


def test_report_on_a_study_that_does_not_exist(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = cli.main(["report", "no-such-study", "--tracking-uri", uri, "--storage", str(tmp_path / "runs"),
                     "--out", str(tmp_path / "report")])
    assert code == 2
    one_error_line(capsys, "no-such-study")
    # nothing written (report.py creates the output folder before it loads the study: an empty folder is left)
    assert not (tmp_path / "report").exists() or not any((tmp_path / "report").iterdir())


def test_ui_without_a_store_and_status_or_resume_of_an_unknown_study(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ui", "--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    one_error_line(capsys, "missing.db")
    for command in ("status", "resume"):
        assert cli.main([command, "no-such-study", "--storage", str(tmp_path / "runs")]) == 2
        one_error_line(capsys, "no-such-study", "--storage")
