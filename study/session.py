"""The processes of a local Ray session, recorded so that none outlives its driver.

A driver that starts its own local Ray records the process ids of everything it started (with their start
times, so that a reused id is never touched) in ``<storage>/<name>/uwm-session.json``, and starts a
watchdog: a small process of its own session (not in the terminal's process group, so a Ctrl-C meant for the
driver does not end it first) that polls the driver and, once it is gone without having removed the record
(``kill -9``, a crash), ends the recorded processes (Ray's raylet and GCS, its dashboard and runtime-env
agents, trial workers) within seconds. A driver that ends normally removes the record first: the watchdog
then ends nothing. ``end_dead_sessions`` does the same for any record a dead driver left (its watchdog
killed too), when the next command of a study in that storage starts.

    python -m study.session DRIVER_PID DRIVER_START_TIME RECORD   # the watchdog (started by start_watchdog)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from . import progress

SESSION = "uwm-session.json"
POLL_S = 0.5          # how often the watchdog looks at its driver
TERMINATE_GRACE_S = 5  # SIGTERM, then SIGKILL for what is still running after this


PYTHON = os.path.abspath(sys.executable)   # at import: a relative interpreter path (PATH=.venv/bin) breaks after a chdir
_watchdogs: set[int] = set()   # this driver's watchdogs: never in its record (they would end themselves first)


def record(folder: str) -> None:
    """Record this driver and the processes it started (recursively, but for its watchdogs) in ``folder``."""
    me = psutil.Process()
    procs = [[p.pid, p.create_time()] for p in me.children(recursive=True) if _alive(p) and p.pid not in _watchdogs]
    progress.write_json(folder, SESSION, {"driver": [me.pid, me.create_time()], "processes": procs})


def _alive(p) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def same_process(pid: int, created: float):
    """The process ``pid`` if it is still the one started at ``created`` and has not ended, else None."""
    try:
        p = psutil.Process(pid)
        return p if abs(p.create_time() - created) < 0.01 and _alive(p) else None
    except psutil.Error:
        return None


def end_record(path: Path) -> int:
    """End the processes of the record at ``path`` if its driver is gone, and remove the record; return how
    many processes were ended (0 for a live driver, whose record stays)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    if same_process(*data["driver"]) is not None:
        return 0   # its driver still runs: a live session
    procs = [p for pid, created in data["processes"] if (p := same_process(pid, created)) is not None]
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=TERMINATE_GRACE_S)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    if procs:
        print(f"ended {len(procs)} process{'es' * (len(procs) > 1)} left running by a stopped session of study "
              f"{path.parent.name} (driver pid {data['driver'][0]})", file=sys.stderr, flush=True)
    path.unlink(missing_ok=True)
    return len(procs)


def end_dead_sessions(storage: str) -> int:
    """End what dead local drivers of any study in the local folder ``storage`` left running; return how many."""
    return sum(end_record(path) for path in Path(storage).glob(f"*/{SESSION}"))


def start_watchdog(folder: str) -> subprocess.Popen:
    """Start the watchdog of this driver's session recorded in ``folder`` (see the module doc)."""
    me = psutil.Process()
    proc = subprocess.Popen([PYTHON, "-m", "study.session", str(me.pid), repr(me.create_time()),
                             str(Path(folder, SESSION))],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _watchdogs.add(proc.pid)
    return proc


def watch(driver_pid: int, driver_created: float, path: Path) -> int:
    """Wait for the driver to end, then end what its record (if still there) names."""
    while same_process(driver_pid, driver_created) is not None:
        time.sleep(POLL_S)
    return end_record(path)


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3]))
