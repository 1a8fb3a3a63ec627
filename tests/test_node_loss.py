"""A Ray node lost in the middle of a study, for real: two nodes started with `ray start` on this host (1 CPU
each), a study joined to them with --address, and the worker node killed (-9) while a trial trains on it. The
driver says so in one line (with the trials the cluster now fits), Ray Tune retries the trial on the node left
from its checkpoint, the study ends with every point recorded once, and `uwm-study status` counts the moved
point on both nodes."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import yaml
from ray_nodes import agent_ports, family, free_ports, stop_nodes, wait_until

BIN = Path(sys.executable).parent


@pytest.fixture
def two_nodes(tmp_path):
    """Yields (env, GCS address, the worker node's `ray start --block` process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    gcs, client, *agents = free_ports(10)

    ray_tmp = tempfile.mkdtemp(prefix="uwm-ray-", dir="/tmp")   # short: Ray's socket paths must fit 107 bytes
    common = ["--num-cpus=1", "--object-store-memory=200000000", "--block"]
    nodes, pids = [], set()
    try:
        nodes.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_tmp}", *agent_ports(agents, 0), *common],
            env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT))
        wait_until(lambda: "block forever" in (tmp_path / "head.log").read_text(), 90, "the head node", nodes[0], poll=1)
        nodes.append(subprocess.Popen(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{gcs}", *agent_ports(agents, 1), *common],
            env=env, stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT))

        def alive() -> int:
            for node in nodes:
                pids.update(p.pid for p in family(node.pid))
            out = subprocess.run([str(BIN / "ray"), "status", "--address", f"127.0.0.1:{gcs}"], env=env,
                                 capture_output=True, text=True, timeout=60).stdout
            active = out.split("Active:")[-1].split("Pending:")[0]
            return active.count("node_")

        wait_until(lambda: alive() == 2, 120, "two alive nodes", nodes[1], poll=2)
        yield env, f"127.0.0.1:{gcs}", nodes[1]
    finally:
        stop_nodes(nodes, pids, ray_tmp)


@pytest.mark.cluster
@pytest.mark.slow
def test_a_lost_node_is_said_aloud_and_its_trial_moves_to_the_node_left(two_nodes, tmp_path):
    env, address, worker = two_nodes
    spec = {"name": "lost", "base": {"task": {"address_bits": 1}, "hidden": [8], "episodes": 120_000,
                                     "report_every": 12_000, "seeds": 2, "eval_episodes": 64, "compile": "off",
                                     "probe": {"enabled": False}, "threshold_window": 100},
            "grid": {"rule": ["wm", "reinforce"]}, "search": {"lr": {"low": 1e-3, "high": 0.3, "log": True}},
            "samples_per_cell": 1, "pack_size": 1, "max_failures": 2}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    log = tmp_path / "run.log"
    storage, uri = tmp_path / "runs", f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen([sys.executable, "-m", "study.cli", "run", "spec.yaml", "--address", address,
                               "--storage", str(storage), "--tracking-uri", uri],
                              cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        def training_on_worker() -> bool:   # a trial trains on the worker node (Ray's title of a trial's process)
            def title(p):
                try:
                    return " ".join(p.cmdline())
                except psutil.Error:
                    return ""
            return any("ImplicitFunc" in title(p) for p in family(worker.pid)) and any(
                storage.glob("lost/*/checkpoint_000001"))

        wait_until(lambda: "(2 nodes" in log.read_text() and training_on_worker(), 240, "a trial on the worker node",
                   driver)
        for p in [*family(worker.pid), psutil.Process(worker.pid)]:
            try:
                p.kill()
            except psutil.Error:
                pass
        assert driver.wait(600) == 0, log.read_text()[-4000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    text = log.read_text()
    assert re.search(r"node \w{8} at \S+ lost: its trials are retried from their checkpoints on the nodes left; "
                     r"the cluster now fits 1 trial at once \(was 2\)", text), text[-4000:]
    assert "2 finished" in text, text[-4000:]
    status = subprocess.run([sys.executable, "-m", "study.cli", "status", "lost", "--storage", str(storage)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert re.search(r"^nodes: .*\(1 point trained on more than one node\)$", status.stdout, re.M), status.stdout
