"""Helpers shared by the tests that start Ray nodes with `ray start --block`: wait on a condition, and
stop exactly the nodes (and their processes) a test started, by process id, never by name."""

import shutil
import socket
import subprocess
import time

import psutil


def free_ports(n) -> list[int]:
    """n distinct ports free on 127.0.0.1 now (so a test's Ray never takes another cluster's defaults)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_until(condition, timeout, what, process=None, poll=0.5):
    """Return once ``condition()`` holds; fail when ``process`` exits first or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what} exited with code {process.returncode} (see its log)")
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def family(pid) -> list:
    """Every descendant process of ``pid`` (empty when it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_nodes(nodes, pids: set, ray_tmp) -> None:
    """SIGTERM each `ray start --block` node (it stops its node's processes), kill what is left of the
    processes recorded in ``pids`` and of the nodes' families, and remove the nodes' temp folder."""
    for node in nodes:
        pids.update(p.pid for p in family(node.pid))
        node.terminate()
    for node in nodes:
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    shutil.rmtree(ray_tmp, ignore_errors=True)


def agent_ports(ports: list[int], i: int) -> list[str]:
    """`ray start` flags giving node ``i``'s agents the ports ``ports[4i: 4i + 4]``: other Ray instances on this
    host may hold the defaults."""
    listen, grpc, runtime_env, metrics = ports[4 * i: 4 * i + 4]
    return [f"--dashboard-agent-listen-port={listen}", f"--dashboard-agent-grpc-port={grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}"]
