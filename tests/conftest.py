import os
import time

import psutil
import pytest
import torch

import uwm_model as um
from uwm_model.settings import torch_settings

from networks import glorot_pair


@pytest.fixture(scope="session", autouse=True)
def training_torch_settings():
    """The process-wide torch settings an entry point sets before training (restored after the session)."""
    with torch_settings():
        yield


def spec_table_networks():
    """The networks of the spec's figures table: sizes [3, 3, 2, 1] from one generator seeded 0,
    per layer W = (2 rand - 1) sqrt(6 / (n_in + n_out)), then b = (2 rand - 1) 0.5; the norm-4
    network is the next one drawn from the same stream with every column of W2, W3 at norm 4."""
    return glorot_pair([3, 3, 2, 1], outgoing_norm=4)


# Every process a test starts (servers, Ray, the CLI, and what they start) inherits this marker, so the
# session can tell at its end whether any of them outlived the tests: a server left running by a test piles
# up over a day of runs until the machine runs out of memory.
SESSION_MARKER = "UWM_TEST_SESSION"
LEFTOVER_GRACE_SECONDS = 20


# Under pytest-xdist (./dev test) each group's tests run on one worker: the tests of these modules share a
# costly module-scoped fixture (a real study, a served or planted MLflow store) that would otherwise be built
# on every worker; the tests that start Ray nodes with `ray start` run one at a time (each holds several GB).
SHARED_FIXTURE_MODULES = ("test_analysis_e2e.py", "test_analysis_study.py", "test_mlflow_ui.py",
                          "test_tracking_layout.py")
RAY_START_GROUP = "ray_start"


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook reads the groups
def pytest_collection_modifyitems(session, config, items):
    """Give the groups above, and put the modules with slow tests first (each module's tests kept together
    and in order): xdist hands tests out in this order, so the long ones start early instead of stretching
    the end of a parallel run."""
    for item in items:
        module = item.nodeid.split("::")[0]
        if module.rsplit("/", 1)[-1] in SHARED_FIXTURE_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))
        elif item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.xdist_group(RAY_START_GROUP))
    has_slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in has_slow)


def pytest_sessionstart(session):
    os.environ[SESSION_MARKER] = str(os.getpid())


# this process's own helpers, which end with it: multiprocessing's resource tracker and fork server
INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _leftovers() -> list[psutil.Process]:
    mine, found = os.environ.get(SESSION_MARKER), []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.environ().get(SESSION_MARKER) != mine:
                continue
            if proc.ppid() == os.getpid() and any(h in " ".join(proc.cmdline()) for h in INTERPRETER_HELPERS):
                continue
            found.append(proc)
        except (psutil.Error, OSError):   # gone meanwhile, or another user's
            pass
    return found


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when processes its tests started are still running at its end (after a grace period in
    which Ray and servers finish shutting down), and end them. Under pytest-xdist each worker checks what its
    own tests started; the controller runs no test (its children are the workers, ending now)."""
    if session.config.pluginmanager.hasplugin("dsession"):
        return
    deadline = time.time() + LEFTOVER_GRACE_SECONDS
    while (left := _leftovers()) and time.time() < deadline:
        time.sleep(1)
    if not left:
        return
    names = []
    for proc in left:
        try:
            names.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
            proc.kill()
        except psutil.Error:
            pass
    print(f"\nerror: {len(left)} process(es) started by the tests outlived them (ended now):\n  " + "\n  ".join(names))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def table_networks():
    return spec_table_networks()


@pytest.fixture(scope="session")
def mux3():
    return um.Multiplexer(address_bits=1, inputs="pm1", rewards="pm1")
