"""Nothing orphaned: a driver killed with -9 leaves no process of its local session running for more than a few
seconds (study.session's watchdog), while a driver that ends normally has its record removed and ends nothing.
Real processes stand in for Ray's: the "driver" starts an "agent" in a session of its own (as Ray's agents are,
which is why they outlive a killed driver) and records it as a driver records its local Ray."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from study import session

DRIVER = """
import subprocess, sys, time
from study import session
agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
session.record(sys.argv[1])
session.start_watchdog(sys.argv[1])
session.record(sys.argv[1])   # recorded again later (trial workers started since): the watchdog is never in it
print(agent.pid, flush=True)
if sys.argv[2] == "end":   # a driver ending normally: its record goes first, then the session stops itself
    (__import__("pathlib").Path(sys.argv[1]) / session.SESSION).unlink()
    agent.terminate()
    agent.wait()
    sys.exit(0)
time.sleep(120)
"""


def _driver(tmp_path: Path, how: str) -> tuple[subprocess.Popen, psutil.Process]:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), how], stdout=subprocess.PIPE, text=True)
    agent = psutil.Process(int(driver.stdout.readline()))
    return driver, agent


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _watchdogs(driver_pid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "study.session" in cmd and str(driver_pid) in cmd:
            found.append(p)
    return found


def test_a_killed_driver_leaves_no_process_of_its_session_for_more_than_a_few_seconds(tmp_path):
    driver, agent = _driver(tmp_path, "sleep")
    try:
        record = json.loads((tmp_path / session.SESSION).read_text())
        assert [agent.pid, agent.create_time()] in record["processes"]
        assert not any(pid in {w.pid for w in _watchdogs(driver.pid)} for pid, _ in record["processes"])
        watchdog = _watchdogs(driver.pid)
        assert len(watchdog) == 1 and os.getpgid(watchdog[0].pid) != os.getpgid(driver.pid)   # not in its group
        time.sleep(1)
        assert not _gone(agent)   # a live driver's session is left alone
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.time() + session.POLL_S + session.TERMINATE_GRACE_S + 3
        while not _gone(agent) and time.time() < deadline:
            time.sleep(0.2)
        assert _gone(agent), "the dead driver's agent still runs"
        watchdog[0].wait(10)   # and the watchdog itself ends
        assert not (tmp_path / session.SESSION).exists()
    finally:
        for p in (agent, *_watchdogs(driver.pid)):
            try:
                p.kill()
            except psutil.Error:
                pass
        driver.kill()


def test_a_driver_that_ends_normally_leaves_nothing_for_its_watchdog(tmp_path):
    driver, agent = _driver(tmp_path, "end")
    watchdog = _watchdogs(driver.pid)
    assert driver.wait(30) == 0 and _gone(agent)
    for w in watchdog:
        w.wait(10)   # it saw its driver end, found no record, and ended
    assert not (tmp_path / session.SESSION).exists()


def test_the_next_command_ends_a_session_whose_watchdog_died_too(tmp_path):
    """end_dead_sessions: the fallback when the watchdog was killed with its driver."""
    folder = tmp_path / "study"
    folder.mkdir()
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    created = psutil.Process(agent.pid).create_time()
    (folder / session.SESSION).write_text(json.dumps({"driver": [dead.pid, 0.0], "processes": [[agent.pid, created]]}))
    live = tmp_path / "live"
    live.mkdir()
    me = psutil.Process()
    (live / session.SESSION).write_text(json.dumps({"driver": [me.pid, me.create_time()], "processes": [[agent.pid, created]]}))
    try:
        assert session.end_dead_sessions(str(tmp_path)) == 1
        assert agent.wait(10) is not None and not (folder / session.SESSION).exists()
        assert (live / session.SESSION).exists()   # a live driver's record is kept
    finally:
        agent.kill()
