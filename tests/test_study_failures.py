"""Every failure fails fast, exits right and leaves nothing behind (issue 13).

In-process through ``study.cli.main`` wherever no study has to run: each bad input must give one
line on stderr, exit 2, and start nothing (no Ray, no MLflow store). The end-to-end cases (local
Ray, SQLite, a joined Ray cluster) are at the end.
"""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch
import yaml

from study.cli import main

TINY = {"name": "tiny",
        "base": {"task": {"address_bits": 1}, "hidden": [4], "seeds": 2, "episodes": 400, "report_every": 100,
                 "eval_episodes": 32, "compile": "off", "probe": {"enabled": False}, "threshold_window": 100},
        "search": {"lr": {"low": 1e-3, "high": 0.1, "log": True}},
        "samples_per_cell": 2}


def with_(**changes) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(TINY))
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return spec


def refused(tmp_path, capsys, spec: dict | str, *extra: str, command: str = "run") -> str:
    """Run ``uwm-study run`` in-process on ``spec``: exit 2, one line on stderr, nothing started."""
    path = tmp_path / "spec.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    db = tmp_path / "mlflow.db"
    code = main([command, str(path), "--tracking-uri", f"sqlite:///{db}", "--storage", str(tmp_path / "runs"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    assert not db.exists() and not (tmp_path / "runs").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    return err


# ----------------------------------------------------------------------------- silent acceptance (6)


@pytest.mark.parametrize("path, value, where", [
    ("base__seeds", True, "base.seeds"),
    ("base__hidden", [8, True], "base.hidden"),
    ("base__episodes", False, "base.episodes"),
    ("base__lr", True, "base.lr"),
    ("samples_per_cell", True, "samples_per_cell"),
    ("seed", True, "seed"),
    ("resources__cpus", True, "resources.cpus"),
    ("pack_size", True, "pack_size"),
    ("search__lr__low", True, "search.lr.low"),
])
def test_a_boolean_where_a_number_is_meant_is_refused(tmp_path, capsys, path, value, where):
    err = refused(tmp_path, capsys, with_(**{path: value}))
    assert err.startswith(f"error: {where}") and "not a boolean" in err, err


def test_booleans_stay_valid_where_they_are_meant(tmp_path):
    from study.spec import validate_spec

    spec = validate_spec(with_(base__probe={"enabled": True, "samples": 8}, base__compile=False,
                               search__lr={"low": 1e-3, "high": 0.1, "log": False}))
    assert spec.cells()[0].config["probe"]["enabled"] is True and spec.cells()[0].config["compile"] == "off"


def test_a_duplicate_key_is_refused_naming_it(tmp_path, capsys):
    text = yaml.safe_dump(TINY) + "samples_per_cell: 3\n"
    err = refused(tmp_path, capsys, text)
    assert "duplicate key 'samples_per_cell'" in err, err


# ----------------------------------------------------------------------------- absurd sizes (3)


@pytest.mark.parametrize("path, value, where", [
    ("base__episodes", 1e12, "base.episodes"),
    ("samples_per_cell", 1e9, "samples_per_cell"),
    ("base__hidden", [100_000_000], "base.hidden"),
    ("base__seeds", 10**6, "base.seeds"),
    ("base__hidden", [4] * 1000, "base.hidden"),
])
def test_values_no_study_can_mean_are_refused(tmp_path, capsys, path, value, where):
    err = refused(tmp_path, capsys, with_(**{path: value}))
    assert err.startswith(f"error: {where}"), err


def test_a_grid_of_too_many_cells_is_refused_before_any_cell_is_built(tmp_path, capsys):
    err = refused(tmp_path, capsys, with_(grid={f"axis{i}": [{"outgoing_norm": 1.0 + j} for j in range(10)]
                                                for i in range(6)}))
    assert "1,000,000 cells" in err, err


def test_a_trial_larger_than_this_machine_is_refused_with_the_estimate(tmp_path, capsys):
    import psutil

    # 20 000 x 20 000 weights x 4 bytes x (12 + 3) per member x 2 members: ~48 GB
    err = refused(tmp_path, capsys, with_(base__hidden=[20_000, 20_000]))
    assert err.startswith("error: base: a trial of cell base needs about") and "GiB" in err, err
    assert f"{psutil.virtual_memory().total / 2**30:.1f} GiB" in err, err


def test_the_memory_check_counts_a_full_pack_of_the_costliest_cell():
    from study.runner import check_fits, trial_bytes
    from study.spec import validate_spec
    from uwm_model.config import TrialConfig
    from uwm_model.memory import member_bytes

    spec = validate_spec(with_(grid={"hidden": [[4], [512, 512]]}, samples_per_cell=8, pack_size=4))
    need, members, cell = trial_bytes(spec)
    big = TrialConfig.model_validate(spec.cells()[1].config)
    assert (members, cell) == (4 * 2, spec.cells()[1].key) and need == 8 * member_bytes(big)
    check_fits(spec, 2, 0, need / 0.8 + 2**30, None, "a node")   # fits
    with pytest.raises(Exception, match="needs about"):
        check_fits(spec, 2, 0, need / 0.8, None, "a node")       # the worker's own 0.5 GiB no longer fits


def test_a_trial_that_could_not_finish_within_max_trial_hours_is_refused(tmp_path, capsys):
    # 2 points x 2 seeds of [4096, 4096] (~17M multiply-adds an episode) for 10^7 episodes: weeks at any speed
    err = refused(tmp_path, capsys, with_(base__hidden=[4096, 4096], base__episodes=10**7, base__report_every=10**6))
    assert err.startswith("error: resources.max_trial_hours: a trial of cell base (4 members) needs at least") \
        and "over the bound of 24 h" in err, err
    # the bound is the user's: a small one refuses the tiny study too, a larger one lets the big one through
    assert "needs at least" in refused(tmp_path, capsys, with_(resources={"max_trial_hours": 1e-6}))
    from study.runner import check_work
    from study.spec import validate_spec

    assert check_work(validate_spec(with_(base__hidden=[4096, 4096], base__episodes=10**7, base__report_every=10**6,
                                          resources={"max_trial_hours": 1e5}))).line(1).startswith("work: ")


def test_the_work_estimate_counts_episodes_members_widths_rules_and_devices():
    from study.runner import GPU_MACS_PER_GPU, STEP_FLOOR_S, check_work, trial_seconds
    from study.spec import validate_spec
    from uwm_model.config import TrialConfig

    def cfg(**changes):
        return TrialConfig.model_validate({**with_(base__hidden=[256, 256], base__probe={"enabled": False})["base"],
                                           **changes})

    one = trial_seconds(cfg(), 8, 0)
    assert trial_seconds(cfg(episodes=800), 8, 0) == pytest.approx(2 * one)   # twice the reports too
    assert trial_seconds(cfg(), 16, 0) == pytest.approx(2 * one)
    assert trial_seconds(cfg(threads=2), 8, 0) == pytest.approx(one / 2)
    assert trial_seconds(cfg(hidden=[512, 512]), 8, 0) > 3.5 * one       # O(n n') per layer
    assert trial_seconds(cfg(rule="uwm"), 8, 0) > 3 * trial_seconds(cfg(rule="wm"), 8, 0)
    assert trial_seconds(cfg(probe={"enabled": True}), 8, 0) > one
    assert trial_seconds(cfg(), 8, 1) < one / 100 and trial_seconds(cfg(device="cpu"), 8, 1) == one
    assert trial_seconds(cfg(), 8000, 0.5) == pytest.approx(2 * trial_seconds(cfg(), 8000, 1))   # half a GPU
    tiny = cfg(hidden=[4], episodes=10**6, report_every=10**6, batch_size=4)
    assert trial_seconds(tiny, 1, 1) == pytest.approx(10**6 / 4 * STEP_FLOOR_S)   # a step never costs less
    assert GPU_MACS_PER_GPU > 1e11
    # a dataset task evaluates its validation and test splits, whatever eval_episodes says
    from study.runner import evaluation_episodes
    digits = {"dataset": "digits", "classes": [3, 8]}
    assert evaluation_episodes(cfg(task=digits)) == evaluation_episodes(cfg(task=digits, eval_episodes=5)) == 35 + 72
    assert evaluation_episodes(cfg(eval_episodes=5)) == 5
    # the study's line: the largest trial (a confirm pack of 64 seeds here) and the sum over every pack
    spec = validate_spec(with_(grid={"hidden": [[4], [64, 64]]}, confirm={"seeds": 64}))
    work = check_work(spec)
    assert work.cell == "hidden=[64, 64]" and work.members == 64, work
    line = work.line(2)
    assert line.startswith("work: ") and "the largest, cell hidden=[64, 64]" in line and " to " in line, line


def test_the_estimate_is_a_range_that_holds_the_bound_and_every_fixed_cost():
    """Low ends: the lower bounds above; high ends: the slowest speeds seen plus each trial's start and reports;
    the wall time between an even share of the work and that share plus the largest trial and the study's start."""
    from study import runner
    from study.spec import validate_spec
    from uwm_model.config import TrialConfig

    spec = validate_spec(with_(samples_per_cell=3, pack_size=2, confirm={"seeds": 5, "top_k": 1}))
    work = runner.check_work(spec)
    cfg = TrialConfig.model_validate(spec.cells()[0].config)
    search_full = runner.trial_seconds(cfg, 2 * cfg.seeds, 0)
    search_rest = runner.trial_seconds(cfg, 1 * cfg.seeds, 0)
    confirm = runner.trial_seconds(cfg.model_copy(update={"seeds": 5}), 5, 0)
    assert work.trials == 3 and work.total[0] == pytest.approx(search_full + search_rest + confirm)
    reports = cfg.episodes // cfg.report_every

    def high(low, points):
        return low / runner.SLOWEST_FRACTION + runner.TRIAL_START_S + reports * points * runner.REPORT_S_PER_POINT

    assert work.total[1] == pytest.approx(high(search_full, 2) + high(search_rest, 1) + high(confirm, 1))
    assert work.largest == pytest.approx((search_full, high(search_full, 2))) and work.members == 2 * cfg.seeds
    low, top = work.wall(2)
    assert low == pytest.approx(max(search_full, work.total[0] / 2))
    assert top == pytest.approx(runner.STUDY_START_S + work.total[1] / 2 + work.largest[1])
    assert work.wall(1)[0] == pytest.approx(work.total[0]) and "under 1 s to " in work.line(1)


# ----------------------------------------------------------------------------- resources and devices (1, 4)


def test_resources_this_machine_can_never_offer_are_refused_up_front(tmp_path, capsys):
    err = refused(tmp_path, capsys, with_(resources={"cpus": (os.cpu_count() or 1) + 98}))
    assert err.startswith("error: resources.cpus: a trial asks for") and "wait forever" in err, err
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    err = refused(tmp_path, capsys, with_(resources={"gpus": gpus + 1}))
    assert err.startswith("error: resources.gpus: a trial asks for") and "wait forever" in err, err


@pytest.mark.parametrize("changes, start", [
    ({"base__device": "cuda"}, "error: base.device: device cuda needs resources.gpus > 0"),
    ({"base__device": "cuda:1", "resources": {"gpus": 1}}, "error: base.device: device cuda:1: a trial holding"),
    ({"grid": {"device": ["cpu", "cuda"]}}, "error: grid.device: device cuda needs resources.gpus > 0"),
])
def test_a_device_no_trial_can_see_is_refused(tmp_path, capsys, changes, start):
    err = refused(tmp_path, capsys, with_(**changes))
    assert err.startswith(start), err


def test_train_refuses_a_cuda_device_that_does_not_exist(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**TINY["base"], "device": f"cuda:{torch.cuda.device_count()}"}))
    assert main(["train", str(cfg), "--out", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: device: cuda:") and "does not exist here" in err and "\n" not in err, err
    assert not (tmp_path / "c.csv").exists()


# ----------------------------------------------------------------------------- noise and surprises (9)


def test_set_with_a_trial_field_names_the_right_path(tmp_path, capsys):
    err = refused(tmp_path, capsys, TINY, "--set", "episodes=200")
    assert err == "error: --set: 'episodes' is not a field of the study spec; did you mean base.episodes?", err
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(TINY))
    from study.spec import load_spec

    assert load_spec(path, ["base.episodes=200", "base.report_every=100"]).cells()[0].config["episodes"] == 200


def test_report_every_left_at_its_default_is_named_as_the_culprit(tmp_path, capsys):
    spec = with_()
    del spec["base"]["report_every"]
    err = refused(tmp_path, capsys, spec)
    assert "report_every=10000 exceeds episodes=400 (report_every is at its default 10000: set report_every" in err
    err = refused(tmp_path, capsys, with_(base__report_every=800))   # set by the user: no hint about defaults
    assert err.endswith("report_every=800 exceeds episodes=400"), err


def test_report_refuses_to_overwrite_a_folder_without_force(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("an earlier report")
    assert main(["report", "nothing-here", "--out", str(out), "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --out: {out} already exists") and "--force" in err, err
    assert (out / "index.html").read_text() == "an earlier report"
    # with --force the check passes and the next problem (no such study) is reported instead
    assert main(["report", "nothing-here", "--out", str(out), "--force", "--storage", str(tmp_path),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "--out" not in capsys.readouterr().err


def test_report_of_a_study_that_does_not_exist_is_one_line_and_creates_nothing(tmp_path, capsys):
    from study.tracking import client

    out = tmp_path / "report"
    for store in ("none.db", "other.db"):   # no tracking store at all, then a store without that study
        uri = f"sqlite:///{tmp_path / store}"
        if store == "other.db":
            client(uri).create_experiment("another-study")
        capsys.readouterr()
        assert main(["report", "nothing-here", "--out", str(out), "--storage", str(tmp_path / "runs"),
                     "--tracking-uri", uri]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith("error: name: no study named 'nothing-here'") and "\n" not in err, err
        assert not captured.out and not out.exists() and not (tmp_path / "runs").exists()
    assert not (tmp_path / "none.db").exists()


def test_resume_waits_for_resources_as_the_cluster_it_resumes_on_says(tmp_path):
    """Tune restores the callbacks pickled when the study started (here on a local Ray: no resource wait);
    a resume on a joined cluster where no node fits a trial must wait with its timeout all the same."""
    from ray import tune
    from ray.tune.experiment import Trial

    from study import runner
    from study.spec import validate_spec
    from study.trainable import trainable

    spec = validate_spec(with_())
    meta = {"name": spec.name, "storage": str(tmp_path / "runs"), "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}",
            "experiment_id": "1", "parent_run_id": "0" * 32}
    runner._new_tuner(spec, meta, 1, address=None)   # writes tuner.pkl, as a local run does when it starts
    path = runner.experiment_path(meta["storage"], spec.name)
    same = trainable(runner._context(spec, meta), spec.resources.cpus, spec.resources.gpus)
    saved = next(c for c in tune.Tuner.restore(path, same)._local_tuner.get_run_config().callbacks
                 if isinstance(c, runner.Progress))
    assert saved.waiting is None and saved.wait_s == float("inf") and saved.session == (meta["storage"], spec.name)

    options = {"waiting": "waiting for a node with 1 CPUs", "wait_s": 0.2}   # what _progress_options says when joined
    tuner = runner.restore_tuner(spec, meta, options)
    progress = next(c for c in tuner._local_tuner.get_run_config().callbacks if isinstance(c, runner.Progress))
    assert (progress.waiting, progress.wait_s, progress.session) == (options["waiting"], 0.2, None)
    progress.setup()
    pending = [Trial("uwm", config={}, stub=True)]
    progress.on_step_end(0, pending)   # within the timeout: waits
    time.sleep(0.3)
    with pytest.raises(runner.ResourceWait, match="waiting for a node with 1 CPUs"):
        progress.on_step_end(1, pending)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_help_names_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "130 "):
        assert f"\n  {code}" in text, code


# ----------------------------------------------------------------------------- end to end (7, 8, 4, 1)

import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import psutil  # noqa: E402

from tests.test_study_run import LONGER, assert_no_duplicates, children, procs, start, uwm_study, wait_for  # noqa: E402,F401


def _client(tmp_path):
    from study.tracking import client

    return client(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _running(pid: int, created: float) -> bool:
    """The recorded process still runs (a zombie waiting for its reaper has ended)."""
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - created) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _training(tmp_path, name) -> bool:
    try:
        _, kids = children(_client(tmp_path), name)
    except Exception:   # noqa: BLE001 - the store or the experiment does not exist yet
        return False
    return any(r.info.status == "RUNNING" for r in kids)


@pytest.mark.slow
def test_a_killed_driver_leaves_nothing_running_and_ctrl_c_exits_130(tmp_path, procs):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**LONGER, "name": "cut", "base": {**LONGER["base"], "episodes": 6000}}))
    session = tmp_path / "runs" / "cut" / "uwm-session.json"

    # kill -9 of the driver: its watchdog ends every process of its Ray session within seconds
    driver = start("run", str(spec), cwd=tmp_path, log=tmp_path / "run.log")
    procs.remember(driver)
    wait_for(lambda: session.exists() and _training(tmp_path, "cut"), 240, "a point training", procs, driver)
    record = json.loads(session.read_text())
    assert record["driver"][0] == driver.pid and record["processes"]
    driver.kill()
    driver.wait()
    assert "work: " in (tmp_path / "run.log").read_text()   # the estimate, printed as the study starts
    deadline = time.time() + 10
    while [pid for pid, created in record["processes"] if _running(pid, created)] and time.time() < deadline:
        time.sleep(0.5)
    left = [psutil.Process(pid).cmdline() for pid, created in record["processes"] if _running(pid, created)]
    assert not left, f"the dead driver's Ray processes outlived it by 10 s: {left}"
    assert "left running by a stopped session of study cut" in (tmp_path / "run.log").read_text()

    resumed = start("resume", "cut", cwd=tmp_path, log=tmp_path / "resume.log")
    procs.remember(resumed)
    log = tmp_path / "resume.log"
    wait_for(lambda: re.search(r"resuming study cut.*?, [1-9] training", log.read_text(), re.S),
             240, "the resumed study training", procs, resumed)

    # Ctrl-C: exit 130, our hint only, running points marked interrupted (KILLED in MLflow)
    resumed.send_signal(signal.SIGINT)
    assert resumed.wait(120) == 130
    log = (tmp_path / "resume.log").read_text()
    assert "continue with `uwm-study resume cut`" in log and "Tuner.restore" not in log, log[-3000:]
    assert "Traceback (most recent call last)" not in log, log[-3000:]   # Ray's go to uwm-errors.log
    parent, kids = children(_client(tmp_path), "cut")
    assert parent.info.status == "KILLED" and not [r for r in kids if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" and r.data.tags["uwm.status"] == "running" for r in kids)
    assert not session.exists()

    # and the study resumes cleanly: every point ended once, exit 0
    out = uwm_study("resume", "cut", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    parent, kids = children(_client(tmp_path), "cut")
    assert len(kids) == 8 and {r.data.tags["uwm.status"] for r in kids} <= {"finished", "diverged", "stopped"}
    assert all(r.info.status == "FINISHED" for r in kids) and parent.info.status == "FINISHED"
    assert_no_duplicates(_client(tmp_path), kids, list(range(300, 6001, 300)))
    assert "View run" not in out.stdout and "Token authentication" not in out.stdout + out.stderr


@pytest.mark.slow
def test_on_a_joined_cluster_failed_points_exit_3_and_an_unmet_request_times_out(tmp_path, procs):
    """A joined Ray cluster (here a local head started apart, claiming one GPU it does not have):
    device cuda gets its GPU from Ray but no CUDA device, so every pack fails -> exit 3; a request no
    node can meet waits with one message and gives up after resources.wait_timeout_s -> exit 2."""
    import shutil

    from tests.test_study_run import env, free_port

    port = free_port()
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=1",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env={**env(), "RAY_AUTH_MODE": "disabled"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.remember(head)
    try:
        address = f"127.0.0.1:{port}"
        wait_for(lambda: subprocess.run([ray_cli, "status", f"--address={address}"], env=env(),
                                        capture_output=True).returncode == 0, 60, "the head node", procs, head)
        base = {**TINY, "max_failures": 0, "samples_per_cell": 2}
        spec = tmp_path / "gpu.yaml"
        spec.write_text(yaml.safe_dump({**base, "name": "nogpu", "base": {**TINY["base"], "device": "cuda"},
                                        "resources": {"gpus": 1}}))
        out = uwm_study("run", str(spec), "--address", address, cwd=tmp_path)
        procs.remember(head)
        assert out.returncode == 3, out.stdout[-3000:] + out.stderr[-3000:]
        assert "2 point(s) failed" in out.stderr and "uwm-study status nogpu" in out.stderr
        _, kids = children(_client(tmp_path), "nogpu")
        assert len(kids) == 2 and {r.data.tags["uwm.status"] for r in kids} == {"failed"}

        spec.write_text(yaml.safe_dump({**base, "name": "toobig", "resources": {"cpus": 4, "wait_timeout_s": 5}}))
        t0 = time.time()
        out = uwm_study("run", str(spec), "--address", address, cwd=tmp_path)
        assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
        assert "waiting for a node with 4 CPUs: none of the 1 live nodes has them now" in out.stdout, out.stdout
        assert out.stderr.strip().splitlines()[-1].startswith("error: resources.wait_timeout_s: no trial started "
                                                              "within 5 s"), out.stderr[-2000:]
        assert time.time() - t0 < 120
        # and so does its resume, from Ray Tune's saved state
        out = uwm_study("resume", "toobig", "--address", address, cwd=tmp_path)
        assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
        assert "resuming study toobig" in out.stdout and "waiting for a node with 4 CPUs" in out.stdout, out.stdout
        assert out.stderr.strip().splitlines()[-1].startswith("error: resources.wait_timeout_s: no trial started "
                                                              "within 5 s"), out.stderr[-2000:]
    finally:
        head.terminate()   # `ray start --block` stops the processes it started
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            pass
        # `ray start` names itself the host's current cluster; a plain ray.init() would try to join it
        current = os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")
        if os.path.exists(current) and open(current).read().strip().endswith(f":{port}"):
            os.remove(current)


# ----------------------------------------------------------------------------- a longer tracking outage (10)


def _server(tmp_path, port):
    from tests.test_study_run import env

    log = (tmp_path / "server.log").open("a")
    return subprocess.Popen([str(os.path.join(os.path.dirname(sys.executable), "mlflow")), "server", "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1",   # starts in a third of the time of 4
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--default-artifact-root", str(tmp_path / "artifacts")],
                            stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True)


def _kill(server):
    for p in [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]:
        p.kill()
    server.wait()
    try:   # the server's job runner and its consumers, which outlive it, stay in its session's group
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_tracking_outages_shorter_and_longer_than_the_retries(tmp_path, procs, monkeypatch):
    """MLflow's client retries every request with backoff (MLflow's own default is about 4 minutes; here its
    own environment variables shorten it to 0 + 6 + 12 + 24 = 42 s). A server down for less than that: the
    trials pause in their logging call and go on. Down for longer: the packs that tried to log fail (no Tune
    retries here), their points end as failed once the server is back, exit 3; `resume` trains only those
    packs again, and the study ends with every point recorded once, exit 0."""
    from study.tracking import client
    from tests.test_study_run import _healthy, free_port

    for name, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "3",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}.items():
        monkeypatch.setenv(name, value)   # the CLI's processes (driver, Ray workers) inherit them
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _server(tmp_path, port)
    procs.remember(server)
    wait_for(lambda: _healthy(uri), 120, "mlflow server", procs, server)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**LONGER, "name": "outage", "max_failures": 0,
                                    "base": {**LONGER["base"], "episodes": 1500}}))
    driver = start("run", str(spec), "--tracking-uri", uri, cwd=tmp_path, log=tmp_path / "run.log")
    procs.remember(driver)

    def kids(status=None):
        try:
            _, runs = children(client(uri), "outage")
        except Exception:   # noqa: BLE001 - the server is down or the experiment does not exist yet
            return []
        return [r for r in runs if status is None or r.data.tags.get("uwm.status") == status]

    t0 = time.time()
    # shorter than the retries: waited for
    wait_for(lambda: any(r.info.status == "RUNNING" for r in kids()), 240, "a point training", procs, driver)
    procs.remember(server)
    print(f"\n[{time.time() - t0:5.0f} s] a point trains: server down (shorter outage)")
    _kill(server)
    server = _server(tmp_path, port)   # down while it starts again: a few seconds
    procs.remember(server)
    wait_for(lambda: _healthy(uri), 120, "mlflow server again", procs, server)
    print(f"[{time.time() - t0:5.0f} s] server back")
    assert driver.poll() is None, (tmp_path / "run.log").read_text()[-3000:]

    # longer than the retries: the packs training then fail, and say so
    wait_for(lambda: kids("finished"), 240, "a finished point", procs, driver)
    assert not kids("failed"), ("a point failed in the outage shorter than the retries:\n"
                                + (tmp_path / "run.log").read_text()[-6000:])
    procs.remember(server)
    print(f"[{time.time() - t0:5.0f} s] a point finished: server down (longer outage)")
    _kill(server)
    time.sleep(48)   # a call that began as it went down fails after 42 s of retries
    assert driver.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
    server = _server(tmp_path, port)
    procs.remember(server)
    assert driver.wait(300) == 3, (tmp_path / "run.log").read_text()[-3000:]
    log = (tmp_path / "run.log").read_text()
    assert "point(s) failed" in log and "failed after its retries" in log, log[-3000:]
    # said aloud as it happened: the server stopped answering (with how long the trials wait), then answered again
    assert f"tracking: the MLflow server at {uri} does not answer; the trials wait for it (MLflow's retries, about " \
           "42 s)" in log, log[-3000:]
    assert f"tracking: the MLflow server at {uri} answers again after " in log, log[-3000:]
    assert "Traceback (most recent call last)" not in log, log[-3000:]   # Ray's go to uwm-errors.log
    failed, ended = kids("failed"), {r.info.run_id: r.info.end_time for r in kids() if r.data.tags["uwm.status"] != "failed"}
    assert failed and ended and not kids("running"), [r.data.tags["uwm.status"] for r in kids()]

    # resume trains the failed points only
    print(f"[{time.time() - t0:5.0f} s] exit 3: resume")
    out = uwm_study("resume", "outage", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"ended with {len(failed)} failed point" in out.stdout, out.stdout[-3000:]
    parent, runs = children(client(uri), "outage")
    assert len(runs) == 8 and all(r.data.tags["uwm.status"] == "finished" for r in runs)
    assert all(r.info.status == "FINISHED" for r in runs) and parent.info.status == "FINISHED"
    assert {r.info.run_id: r.info.end_time for r in runs if r.info.run_id in ended} == ended   # not run again
    assert {r.info.run_id for r in failed} <= {r.info.run_id for r in runs}   # the same runs, continued
    assert_no_duplicates(client(uri), runs, list(range(300, 1501, 300)))
    assert "View run" not in log
