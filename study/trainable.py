"""The Ray Tune trainable: one trial trains one pack of points as one population.

``train_pack(config, ctx)`` reads the pack (``config["points"]``, each a full TrialConfig with
its point id), builds ``uwm_model.Trainer`` for all of them (or restores it from the trial's
checkpoint), and at every report:

1. logs each running point's series (``uwm_model.metrics.is_series``: one per quantity) to its own
   MLflow child run (created lazily, found again by point id after a retry or resume: see
   :mod:`study.tracking`);
2. asks the study's rung board whether points that reached a rung continue; the others are
   stopped inside the trainer (``stop_points``) and end as ``stopped`` while the rest of the
   pack trains on (:mod:`study.stopping`);
3. ends the points that are done (``finished`` or ``diverged``: per-seed curves artifact,
   status tag);
4. checkpoints the trainer and its bookkeeping and calls ``tune.report`` with, per point,
   ``point_value/<id>`` and ``point_status/<id>`` (read by the searcher), and ``best``.

When the pack ends, each point run gets the tag ``uwm.timeline``: where the trial function's time went
(:mod:`study.timeline`).

A diverged point is recorded as diverged in its own run; its pack is not touched.
"""

from __future__ import annotations

import torch  # noqa: F401,I001 - import torch first in every entry module (oneMKL load failures under `ray job submit`)

import json
import logging
import math
import os
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from uwm_model import layout, metrics
from uwm_model.config import TrialConfig
from uwm_model.settings import torch_settings
from uwm_model.trainer import Trainer

from . import tracking
from .control_trial import is_control, trial_config
from .stopping import board_name, rung_episodes
from .timeline import PackTimeline

# MLflow prints "View run ... at: http://..." for every run it ends on a tracking server: one
# line per point in the job log; the summary links the study instead
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@dataclass(frozen=True)
class StudyContext:
    """What every trial of a study needs besides its pack (passed with ``tune.with_parameters``)."""

    study: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    metric: str
    mode: str
    cpus: float
    early_stopping: dict | None = None   # kind, grace_period, reduction_factor


_CLIENTS: dict[str, object] = {}
_POOL = ThreadPoolExecutor(1)


def _client(uri: str):
    """One MLflow client per worker process (importing MLflow takes seconds: reuse it)."""
    if uri not in _CLIENTS:
        _CLIENTS[uri] = tracking.client(uri)
    return _CLIENTS[uri]


class PackState:
    """The pack's bookkeeping that must survive a restart: per point, its end status, latest
    metric value, eval-reward curve, next rung and per-seed curve rows."""

    def __init__(self, n: int):
        self.ended: list[str | None] = [None] * n
        self.value = [math.nan] * n
        self.eval_curve: list[list] = [[] for _ in range(n)]
        self.rows: list[list] = [[] for _ in range(n)]
        self.next_rung = [0] * n

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> "PackState":
        state = cls(len(data["ended"]))
        state.__dict__.update(data)
        return state


def train_pack(config: dict, ctx: StudyContext) -> None:
    """Train one pack (see module doc)."""
    timeline = PackTimeline()
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)   # one line per checkpoint otherwise
    points, pack_id = config["points"], config["pack_id"]
    mlflow_client = _POOL.submit(_client, ctx.tracking_uri)   # MLflow starts while the first report trains
    with timeline.phase("setup"):
        configs = [trial_config(p["config"]) for p in points]
        torch_settings(configs[0].threads, configs[0].device)   # the trial owns its worker process while it trains
        trainer, state = _trainer_and_state(points, configs)
        timeline.trainer_ready(trainer)
        board, rungs = None, []
        if ctx.early_stopping:
            board = ray.get_actor(board_name(ctx.study))
            rungs = rung_episodes(ctx.early_stopping["grace_period"], ctx.early_stopping["reduction_factor"],
                                  configs[0].episodes)
        node = ray.get_runtime_context().get_node_id()
        node_ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node), "?")   # as Ray knows it
    where = {layout.NODE: node, layout.NODE_IP: node_ip, layout.HOST: socket.gethostname(), layout.PID: str(os.getpid()),
             layout.DEVICE: str(trainer.device)}   # cuda, or cpu where a GPU trial found no CUDA device
    runs: list[tracking.PointRun] | None = None
    for report in timeline.timed(trainer.run()):
        with timeline.phase("mlflow"):
            if runs is None:
                runs = [tracking.PointRun(mlflow_client.result(), ctx.experiment_id, ctx.parent_run_id, ctx.study,
                                          pack_id, p, where) for p in points]
            for i, pr in enumerate(report.points):
                if state.ended[i]:
                    continue
                _record(state, i, report.episode, pr, configs[i], ctx.metric)
                runs[i].log(report.episode, _series(pr.metrics, state.eval_curve[i], ctx.metric))

        if board is not None:
            stop = _rung_decisions(board, state, points, report, rungs)
            if stop:
                trainer.stop_points(stop)
                with timeline.phase("mlflow"):
                    for i in stop:
                        diverged = report.points[i].metrics.get("diverged_fraction", 0) > 0
                        _end(runs[i], state, i, layout.DIVERGED if diverged else layout.STOPPED,
                             report.points[i].metrics)

        last = report.episode >= configs[0].episodes
        with timeline.phase("mlflow"):
            for i, pr in enumerate(report.points):
                if not state.ended[i] and (last or pr.metrics.get("diverged_fraction", 0) >= 1):
                    _end(runs[i], state, i, layout.DIVERGED if pr.status == layout.DIVERGED else layout.FINISHED,
                         pr.metrics)
        done = all(state.ended)
        if done:   # the timeline up to the last checkpoint, on every point run of the pack
            tag = timeline.as_tag(trainer)
            for run in runs:
                run.set_tag(layout.TIMELINE, tag)

        with timeline.phase("checkpoint"), tempfile.TemporaryDirectory() as folder:
            trainer.save(Path(folder) / "trainer.pt")
            (Path(folder) / "pack.json").write_text(json.dumps(state.to_json()))
            result = _result(points, state, report, ctx.mode)
            result["node"] = f"{node[:8]} at {node_ip}"   # the driver's log names it with the pack
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        if done:
            break


def _trainer_and_state(points: list[dict], configs: list[TrialConfig]):
    """The pack's trainer and bookkeeping: restored from the trial's checkpoint (a resumed or retried pack), else new."""
    if is_control(points[0]["config"]):     # the actor-critic on a control task, driven alike
        from uwm_model.control_trainer import ControlTrainer as trainer_class
    else:
        trainer_class = Trainer
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return trainer_class(configs), PackState(len(points))
    with checkpoint.as_directory() as folder:
        return (trainer_class.load(Path(folder) / "trainer.pt", configs),
                PackState.from_json(json.loads((Path(folder) / "pack.json").read_text())))


def _record(state: PackState, i: int, episode: int, pr, cfg: TrialConfig, metric: str) -> None:
    state.eval_curve[i].append([episode, pr.metrics.get("eval_reward_mean", math.nan)])
    # the study's own auc_reward_mean is the point's value when it is the metric (the trainer does not report it)
    state.value[i] = _auc(state.eval_curve[i]) if metric == layout.AUC_REWARD else float(pr.metrics.get(metric, math.nan))
    for seed, row in zip(cfg.member_seeds, pr.per_seed):
        state.rows[i].extend([episode, seed, name, value] for name, value in row.items())


def _series(point_metrics: dict[str, float], eval_curve: list, objective: str) -> dict[str, float]:
    """What the point's child run charts at this report (``metrics.is_series``), with the mean eval
    reward over training so far (its last value is the point's ``auc_reward_mean``)."""
    out = {k: v for k, v in point_metrics.items() if metrics.is_series(k, objective)}
    if math.isfinite(auc := _auc(eval_curve)):
        out[layout.AUC_REWARD] = auc
    return out


def _auc(eval_curve: list) -> float:
    """The point's auc_reward_mean from its eval-reward curve so far (its finite reports), or nan before any."""
    curve = [(e, v) for e, v in eval_curve if math.isfinite(v)]
    return layout.auc_reward(curve) if curve else math.nan


def _end(run: tracking.PointRun, state: PackState, i: int, status: str, point_metrics: dict[str, float]) -> None:
    """The point ended: its means at reward levels once (``metrics.is_logged_at_end``; every other summary is a
    series' last value), its per-seed curves, its status."""
    run.finish(status, {k: v for k, v in point_metrics.items() if metrics.is_logged_at_end(k)}, state.rows[i])
    state.ended[i] = status
    state.rows[i] = []   # logged: no need to carry them in later checkpoints


def _rung_decisions(board, state: PackState, points: list[dict], report, rungs: list[int]) -> list[int]:
    """Points that reached a rung at this report and are told to stop."""
    asks = []
    for i, pr in enumerate(report.points):
        if state.ended[i] or points[i]["stage"] != layout.STAGE_SEARCH or pr.metrics.get("diverged_fraction", 0) >= 1:
            continue   # confirm points always train to the end
        rung = None
        while state.next_rung[i] < len(rungs) and rungs[state.next_rung[i]] <= report.episode:
            rung = rungs[state.next_rung[i]]
            state.next_rung[i] += 1
        if rung is not None:
            asks.append((i, board.decide.remote(points[i]["cell"], rung, points[i]["point_id"], state.value[i])))
    return [i for i, ref in asks if not ray.get(ref)]


def _result(points: list[dict], state: PackState, report, mode: str) -> dict:
    values = [v for v in state.value if math.isfinite(v)]
    best = (max(values) if mode == "max" else min(values)) if values else math.nan
    result = {"episode": report.episode, "points": len(points), "points_running": sum(not e for e in state.ended),
              "best": best, "episodes_per_second": report.episodes_per_second}
    for p, value, ended in zip(points, state.value, state.ended):
        result[f"point_value/{p['point_id']}"] = value
        result[f"point_status/{p['point_id']}"] = ended or layout.RUNNING
    return result


def trainable(ctx: StudyContext, cpus: float, gpus: float):
    """``train_pack`` bound to a study's context, with its resources per trial."""
    return tune.with_resources(tune.with_parameters(train_pack, ctx=ctx), {"cpu": cpus, "gpu": gpus})


