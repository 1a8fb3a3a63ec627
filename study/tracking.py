"""Writing a study to MLflow: one parent run per study, one nested child run per point.

The layout itself (every tag, status, artifact and run name) is :mod:`uwm_model.layout`, shared with
``analysis``. Parent run ``run_name = <study>``; child run per point named by
:func:`~uwm_model.layout.point_run_name` (rule, widths, norm, lr, seeds, then the point id),
params ``TrialConfig.flat()`` (lists as strings) plus ``cell.<path>`` for every grid axis,
metric series at step = episode (one per quantity: ``uwm_model.metrics.is_series``, chosen by
the trainable), and the per-seed curves artifact.

No duplicates. A child run is found by its point id (tag search) before one is created, so a
retried or resumed trial reuses its run, and metric steps at or below the run's last logged
episode are skipped (a trial restored from an older checkpoint repeats no step). A run whose
point already has a final status is left alone. A run found with the same point id but another
configuration (left by a driver that crashed before saving the state that named it) is deleted
and replaced. A study name already used in the tracking store is refused by ``uwm-study run``.

The default store is a SQLite file, ``sqlite:///<cwd>/mlflow.db``, with artifacts in
``<cwd>/mlruns/``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` selects a server. A server
that does not answer ``/health`` within a few seconds is reported before anything starts.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

from uwm_model import layout, metrics
from uwm_model.layout import is_server

from .errors import UserError


# ----------------------------------------------------------------------------- where


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(arg: str | None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the local SQLite file."""
    uri = arg or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if not layout.is_remote(uri) and not uri.startswith(("sqlite:", "file:", "databricks")):
        uri = Path(uri).resolve().as_uri()   # a plain folder: MLflow's file store
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_tracking(uri: str, timeout: float = 5.0, write: bool = True) -> None:
    """Fail fast (one line) when the tracking store cannot be reached, or (``write``) a SQLite store cannot be
    written (:func:`study.preflight.check_sqlite_store`); creates nothing."""
    if is_server(uri):
        import requests

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as err:
            reason = type(err).__name__.replace("Error", " error").strip()
            raise UserError("tracking", f"cannot reach the MLflow server at {uri} ({reason}); start it or "
                                        f"pass another --tracking-uri") from None
        if response.status_code != 200:
            raise UserError("tracking", f"the MLflow server at {uri} answered /health with HTTP {response.status_code}")
    elif (db := sqlite_path(uri)) is not None:
        if write:
            from .preflight import check_sqlite_store

            check_sqlite_store(db, uri)
        elif not db.parent.is_dir():
            raise UserError("tracking", f"folder {db.parent} of the SQLite store {uri} does not exist")


def retry_window_s() -> float:
    """About how long MLflow's client keeps retrying a request to a server that does not answer: urllib3's
    backoff, factor x 2^(k-1) seconds (at most 120) before retry k = 2 .. max_retries, with its jitter
    (MLflow's own environment variables; defaults 7 retries, factor 2: about 4 minutes)."""
    from mlflow.environment_variables import (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
                                              MLFLOW_HTTP_REQUEST_MAX_RETRIES)

    retries, factor = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    jitter = MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get()
    return sum(min(120.0, factor * 2 ** (k - 1) + jitter / 2) for k in range(2, retries + 1))


def answers(uri: str, timeout: float = 3.0) -> bool:
    """Whether the MLflow server at ``uri`` answers /health now."""
    import requests

    try:
        return requests.get(uri.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


class TrackingWatch:
    """Says aloud when the tracking server stops answering (and how long the trials will wait for it) and when it
    answers again: the driver's progress loop calls :meth:`poll` (a /health request at most every ``every`` s).
    A SQLite store has no outage: nothing to watch."""

    def __init__(self, uri: str, every: float = 10.0, timeout: float = 3.0):
        self.uri, self.every, self.timeout = uri, every, timeout
        self.down_since: float | None = None
        self.last = -math.inf

    def poll(self, now: float | None = None) -> str | None:
        """A line when the server's state changed since the last poll, else None."""
        now = time.time() if now is None else now
        if not is_server(self.uri) or now - self.last < self.every:
            return None
        self.last = now
        up = answers(self.uri, self.timeout)
        if not up and self.down_since is None:
            self.down_since = now
            return (f"tracking: the MLflow server at {self.uri} does not answer; the trials wait for it (MLflow's "
                    f"retries, about {retry_window_s():.0f} s), then the packs that were logging fail and Ray Tune "
                    f"retries them from their checkpoints")
        if up and self.down_since is not None:
            line = f"tracking: the MLflow server at {self.uri} answers again after {now - self.down_since:.0f} s"
            self.down_since = None
            return line
        return None


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go next to it, in mlruns/; servers decide for themselves."""
    db = sqlite_path(uri)
    return (db.parent / "mlruns").as_uri() if db is not None else None


def client(uri: str):
    """An MlflowClient for ``uri``.

    A tracking server that goes away while a study runs is waited for: MLflow's client retries every
    request with exponential backoff (7 retries, factor 2: about 4 minutes, MLflow's own default, kept),
    so the trials pause in their logging call and go on, each point recorded once, when the server is
    back. A response cut off by a server that died while answering (which MLflow does not retry) is asked
    again here, except a run's creation, which looks for the run first (:func:`_retry`). An outage longer
    than that fails the pack's logging call: Ray Tune retries the pack from its last checkpoint
    (``max_failures``), waiting again; after the last retry its points end as failed (exit 3) and
    ``resume`` trains them again. Commands that start work check the server
    first and fail fast (:func:`check_tracking`)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")   # "View run ..." from every worker
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)   # after the import, which sets INFO

    return MlflowClient(uri)


def _retry(fn, *args, attempts: int = 8, replayable: bool = True, **kwargs):
    """Call ``fn``, retrying while a SQLite store is locked by another writer, and (when calling it again
    cannot record anything twice: every call of this module but ``create_run``) after a response cut off."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - only a locked store and a cut-off response are retried
            transient = "locked" in str(err) or (replayable and is_cut_off(err))
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def is_cut_off(err: BaseException) -> bool:
    """Whether ``err`` is a response cut off: the server died while answering, after doing the request.
    MLflow's own retries cover a connection refused, reset or timed out, not this, so without a retry here
    a server restarted at the wrong moment fails a pack at once however short its outage."""
    return any(sign in str(err) for sign in ("Connection broken", "IncompleteRead", "Response ended prematurely"))


def is_outage(err: BaseException) -> bool:
    """Whether ``err`` is a tracking server that stayed unreachable through MLflow's own retries (a connection
    refused, reset or timed out), as opposed to an error of the request itself."""
    import requests

    text = f"{type(err).__name__}: {err}"
    return isinstance(err, requests.ConnectionError) or any(
        sign in text for sign in ("Max retries exceeded", "Connection refused", "ConnectionError", "Read timed out")
    ) or is_cut_off(err)


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("uwm-study")
    except PackageNotFoundError:
        return "unknown"


def search_all(mlflow_client, experiment_ids: list[str], filter_string: str) -> list:
    """Every run matching the filter (all pages), retried while a SQLite store is locked."""
    return layout.search_all(mlflow_client, experiment_ids, filter_string, retry=_retry)


# ----------------------------------------------------------------------------- the study (driver side)


class StudyTracker:
    """The parent run of a study and summaries of its child runs (used by the driver and the CLI)."""

    def __init__(self, uri: str, study: str):
        self.uri, self.study = uri, study
        self.client = client(uri)

    def experiment_id(self, create: bool = False) -> str | None:
        exp = _retry(self.client.get_experiment_by_name, self.study)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise UserError("name", f"MLflow experiment '{self.study}' is deleted; restore or purge it, "
                                        f"or choose another --name")
            return exp.experiment_id
        if not create:
            return None
        try:
            return _retry(self.client.create_experiment, self.study, artifact_location=artifact_root(self.uri) and
                          f"{artifact_root(self.uri)}/{self.study}", tags={layout.EXPERIMENT_KIND: layout.KIND_TRAINING})
        except Exception:  # created meanwhile by another process
            exp = self.client.get_experiment_by_name(self.study)
            if exp is None:
                raise
            return exp.experiment_id

    def parent(self):
        """The study's parent run, or None."""
        exp = self.experiment_id()
        if exp is None:
            return None
        runs = search_all(self.client, [exp], layout.parent_filter(self.study))
        return min(runs, key=lambda r: r.info.start_time) if runs else None

    def open_parent(self, spec_yaml: str, spec_hash: str, description: str = "", metric: str | None = None) -> str:
        """Create the parent run (RUNNING) with its tags, spec.yaml and the glossary of every metric the study's
        runs log (``glossary.md``: meaning and unit; ``metric``, the study metric, names its ``best_*``); return
        its id."""
        exp = self.experiment_id(create=True)
        # the experiments page shows these: a training experiment (not GenAI) described by the spec
        _retry(self.client.set_experiment_tag, exp, layout.EXPERIMENT_KIND, layout.KIND_TRAINING)
        if description:
            _retry(self.client.set_experiment_tag, exp, layout.NOTE, description)
        tags = {layout.ROLE: layout.ROLE_STUDY, layout.STUDY: self.study, layout.SPEC_HASH: spec_hash,
                layout.GIT_COMMIT: git_commit(), layout.VERSION: package_version()}
        if description:
            tags[layout.NOTE] = description
        for attempt in range(3):
            try:   # a run's creation is never sent twice blindly (see _retry) ...
                run = _retry(self.client.create_run, exp, replayable=False, run_name=self.study, tags=tags)
                break
            except Exception as err:  # noqa: BLE001 - only a cut-off response is looked into
                # ... the server may have created it before it died: look for it rather than create a second one
                if not is_cut_off(err) or attempt == 2:
                    raise
                run = self.parent()
                if run is not None:
                    break
        _retry(self.client.log_text, run.info.run_id, spec_yaml, layout.SPEC_ARTIFACT)
        _retry(self.client.log_text, run.info.run_id, metrics.glossary_markdown(metric), layout.GLOSSARY)
        return run.info.run_id

    def reopen_parent(self, run_id: str) -> None:
        _retry(self.client.update_run, run_id, status="RUNNING")

    def children(self, parent_id: str) -> list:
        exp = self.experiment_id()
        return search_all(self.client, [exp], layout.point_filter(parent_id)) if exp else []

    def log_best(self, run_id: str, metric: str, mode: str, rows: list[dict]) -> None:
        """The study's answer on its parent run: the chosen point of every cell (``runner.best_per_cell``) as a
        table artifact and as one metric per cell, ``best_<metric>/<cell>``, so the runs table shows each rule's
        value as a column; the best of all as the tag ``uwm.best_point`` and the metric ``best_<metric>``.
        ``rows``: one mapping per cell (cell, point_id, value, stage, seeds, tuned parameters), value None if
        none was trained; stage says which stage answers the cell (confirm where it has one)."""
        from mlflow.entities import Metric

        params = sorted({k for r in rows for k in r.get("params", {})})
        header = ["cell", "point_id", "stage", "seeds", f"final_{metric}", *params]
        buf = io.StringIO()
        csv.writer(buf).writerows([header] + [[r["cell"], r["point_id"], r.get("stage", ""), r.get("seeds", ""),
                                               "" if r["value"] is None else r["value"],
                                               *(r.get("params", {}).get(k, "") for k in params)] for r in rows])
        _retry(self.client.log_text, run_id, buf.getvalue(), layout.BEST_PER_CELL)
        done = [r for r in rows if r["value"] is not None]
        if done:
            best = (max if mode == "max" else min)(done, key=lambda r: r["value"])
            stage = f"; {best['stage']} stage" if best.get("stage") else ""
            _retry(self.client.set_tag, run_id, layout.BEST_POINT, f"{best['point_id']} ({best['cell']}{stage})")
            now = int(time.time() * 1000)
            per_cell = {layout.cell_metric(f"best_{metric}", r["cell"]): float(r["value"]) for r in done}
            per_cell = {k: v for k, v in per_cell.items() if len(k) <= layout.MAX_METRIC_NAME}   # the CSV has them all
            _retry(self.client.log_batch, run_id, metrics=[Metric(f"best_{metric}", float(best["value"]), now, 0)] + [
                Metric(name, value, now, 0) for name, value in per_cell.items()])

    def close_parent(self, run_id: str, status: str = "FINISHED") -> dict[str, int]:
        """Log the point counts by status and end the parent run; return the counts."""
        counts = {s: 0 for s in (*layout.ENDED, layout.RUNNING)}
        for run in self.children(run_id):
            point_status = run.data.tags.get(layout.STATUS, layout.RUNNING)
            counts[point_status] = counts.get(point_status, 0) + 1
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        _retry(self.client.log_batch, run_id, metrics=[Metric(f"{layout.POINT_COUNT_PREFIX}{k}", v, now, 0) for k, v in counts.items()])
        _retry(self.client.set_terminated, run_id, status=status)
        return counts

    def mark_interrupted(self, parent_id: str) -> int:
        """Runs of points still training when the study was interrupted end as KILLED in MLflow (their
        uwm.status stays running: not an end, so `resume` reopens and continues them); return how many."""
        marked = 0
        for run in self.children(parent_id):
            if run.info.status == "RUNNING" and run.data.tags.get(layout.STATUS, layout.RUNNING) not in layout.ENDED:
                _retry(self.client.set_terminated, run.info.run_id, status="KILLED")
                marked += 1
        return marked

    def mark_failed(self, parent_id: str, pack_id: str, points: Iterable[dict]) -> None:
        """Points of a pack that errored for good: their runs end as failed (created if never started)."""
        exp = self.experiment_id(create=True)
        for point in points:
            run = PointRun(self.client, exp, parent_id, self.study, pack_id, point)
            found = search_all(self.client, [exp], layout.point_filter(parent_id, point["point_id"]))
            if any(r.data.tags.get(layout.STATUS) == layout.FAILED for r in found):
                continue   # marked already
            if run.ensure() and not run.closed:
                run.finish(layout.FAILED, {}, [])


# ----------------------------------------------------------------------------- one point (trainable side)


class PointRun:
    """The child run of one point, created lazily and keyed by point id (see module doc)."""

    def __init__(self, mlflow_client, experiment_id: str, parent_id: str, study: str, pack_id: str, point: dict,
                 where: dict[str, str] | None = None):
        self.client, self.experiment_id, self.parent_id = mlflow_client, experiment_id, parent_id
        self.study, self.pack_id, self.point = study, pack_id, point
        self.where = where or {}   # layout.NODE / NODE_IP / HOST / DEVICE: where this attempt trains
        self.run_id: str | None = None
        self.last_step = -1
        self.closed = False

    def ensure(self) -> str:
        """Find this point's run (reusing it) or create it; return the run id."""
        if self.run_id is not None:
            return self.run_id
        pid, chash = self.point["point_id"], layout.config_hash(self.point["config"])
        params = layout.point_params(_flat(self.point["config"]), self.point["axes"])
        tags = {layout.PARENT: self.parent_id, layout.ROLE: layout.ROLE_TRIAL, layout.STUDY: self.study,
                layout.CELL: self.point["cell"], layout.POINT_ID: pid, layout.STAGE: self.point["stage"],
                layout.PACK: self.pack_id, layout.CONFIG_HASH: chash, layout.STATUS: layout.RUNNING,
                layout.NOTE: layout.point_note(self.point), **self.where}
        if layout.NODE in self.where:
            tags[layout.NODES] = node_label(self.where)
        for attempt in range(3):
            self._reuse(search_all(self.client, [self.experiment_id], layout.point_filter(self.parent_id, pid)),
                        chash, params)
            if self.run_id is not None:
                return self.run_id
            try:
                run = _retry(self.client.create_run, self.experiment_id,
                             run_name=layout.point_run_name(pid, self.point["config"]), tags=tags, replayable=False)
                break
            except Exception as err:  # noqa: BLE001 - only a cut-off response is looked into
                # the server may have created the run before it died: look again rather than create it twice
                if not is_cut_off(err) or attempt == 2:
                    raise
        self.run_id = run.info.run_id
        self._log_params(params)
        return self.run_id

    def _log_params(self, params: dict[str, str], have: dict[str, str] | None = None) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items() if k not in (have or {})]
        for i in range(0, len(items), 100):
            _retry(self.client.log_batch, self.run_id, params=items[i: i + 100])

    def _reuse(self, found: list, chash: str, params: dict[str, str]) -> None:
        """Reuse the first of this point's runs with its configuration (completing its parameters, which an
        attempt that died after creating it may have left out); delete the others."""
        for run in sorted(found, key=lambda r: r.info.start_time):
            if run.data.tags.get(layout.CONFIG_HASH) == chash and self.run_id is None:
                self.run_id = run.info.run_id
                status = run.data.tags.get(layout.STATUS, layout.RUNNING)
                # a failed point is not over: `resume` trains its pack again from the last checkpoint
                self.closed = status in layout.ENDED and status != layout.FAILED
                history = _retry(self.client.get_metric_history, self.run_id, "episodes")
                self.last_step = max((m.step for m in history), default=-1)
                if not self.closed and run.info.status != "RUNNING":
                    _retry(self.client.update_run, self.run_id, status="RUNNING")
                    if status == layout.FAILED:
                        _retry(self.client.set_tag, self.run_id, layout.STATUS, layout.RUNNING)
                if not self.closed:
                    for key, value in self.where.items():
                        _retry(self.client.set_tag, self.run_id, key, value)
                    nodes = nodes_of(run.data.tags)
                    if layout.NODE in self.where and node_label(self.where) not in nodes:   # moved: a lost node?
                        _retry(self.client.set_tag, self.run_id, layout.NODES, ", ".join([*nodes, node_label(self.where)]))
                    self._log_params(params, have=run.data.params)
            else:   # a stale run of a lost attempt with another configuration, or a duplicate
                _retry(self.client.delete_run, run.info.run_id)

    def log(self, episode: int, metrics: dict[str, float]) -> None:
        """Aggregate metrics at step = episode (skipped when already logged or the point has ended)."""
        self.ensure()
        if self.closed or episode <= self.last_step:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, episode) for k, v in metrics.items() if _finite(v)]
        for i in range(0, len(items), 1000):
            _retry(self.client.log_batch, self.run_id, metrics=items[i: i + 1000])
        self.last_step = episode

    def set_tag(self, key: str, value: str) -> None:
        """A tag on this point's run (also once it has ended)."""
        _retry(self.client.set_tag, self.ensure(), key, value)

    def finish(self, status: str, summary: dict[str, float], rows: list) -> None:
        """Summary metrics, per-seed curves artifact, final status tag; end the run."""
        self.ensure()
        if self.closed:
            return
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), max(self.last_step, 0)
        metrics = [Metric(k, float(v), now, step) for k, v in summary.items() if _finite(v)]
        if metrics:
            _retry(self.client.log_batch, self.run_id, metrics=metrics)
        if rows:
            buf = io.StringIO()
            buf.write(",".join(layout.SEED_CURVE_COLUMNS) + "\n")
            for episode, seed, metric, value in rows:
                buf.write(f"{episode},{seed},{metric},{value!r}\n")
            _retry(self.client.log_text, self.run_id, buf.getvalue(), layout.SEED_CURVES)
        # the status tag last: it is what says the point has ended, so a run is never ended by its tag while
        # still RUNNING in MLflow (should the server go down between the two calls, a retry finishes it again)
        _retry(self.client.set_terminated, self.run_id, status="FAILED" if status == layout.FAILED else "FINISHED")
        _retry(self.client.set_tag, self.run_id, layout.STATUS, status)
        self.closed = True


def node_label(tags: dict[str, str]) -> str:
    """'<node id[:8]> at <ip>' of the node named by a run's tags (or an attempt's ``where``)."""
    return f"{tags[layout.NODE][:8]} at {tags.get(layout.NODE_IP) or tags.get(layout.HOST, '?')}"


def nodes_of(tags: dict[str, str]) -> list[str]:
    """Every node a point's attempts trained on, in order (runs written before uwm.nodes: the last node only)."""
    if tags.get(layout.NODES):
        return tags[layout.NODES].split(", ")
    return [node_label(tags)] if layout.NODE in tags else []


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _flat(config: dict) -> dict[str, Any]:
    from .control_trial import trial_config

    return trial_config(config).flat()
