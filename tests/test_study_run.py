"""Studies end to end through `uwm-study`: real Ray (a local cluster per run), real Optuna, real
MLflow (the SQLite default and a real `mlflow server` on 127.0.0.1, read through its REST API).

Every study here is tiny (1-address-bit multiplexer, 4 hidden units) so the whole file runs in a
few minutes on 2 cores; what is checked is the bookkeeping, not the learning.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from study.searcher import load_searcher_state
from study.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
RULES = {"reinforce", "ste", "wm", "hwm", "uwm"}
TINY_BASE = {"task": {"address_bits": 1}, "hidden": [4], "seeds": 2, "eval_episodes": 64, "compile": "off",
             "probe": {"enabled": False}, "threshold_window": 100}

# two cells that share a pack key (lr is per-member data): lr = 1e308 makes every member diverge
DIVERGE = {
    "name": "diverge",
    # 512 eval episodes: rung values that tie (and so stop nobody) would make early stopping untestable
    "base": {**TINY_BASE, "optimizer": "sgd", "episodes": 900, "report_every": 100, "eval_episodes": 512},
    "grid": {"lr": [0.1, 1e308]},
    "search": {"outgoing_norm": {"low": 0.5, "high": 2.0}},
    "samples_per_cell": 3,
    "early_stopping": {"grace_period": 100, "reduction_factor": 2, "min_points": 2},
    "confirm": {"seeds": 2},
}

# four packs of two points; long enough (~5 s a pack) to be interrupted
LONGER = {
    "name": "longer",
    "base": {**TINY_BASE, "episodes": 3000, "report_every": 300},
    "grid": {"rule": ["uwm", "hwm"]},
    "search": {"lr": {"low": 1e-3, "high": 0.3, "log": True}},
    "samples_per_cell": 4,
    "pack_size": 2,
}


# ----------------------------------------------------------------------------- helpers


def env():
    e = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    e["PYTHONUNBUFFERED"] = "1"
    return e


class Processes:
    """Processes this test started (and their descendants), ended by pid at teardown."""

    def __init__(self):
        self.pids: set[int] = set()
        self.sessions: set[int] = set()

    def remember(self, proc):
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            if os.getpgid(proc.pid) == proc.pid:    # started in its own session (start_new_session=True)
                self.sessions.add(proc.pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            return
        self.pids |= {p.pid for p in family}

    def end(self):
        for pid in self.pids:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        # what such a process started later and left behind (an mlflow server's job runner and its consumers
        # outlive the server) is still in its session's process group
        for group in self.sessions:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def procs():
    p = Processes()
    yield p
    p.end()


def uwm_study(*args, cwd, timeout=300) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, env=env(), capture_output=True,
                         text=True, timeout=timeout)
    return out


def start(*args, cwd, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=cwd, env=env(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for(condition, timeout, what, procs=None, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if procs is not None and proc is not None:
            procs.remember(proc)
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def write(tmp_path, spec: dict, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def children(client, experiment: str):
    from study.tracking import search_all

    exp = client.get_experiment_by_name(experiment)
    runs = search_all(client, [exp.experiment_id], "")
    parents = [r for r in runs if r.data.tags.get("uwm.role") == "study"]
    assert len(parents) == 1
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(kids) == len(runs) - 1
    return parents[0], kids


def assert_no_duplicates(client, kids, steps: list[int]):
    ids = Counter(r.data.tags["uwm.point_id"] for r in kids)
    assert max(ids.values()) == 1, ids
    for run in kids:
        history = [m.step for m in client.get_metric_history(run.info.run_id, "eval_reward_mean")]
        assert history == sorted(set(history)), (run.info.run_name, history)
        if run.data.tags["uwm.status"] == "finished":
            assert history == steps, (run.info.run_name, history)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_quickstart_end_to_end_on_the_sqlite_default(tmp_path, procs):
    tiny = ["--set", "base.task.address_bits=1", "--set", "base.hidden=[4]", "--set", "base.episodes=600",
            "--set", "base.report_every=200", "--set", "base.seeds=2", "--set", "base.eval_episodes=64",
            "--set", "base.probe.enabled=false", "--set", "base.threshold_window=200",
            "--set", "samples_per_cell=2", "--set", "confirm=null"]   # the confirm stage has its own test
    out = uwm_study("run", str(ROOT / "tune_configs/quickstart.yaml"), *tiny, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "study quickstart ended" in out.stdout and "uwm-study ui" in out.stdout
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "runs/quickstart/uwm-study.json").exists()

    from mlflow import MlflowClient
    import pandas as pd

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, kids = children(client, "quickstart")
    spec = load_spec(ROOT / "tune_configs/quickstart.yaml", tiny[1::2])
    tags = parent.data.tags
    assert tags["uwm.role"] == "study" and tags["uwm.spec_hash"] == spec.spec_hash()
    assert len(tags["uwm.git_commit"]) == 40 and tags["uwm.version"] == "0.1.0"
    assert yaml.safe_load(client.download_artifacts(parent.info.run_id, "spec.yaml", str(tmp_path)) and
                          (tmp_path / "spec.yaml").read_text())["name"] == "quickstart"
    assert parent.info.status == "FINISHED" and parent.data.metrics["points_finished"] == 10

    # one run per point, two points per cell, every rule, all finished
    assert len(kids) == 10
    assert Counter(r.data.tags["uwm.cell"] for r in kids) == {c.key: 2 for c in spec.cells()}
    assert {r.data.params["rule"] for r in kids} == RULES
    assert {r.data.tags["uwm.status"] for r in kids} == {"finished"}
    assert_no_duplicates(client, kids, [200, 400, 600])
    run = kids[0]
    assert run.data.tags["uwm.stage"] == "search"
    for kid in kids:   # named by rule, widths, lr and seeds, then the point id; described in one line
        assert re.fullmatch(rf"{kid.data.params['rule']}\S*( \S+=\S+)* \[4\] lr \S+ s0-1 "
                            rf"{kid.data.tags['uwm.point_id']}", kid.info.run_name), kid.info.run_name
        assert (kid.data.params["width"], kid.data.params["depth"]) == ("4", "1")
        assert kid.data.tags["mlflow.note.content"].startswith(kid.data.params["rule"])
    assert "`eval_reward_mean (_std, _sem)`" in open(client.download_artifacts(parent.info.run_id, "glossary.md",
                                                                              str(tmp_path))).read()
    best = client.download_artifacts(parent.info.run_id, "best_per_cell.csv", str(tmp_path))
    assert len(pd.read_csv(best)) == 5 and tags["uwm.best_point"].split(" ")[0] in {r.data.tags["uwm.point_id"] for r in kids}
    assert sum(k.startswith(f"best_{spec.metric}/") for k in parent.data.metrics) == 5   # one column per cell
    assert out.stdout.count("(search, 2 seeds)") == 5          # the summary says which stage answers each cell
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.params["hidden"] == "[4]" and "cell.rule" in run.data.params and "lr" in run.data.params
    # one series per quantity: means (the spread is in curves_per_seed.csv), no one-point final_* summaries,
    # nothing whose value moves only because the set of seeds it covers changes
    assert {"eval_reward_mean", "train_reward_mean", "auc_reward_mean", "seconds_per_episode",
            "threshold_reached_fraction", "diverged_fraction"} <= set(run.data.metrics)
    assert not [k for k in run.data.metrics if k.endswith(("_std", "_sem")) or k.startswith("final_")
                or k in ("episodes_to_threshold_mean", "diverged_mean")], sorted(run.data.metrics)
    # values, not only names: auc_reward_mean is the mean eval reward over training so far, at every report
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval_reward_mean"))
    assert [step for step, _ in history] == [200, 400, 600]
    auc = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "auc_reward_mean"))
    assert [step for step, _ in auc] == [200, 400, 600]
    assert run.data.metrics["auc_reward_mean"] == pytest.approx(sum(v * 200 for _, v in history) / 600)
    assert auc[0][1] == pytest.approx(history[0][1])
    assert run.data.metrics["diverged_fraction"] == 0.0
    assert -1.0 <= run.data.metrics["train_reward_mean"] <= 1.0 and run.data.metrics["seconds_per_episode"] > 0
    # every point run carries its pack's timeline (the profile of benchmarks/study_overhead.py): one per pack,
    # its phases adding up to the trial function's time, the training steps inside the trainer's own clock
    timelines = {r.data.tags["uwm.pack"]: json.loads(r.data.tags["uwm.timeline"]) for r in kids}
    assert len({(r.data.tags["uwm.pack"], r.data.tags["uwm.timeline"]) for r in kids}) == len(timelines)
    for t in timelines.values():
        parts = sum(t[k] for k in ("setup", "compile", "train", "report", "mlflow", "checkpoint", "other"))
        assert parts == pytest.approx(t["total"], abs=0.01) and min(t.values()) >= 0 and t["train"] > 0
        assert t["mlflow"] > 0 and t["checkpoint"] > 0 and abs(t["started"] - time.time()) < 3600
    curves = client.download_artifacts(run.info.run_id, "curves_per_seed.csv", str(tmp_path))
    table = pd.read_csv(curves)
    assert list(table.columns) == ["episode", "seed", "metric", "value"]
    assert set(table["seed"]) == {0, 1} and set(table["episode"]) == {200, 400, 600}

    # each cell was tuned by its own Optuna study
    state = load_searcher_state(str(tmp_path / "runs/quickstart"))
    assert {cell: len(study.trials) for cell, study in state["studies"].items()} == {i: 2 for i in range(5)}

    status = uwm_study("status", "quickstart", cwd=tmp_path)
    assert status.returncode == 0 and "10 finished" in status.stdout, status.stdout + status.stderr
    assert re.search(r"^nodes: \w{8} at \S+ 10 points$", status.stdout, re.M), status.stdout   # one local node
    assert len(re.findall(r"pack-\d+ done \(2 points\) on node \w{8} at ", out.stdout)) == 5
    again = uwm_study("run", str(ROOT / "tune_configs/quickstart.yaml"), *tiny, cwd=tmp_path)   # same spec: no-op
    assert again.returncode == 0 and "study quickstart is complete: nothing to run" in again.stdout
    other = uwm_study("run", str(ROOT / "tune_configs/quickstart.yaml"), *tiny, "--set", "seed=1", cwd=tmp_path)
    assert other.returncode == 2 and other.stderr.startswith("error: name: study 'quickstart' already exists")
    assert len(children(client, "quickstart")[1]) == 10

    # `uwm-study ui` on a store like this one, in a browser: tests/test_mlflow_ui.py


@pytest.mark.slow
def test_packed_and_unpacked_studies_on_sqlite_and_a_real_mlflow_server(tmp_path, procs):
    port = free_port()
    server_log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                               "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--default-artifact-root", str(tmp_path / "server-artifacts")],
                              stdout=server_log, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    procs.remember(server)
    try:
        # packed, on the SQLite default (the server starts meanwhile)
        packed = tmp_path / "packed"
        packed.mkdir()
        out = uwm_study("run", str(write(packed, {**DIVERGE, "pack_size": 8})), cwd=packed)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        procs.remember(server)
        uri = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(uri), 120, "mlflow server")

        # unpacked, on the server
        plain = tmp_path / "plain"
        plain.mkdir()
        out = uwm_study("run", str(write(plain, {**DIVERGE, "pack_size": 1})), "--tracking-uri", uri, cwd=plain)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert not (plain / "mlflow.db").exists() and uri in out.stdout

        # read the server through its REST API
        exp = requests.get(f"{uri}/api/2.0/mlflow/experiments/get-by-name",
                           params={"experiment_name": "diverge"}).json()["experiment"]
        runs = requests.post(f"{uri}/api/2.0/mlflow/runs/search",
                             json={"experiment_ids": [exp["experiment_id"]], "max_results": 1000}).json()["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        parent = [t for t in tags if t.get("uwm.role") == "study"]
        kids = [t for t in tags if t.get("uwm.role") == "trial"]
        assert len(parent) == 1 and all(t["mlflow.parentRunId"] for t in kids)
        server_status = Counter(t["uwm.status"] for t in kids)
        server_packs = Counter(t["uwm.pack"] for t in kids)
        # values of every unpacked point: its parameters, status and eval-reward curve
        server_points = {}
        for run, t in zip(runs, tags):
            if t.get("uwm.role") != "trial":
                continue
            history = requests.get(f"{uri}/api/2.0/mlflow/metrics/get-history",
                                   params={"run_id": run["info"]["run_id"], "metric_key": "eval_reward_mean"}).json()
            params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
            server_points[t["uwm.point_id"]] = (
                t["uwm.status"], {k: params[k] for k in ("lr", "outgoing_norm", "seed", "seeds")},
                {m["step"]: m["value"] for m in history.get("metrics", [])})

        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{packed / 'mlflow.db'}")
        _, packed_kids = children(client, "diverge")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    # same points, same Optuna trials, packed or not
    assert len(kids) == len(packed_kids) == 7            # 2 cells x 3 points + 1 confirm (only lr=0.1 finishes)
    assert sorted(t["uwm.point_id"] for t in kids) == sorted(r.data.tags["uwm.point_id"] for r in packed_kids)
    optuna_counts = [{c: len(s.trials) for c, s in load_searcher_state(str(d / "runs/diverge"))["studies"].items()}
                     for d in (packed, plain)]
    assert optuna_counts[0] == optuna_counts[1] == {0: 3, 1: 3}
    assert len(server_packs) == 7 and server_status["diverged"] == 3
    # ... and the same numbers: each point trained in a pack equals the same point trained alone (float32,
    # so up to round-off), over the reports both recorded (early stopping may end a point at another report)
    compared = 0
    for run in packed_kids:
        if run.data.tags["uwm.stage"] != "search":
            continue   # a confirm point copies its cell's best point, which early stopping may have chosen differently
        status, params, curve = server_points[run.data.tags["uwm.point_id"]]
        assert {k: run.data.params[k] for k in params} == params
        if "stopped" not in (status, run.data.tags["uwm.status"]):
            assert run.data.tags["uwm.status"] == status
        packed_curve = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_reward_mean")}
        for step in set(curve) & set(packed_curve):
            assert packed_curve[step] == pytest.approx(curve[step], rel=1e-5, abs=1e-6), (run.info.run_name, step)
            compared += 1
    assert compared >= 10

    # packed: the diverged members got their own diverged runs, their pack trained on
    by_pack = Counter(r.data.tags["uwm.pack"] for r in packed_kids)
    search_pack = by_pack.most_common(1)[0][0]
    assert by_pack[search_pack] == 6
    status = {r.data.tags["uwm.point_id"]: r.data.tags["uwm.status"] for r in packed_kids}
    assert [status[f"c001-search-{i:03d}"] for i in range(3)] == ["diverged"] * 3
    lr_ok = [r for r in packed_kids if r.data.tags["uwm.cell"] == "lr=0.1" and r.data.tags["uwm.stage"] == "search"]
    assert "finished" in {r.data.tags["uwm.status"] for r in lr_ok}
    assert {r.data.tags["uwm.pack"] for r in lr_ok} == {search_pack}
    finished = [r for r in lr_ok if r.data.tags["uwm.status"] == "finished"]
    assert all(r.data.metrics["episodes"] == 900 for r in finished)   # trained past the divergence (episode 100)
    # member-level early stopping: stopped points ended early, the pack went on to 900 episodes
    stopped = [r for r in lr_ok if r.data.tags["uwm.status"] == "stopped"]
    assert stopped and all(r.data.metrics["episodes"] < 900 for r in stopped)
    confirm = [r for r in packed_kids if r.data.tags["uwm.stage"] == "confirm"]
    assert len(confirm) == 1 and confirm[0].data.params["seed"] == "10000"
    assert confirm[0].data.tags["uwm.status"] == "finished"


def _healthy(uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=5).ok
    except requests.RequestException:
        return False


def resumed_from(storage: Path) -> dict[str, list[int]]:
    """Per pack, the episodes of the checkpoints its trainer was restored from (Trainer.resumed_from, read from
    the pack's last checkpoint): empty for a pack that trained in one go or restarted from scratch."""
    import torch

    out = {}
    for pack in sorted(storage.glob("pack-*")):
        last = max(pack.glob("checkpoint_*"), key=lambda p: p.name)
        out[pack.name] = torch.load(last / "trainer.pt", weights_only=True)["resumed_from"]
    return out


@pytest.mark.slow
def test_a_killed_driver_resumes_without_duplicate_runs(tmp_path, procs):
    # one pack at a time, so when the first pack has ended the others have not, whatever the number of cores
    spec = write(tmp_path, {**LONGER, "max_concurrent": 1,
                            "base": {**LONGER["base"], "episodes": 12_000, "report_every": 1_200}})
    log = tmp_path / "run.log"
    driver = start("run", str(spec), cwd=tmp_path, log=log)
    wait_for(lambda: " done (" in log.read_text(), 240, "a first pack to finish", procs, driver)
    procs.remember(driver)
    driver.kill()                                   # like a crash: no cleanup at all
    driver.wait()
    procs.end()                                     # its orphaned Ray processes
    assert "ended after" not in log.read_text()

    out = uwm_study("resume", "longer", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming study longer" in out.stdout and "8 finished" in out.stdout

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, kids = children(client, "longer")
    assert parent.info.status == "FINISHED"
    assert len(kids) == 8 and {r.data.tags["uwm.status"] for r in kids} == {"finished"}
    assert_no_duplicates(client, kids, list(range(1_200, 12_001, 1_200)))
    state = load_searcher_state(str(tmp_path / "runs/longer"))
    assert {c: len(s.trials) for c, s in state["studies"].items()} == {0: 4, 1: 4}
    # packs that had started came back from a checkpoint (pack-0001 too, when the driver died before Tune
    # recorded its end: it retrains its last window, which MLflow does not record twice); later ones never left
    resumed = resumed_from(tmp_path / "runs/longer")
    assert len(resumed) == 4 and resumed["pack-0003"] == resumed["pack-0004"] == [], resumed
    assert all(e > 0 for episodes in resumed.values() for e in episodes), resumed


@pytest.mark.slow
def test_a_killed_trial_worker_is_retried_and_recorded_once(tmp_path, procs):
    # one pack at a time, so the only training worker is pack-0001's, which has checkpointed when it is killed;
    # four times LONGER's episodes, so it is still training then
    spec = write(tmp_path, {**LONGER, "name": "worker", "max_concurrent": 1,
                            "base": {**LONGER["base"], "episodes": 12_000, "report_every": 1_200}})
    log = tmp_path / "run.log"
    driver = start("run", str(spec), cwd=tmp_path, log=log)
    checkpoints = tmp_path / "runs/worker/pack-0001"

    from mlflow import MlflowClient

    def training_worker():
        procs.remember(driver)
        if not (checkpoints / "checkpoint_000001").exists():
            return None
        # the pack's child runs name the process that trains them (tag uwm.pid): one of the driver's own
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        exp = client.get_experiment_by_name("worker")
        runs = client.search_runs([exp.experiment_id], "tags.`uwm.pack` = 'pack-0001' and tags.`uwm.status` = 'running'")
        pids = {int(r.data.tags["uwm.pid"]) for r in runs if "uwm.pid" in r.data.tags}
        return next((p for p in psutil.Process(driver.pid).children(recursive=True) if p.pid in pids), None)

    wait_for(lambda: training_worker() is not None, 240, "a trial to checkpoint", procs, driver)
    training_worker().kill()
    assert driver.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "failed; retrying from its last checkpoint" in text and "8 finished" in text
    # Ray's traceback of the dead worker went to the study's error log, which the one-line summary names
    errors = tmp_path / "runs/worker/uwm-errors.log"
    assert f"traceback in {errors}" in text and "Traceback (most recent call last)" not in text, text[-3000:]
    assert "Trial task failed" in errors.read_text()

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, kids = children(client, "worker")
    assert len(kids) == 8 and {r.data.tags["uwm.status"] for r in kids} == {"finished"}
    assert_no_duplicates(client, kids, list(range(1_200, 12_001, 1_200)))
    assert not any(r.info.status == "RUNNING" for r in kids)
    # the retried pack went on from its checkpoint (the tracker skips steps it already logged, so the MLflow
    # checks above would pass after a restart from scratch too): its trainer records the restore
    resumed = resumed_from(tmp_path / "runs/worker")
    assert len(resumed["pack-0001"]) == 1 and resumed["pack-0001"][0] >= 1_200, resumed
    assert not any(resumed[pack] for pack in resumed if pack != "pack-0001"), resumed
