"""The cluster path for real: a head and a worker node started with `ray start` on this host,
small studies submitted with `ray job submit` (the recipe in deploy/README.md), trials on both
nodes, results in MLflow.

Two jobs are submitted because torch has been seen to fail to load in about a third of
submitted jobs when imported lazily (see the field notes); the entry modules import it first.
The nodes run with `--block` under this test, which ends them (and only them) by process id:
`ray stop` would also stop other Ray clusters on the host.
"""

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from ray_nodes import agent_ports, family, free_ports, stop_nodes, wait_until

BIN = Path(sys.executable).parent
SPEC = {
    "base": {"task": {"address_bits": 1}, "hidden": [4], "episodes": 1500, "report_every": 300, "seeds": 2,
             "eval_episodes": 64, "compile": "off", "probe": {"enabled": False}, "threshold_window": 100},
    "grid": {"rule": ["uwm", "hwm"]},
    "search": {"lr": {"low": 1e-3, "high": 0.3, "log": True}},
    "samples_per_cell": 2,
    "pack_size": 1,
}


@pytest.fixture
def cluster(tmp_path):
    """A two-node Ray cluster (1 CPU each) with token authentication; yields (env, dashboard URL)."""
    # deploy/README.md's one-host recipe from a HOME that never ran Ray: generate, then token mode
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    assert len((home / ".ray/auth_token").read_text()) >= 32
    env["RAY_AUTH_MODE"] = "token"
    gcs, dashboard, client, *agents = free_ports(11)

    ray_tmp = tempfile.mkdtemp(prefix="uwm-ray-", dir="/tmp")   # short: Ray's socket paths must fit 107 bytes
    common = ["--num-cpus=1", "--object-store-memory=200000000", "--block"]
    nodes, pids = [], set()
    try:
        nodes.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
             f"--ray-client-server-port={client}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             "--disable-usage-stats", f"--temp-dir={ray_tmp}", *agent_ports(agents, 0), *common],
            env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{dashboard}"
        wait_until(lambda: "block forever" in (tmp_path / "head.log").read_text(), 90, "the head node", nodes[0], poll=1)
        nodes.append(subprocess.Popen(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{gcs}", *agent_ports(agents, 1), *common],
            env=env, stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT))

        def two_nodes():
            for node in nodes:
                pids.update(p.pid for p in psutil.Process(node.pid).children(recursive=True))
            out = subprocess.run([str(BIN / "ray"), "list", "nodes", "--address", url], env=env,
                                 capture_output=True, text=True, timeout=60).stdout
            return out.count("ALIVE") == 2

        wait_until(two_nodes, 120, "two alive nodes", nodes[1], poll=1)
        yield env, url
    finally:
        stop_nodes(nodes, pids, ray_tmp)


def test_cluster_launcher_config_is_valid_for_ray_up():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "deploy/cluster.yaml").read_text())
    validate_config(fillout_defaults(config))          # what `ray up` checks before it starts anything
    assert config["file_mounts"]["~/uwm-study"] == "."
    setup = " ".join(config["setup_commands"])
    assert "pip install -q -e ~/uwm-study" in setup and "torch" in setup
    assert all("RAY_AUTH_MODE=token" in " ".join(c) for c in (config["head_setup_commands"],   # read by ray start
                                                            config["worker_start_ray_commands"]))
    for node_type in ("head", "cpu", "gpu"):   # Ubuntu 24.04 (Python 3.12), not Ray's default image
        assert re.fullmatch(r"resolve:ssm:/aws/service/\S+ubuntu\S+24\.04\S+/ami-id",
                            config["available_node_types"][node_type]["node_config"]["ImageId"])


def test_cluster_launcher_installs_the_clients_ray_version():
    import ray

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "deploy/cluster.yaml").read_text())
    assert f'"ray[tune,default]=={ray.__version__}"' in " ".join(config["setup_commands"])


@pytest.mark.cluster
@pytest.mark.slow
def test_ray_job_submit_runs_studies_across_two_nodes(cluster, tmp_path):
    env, url = cluster
    job = tmp_path / "job"
    job.mkdir()
    db, storage = tmp_path / "mlflow.db", tmp_path / "runs"    # one host: every node reaches these paths
    for name in ("cluster-a", "cluster-b"):
        (job / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **SPEC}))
        for attempt in range(20):   # the head's job agent may come up a little after the node
            out = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", str(job), "--",
                 sys.executable, "-m", "study.cli", "run", f"{name}.yaml", "--storage", str(storage),
                 "--tracking-uri", f"sqlite:///{db}"],
                env=env, capture_output=True, text=True, timeout=300)
            if "No available agent to submit job" not in out.stderr:
                break
            time.sleep(3)
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
        assert f"study {name} ended" in out.stdout and "2 nodes" in out.stdout
        assert f"uwm-study status {name} --storage {storage}" in out.stdout     # the hint carries the job's flag

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    nodes = set()
    for name in ("cluster-a", "cluster-b"):
        runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        kids = [r for r in runs if r.data.tags.get("uwm.role") == "trial"]
        assert len(kids) == 4 and {r.data.tags["uwm.status"] for r in kids} == {"finished"}
        nodes |= {r.data.tags.get("uwm.node", "") for r in kids}
    # the driver saw both nodes ("2 nodes" above); where Ray placed the four trials is its choice, so
    # every trial records the node it ran on, and there are at most the cluster's two
    assert "" not in nodes and 1 <= len(nodes) <= 2


@pytest.fixture
def gpu_head(tmp_path):
    """A one-node Ray cluster that declares one GPU (2 CPUs, --num-gpus=1) on this machine without CUDA;
    yields (env, GCS address)."""
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    gcs, client, listen, grpc, runtime_env, metrics = free_ports(6)
    ray_tmp = tempfile.mkdtemp(prefix="uwm-ray-", dir="/tmp")
    log = tmp_path / "head.log"
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_tmp}",
         f"--dashboard-agent-listen-port={listen}", f"--dashboard-agent-grpc-port={grpc}",
         f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
         "--num-cpus=2", "--num-gpus=1", "--object-store-memory=200000000", "--block"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    pids = set()
    try:
        wait_until(lambda: "block forever" in log.read_text(), 90, "the head node", head, poll=1)
        pids.update(p.pid for p in family(head.pid))
        yield env, f"127.0.0.1:{gcs}"
    finally:
        stop_nodes([head], pids, ray_tmp)


@pytest.mark.slow
def test_four_quarter_gpu_trials_share_one_declared_gpu_at_once_and_fall_back_to_the_cpu(gpu_head, tmp_path):
    """resources.gpus 0.25 on a node declaring one GPU: the study plans four trials at once, Ray runs the four
    packs concurrently (their MLflow runs overlap in time), and each, finding no CUDA device, trains on the CPU."""
    env, address = gpu_head
    spec = {"name": "gpu-share", **SPEC, "base": {**SPEC["base"], "episodes": 6000, "report_every": 300},
            "resources": {"cpus": 0.5, "gpus": 0.25}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    db = tmp_path / "mlflow.db"
    out = subprocess.run([sys.executable, "-m", "study.cli", "run", "spec.yaml", "--address", address,
                          "--storage", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{db}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "4 trials at once" in out.stdout, out.stdout[-2000:]

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("gpu-share").experiment_id])
    kids = [r for r in runs if r.data.tags.get("uwm.role") == "trial"]
    assert len(kids) == 4 and {r.data.tags["uwm.status"] for r in kids} == {"finished"}
    assert len({r.data.tags["uwm.pack"] for r in kids}) == 4
    assert {r.data.tags["uwm.device"] for r in kids} == {"cpu"}
    assert max(r.info.start_time for r in kids) < min(r.info.end_time for r in kids)   # all four trained at once
