"""For newcomers: `uwm-study check SPEC` prints the plan and starts nothing; every study metric the docs list is
accepted (auc_reward_mean too, and optimised as the searcher sees it); counts read as English."""

import math
import re
from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.spec import validate_spec

SPEC = {"name": "plan", "base": {"task": {"address_bits": 1}, "hidden": [4], "episodes": 400, "report_every": 100,
                                 "eval_episodes": 8, "seeds": 2, "threshold_window": 100, "threshold": 0.5},
        "grid": {"rule": ["wm", "uwm"], "outgoing_norm": [1.0, 2.0]},
        "search": {"lr": {"low": 0.001, "high": 0.1, "log": True}}, "samples_per_cell": 3, "pack_size": 2,
        "confirm": {"seeds": 4}}


def test_check_prints_the_plan_and_starts_nothing(tmp_path, capsys, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    assert main(["check", "spec.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spec.yaml: a valid spec of study plan\ncells: 4 (rule (2) x outgoing_norm (2))\n"), out
    assert "  rule=uwm|outgoing_norm=2.0\n" in out
    assert "points: 4 cells x 3 (lr) + confirm (top 1 per cell, 4 fresh seeds) = <= 16 points" in out
    assert re.search(r"packs: at most 12 Ray trials of <= 2 points", out), out   # (2 + 1) search + 1 confirm per cell
    assert re.search(r"resources: 1 CPU per trial; this machine \(local Ray\) runs \d+ at once", out), out
    assert re.search(r"work: .+ to .+ with \d+ trials? at once \(12 trials, ", out), out
    assert "threshold: running reward over 100 episodes >= 0.5: reachable within the budget of 400 episodes" in out
    assert out.rstrip().endswith("nothing was started: `uwm-study run spec.yaml` runs it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"] and not ray.is_initialized()


def test_check_says_when_the_budget_cannot_reach_the_threshold_and_refuses_what_run_refuses(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "grid": {"episodes": [100, 400]}}))
    assert main(["check", str(spec)]) == 0
    assert "threshold: NOT reachable in 1 of 2 cells: episodes=100 (100 episodes < threshold_window 100)" not in \
        capsys.readouterr().out   # a window of 100 is reached at episode 100
    assert main(["check", str(spec), "--set", "base.threshold_window=200"]) == 0
    out = capsys.readouterr().out
    assert "threshold: NOT reachable in 1 of 2 cells: episodes=100 (100 episodes < threshold_window 200)" in out, out
    assert main(["check", str(spec), "--set", "samples_per_cell=0"]) == 2
    assert capsys.readouterr().err.startswith("error: samples_per_cell: ")
    assert main(["check", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: is a folder, not a spec file"


def _documented_study_metrics() -> list[str]:
    """Names docs/metrics.md lists that a point reports at its last report: the per-point and study tables,
    and the mean, std and sem of every per-seed name without a placeholder."""
    text = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    names = []
    for title, body in sections.items():
        rows = re.findall(r"^\| `([a-z_0-9]+)` \|", body, re.M)
        if title.startswith("Per seed"):
            names += [f"{n}{agg}" for n in rows for agg in ("_mean", "_std", "_sem") if not n.startswith("_")]
        elif title in ("Per point", "Written by the study"):
            names += rows
    return names


def test_every_documented_study_metric_is_accepted():
    names = _documented_study_metrics()
    assert "auc_reward_mean" in names and "episodes_to_threshold_median" in names and "eval_reward_mean" in names
    for name in names:
        assert validate_spec({**SPEC, "metric": name}).metric == name
    with pytest.raises(Exception) as err:
        validate_spec({**SPEC, "metric": "eval_rewards_mean"})
    assert "auc_reward_mean" in str(err.value) and "episodes_to_threshold_mean" not in str(err.value)


def test_auc_reward_as_the_metric_is_the_value_the_searcher_sees():
    """The trainer does not report auc_reward_mean: the trainable computes it from the point's eval curve."""
    from study.trainable import PackState, _record, _series
    from uwm_model import layout
    from uwm_model.config import TrialConfig
    from uwm_model.trainer import Trainer

    cfg = TrialConfig.model_validate({**SPEC["base"], "probe": {"enabled": False}})
    state, curve = PackState(1), []
    for report in Trainer([cfg]).run():
        pr = report.points[0]
        _record(state, 0, report.episode, pr, cfg, layout.AUC_REWARD)
        curve.append((report.episode, pr.metrics["eval_reward_mean"]))
        assert state.value[0] == pytest.approx(layout.auc_reward(curve))
        assert _series(pr.metrics, state.eval_curve[0], layout.AUC_REWARD)[layout.AUC_REWARD] == state.value[0]
    assert len(curve) == 4 and math.isfinite(state.value[0])


def test_counts_of_cpus_and_gpus_read_as_english():
    from study.runner import count

    assert [count(n, "GPU") for n in (0.5, 1, 2)] == ["0.5 GPU", "1 GPU", "2 GPUs"]
