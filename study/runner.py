"""Run, resume and summarise a study: Ray Tune drives the searcher and the trainable.

Where things live (defaults chosen so a laptop needs no setup):

- Ray: ``--address`` or ``RAY_ADDRESS`` joins a running cluster; otherwise a local Ray starts
  with every core, a 200 MB object store, no dashboard and no usage stats.
- Results of Ray Tune (experiment state, searcher state, trial checkpoints): ``--storage``,
  default ``./runs``, in ``<storage>/<study name>/``. A multi-node study needs a storage path
  every node can reach (a shared folder, or ``s3://...``).
- Tracking: ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``, default ``sqlite:///<cwd>/mlflow.db``
  (:mod:`study.tracking`).
- ``<storage>/<name>/uwm-study.json`` records the spec, the tracking URI and the parent run,
  so ``uwm-study resume NAME`` and ``uwm-study status NAME`` need only the name, and
  ``<storage>/<name>/uwm-progress.json`` the searcher's progress, which decides whether the study
  is complete and what ``status`` shows (:mod:`study.progress`).
"""

from __future__ import annotations

import torch  # noqa: F401,I001 - import torch first in every entry module (oneMKL load failures under `ray job submit`)

import json
import logging
import math
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import progress, session
from .errors import UserError
from .spec import StudySpec, validate_spec
from . import tracking
from uwm_model import layout

DEFAULT_STORAGE = "runs"


# ----------------------------------------------------------------------------- storage


def resolve_storage(arg: str | None) -> str:
    storage = arg or os.environ.get("UWM_STUDY_STORAGE") or DEFAULT_STORAGE
    return storage if layout.is_remote(storage) else str(Path(storage).resolve())


def check_storage(storage: str) -> None:
    """``--storage`` before anything starts: a local folder must be (or become) a folder this process can write
    in (:func:`study.preflight.check_output_folder`); a remote one is checked by the filesystem when used."""
    if not layout.is_remote(storage):
        from .preflight import check_output_folder

        check_output_folder(storage, "--storage")


def read_meta(storage: str, name: str) -> dict | None:
    return progress.read_json(experiment_path(storage, name), progress.META)


def write_meta(storage: str, name: str, meta: dict) -> None:
    progress.write_json(experiment_path(storage, name), progress.META, meta)


def read_progress(storage: str, spec: StudySpec) -> dict | None:
    """The searcher's progress record of this study (None before the first save, or for another spec)."""
    record = progress.read_json(experiment_path(storage, spec.name), progress.PROGRESS)
    return record if record is not None and record.get("spec_hash") == spec.spec_hash() else None


def experiment_path(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}"


# ----------------------------------------------------------------------------- Ray


def init_ray(address: str | None) -> str:
    """Join ``address`` / RAY_ADDRESS, or start a small local Ray; return a description. (Inside a Ray job
    call :func:`leave_job_working_dir` first.)"""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")   # MLflow is the record
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # we checkpoint every report
    for name in ("mlflow", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import ray

    if ray.is_initialized():
        return "Ray (already connected)"
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise UserError("address", f"cannot join the Ray cluster at {address}: {str(err).splitlines()[0]}") from None
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        return f"Ray cluster at {address} ({nodes} node{'s' * (nodes != 1)}, {count(ray.cluster_resources().get('CPU', 0), 'CPU')})"
    cpus = os.cpu_count() or 1
    # a local cluster for this study alone: Ray warns on every start that token authentication is off
    # unless the mode is chosen explicitly; the user's own RAY_AUTH_MODE (or token) wins
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # address="local": always a new cluster of our own, never one `ray start` left on this host
    ray.init(address="local", num_cpus=cpus, object_store_memory=200 * 1024**2, include_dashboard=False, **quiet)
    return f"local Ray ({count(cpus, 'CPU')})"


def leave_job_working_dir() -> None:
    """In the driver of a ``ray job submit`` job, or where the working directory was removed, change to
    the temporary folder. Ray removes a job's working_dir copy (the driver's cwd) soon after the driver
    connects, so the CLI calls this once every path it was given has been made absolute, before Ray starts."""
    if in_ray_job() or not _cwd_exists():
        os.chdir(tempfile.gettempdir())


def _cwd_exists() -> bool:
    try:
        return os.path.isdir(os.getcwd())
    except FileNotFoundError:
        return False


def in_ray_job() -> bool:
    """True in the driver of a `ray job submit` job (its working directory is a temporary copy)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def default_concurrency(spec: StudySpec) -> int:
    """Trials that fit the cluster at once (so no pack waits suggested-but-unstarted)."""
    import ray

    res = ray.cluster_resources()
    fits = res.get("CPU", 1) / spec.resources.cpus
    if spec.resources.gpus:
        fits = min(fits, res.get("GPU", 0) / spec.resources.gpus)
    return max(1, int(fits))


# ----------------------------------------------------------------------------- what the cluster can hold

HOST_FIXED_BYTES = 512 * 2**20   # a trial worker's own memory (Python, torch, Ray) beside its population


def is_local(address: str | None) -> bool:
    """Whether this run starts its own local Ray (fixed: it never grows), rather than joining a cluster."""
    return not (address or os.environ.get("RAY_ADDRESS"))


def trial_bytes(spec: StudySpec) -> tuple[int, int, str]:
    """(bytes, members, cell key) of the largest trial: a full pack of the cell whose members cost most."""
    from uwm_model.control import member_bytes as control_member_bytes
    from uwm_model.memory import member_bytes

    from .control_trial import trial_config

    seeds = max([c.config["seeds"] for c in spec.cells()] + ([spec.confirm.seeds] if spec.confirm else []))
    members = min(spec.points_per_pack, spec.samples_per_cell) * seeds
    cost, cell = max(((control_member_bytes if spec.control else member_bytes)(trial_config(c.config)), c.key)
                     for c in spec.cells())
    return cost * members, members, cell


def check_fits(spec: StudySpec, cpus: float, gpus: float, host_bytes: float, gpu_bytes: float | None,
               where: str, fixed: bool = True) -> None:
    """Refuse, before anything starts, a trial that no node of ``where`` could ever hold: more CPUs or GPUs
    than it has, or a population larger than its memory (uwm_model.memory's upper estimate). ``fixed``: the
    cluster cannot grow (a local Ray), so the trial would wait forever."""
    grow = "" if fixed else " (an autoscaling cluster may add a larger node: set the resources it offers)"
    r = spec.resources
    if r.cpus > cpus:
        raise UserError("resources.cpus", f"a trial asks for {count(r.cpus, 'CPU')} but {where} has {cpus:g}: it would wait "
                                          f"forever{grow}")
    if r.gpus > gpus:
        raise UserError("resources.gpus", f"a trial asks for {count(r.gpus, 'GPU')} but {where} has "
                                          f"{'none' if not gpus else f'{gpus:g}'}: it would wait forever{grow}")
    need, members, cell = trial_bytes(spec)
    if r.gpus:
        gpu = r.gpu_memory_gib * 2**30 if r.gpu_memory_gib else gpu_bytes
        have, what = (0.8 * r.gpus * gpu - 2 * 2**30, f"0.8 x {r.gpus:g} GPU of {gpu / 2**30:.0f} GiB less 2 GiB") \
            if gpu else (None, "")
    else:
        have, what = 0.8 * host_bytes - HOST_FIXED_BYTES, f"0.8 x {host_bytes / 2**30:.1f} GiB of memory less 0.5 GiB"
    if have is not None and need > have:
        raise UserError("base" if len(spec.cells()) == 1 else "grid",
                        f"a trial of cell {cell} needs about {need / 2**30:,.1f} GiB ({members:,} members x "
                        f"{need / members / 2**20:,.1f} MiB, uwm_model.memory) but {where} has {max(have, 0) / 2**30:,.1f} "
                        f"GiB for it ({what}): make hidden, batch_size, seeds or pack_size smaller")


def check_local_machine(spec: StudySpec) -> None:
    """check_fits against this machine, for a study that will start its own local Ray."""
    import psutil

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu = torch.cuda.get_device_properties(0).total_memory if cuda else None
    check_fits(spec, os.cpu_count() or 1, cuda, psutil.virtual_memory().total, gpu, "this machine (local Ray)")


# ----------------------------------------------------------------------------- work per trial

# Speeds no device measured so far beats, so that trial_seconds is a lower bound: a trial refused for its work
# could not finish within resources.max_trial_hours anywhere. The unit of work is one network-episode's
# forward pass, sum over layers of n_in x n_out multiply-adds; a training episode costs RULE_COST of them.
CPU_MACS_PER_THREAD = 3e8   # measured up to 2.1e8 per torch thread on these 2-core VMs (widths 256-1024, batch 8)
GPU_MACS_PER_GPU = 2e12     # measured up to 7.5e11 on an H100 (hidden [64, 32], 65 536 members x batch 8, uwm, compiled)
STEP_FLOOR_S = 50e-6        # a step's fixed cost, whatever the work: measured 60-80 us on this CPU, 230 us on an H100
RULE_COST = {"uwm": 4.0}    # uwm forms an n x n' matrix of shifted log-sigmoids per layer and sample: measured
                            # 5.6-11 x wm's step at widths 256-1024 on a CPU; the other rules cost about one pass


def evaluation_episodes(cfg) -> int:
    """Episodes of one evaluation: eval_episodes fresh inputs, or a dataset task's validation and test images."""
    if cfg.task.name != "dataset":
        return cfg.eval_episodes
    from uwm_model.datasets import split_sizes
    _, validation, test = split_sizes(cfg.task.dataset, cfg.task.classes)
    return validation + test


def trial_seconds(cfg, members: int, gpus: float) -> float:
    """Lower bound of the wall seconds of one trial of ``cfg`` with ``members`` (points x seeds) trained together:
    training, evaluation at every report and probes, at the speeds above (a GPU when the trial holds one and
    its device is not cpu; else base.threads CPU threads). Each of its steps costs at least STEP_FLOOR_S."""
    sizes = cfg.sizes()
    macs = sum(n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    reports = math.ceil(cfg.episodes / cfg.report_every)
    work = cfg.episodes * RULE_COST.get(cfg.rule, 1.0) + reports * evaluation_episodes(cfg)
    if cfg.probe.enabled:
        rules = [cfg.rule] + ([c.rule for c in cfg.probe.rules] if cfg.probe.cross_rule else [])
        work += reports * cfg.probe.samples * sum(RULE_COST.get(r, 1.0) for r in rules)
    rate = GPU_MACS_PER_GPU * min(gpus, 1.0) if gpus and cfg.device != "cpu" else CPU_MACS_PER_THREAD * cfg.threads
    return max(math.ceil(cfg.episodes / cfg.batch_size) * STEP_FLOOR_S, members * work * macs / rate)


# A control step (the actor-critic and its environments, uwm_model.control) measured 0.35 ms compiled for a
# population of 10 on a quiet 2-core CPU (the CartPole replication) and 3.5 ms eager under load: the low end takes
# the compiled one with an episode of MIN_EPISODE_STEPS, the high end the eager one with episodes of max_steps.
CONTROL_STEP_S = (0.35e-3, 3.5e-3)
MIN_EPISODE_STEPS = {"CartPole-v1": 8, "Acrobot-v1": 1}   # CartPole cannot fall in fewer steps from its start states


def control_trial_seconds(cfg) -> tuple[float, float]:
    """(low, high) training seconds of one control trial: its members step in lock step, so a trial's steps are
    its slowest member's (packing adds members, not steps)."""
    return (cfg.episodes * MIN_EPISODE_STEPS[cfg.env] * CONTROL_STEP_S[0],
            cfg.episodes * cfg.max_steps * CONTROL_STEP_S[1])


# The high end of an estimate: what slowed trials on the 2-core VMs besides the fastest speeds above (one tenth of
# them at small widths and batches, where a step is launch-bound), the fixed costs of a trial (its worker process,
# torch and the MLflow client starting) and of each report (per point: MLflow logging; per trial: a checkpoint),
# and Ray and the tracking store starting once per study. Set by judgement, not fitted: a study whose lower bound
# was 3 s took 79 s on 2 cores (issue 29), and the quickstart, about a minute there, gets 5 s to 3 min. The high
# end is an estimate, not a bound.
SLOWEST_FRACTION = 0.1
TRIAL_START_S = 10.0
REPORT_S_PER_POINT = 0.25
STUDY_START_S = 15.0


@dataclass(frozen=True)
class WorkEstimate:
    """A study's work as ranges of seconds, (low, high): the low ends are lower bounds (the fastest speeds
    measured, training only), the high ends the slowest speeds seen plus every fixed cost."""

    largest: tuple[float, float]   # the largest trial
    cell: str                      # ... its cell
    members: int                   # ... and members
    total: tuple[float, float]     # every trial, one after another
    trials: int

    def wall(self, concurrent: int) -> tuple[float, float]:
        """Wall seconds with ``concurrent`` trials at once: at least the largest trial and an even share of the
        work; at most that share plus the largest trial (any scheduling that keeps the slots busy) and the start."""
        low = max(self.largest[0], self.total[0] / concurrent)
        return low, STUDY_START_S + self.total[1] / concurrent + self.largest[1]

    def line(self, concurrent: int) -> str:
        return (f"work: {_span(self.wall(concurrent))} with {concurrent} trial{'s' * (concurrent != 1)} at once "
                f"({self.trials} trial{'s' * (self.trials != 1)}, {_span(self.total)} of trials in all; the largest, "
                f"cell {self.cell}, {_span(self.largest)}); the low ends at the fastest speeds measured, the high ends "
                f"at the slowest seen with each trial's start and logging")


def check_work(spec: StudySpec) -> WorkEstimate:
    """Refuse, before anything starts, a study one of whose trials could not finish within
    resources.max_trial_hours (:func:`trial_seconds`, a lower bound); else return the study's estimate."""
    from .control_trial import trial_config

    total, trials, worst = [0.0, 0.0], 0, ((0.0, 0.0), "", 0)
    for cell in spec.cells():
        cfg = trial_config(cell.config)
        stages = [(cfg.seeds, spec.samples_per_cell)]   # (seeds per point, points) of the search, then the confirm
        if spec.confirm:
            stages.append((spec.confirm.seeds, min(spec.confirm.top_k, spec.samples_per_cell)))
        for seeds, points in stages:
            full, rest = divmod(points, spec.points_per_pack)   # full packs, and one of the points left over
            for per_trial, n in ((spec.points_per_pack, full), (rest, 1 if rest else 0)):
                if not n:
                    continue
                if spec.control:
                    low, slow = control_trial_seconds(cfg)
                else:
                    low = trial_seconds(cfg.model_copy(update={"seeds": seeds}), per_trial * seeds, spec.resources.gpus)
                    slow = low / SLOWEST_FRACTION
                high = (slow + TRIAL_START_S
                        + math.ceil(cfg.episodes / cfg.report_every) * per_trial * REPORT_S_PER_POINT)
                total, trials = [total[0] + n * low, total[1] + n * high], trials + n
                worst = max(worst, ((low, high), cell.key, per_trial * seeds))
    (low, high), cell, members = worst
    bound = spec.resources.max_trial_hours
    if low > bound * 3600:
        raise UserError("resources.max_trial_hours",
                        f"a trial of cell {cell} ({members:,} members) needs at least {_duration(low)} at the "
                        f"fastest speeds measured, over the bound of {bound:g} h: make episodes, hidden, seeds or "
                        f"pack_size smaller, or raise resources.max_trial_hours")
    return WorkEstimate((low, high), cell, members, (total[0], total[1]), trials)


def _span(seconds: tuple[float, float]) -> str:
    """'3 s to 2 min'."""
    return f"{_duration(seconds[0])} to {_duration(seconds[1])}"


def count(n: float, unit: str) -> str:
    """'1 GPU', '0.5 GPU', '2 GPUs': a number of a unit, plural from two on."""
    return f"{n:g} {unit}{'s' * (n > 1)}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:,.1f} h"


def check_joined_cluster(spec: StudySpec, wait_s: float) -> str | None:
    """On a cluster we joined: a line saying what a trial waits for when no live node can hold one now
    (an autoscaler may add one; the study gives up after ``wait_s``), or None when one can."""
    import ray

    r = spec.resources
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= r.cpus and n.get("GPU", 0) >= r.gpus for n in nodes):
        return None
    return (f"waiting for a node with {count(r.cpus, 'CPU')}" + (f" and {count(r.gpus, 'GPU')}" if r.gpus else "")
            + f": none of the {len(nodes)} live nodes has them now (an autoscaler may add one); giving up after "
              f"{wait_s:g} s (resources.wait_timeout_s)")


# ----------------------------------------------------------------------------- sessions left behind

def record_session(storage: str, name: str) -> None:
    """Record the processes of this driver's local Ray (:mod:`study.session`)."""
    session.record(experiment_path(storage, name))


def watch_session(storage: str, name: str) -> None:
    """Record this driver's local Ray and start the watchdog that ends it should the driver die (kill -9)."""
    record_session(storage, name)
    session.start_watchdog(experiment_path(storage, name))


def end_dead_sessions(storage: str) -> int:
    """End what dead local drivers of studies in ``storage`` left running (:func:`study.session.end_dead_sessions`)."""
    return 0 if layout.is_remote(storage) else session.end_dead_sessions(storage)


# ----------------------------------------------------------------------------- Tune callbacks


def trial_name(trial) -> str:
    return trial.config.get("pack_id", trial.trial_id)


def _stamp(start: float) -> str:
    return f"[{time.time() - start:6.0f}s]"


from ray.tune import Callback


class ResourceWait(Exception):
    """No trial got its resources within resources.wait_timeout_s on a cluster we joined."""


# ----------------------------------------------------------------------------- saying what happens

ERRORS = "uwm-errors.log"


class ErrorLog(logging.Filter):
    """Ray's tracebacks go to ``<storage>/<name>/uwm-errors.log``, not to the terminal: a log record that carries
    one (a trial's failure, Tune's own harmless errors on resume) is written there in full and dropped from the
    console, whose one-line summaries name the file. Installed on the console handlers while the study runs."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info or "Traceback (most recent call last)" in record.getMessage()):
            return True
        text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
        with open(self.path, "a") as f:
            f.write(text + "\n\n")
        return False

    def handlers(self) -> list[logging.Handler]:
        return [*logging.getLogger("ray").handlers, *logging.getLogger().handlers]


def live_nodes() -> dict[str, dict] | None:
    """node id -> {'ip', 'resources'} of every live node of the Ray cluster this driver is connected to; None
    when it is connected to none (a callback driven on its own, as the resume test does)."""
    import ray

    if not ray.is_initialized():
        return None
    return {n["NodeID"]: {"ip": n.get("NodeManagerAddress", "?"), "resources": n.get("Resources", {})}
            for n in ray.nodes() if n.get("Alive")}


def trials_that_fit(nodes: dict[str, dict], cpus: float, gpus: float) -> int:
    """Trials holding ``cpus`` and ``gpus`` each that the nodes hold at once (a trial lives on one node)."""
    total = 0
    for node in nodes.values():
        fit = node["resources"].get("CPU", 0) / cpus
        if gpus:
            fit = min(fit, node["resources"].get("GPU", 0) / gpus)
        total += int(fit + 1e-9)
    return total


def node_changes(before: dict[str, dict], after: dict[str, dict], cpus: float, gpus: float) -> list[str]:
    """A line per node lost or joined between two looks at the cluster, with the trials it now fits at once."""
    lost, joined = [k for k in before if k not in after], [k for k in after if k not in before]
    if not lost and not joined:
        return []
    was, now = trials_that_fit(before, cpus, gpus), trials_that_fit(after, cpus, gpus)
    fits = f"the cluster now fits {now} trial{'s' * (now != 1)} at once (was {was})"
    return ([f"node {k[:8]} at {before[k]['ip']} lost: its trials are retried from their checkpoints on the nodes "
             f"left; {fits}" for k in lost]
            + [f"node {k[:8]} at {after[k]['ip']} joined: {fits}" for k in joined])


class Progress(Callback):
    """One readable line per finished pack, and a status line at most every ``every`` seconds."""

    def __init__(self, total_points: int, metric: str, mode: str, every: float = 10.0, upper_bound: bool = False,
                 **options):
        self.total, self.metric, self.mode, self.every = total_points, metric, mode, every
        self.configure(**options)
        self.bound = "<=" if upper_bound else ""   # confirm points exist only for cells with a finished point
        self.start = self.last = time.time()

    def configure(self, waiting: str | None = None, wait_s: float = math.inf, session: tuple[str, str] | None = None,
                  tracking_uri: str | None = None, trial_resources: tuple[float, float] = (1.0, 0.0),
                  errors: str | None = None):
        """What this run waits for (a joined cluster none of whose nodes fits a trial, given up after ``wait_s``),
        where the local session's process ids are recorded, the tracking store to watch, the resources of one
        trial (for what the cluster fits when a node comes or goes) and the log file of tracebacks."""
        self.waiting, self.wait_s, self.session = waiting, wait_s, session
        self.tracking = tracking.TrackingWatch(tracking_uri, every=self.every) if tracking_uri else None
        self.trial_resources, self.errors, self.nodes, self.nodes_seen = trial_resources, errors, None, -math.inf

    def setup(self, **info):
        self.start = self.last = time.time()

    def _points(self, trials):
        status, best = {}, None
        for t in trials:
            cells = {p["point_id"]: p["cell"] for p in t.config.get("points", [])}
            for pid in cells:
                s = (t.last_result or {}).get(f"point_status/{pid}", layout.PENDING)
                if t.status == "ERROR" and s in (layout.RUNNING, layout.PENDING):
                    s = layout.FAILED
                status[pid] = s
                v = (t.last_result or {}).get(f"point_value/{pid}")
                if v is not None and math.isfinite(v) and (best is None or (v > best[0] if self.mode == "max" else v < best[0])):
                    best = (v, cells[pid])
        return status, best

    def _line(self, trials, ending=None) -> str:
        status, best = self._points(trials)
        ended = {s: n for s in layout.ENDED if (n := sum(v == s for v in status.values()))}
        running = sum(v == layout.RUNNING for v in status.values())
        packs = {s: sum((t.status if t is not ending else "TERMINATED") == s for t in trials)
                 for s in ("TERMINATED", "RUNNING", "ERROR")}
        text = (f"{_stamp(self.start)} points {sum(ended.values())}/{self.bound}{self.total} ended"
                + (f" ({', '.join(f'{n} {s}' for s, n in ended.items())})" if ended else "")
                + f", {running} training | packs {packs['TERMINATED']} done, {packs['RUNNING']} running"
                + (f", {packs['ERROR']} failed" if packs["ERROR"] else ""))
        if best:
            text += f" | best {self.metric} {best[0]:.3f} ({best[1]})"
        return text

    def on_step_end(self, iteration, trials, **info):
        if self.waiting is not None and any(t.status != "PENDING" for t in trials):
            self.waiting = None   # a trial got its resources
        if self.waiting is not None and time.time() - self.start > self.wait_s:
            raise ResourceWait(self.waiting)
        for line in self._changes():
            print(f"{_stamp(self.start)} {line}", flush=True)
        if time.time() - self.last >= self.every:
            self.last = time.time()
            print(self._line(trials), flush=True)
            if self.session:
                record_session(*self.session)   # trial workers started since

    def _changes(self) -> list[str]:
        """Lines for what changed since the last look: the tracking server stopped or started answering, a node
        was lost or joined (each looked at at most every ``every`` seconds)."""
        lines = [line] if self.tracking is not None and (line := self.tracking.poll()) else []
        if time.time() - self.nodes_seen >= self.every:
            self.nodes_seen = time.time()
            nodes = live_nodes()
            if self.nodes is not None and nodes is not None:
                lines += node_changes(self.nodes, nodes, *self.trial_resources)
            self.nodes = nodes
        return lines

    def _see_errors(self) -> str:
        return f"; traceback in {self.errors}" if self.errors else ""

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.last = time.time()
        node = (trial.last_result or {}).get("node")
        print(f"{_stamp(self.start)} {trial_name(trial)} done ({len(trial.config.get('points', []))} points)"
              + (f" on node {node}" if node else ""), flush=True)
        print(self._line(trials, ending=trial), flush=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(f"{_stamp(self.start)} {trial_name(trial)} failed; retrying from its last checkpoint{self._see_errors()}",
              flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"{_stamp(self.start)} {trial_name(trial)} failed after its retries; its unfinished points end as failed"
              + self._see_errors(), flush=True)


def restore_tuner(spec: StudySpec, meta: dict, progress_options: dict):
    """Ray Tune's saved experiment, to continue. Tune restores the callbacks pickled with it (tuner.pkl; new ones
    cannot be passed), so their options describe the cluster of the run that saved them: Progress is given
    those of the cluster this run resumes on (the resource wait and its timeout, or the local session record)."""
    from ray import tune

    from .trainable import trainable

    tuner = tune.Tuner.restore(experiment_path(meta["storage"], spec.name),
                               trainable(_context(spec, meta), spec.resources.cpus, spec.resources.gpus),
                               resume_unfinished=True, resume_errored=True)
    progress_callback = next(c for c in tuner._local_tuner.get_run_config().callbacks if isinstance(c, Progress))
    progress_callback.configure(**progress_options)
    return tuner


class FailedPoints(Callback):
    """When a pack errors for good, its unfinished points' runs end as ``failed`` in MLflow."""

    def __init__(self, tracking_uri: str, study: str, parent_run_id: str):
        self.uri, self.study, self.parent = tracking_uri, study, parent_run_id

    def on_trial_error(self, iteration, trials, trial, **info):
        try:
            tracking.StudyTracker(self.uri, self.study).mark_failed(self.parent, trial_name(trial),
                                                                    trial.config.get("points", []))
        except Exception as err:  # noqa: BLE001 - never let bookkeeping kill the study (a tracking outage)
            print(f"warning: could not mark the points of {trial_name(trial)} as failed in MLflow yet (tried again when "
                  f"the study ends): {str(err).splitlines()[0][:200]}", file=sys.stderr)


# ----------------------------------------------------------------------------- run / resume


def _context(spec: StudySpec, meta: dict):
    from .trainable import StudyContext

    stopping = spec.early_stopping
    return StudyContext(study=spec.name, tracking_uri=meta["tracking_uri"], experiment_id=meta["experiment_id"],
                        parent_run_id=meta["parent_run_id"], metric=spec.metric, mode=spec.mode,
                        cpus=spec.resources.cpus,
                        early_stopping=stopping.model_dump() if stopping else None)


def prepare_run(spec: StudySpec, tracking_uri: str, storage: str) -> dict | None:
    """Every check that needs no Ray: tracking reachable, and the name either free or used by this
    very spec (then the study is continued, or found complete); returns the existing study's record."""
    tracking.check_tracking(tracking_uri)
    meta = read_meta(storage, spec.name)
    if meta is not None and validate_spec(meta["spec"]).spec_hash() != spec.spec_hash():
        raise UserError("name", f"study '{spec.name}' already exists in {experiment_path(storage, spec.name)} with "
                                f"another spec; choose another --name (or `uwm-study resume {spec.name}`)")
    return meta


def start_fresh(name: str, tracking_uri: str, storage: str) -> None:
    """``uwm-study run --fresh``: forget the study of this name so that it starts again under the same name.
    Its folder ``<storage>/<name>`` (progress, Ray Tune state, checkpoints) is deleted, and its MLflow runs in
    ``tracking_uri`` (the parent and every child) are marked deleted (the MLflow UI can still restore them;
    ``mlflow gc`` purges them). Nothing of another study is touched."""
    import pyarrow.fs

    tracking.check_tracking(tracking_uri)
    if not layout.is_remote(storage):
        end_dead_sessions(storage)   # before their record goes with the folder
    fs, root = progress.filesystem(experiment_path(storage, name))
    if fs.get_file_info(root).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(root)
    db = tracking.sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        return
    tracker = tracking.StudyTracker(tracking_uri, name)
    exp = tracker.experiment_id()
    if exp is None:
        return
    for parent in tracking.search_all(tracker.client, [exp], layout.parent_filter(name)):
        for run in [*tracker.children(parent.info.run_id), parent]:
            tracking._retry(tracker.client.delete_run, run.info.run_id)


def already_held(name: str, tracking_uri: str, storage: str, spec_path: str) -> str:
    """The refusal of a name MLflow already holds but ``storage`` has no folder of, naming the commands that work:
    ``resume`` with the --storage it ran with, or ``run --fresh`` for a run that stopped while starting."""
    flag = "" if storage == resolve_storage(None) else f" --storage {shlex.quote(storage)}"
    return (f"MLflow at {tracking_uri} already holds a study '{name}' but {storage} has no folder of it: resume it "
            f"with `uwm-study resume {name} --storage <the folder it ran with>`, or, if it stopped while starting, "
            f"start it again with `uwm-study run {shlex.quote(spec_path)} --fresh{flag}` (or choose another --name)")


def check_results_exist(name: str, meta: dict, storage: str) -> None:
    """A study recorded in its folder whose MLflow results are gone (the store deleted or emptied) cannot be
    continued or summarised: one line saying so and how to start over."""
    uri, parent = meta["tracking_uri"], meta["parent_run_id"]
    db = tracking.sqlite_path(uri)
    gone = db is not None and not db.exists()
    if not gone:
        try:
            gone = tracking.client(uri).get_run(parent).info.lifecycle_stage == "deleted"
        except Exception as err:  # noqa: BLE001 - only "no such run" means gone
            if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(err, "error_code", "")) and "not found" not in str(err).lower():
                raise
            gone = True
    if gone:
        raise UserError("name", f"study '{name}' ran before (its folder is {experiment_path(storage, name)}) "
                                f"but its results are gone from MLflow at {uri}; start it over under the same name "
                                f"with `uwm-study run <spec> --fresh`")


def run_study(spec: StudySpec, tracking_uri: str, storage: str, address: str | None = None, fresh: bool = False,
              spec_path: str = "<spec>") -> int:
    """Start a new study (see module doc), or continue the same spec run before; return the exit code.
    ``fresh``: forget a study of the same name first (:func:`start_fresh`), once the spec's work is known to fit.
    ``spec_path``: the spec as the user named it, for the command a refusal suggests."""
    check_storage(storage)
    work = check_work(spec)
    if fresh:
        start_fresh(spec.name, tracking_uri, storage)
    if prepare_run(spec, tracking_uri, storage) is not None:   # same name, same spec: never run it twice
        return resume_study(spec.name, storage, address, rerun=True)
    if is_local(address):
        check_local_machine(spec)
        end_dead_sessions(storage)
    db = tracking.sqlite_path(tracking_uri)
    if db is not None and not db.exists() and not (address or os.environ.get("RAY_ADDRESS")):
        # a new SQLite store cannot hold the study yet: create it (seconds) while Ray starts
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(tracking.StudyTracker, tracking_uri, spec.name)
            where = init_ray(address)
            tracker = pending.result()
    else:
        tracker = tracking.StudyTracker(tracking_uri, spec.name)
        if tracker.parent() is not None:
            raise UserError("name", already_held(spec.name, tracking_uri, storage, spec_path))
        where = init_ray(address)
    parent = tracker.open_parent(spec.to_yaml(), spec.spec_hash(), spec.description, spec.metric)
    meta = {"name": spec.name, "spec": spec.model_dump(mode="json"), "tracking_uri": tracking_uri,
            "experiment_id": tracker.experiment_id(), "parent_run_id": parent, "storage": storage,
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        write_meta(storage, spec.name, meta)
    except OSError as err:   # never half a study: without its record the parent run could not be resumed
        tracking._retry(tracker.client.delete_run, parent)
        raise UserError("--storage", f"cannot write the study's record in {experiment_path(storage, spec.name)} "
                                     f"({err.strerror or err}); nothing was started") from None
    if is_local(address):
        watch_session(storage, spec.name)

    concurrent = spec.max_concurrent or default_concurrency(spec)
    print(f"study {spec.name}: {len(spec.cells())} cells x {spec.samples_per_cell} points"
          + (" + confirm" if spec.confirm else "") + f" = {spec.total_points} points, packs of <= {spec.points_per_pack}, "
          f"{concurrent} trial{'s' * (concurrent != 1)} at once on {where}", flush=True)
    print(work.line(concurrent), flush=True)
    return _fit(_new_tuner(spec, meta, concurrent, address), spec, meta, tracker)


def _new_tuner(spec: StudySpec, meta: dict, concurrent: int, address: str | None = None):
    """One Tune run for the whole study: the grid x Optuna searcher suggests packs, FIFO scheduling
    (early stopping is per point, inside the trials), retries from checkpoints."""
    from ray import tune

    from .searcher import GridOptunaSearcher
    from .trainable import trainable

    return tune.Tuner(
        trainable(_context(spec, meta), spec.resources.cpus, spec.resources.gpus),
        tune_config=tune.TuneConfig(search_alg=GridOptunaSearcher(spec), num_samples=-1,
                                    max_concurrent_trials=concurrent, reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=meta["storage"], verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[Progress(spec.total_points, spec.metric, spec.mode, upper_bound=spec.confirm is not None,
                                **_progress_options(spec, meta, address)),
                       FailedPoints(meta["tracking_uri"], spec.name, meta["parent_run_id"])]),
    )


def _progress_options(spec: StudySpec, meta: dict, address: str | None) -> dict:
    """Progress's session record (local Ray) or resource wait (a joined cluster none of whose nodes fits a trial),
    the tracking store it watches, a trial's resources and the log of tracebacks."""
    common = {"tracking_uri": meta["tracking_uri"], "trial_resources": (spec.resources.cpus, spec.resources.gpus),
              "errors": error_log(meta)}
    if is_local(address):
        return {**common, **({"session": (meta["storage"], spec.name)} if not layout.is_remote(meta["storage"]) else {})}
    waiting = check_joined_cluster(spec, spec.resources.wait_timeout_s)
    if waiting:
        print(waiting, flush=True)
    return {**common, "waiting": waiting, "wait_s": spec.resources.wait_timeout_s}


def error_log(meta: dict) -> str | None:
    """The study's log of tracebacks (a local storage only; on a remote one they stay on the console)."""
    return None if layout.is_remote(meta["storage"]) else str(Path(experiment_path(meta["storage"], meta["name"]), ERRORS))


def resume_study(name: str, storage: str, address: str | None = None, rerun: bool = False) -> int:
    """Continue an interrupted study from Ray's experiment state and the trials' checkpoints."""
    meta = read_meta(storage, name)
    if meta is None:
        raise UserError("name", f"no study '{name}' in {storage} (pass the --storage it was run with)")
    spec = validate_spec(meta["spec"])
    check_storage(storage)
    tracking.check_tracking(meta["tracking_uri"])
    check_results_exist(name, meta, storage)
    if not layout.is_remote(storage) and study_complete(spec, storage):
        tracker = tracking.StudyTracker(meta["tracking_uri"], name)
        failed = sum(r.data.tags.get(layout.STATUS) == layout.FAILED for r in tracker.children(meta["parent_run_id"]))
        if not failed:
            print(f"study {name} is complete: nothing to run" + (" (it ran before with this spec; choose another "
                                                                  "--name to run it again)" if rerun else ""))
            print(summary(name, meta, tracker))
            return exit_code(tracker.close_parent(meta["parent_run_id"], status="FINISHED"), True)
        # Tune reschedules the errored packs from their last checkpoints; the points that ended are not run again
        print(f"study {name} ended with {failed} failed point{'s' * (failed != 1)}: training their packs again",
              flush=True)
    if is_local(address):
        check_local_machine(spec)
        end_dead_sessions(storage)
    where = init_ray(address)
    if is_local(address):
        watch_session(storage, name)
    from ray import tune

    tracker = tracking.StudyTracker(meta["tracking_uri"], name)
    tracker.reopen_parent(meta["parent_run_id"])
    if read_progress(storage, spec) is not None and tune.Tuner.can_restore(experiment_path(storage, name)):
        print(f"{'continuing' if rerun else 'resuming'} study {name} on {where}"
              + (" (it ran before with this spec and stopped early)" if rerun else ""), flush=True)
        tuner = restore_tuner(spec, meta, _progress_options(spec, meta, address))
    else:   # stopped before Ray Tune saved any state: start its search again, under the same parent run
        print(f"study {name} stopped before its first trial was saved: starting it again on {where}", flush=True)
        tuner = _new_tuner(spec, meta, spec.max_concurrent or default_concurrency(spec), address)
    return _fit(tuner, spec, meta, tracker)


EXIT_INCOMPLETE = 1      # the study stopped before every point ended (resume continues it)
EXIT_POINTS_FAILED = 3   # the study ended, but some points failed (their packs errored after every retry)
EXIT_INTERRUPTED = 130   # Ctrl-C (SIGINT): the running points are marked interrupted; resume continues them


def exit_code(counts: dict[str, int], complete: bool) -> int:
    """0 when every point ended with results (finished, diverged or stopped); see the EXIT_* codes."""
    if not complete:
        return EXIT_INCOMPLETE
    return EXIT_POINTS_FAILED if counts.get(layout.FAILED) else 0


class _TuneRestoreHint(logging.Filter):
    """Drops Ray Tune's "Resume experiment with: Tuner.restore(...)": `uwm-study resume` is the way here."""

    def filter(self, record):
        return "Tuner.restore(" not in record.getMessage()


def _fit(tuner, spec: StudySpec, meta: dict, tracker: tracking.StudyTracker) -> int:
    import signal

    start = time.time()
    interrupted = []

    def on_sigint(signum, frame):
        # Tune stops gracefully on SIGUSR1 (state saved, trials stopped); a second Ctrl-C raises at once
        interrupted.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGUSR1)

    hint = _TuneRestoreHint()
    logging.getLogger("ray.tune.tune").addFilter(hint)
    divert = ErrorLog(error_log(meta)) if error_log(meta) else None
    console = divert.handlers() if divert else []
    for handler in console:
        handler.addFilter(divert)
    previous = signal.signal(signal.SIGINT, on_sigint)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"   # Tune would install its own handler, and print its own hint
    try:
        results = tuner.fit()
    except KeyboardInterrupt:
        interrupted.append("again")
        results = None
    except Exception as err:   # noqa: BLE001 - a ResourceWait comes back wrapped by Tune
        cause = err
        while cause is not None and not isinstance(cause, ResourceWait):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        tracker.mark_interrupted(meta["parent_run_id"])
        tracker.close_parent(meta["parent_run_id"], status="KILLED")
        _end_session(meta)
        raise UserError("resources.wait_timeout_s", f"no trial started within {spec.resources.wait_timeout_s:g} s: "
                                                    f"{str(cause).split(':')[0]} never appeared") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        logging.getLogger("ray.tune.tune").removeFilter(hint)
        for handler in console:
            handler.removeFilter(divert)
    if interrupted:
        marked = tracker.mark_interrupted(meta["parent_run_id"])
        tracker.close_parent(meta["parent_run_id"], status="KILLED")
        _end_session(meta)
        print(f"\ninterrupted: {marked} running point{'s' * (marked != 1)} marked interrupted; continue with "
              f"`uwm-study resume {spec.name}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    errors = len(results.errors)
    try:
        complete, counts = _record_end(results, spec, meta, tracker)
    except Exception as err:
        if not tracking.is_outage(err):
            raise
        # the server went away for longer than MLflow's retries after the last pack: the packs' own results are
        # saved, only the study's summary is not; resume writes it once the server is back
        _end_session(meta)
        print(f"error: tracking: the MLflow server at {meta['tracking_uri']} stayed unreachable through MLflow's "
              f"retries at the end of the study; once it is back, `uwm-study resume {spec.name}` records the "
              "end (and trains any failed points again)", file=sys.stderr)
        return EXIT_INCOMPLETE
    _end_session(meta)
    print()
    print(f"study {spec.name} {'ended' if complete else 'stopped before the end'} after {time.time() - start:.0f} s: "
          + (", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no points")
          + (f"; {errors} pack(s) failed" + (f" (tracebacks in {error_log(meta)})" if error_log(meta) else "")
             if errors else ""))
    code = exit_code(counts, complete)
    if not complete:
        print(f"continue it with `uwm-study resume {spec.name}`", file=sys.stderr)
    elif code == EXIT_POINTS_FAILED:
        print(f"{counts[layout.FAILED]} point(s) failed: see `uwm-study status {spec.name}` and the failed runs in MLflow; "
              f"`uwm-study resume {spec.name}` trains them again", file=sys.stderr)
    print(summary(spec.name, meta, tracker))
    return code


def _record_end(results, spec: StudySpec, meta: dict, tracker: tracking.StudyTracker) -> tuple[bool, dict]:
    """The study's end in MLflow: failed packs' points, the best point per cell, the parent closed. Returns
    (complete, point counts by status)."""
    for result in results:   # marked by FailedPoints unless the tracking server was down then: mark them now
        if result.error is not None:
            tracker.mark_failed(meta["parent_run_id"], result.config.get("pack_id", "?"), result.config.get("points", []))
    complete = study_complete(spec, meta["storage"])
    tracker.log_best(meta["parent_run_id"], spec.metric, spec.mode,
                     best_per_cell(spec, tracker.children(meta["parent_run_id"])))
    return complete, tracker.close_parent(meta["parent_run_id"], status="FINISHED" if complete else "KILLED")


def _end_session(meta: dict) -> None:
    """This driver is ending normally: Ray stops its own processes at exit, nothing is left to clean up."""
    if not layout.is_remote(meta["storage"]):
        Path(experiment_path(meta["storage"], meta["name"]), session.SESSION).unlink(missing_ok=True)


def study_complete(spec: StudySpec, storage: str) -> bool:
    """Whether the searcher's last progress record says every point was suggested and ended."""
    if layout.is_remote(storage):
        return True   # remote storage: trust Tune, which returns only when the search is finished
    record = read_progress(storage, spec)
    return bool(record and record["complete"])


# ----------------------------------------------------------------------------- summaries


def best_per_cell(spec: StudySpec, runs: list) -> list[dict]:
    """The chosen point of every cell (:func:`uwm_model.layout.chosen_points`: the confirm stage where the cell
    has one), from the child runs: cell, value (the point's last ``spec.metric``, None if none), point_id, stage,
    seeds and params (the searched parameters, shortened)."""
    points = [{"cell": run.data.tags.get(layout.CELL), "stage": run.data.tags.get(layout.STAGE),
               "status": run.data.tags.get(layout.STATUS), "value": run.data.metrics.get(spec.metric), "run": run}
              for run in runs]
    chosen = layout.chosen_points(points, spec.mode)
    rows = []
    for cell in spec.cells():
        p = chosen.get(cell.key)
        if p is None:
            rows.append({"cell": cell.key, "value": None, "point_id": "-", "stage": "", "seeds": "", "params": {}})
            continue
        params = p["run"].data.params
        rows.append({"cell": cell.key, "value": p["value"], "point_id": p["run"].data.tags.get(layout.POINT_ID, "?"),
                     "stage": p["stage"] or "", "seeds": params.get("seeds", ""),
                     "params": {k: _short(params.get(k)) for k in spec.search}})
    return rows


def _short(text: str | None) -> str:
    """'0.05910317077425309' -> '0.0591'; '[0.01, 0.001]' -> '[0.01, 0.001]'."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return str(text)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return str(value)


def summary(name: str, meta: dict, tracker: tracking.StudyTracker) -> str:
    spec = validate_spec(meta["spec"])
    runs = tracker.children(meta["parent_run_id"])
    rows = best_per_cell(spec, runs)
    lines = [f"best per cell (last {spec.metric}, {spec.mode}; a cell with a confirm stage is answered by its "
             "confirm points, trained on fresh seeds):"]
    width = max((len(c.key) for c in spec.cells()), default=10)
    pid_width = max((len(r["point_id"]) for r in rows), default=1)
    for r in rows:
        shown = "   -  " if r["value"] is None else f"{r['value']:6.3f}"
        where = f"{r['stage']}, {r['seeds']} seeds" if r["stage"] else ""
        lines.append(f"  {r['cell']:<{width}}  {shown}  {r['point_id']:<{pid_width}}  "
                     + " ".join(f"{k}={v}" for k, v in r["params"].items()) + (f"  ({where})" if where else ""))
    uri = meta["tracking_uri"]
    lines.append("results:")
    lines.append(f"  MLflow   {uri}  experiment '{name}' (experiment id {meta['experiment_id']}, "
                 f"parent run {meta['parent_run_id']})")
    if tracking.is_server(uri):
        lines.append(f"  open     {layout.ui_url(uri, meta['experiment_id'])}")
    else:
        lines.append(f"  open     uwm-study ui   then {layout.ui_url(layout.UI_LOCAL, meta['experiment_id'])}")
    # the flag this study needs again, unless it is where these commands look anyway
    flag = "" if meta["storage"] == resolve_storage(None) else f" --storage {shlex.quote(meta['storage'])}"
    lines.append(f"  Ray Tune {experiment_path(meta['storage'], name)}   "
                 f"(uwm-study status {name}{flag} | uwm-study resume {name}{flag})")
    lines.append(f"  report   uwm-study report {name}{flag} --out reports/{name}")
    return "\n".join(lines)


def status_text(name: str, storage: str) -> str:
    """Trials (packs) by Ray state and points by final status, then the best point of every cell."""
    meta = read_meta(storage, name)
    if meta is None:
        raise UserError("name", f"no study '{name}' in {storage} (pass the --storage it was run with)")
    tracking.check_tracking(meta["tracking_uri"], write=False)
    tracker = tracking.StudyTracker(meta["tracking_uri"], name)
    spec = validate_spec(meta["spec"])
    runs = tracker.children(meta["parent_run_id"])
    by_status: dict[str, int] = {}
    for run in runs:
        s = run.data.tags.get(layout.STATUS, layout.RUNNING)
        by_status[s] = by_status.get(s, 0) + 1
    parent = tracker.client.get_run(meta["parent_run_id"])
    record = read_progress(storage, spec)
    lines = [f"study {name}: {len(spec.cells())} cells, {spec.total_points} points planned; parent run "
             f"{parent.info.status.lower()}",
             "points: " + (", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none yet")
             + f" (of {spec.total_points})"]
    if record:
        packs = record["packs"]
        lines.append(f"packs (Ray trials): {packs['suggested'] - packs['running']} ended, {packs['running']} running; "
                     f"stage {record['stage']}")
    nodes = points_by_node(runs)
    if nodes:
        moved = sum(len(tracking.nodes_of(run.data.tags)) > 1 for run in runs)
        lines.append("nodes: " + ", ".join(f"{where} {n} point{'s' * (n != 1)}" for where, n in nodes.items())
                     + (f" ({moved} point{'s' * (moved != 1)} trained on more than one node)" if moved else ""))
    return "\n".join(lines + [summary(name, meta, tracker)])


def points_by_node(runs: list) -> dict[str, int]:
    """'<node id[:8]> at <ip>' -> points that trained there (MLflow tags uwm.nodes: every node a point's attempts
    trained on, so a point retried on another node counts on both)."""
    counts: dict[str, int] = {}
    for run in runs:
        for where in tracking.nodes_of(run.data.tags):
            counts[where] = counts.get(where, 0) + 1
    return dict(sorted(counts.items()))
