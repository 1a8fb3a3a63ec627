"""End to end: a tiny REAL control study (Ray Tune + Optuna + MLflow on SQLite, CartPole, two rules, lr tuned per
cell, a few hundred short episodes; about 3 minutes on the shared 2 cores) through ``uwm-study run``, then ``uwm-study report``: the points' MLflow runs
read like the multiplexer's, the fastest-rule question answers on it and variance-versus-speed finds the probe (and,
with two cells, says too few). Nothing is
mocked; the numbers are noisy, so the test checks the plumbing, not conclusions."""

from __future__ import annotations

import math
import re
import warnings

import pandas as pd
import pytest

from analysis import load_study
from tests.test_analysis_e2e import _cli

SPEC = """\
name: control-e2e
base:
  task: {env: cartpole}
  max_steps: 60
  actor_hidden: [4]
  critic_hidden: [4]
  actor_lr_start: [0.02, 0.0002]
  actor_lr_end: [0.02, 0.0002]
  critic_lr_start: [0.04, 0.00004]
  critic_lr_end: [0.04, 0.00004]
  episodes: 300
  report_every: 100
  seeds: 3
  threshold: 20
  compile: "off"
grid:
  rule: [wm, uwm]
search:
  lr: {low: 0.005, high: 0.05, log: true}
samples_per_cell: 2
metric: auc_reward_mean
"""

pytestmark = pytest.mark.slow    # a real study: Ray and MLflow start, four points train (about a minute)


@pytest.fixture(scope="module")
def control_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("control-study")
    (root / "control.yaml").write_text(SPEC)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    out = _cli("run", "control.yaml", "--tracking-uri", uri, "--storage", str(root / "runs"), cwd=root)
    assert re.search(r"^study control-e2e ended after \d+ s: 4 finished$", out, re.M), out[-2000:]
    return root, uri


def test_a_control_studys_runs_read_like_the_multiplexers(control_study):
    _, uri = control_study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = load_study("control-e2e", uri)
    t = study.trials
    assert len(t) == 4 and set(t["rule"]) == {"wm", "uwm"} and set(t["task.env"]) == {"cartpole"}
    assert {"eval_reward_mean", "train_reward_all_mean", "running_reward_mean",
            "threshold_reached_fraction", "diverged_fraction"} <= set(study.metrics)
    # per seed at every report: the returns' window mean, the running mean, the average over all episodes
    sc = study.seed_curves
    assert sorted(sc["episode"].unique()) == [100, 200, 300] and sc["seed"].nunique() == 3
    last = sc[(sc["episode"] == 300) & (sc["metric"] == "train_reward_all")]
    assert len(last) == 12 and (last["value"] > 0).all()
    # the study's auc_reward_mean is the anchor's average return over all episodes: equal windows, equal weights
    for run_id, g in sc[sc["metric"] == "train_reward_all"].groupby("run_id"):
        final = g[g["episode"] == 300]["value"].mean()
        auc = float(t.loc[t["run_id"] == run_id, "auc_reward_mean"].iloc[0])
        assert math.isclose(auc, final, rel_tol=1e-9), (auc, final)


def test_the_report_of_a_control_study_answers_fastest_and_variance(control_study, tmp_path):
    root, uri = control_study
    out = tmp_path / "report"
    _cli("report", "control-e2e", "--out", str(out), "--tracking-uri", uri, "--storage", str(root / "runs"), cwd=root)
    html = (out / "report.html").read_text()
    assert "average return over all episodes" in html
    fastest = pd.read_csv(out / "fastest.csv")
    assert set(fastest["rule_variant"]) == {"wm", "uwm"} and (fastest["n_seeds"] == 3).all()
    closed = html[html.index("<section id='inapplicable'>"):html.index("<section id='methods'>")]
    # the probe is logged; two cells (wm, uwm) are too few for a rank correlation, which the closed line says
    assert re.search(r"Variance versus speed: not answerable \(too few cells \([1-4] with a probe variance", closed), closed


def test_timing_refuses_a_control_study_in_one_line(control_study):
    import os
    import shutil
    import subprocess
    import sys

    root, uri = control_study
    exe = shutil.which("uwm-study", path=os.path.dirname(sys.executable)) or shutil.which("uwm-study")
    proc = subprocess.run([exe, "timing", "control-e2e", "--tracking-uri", uri, "--storage", str(root / "runs")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    # the last line (MLflow may show its artifact download above it)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        "error: name: study 'control-e2e' is a control study: timing times the multiplexer trainer's step (a control "
        "step's speed: benchmarks/control_throughput.py)"), proc.stderr
