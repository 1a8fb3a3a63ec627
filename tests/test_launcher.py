"""The cluster launcher path as users run it, for real: `ray up`, `ray submit`, `ray exec`,
`ray job submit` and `ray down` with deploy/cluster.yaml, the AWS provider swapped for Ray's
local node provider over SSH.

Two "machines" on this host: the head at 127.0.0.1 and a worker at 127.0.0.2, each a plain
`sshd` (Debian's openssh-server) in a PID namespace of its own, with a home directory of its
own. The namespace makes each a machine for process management too: the `ray stop` that
deploy/cluster.yaml and `ray down` run on a node sees only that node's processes (on the bare
host it would stop every Ray cluster here), and ending the namespace ends every process the
test started there.

Ray's SSH runner has no port setting (ray/autoscaler/_private/command_runner.py: fixed `-o`
options, a key and an optional ProxyCommand), and ssh reads ~/.ssh/config from the passwd home
rather than $HOME; so an `ssh` first on PATH adds `-F <test ssh_config>`, which maps both
addresses to the test's port. deploy/cluster.yaml runs unchanged except for what a test on a
shared host must change, each replacement asserted to apply: the provider and ssh user, ports,
servers on 127.0.0.1, the storage bucket, and setup_commands (the nodes link the already
installed environment instead of installing Python, the driver, torch and Ray), and one MLflow
worker process instead of four. Needs root (for `unshare`), openssh-server and rsync: ./dev test
installs the two packages where they are missing.
"""

import copy
import getpass
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from ray_nodes import free_ports, wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VENV = Path(sys.prefix)
SHRINK = ["--set", "base.episodes=1000", "--set", "base.report_every=500", "--set", "base.eval_episodes=64",
          "--set", "base.seeds=2", "--set", "samples_per_cell=2", "--set", "base.hidden=[8]", "--set", "confirm=null"]


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy/cluster.yaml changed: {old!r} not found in {text!r}"
    return text.replace(old, new)


def local_config(deploy: dict, base: Path, ports: dict, key: Path, cluster_name: str) -> dict:
    """deploy/cluster.yaml on the local provider, with this test's ports and paths."""
    cfg = copy.deepcopy(deploy)
    cfg["cluster_name"] = cluster_name
    cfg["provider"] = {"type": "local", "head_ip": "127.0.0.1", "worker_ips": ["127.0.0.2"]}
    cfg["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(key)}
    cfg["max_workers"] = 1
    del cfg["available_node_types"], cfg["head_node_type"]
    # the environment is installed already: link it (the synced repository goes first on the path,
    # as `pip install -e ~/uwm-study` would make it); keep the config's activation line
    activate = [c for c in deploy["setup_commands"] if "bin/activate" in c]
    assert len(activate) == 1
    cfg["setup_commands"] = [f"ln -sfn '{VENV}' ~/uwm-env",
                             "grep -qs PYTHONPATH ~/.bashrc || echo 'export PYTHONPATH=$HOME/uwm-study' >> ~/.bashrc",
                             *activate]

    def node_flags(node: str) -> str:   # ports of its own: other Ray clusters may hold the defaults
        p = ports[node]
        return (f" --num-cpus=1 --object-store-memory=200000000"
                f" --dashboard-agent-listen-port={p[0]} --dashboard-agent-grpc-port={p[1]}"
                f" --runtime-env-agent-port={p[2]} --metrics-export-port={p[3]}")

    env_file = cfg["head_setup_commands"][0]
    env_file = replace(env_file, "127.0.0.1:6379", f"127.0.0.1:{ports['gcs']}")
    env_file = replace(env_file, "s3://EDIT-your-bucket/uwm-study/runs", str(base / "shared-runs"))
    env_file = replace(env_file, '$(hostname -I | cut -d " " -f 1):5000', f"127.0.0.1:{ports['mlflow']}")
    cfg["head_setup_commands"] = [env_file, *cfg["head_setup_commands"][1:]]

    head = []
    for cmd in cfg["head_start_ray_commands"]:
        if "mlflow server" in cmd and "nohup" in cmd:
            cmd = replace(cmd, "--host 0.0.0.0 --port 5000", f"--host 127.0.0.1 --port {ports['mlflow']} --workers 1")
        if "ray start" in cmd:
            cmd = replace(cmd, "--port=6379", f"--port={ports['gcs']} --dashboard-port={ports['dashboard']}"
                                              f" --ray-client-server-port={ports['client']}")
            cmd = replace(cmd, "--disable-usage-stats", "--disable-usage-stats" + node_flags("head"))
        head.append(cmd)
    cfg["head_start_ray_commands"] = head
    worker = "\n".join(cfg["worker_start_ray_commands"])
    worker = replace(worker, '--address="$RAY_HEAD_IP:6379"',
                     f'--address="$RAY_HEAD_IP:{ports["gcs"]}" --node-ip-address=127.0.0.2' + node_flags("worker"))
    cfg["worker_start_ray_commands"] = worker.split("\n")
    return cfg


class Machine:
    """One sshd, in a PID namespace of its own, answering on `ip` with `home` as $HOME."""

    def __init__(self, base: Path, name: str, ip: str, port: int, path: str):
        self.home = base / name
        self.home.mkdir()
        # Ray's commands run in `bash --login -i`, whose /etc/profile resets PATH: the .bashrc they
        # source puts the port-mapping ssh first again (for the head's autoscaler too)
        (self.home / ".bashrc").write_text(f"export PATH='{path}':$PATH\n")
        config = base / f"sshd-{name}.conf"
        config.write_text("\n".join([
            f"ListenAddress {ip}:{port}", f"HostKey {base / 'host_key'}",
            f"AuthorizedKeysFile {base / 'client_key.pub'}", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "UsePAM no",
            "StrictModes no", "PidFile none",
            f"SetEnv HOME={self.home} RAY_TMPDIR={base / 'tmp'}", ""]))
        self.log = base / f"sshd-{name}.log"
        # --kill-child: when unshare ends, its sshd (the namespace's first process) is killed, and
        # with it every process in the namespace
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", _sshd(), "-D", "-e", "-f", str(config)],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: _listening(ip, port), 20, f"sshd on {ip}:{port}", self.proc)
        except AssertionError as err:   # e.g. unshare not permitted: the test needs root (CAP_SYS_ADMIN)
            raise AssertionError(f"{err}: {self.log.read_text()[-2000:]}") from None

    def processes(self) -> list[str]:
        try:
            return [" ".join(p.cmdline()[:2]) for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self):
        self.proc.kill()     # unshare ignores SIGTERM while it waits for its child
        self.proc.wait(timeout=30)


def _sshd() -> str:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    assert Path(sshd).exists(), "this test needs openssh-server (./dev test installs it where it is missing)"
    return sshd


def _listening(ip, port) -> bool:
    with socket.socket() as s:
        return s.connect_ex((ip, port)) == 0


@pytest.fixture
def launcher(tmp_path):
    """Two ssh machines; yields (base folder, the client's environment with a fresh HOME, machines, cluster name)."""
    assert shutil.which("rsync"), "ray up syncs files with rsync (./dev test installs it): apt-get install rsync"
    base = Path(tempfile.mkdtemp(prefix="uwm-l-", dir="/tmp"))   # short: Ray's socket paths must fit 107 bytes
    (base / "tmp").mkdir()
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / key)], check=True)
    port = free_ports(1)[0]
    bin_dir = base / "bin"
    bin_dir.mkdir()
    # ssh expands `~` in `-i ~/ray_bootstrap_key.pem` (the head's key to its workers) with the passwd
    # home too: name the same key here
    (base / "ssh_config").write_text(f"Host 127.0.0.1 127.0.0.2\n  Port {port}\n  IdentityFile {base / 'client_key'}\n")
    ssh = bin_dir / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec {shutil.which('ssh')} -F '{base / 'ssh_config'}' \"$@\"\n")
    ssh.chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)     # sshd's privilege-separation directory

    client = base / "client"
    client.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "UWM_"))}
    env.update(HOME=str(client), RAY_TMPDIR=str(base / "tmp"), TMPDIR=str(base / "tmp"),
               PATH=f"{bin_dir}:{BIN}:{env['PATH']}", RAY_USAGE_STATS_ENABLED="0")
    name = f"uwm-test-{secrets.token_hex(4)}"
    machines = []
    try:
        machines = [Machine(base, "head", "127.0.0.1", port, str(bin_dir)),
                    Machine(base, "worker", "127.0.0.2", port, str(bin_dir))]
        yield base, env, machines, name
    finally:
        for m in machines:
            m.stop()
        shutil.rmtree(base, ignore_errors=True)
        # Ray's ssh control sockets for this cluster (command_runner.py: /tmp/ray_ssh_<user>/<cluster>)
        shutil.rmtree(f"/tmp/ray_ssh_{_sha(getpass.getuser())[:10]}/{_sha(name)[:10]}", ignore_errors=True)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ray(env, *args, timeout=600, check=True):
    out = subprocess.run([str(BIN / "ray"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    if check:
        assert out.returncode == 0, f"ray {args[0]}: exit {out.returncode}\n{out.stdout[-5000:]}{out.stderr[-5000:]}"
    return out.stdout + out.stderr


@pytest.mark.slow
def test_submit_py_refuses_storage_and_tracking_no_node_can_share():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "UWM_"))}
    out = subprocess.run([sys.executable, "deploy/submit.py", "run", "tune_configs/quickstart.yaml"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: --storage: ") and out.stderr.count("\n") == 1   # as the CLI's own errors
    flags = ["--storage", "/shared/runs", "--tracking-uri=http://10.0.0.1:5000", "--set", "nonsense=1"]
    out = subprocess.run([sys.executable, "deploy/submit.py", "run", "tune_configs/quickstart.yaml", *flags], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "nonsense" in out.stderr    # past the check: the CLI's own validation speaks


def test_points_by_node_counts_the_latest_attempt_of_every_point():
    from types import SimpleNamespace

    from study.runner import points_by_node

    def run(**tags):
        return SimpleNamespace(data=SimpleNamespace(tags=tags))

    a, b = "a" * 56, "b" * 56
    runs = [run(**{"uwm.node": a, "uwm.node_ip": "10.0.0.1"}), run(**{"uwm.node": b, "uwm.node_ip": "10.0.0.2"}),
            run(**{"uwm.node": b, "uwm.node_ip": "10.0.0.2"}), run(**{"uwm.node": a, "uwm.host": "old-run"}),
            run(**{"uwm.status": "running"})]    # not started yet: no node
    assert points_by_node(runs) == {"aaaaaaaa at 10.0.0.1": 1, "aaaaaaaa at old-run": 1, "bbbbbbbb at 10.0.0.2": 2}


@pytest.mark.cluster
@pytest.mark.slow
def test_ray_up_submit_job_submit_exec_down(launcher):
    base, env, (head, worker), name = launcher
    ports = dict(zip(("gcs", "dashboard", "client", "mlflow"), free_ports(4)))
    more = free_ports(8)
    ports.update(head=more[:4], worker=more[4:])
    deploy = yaml.safe_load((ROOT / "deploy/cluster.yaml").read_text())
    cfg = local_config(deploy, base, ports, base / "client_key", name)
    config = base / "cluster.yaml"
    config.write_text(yaml.safe_dump(cfg))

    # the README's steps, in order, from a HOME that never ran Ray
    assert not (base / "client/.ray").exists()
    ray(env, "get-auth-token", "--generate")
    env["RAY_AUTH_MODE"] = "token"
    ray(env, "up", "-y", "--no-config-cache", str(config), timeout=400)
    assert (head.home / ".ray/auth_token").read_text() == (base / "client/.ray/auth_token").read_text()

    def two_nodes():
        out = ray(env, "exec", str(config), "ray list nodes --format yaml", check=False, timeout=120)
        return out.count("state: ALIVE") == 2
    wait_until(two_nodes, 240, "the worker node to join")

    # 1. ray submit: the head's shell joins the cluster and uses its storage and tracking
    out = ray(env, "submit", str(config), "deploy/submit.py", "--", "run", "~/uwm-study/tune_configs/quickstart.yaml",
              "--name", "via-submit", *SHRINK)
    assert "study via-submit ended" in out and "2 nodes" in out, out[-5000:]
    where = re.findall(r"pack-\d+ done \(2 points\) on node (\w{8}) at ([\d.]+)", out)   # every pack's node
    assert len(where) == 5 and len(set(where)) == 2 and "127.0.0.2" in {ip for _, ip in where}, out[-5000:]

    # 2. ray job submit through the dashboard port, no flags: the cluster's settings reach the job
    url = f"http://127.0.0.1:{ports['dashboard']}"
    for _ in range(20):   # the head's job agent may come up a little after the node
        job = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", "tune_configs",
                              "--", "uwm-study", "run", "quickstart.yaml", "--name", "via-job", *SHRINK],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
        if "No available agent to submit job" not in job.stderr:
            break
        time.sleep(3)
    assert job.returncode == 0, job.stdout[-5000:] + job.stderr[-5000:]
    assert "study via-job ended" in job.stdout and "View run" not in job.stdout, job.stdout[-5000:]
    assert len(re.findall(r"pack-\d+ done \(2 points\) on node \w{8} at ", job.stdout)) == 5, job.stdout[-5000:]

    # 3. ray exec: status on the head, with the node of every point
    status = ray(env, "exec", str(config), "uwm-study status via-job")
    assert "points: 10 finished" in status and "nodes: " in status, status[-3000:]

    from mlflow import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{ports['mlflow']}")
    nodes = set()
    for study in ("via-submit", "via-job"):
        runs = client.search_runs([client.get_experiment_by_name(study).experiment_id])
        parents = [r for r in runs if r.data.tags.get("uwm.role") == "study"]
        kids = [r for r in runs if r.data.tags.get("uwm.role") == "trial"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(kids) == 10 and {r.data.tags["uwm.status"] for r in kids} == {"finished"}
        assert {r.data.tags["mlflow.parentRunId"] for r in kids} == {parents[0].info.run_id}
        nodes |= {r.data.tags["uwm.node"] for r in kids}
        assert (base / "shared-runs" / study / "uwm-study.json").exists()   # the cluster's storage, not ./runs
    assert len(nodes) == 2                                     # trials ran on both machines

    def ray_on(machine):
        return any("raylet" in p or "gcs_server" in p for p in machine.processes())
    assert ray_on(head) and ray_on(worker)
    ray(env, "down", "-y", str(config), timeout=300)     # its `ray stop` sees only the head's namespace
    wait_until(lambda: not ray_on(head), 60, "ray down to stop Ray on the head")
    # (the local provider only marks workers terminated; ending the worker's namespace ends its Ray)
