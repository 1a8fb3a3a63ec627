import os
import tempfile
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


# Under pytest-xdist (`./dev test`: -n N --dist loadgroup) the tests of one group run on one worker, one after
# the other: the modules here share a costly module-scoped fixture (a real study, a served or planted MLflow
# store) that every worker would otherwise build again; the tests that start Ray nodes with `ray start` hold
# several GB each and one of them takes Ray's default agent ports. Every other test is a unit of its own.
SHARED_FIXTURE_MODULES = ("tests/test_analysis_e2e.py", "tests/test_analysis_study.py", "tests/test_mlflow_ui.py",
                          "tests/test_tracking_layout.py")
RAY_START_TESTS = ("tests/test_cluster.py::test_ray_job_submit_runs_studies_across_two_nodes",
                   "tests/test_cluster.py::test_four_quarter_gpu_trials_share_one_declared_gpu",
                   "tests/test_node_loss.py::", "tests/test_launcher.py::test_ray_up_submit_job_submit_exec_down",
                   "tests/test_study_failures.py::test_on_a_joined_cluster_failed_points_exit_3")


def xdist_group(nodeid: str) -> str | None:
    """The group a test runs in under pytest-xdist, None where it may run on any worker."""
    if "@" in nodeid:   # xdist's own xdist_group marks, where this pytest lets xdist rename the test
        return nodeid.rsplit("@", 1)[1]
    module = nodeid.split("::")[0]
    if module in SHARED_FIXTURE_MODULES:
        return module
    return "ray_start" if nodeid.startswith(RAY_START_TESTS) else None


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup by :func:`xdist_group`, read from the test ids (the controller collects nothing): with
    pytest 9 xdist can no longer add its group to a test's id, so its own loadgroup would ignore the groups.
    Tests are handed out in collection order (see pytest_collection_modifyitems)."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return xdist_group(nodeid) or nodeid

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(session, config, items):
    """Modules with slow tests first (each module's tests kept together and in order): xdist hands tests out
    in this order, so the long ones start early instead of stretching the end of a parallel run."""
    has_slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in has_slow)


def pytest_sessionstart(session):
    os.environ[SESSION_MARKER] = str(os.getpid())
    # caches the code keeps per machine (the datasets' reference points) start empty in every test session and
    # are shared by its workers and subprocesses: no test reads what an older version of the code computed
    if "UWM_CACHE_DIR" not in os.environ:
        os.environ["UWM_CACHE_DIR"] = tempfile.mkdtemp(prefix="uwm-test-cache-")


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
