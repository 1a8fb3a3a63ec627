"""End to end: a tiny REAL study through the real runner (Ray Tune + Optuna + MLflow on SQLite), then
`uwm-study report`, the HTML in headless Chromium, and the three notebooks executed headless against it.

Nothing is mocked: the study trains real populations (two rules, two widths, two outgoing norms,
three seeds, cross-rule probe on) for a few hundred episodes, so the numbers are noisy; the test
checks the plumbing and the report's structure, not scientific conclusions (the planted-answer
tests in test_analysis_study.py do that).
"""

import os
import re
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from analysis import load_study

NOTEBOOKS = Path(__file__).resolve().parent.parent / "analysis" / "notebooks"

SPEC = """\
name: tiny-e2e
description: end-to-end test study of the analysis package
base:
  task: {address_bits: 1}
  hidden: [4, 4]
  episodes: 600
  report_every: 200
  seeds: 3
  eval_episodes: 64
  threshold: 0.5
  threshold_window: 50
  compile: "off"
  device: cpu
  probe: {enabled: true, samples: 32, cross_rule: true, rules: [{rule: reinforce}, {rule: uwm}]}
grid:
  rule: [reinforce, uwm]
  hidden: [[4, 4], [8, 8]]
  outgoing_norm: [1.0, 4.0]
search:
  lr: {low: 0.02, high: 0.1, log: true}
samples_per_cell: 1
"""


def _cli(*args, cwd, timeout=600):
    exe = shutil.which("uwm-study", path=os.path.dirname(sys.executable)) or shutil.which("uwm-study")
    assert exe, "the uwm-study console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"uwm-study {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


pytestmark = pytest.mark.slow   # every test here reads the real study the fixture runs (about a minute)


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-study")
    (root / "tiny.yaml").write_text(SPEC)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    out = _cli("run", "tiny.yaml", "--tracking-uri", uri, "--storage", str(root / "runs"), cwd=root)
    # every one of the 2 x 2 x 2 points trained to its end (the run's closing line counts them by status)
    assert re.search(r"^study tiny-e2e ended after \d+ s: 8 finished$", out, re.M), out[-2000:]
    return root, uri


def chromium_screenshot(html_path, png_path, height=9000):
    """Render a file in headless Chromium (Debian's package); the CI installs it, so it must be there."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is missing: apt-get install -y --no-install-recommends chromium")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={png_path.parent / (png_path.stem + '-profile')}", f"--window-size=1200,{height}",
           f"--screenshot={png_path}", html_path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png_path.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    from PIL import Image

    return np.asarray(Image.open(png_path).convert("RGB")).astype(int)


def test_real_study_loads_as_the_contract_says(real_study):
    _, uri = real_study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = load_study("tiny-e2e", uri)
    t = study.trials
    assert len(t) == 8 and set(t["status"]) <= {"finished", "diverged", "stopped"}
    assert set(t["rule"]) == {"reinforce", "uwm"} and set(t["width"]) == {4, 8}
    assert set(t["outgoing_norm"]) == {1.0, 4.0} and (t["stage"] == "search").all()
    assert t["cell"].str.contains("rule=").all() and t["pack"].notna().all()
    assert t[["auc_reward_mean", "final_seconds_per_episode", "lr"]].notna().all().all()
    assert set(study.curves.groupby("run_id")["episode"].apply(lambda e: tuple(sorted(set(e))))) == {(200, 400, 600)}
    assert (study.seed_curves.groupby("run_id")["seed"].nunique() == 3).all()
    assert {"probe_var_l1_mean", "probe_uwm_var_l1_mean", "probe_reinforce_var_l3_mean"} <= set(study.metrics)
    assert study.spec["name"] == "tiny-e2e"


def test_report_of_a_real_study_via_the_cli_renders_in_chromium(real_study, tmp_path):
    root, uri = real_study
    out = tmp_path / "report"
    printed = _cli("report", "tiny-e2e", "--out", str(out), "--tracking-uri", uri, "--storage", str(root / "runs"),
                   cwd=root)
    assert "report.html" in printed
    html = (out / "report.html").read_text()
    # curves, time to threshold, variance, scaling, π by column norm and π on the per-weight axis
    assert html.count("data:image/png;base64,") == 5 and html.count("<div class='svg-figure'") == 1   # curves: SVG
    # 8 cells, 2 widths, 2 norms, cross-rule probe: all but the learning-rate sensitivity (lr is searched, no grid)
    closed = html[html.index("<section id='inapplicable'>"):html.index("<section id='methods'>")]
    assert "Learning-rate sensitivity: not answerable (it needs a learning-rate grid" in closed
    for key in ("variance_speed", "scaling", "norm_stress", "fastest"):
        assert f"<section id='{key}'>" in html and key not in closed, key
    assert "cross-rule probe, matched states" in html
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 8 and cells["auc_reward"].notna().all() and cells["var_total"].notna().all()
    from mlflow.tracking import MlflowClient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parent = load_study("tiny-e2e", uri, seed_curves=False).parent_run_id
    attached = {a.path for a in MlflowClient(uri).list_artifacts(parent, "report")}
    assert "report/report.html" in attached and "report/cells.csv" in attached

    pixels = chromium_screenshot(out / "report.html", tmp_path / "report.png")
    assert pixels.shape[1] == 1200 and pixels.shape[0] >= 900
    assert (pixels < 245).any(axis=2).mean() > 0.02, "the page looks blank"
    coloured = int(((pixels.max(axis=2) - pixels.min(axis=2)) > 80).sum())
    assert coloured >= 20_000, f"only {coloured} coloured pixels: the figures did not render"


def test_notebooks_execute_headless_against_the_real_study(real_study, monkeypatch):
    """The three notebooks, parameterised through the environment, each in its own kernel (run side by
    side: kernel start-up dominates)."""
    root, uri = real_study
    monkeypatch.setenv("UWM_STUDY", "tiny-e2e")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("UWM_N_BOOT", "300")
    monkeypatch.setenv("UWM_SELECT", "rule == 'uwm'")   # the table filter: half the trials, both widths and norms

    def execute(name):
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
        return nb

    names = ["variance_vs_speed", "scaling", "norm_stress"]
    with ThreadPoolExecutor(len(names)) as pool:
        books = dict(zip(names, pool.map(execute, names)))
    for name, nb in books.items():
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], name
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) >= 1, f"{name} drew no figure"
        text = "".join(o.get("text", "") for o in outputs)
        assert "study 'tiny-e2e': 8 trials" in text and "4 trials selected by \"rule == 'uwm'\"" in text, name


def test_the_synthetic_writer_writes_exactly_the_runners_layout(real_study):
    """The planted studies the analysis tests read must look to the analysis exactly like a real study:
    the same tags, the same params, the same artifacts and only metric names the trainer can report."""
    from mlflow import MlflowClient

    from analysis.synthetic import write_synthetic_study
    from uwm_model import layout, metrics

    _, uri = real_study
    write_synthetic_study(uri, name="synthetic-layout", widths=(4, 8), norms=(1.0, 4.0), lrs=(0.03,), seeds=2,
                          episodes=400, report_every=200)
    client = MlflowClient(uri)

    def layout_of(study):
        exp = client.get_experiment_by_name(study)
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        kids = [r for r in runs if r.data.tags.get(layout.ROLE) == layout.ROLE_TRIAL]
        parent = next(r for r in runs if r.data.tags.get(layout.ROLE) == layout.ROLE_STUDY)
        ours = lambda tags: {k for k in tags if k.startswith("uwm.") or k == layout.PARENT}  # noqa: E731
        return {
            # the runner adds the best point when the study ends, a report the answers
            "parent tags": {t for t in ours(parent.data.tags) - {layout.BEST_POINT}
                            if not t.startswith(layout.ANSWER_PREFIX)},
            "child tags": set.union(*(ours(r.data.tags) | ({layout.NOTE} & set(r.data.tags)) for r in kids)),
            "params": set.union(*(set(r.data.params) for r in kids)),
            "artifacts": set.union(*({a.path for a in client.list_artifacts(r.info.run_id)} for r in kids)),
            "names": [r.info.run_name for r in kids],
            "metrics": set.union(*(set(r.data.metrics) for r in kids)),
        }

    real, synthetic = layout_of("tiny-e2e"), layout_of("synthetic-layout")
    for part in ("parent tags", "child tags", "params", "artifacts"):
        assert synthetic[part] == real[part], (part, synthetic[part] ^ real[part])
    for names in (real["names"], synthetic["names"]):   # rule, widths, norm, lr, seeds, then the point id
        assert all(re.fullmatch(r"(reinforce|uwm) \[\d+x\d+\] norm [\d.]+ lr \S+ s\d+-\d+ \S+", n) for n in names), names
    for name in real["metrics"] | synthetic["metrics"]:   # the series a child run charts, the levels' means at the end
        assert (metrics.is_series(name, "eval_reward_mean") or metrics.is_logged_at_end(name)
                or name in (layout.AUC_REWARD, "episodes_to_threshold_mean")), name
