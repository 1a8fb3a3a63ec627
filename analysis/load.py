"""Load a study from MLflow into tidy pandas tables.

The MLflow layout (written by the ``study`` package) is:

- experiment = the study name; one *parent* run per study (tag ``uwm.role=study``);
- one *child* run per point (a configuration trained with all its seeds), tag
  ``mlflow.parentRunId``; tags ``uwm.cell``, ``uwm.point_id``, ``uwm.status``, ``uwm.stage``;
  params = ``TrialConfig.flat()`` (lists as strings) plus cell axes; metrics = the point's
  series (``eval_reward_mean``, ``probe_var_l1_mean``, ``auc_reward_mean``, ...) at step = episode
  (stores written before series replaced them also hold ``final_*`` summaries);
- artifact ``curves_per_seed.csv`` per child run: columns episode, seed, metric, value.

:func:`load_study` returns a :class:`Study` with three tables:

``trials``       one row per child run (point): identifiers, status, every param (parsed from
                 its string), derived columns (``rule_variant``, ``width``, ``depth``, ``lr``),
                 ``auc_*`` under their own names, the latest value of every other metric as
                 ``last_<name>`` and, for a point that ended (finished, stopped, diverged), the
                 same value as ``final_<name>``.
``curves``       long format: run_id, episode, metric, value (the aggregate metric histories).
``seed_curves``  long format: run_id, episode, seed, metric, value (from curves_per_seed.csv).

Only the MLflow client API is used, so a local SQLite store and a remote ``mlflow server``
both work. :mod:`analysis.export` writes what this module reads (runs, histories, per-seed curves, timing,
spec) to files and builds the same :class:`Study` from them with :func:`trials_table` and
:func:`timing_table`, so a study's report needs its MLflow store only once.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import tempfile
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from uwm_model import layout

SUMMARY_PREFIXES = (layout.FINAL_PREFIX, "auc_")
SEED_CSV = layout.SEED_CURVES
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class StudyNotFound(LookupError):
    """No study (experiment with a parent run, or parent run id) of that name in the tracking store."""


@dataclass
class Study:
    """A study loaded from MLflow. Tables are plain pandas DataFrames (see module docstring)."""

    name: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str | None
    tags: dict[str, str]
    spec: dict | None
    trials: pd.DataFrame
    curves: pd.DataFrame
    seed_curves: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    timing: pd.DataFrame = field(default_factory=pd.DataFrame)   # the dedicated timing run (uwm-study timing), if any
    cache: dict = field(default_factory=dict, repr=False, compare=False)   # derived tables, see analysis.speed
    runs: list | None = field(default=None, repr=False, compare=False)   # the child runs behind trials (analysis.export)

    TRIAL_KEYS = ("cell", "rule", "rule_variant", "width", "depth", "hidden", "outgoing_norm", "lr", "stage",
                  "status")

    def with_trial_columns(self, table: pd.DataFrame, columns: Iterable[str] = TRIAL_KEYS) -> pd.DataFrame:
        """``table`` (with a run_id column) joined with the given columns of ``trials``."""
        cols = [c for c in columns if c in self.trials.columns and c not in table.columns]
        return table.merge(self.trials[["run_id", *cols]], on="run_id", how="left")

    def curve(self, metric: str) -> pd.DataFrame:
        """One aggregate metric's history: run_id, episode, value, joined with the trial columns."""
        c = self.curves[self.curves["metric"] == metric][["run_id", "episode", "value"]]
        return self.with_trial_columns(c)

    def seed_curve(self, metric: str) -> pd.DataFrame:
        """One per-seed metric's history: run_id, episode, seed, value, joined with the trial columns."""
        c = self.seed_curves[self.seed_curves["metric"] == metric][["run_id", "episode", "seed", "value"]]
        return self.with_trial_columns(c)

    def select(self, query: str) -> "Study":
        """The study restricted to the trials that match ``query``, a pandas query on :attr:`trials`
        (``"rule == 'uwm' and width >= 16"``; backquote names with dots: ```task.address_bits` == 2``);
        its curves follow, and every analysis takes it as it takes the whole study. An empty query
        keeps everything."""
        if not query:
            return self
        trials = self.trials.query(query).reset_index(drop=True)
        keep = set(trials["run_id"])
        return replace(self, trials=trials, curves=self.curves[self.curves["run_id"].isin(keep)].reset_index(drop=True),
                       seed_curves=self.seed_curves[self.seed_curves["run_id"].isin(keep)].reset_index(drop=True),
                       runs=None,   # a selection is not a study's runs: it is not exported (analysis.export)
                       notes=[*self.notes, f"selected {len(trials)} of {len(self.trials)} trials: {query}"], cache={})

    @property
    def metrics(self) -> list[str]:
        """Names of the aggregate metrics with a history."""
        return sorted(self.curves["metric"].unique()) if len(self.curves) else []

    @property
    def seed_metrics(self) -> list[str]:
        """Names of the per-seed metrics."""
        return sorted(self.seed_curves["metric"].unique()) if len(self.seed_curves) else []


# ----------------------------------------------------------------------------- params


def parse_param(text: str | None) -> Any:
    """An MLflow param string back to a python value: numbers, booleans, None, lists and dicts.

    Accepts JSON (``[64, 64]``, ``null``, ``true``) and python reprs (``None``, ``True``,
    ``[{'rule': 'uwm'}]``); anything else stays a string.
    """
    if text is None:
        return None
    s = str(text).strip()
    try:
        return json.loads(s)
    except (ValueError, TypeError):
        pass
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return s


def rule_variant(rule: str, options: dict[str, Any]) -> str:
    """A readable name of a rule with its options, e.g. ``uwm(form=rb, signal=global)``."""
    opts = {k: v for k, v in options.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if not opts:
        return str(rule)
    return f"{rule}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(opts.items())) + ")"


def _fmt(v):
    if isinstance(v, float) and v.is_integer():
        return str(int(v)) if abs(v) < 1e15 else str(v)
    return str(v)


def _width_columns(hidden) -> dict[str, Any]:
    """Derived architecture columns. ``width`` is the first hidden layer's width (all hidden layers have
    this width in equal-width studies, the case the scaling analysis is about; ``equal_widths`` says
    whether that holds)."""
    if isinstance(hidden, (int, float)) and not isinstance(hidden, bool):
        hidden = [int(hidden)]
    if not isinstance(hidden, (list, tuple)) or not hidden:
        return {"width": np.nan, "depth": np.nan, "hidden_units": np.nan, "equal_widths": None}
    h = [int(x) for x in hidden]
    return {"width": h[0], "depth": len(h), "hidden_units": sum(h), "equal_widths": len(set(h)) == 1}


# ----------------------------------------------------------------------------- loading


def _client(tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def find_parent_run(client, name_or_parent_run_id: str):
    """The parent run of a study: by run id, or the first ``uwm.role=study`` run of the experiment
    named after the study (returns the run and a list of notes)."""
    notes: list[str] = []
    if _RUN_ID.match(name_or_parent_run_id or ""):
        try:
            return client.get_run(name_or_parent_run_id), notes
        except Exception:  # not a run id after all: try it as a study name
            pass
    exp = client.get_experiment_by_name(name_or_parent_run_id)
    if exp is None:
        raise StudyNotFound(f"no study named '{name_or_parent_run_id}' in the tracking store "
                            f"(no MLflow experiment of that name and no run with that id)")
    runs = client.search_runs([exp.experiment_id], filter_string=layout.parent_filter(),
                              order_by=["attributes.start_time ASC"], max_results=1000)
    if not runs:
        raise StudyNotFound(f"experiment '{name_or_parent_run_id}' has no study parent run (tag uwm.role=study)")
    if len(runs) > 1:  # the study runner refuses a used name and resumes into the first parent run
        notes.append(f"{len(runs)} parent runs found for study '{name_or_parent_run_id}'; using the first "
                     f"({runs[0].info.run_id}), as the study runner does")
    return runs[0], notes


def _trial_row(run) -> dict[str, Any]:
    tags = run.data.tags
    params = {k: parse_param(v) for k, v in run.data.params.items()}
    status = tags.get(layout.STATUS)
    if status is None:  # the trial never wrote its final status: the run crashed or is still going
        status = {"FAILED": layout.FAILED, "KILLED": layout.FAILED, "RUNNING": layout.RUNNING}.get(run.info.status,
                                                                                    run.info.status.lower())
    rule = params.get("rule")
    options = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("rule_options.")}
    if params.get("baseline") not in (None, "none"):   # REINFORCE with an EMA baseline is a variant of its own
        options["baseline"] = params["baseline"]
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "cell": tags.get(layout.CELL),
        "point_id": tags.get(layout.POINT_ID),
        "status": status,
        "stage": tags.get(layout.STAGE),
        "pack": tags.get(layout.PACK),
        "mlflow_status": run.info.status,
        "start_time": pd.to_datetime(run.info.start_time, unit="ms") if run.info.start_time else pd.NaT,
        "end_time": pd.to_datetime(run.info.end_time, unit="ms") if run.info.end_time else pd.NaT,
        "rule_variant": rule_variant(rule, options) if rule is not None else None,
    }
    row.update(params)
    row.update(_width_columns(params.get("hidden")))
    lr = params.get("lr")
    if isinstance(lr, (list, tuple)):  # one learning rate per layer: ``lr`` is their geometric mean
        row["lr"] = float(np.exp(np.mean(np.log(np.asarray(lr, float))))) if len(lr) else np.nan
        row["lr_text"] = "[" + ", ".join(f"{float(v):.3g}" for v in lr) + "]"
        for i, v in enumerate(lr, 1):
            row[f"lr_l{i}"] = float(v)
        row["lr_per_layer"] = True
    else:
        row["lr"] = float(lr) if isinstance(lr, (int, float)) else np.nan
        row["lr_per_layer"] = False
    on = params.get("outgoing_norm")
    row["outgoing_norm"] = float(on) if isinstance(on, (int, float)) and not isinstance(on, bool) else np.nan
    for k, v in run.data.metrics.items():
        row[k if k.startswith(SUMMARY_PREFIXES) else f"last_{k}"] = v
    if status in layout.TRAINED:   # an ended point's final values are its series' last values
        for k, v in run.data.metrics.items():
            if not k.startswith(SUMMARY_PREFIXES):
                row.setdefault(f"{layout.FINAL_PREFIX}{k}", v)
    return row


def _histories(client, run_ids: list[str], keys_by_run: dict[str, list[str]], workers: int = 8) -> pd.DataFrame:
    """Metric histories of many runs as one long table. Uses the SQL store's one-query-per-key bulk read
    when the store offers it, else one ``get_metric_history`` call per (run, key) in a thread pool."""
    rows: list[tuple] = []
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    all_keys = sorted({k for ks in keys_by_run.values() for k in ks})
    if bulk is not None and type(store).__name__ == "SqlAlchemyStore":
        try:
            for key in all_keys:
                ids = [r for r in run_ids if key in keys_by_run[r]]
                for m in bulk(ids, key, max_results=None):
                    rows.append((m.run_id, m.step, key, m.value, m.timestamp))
        except Exception:  # an internal API that moved: fall back to the public one
            rows, bulk = [], None
    if bulk is None or type(store).__name__ != "SqlAlchemyStore":
        jobs = [(r, k) for r in run_ids for k in keys_by_run[r]]

        def one(job):
            r, k = job
            return [(r, m.step, k, m.value, m.timestamp) for m in client.get_metric_history(r, k)]

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(one, jobs):
                rows.extend(part)
    df = pd.DataFrame(rows, columns=["run_id", "episode", "metric", "value", "timestamp"])
    if len(df):
        # a retried or resumed trial may report a step twice: keep the latest write
        df = df.sort_values(["run_id", "metric", "episode", "timestamp"])
        df = df.drop_duplicates(["run_id", "metric", "episode"], keep="last")
    df = df.drop(columns="timestamp").reset_index(drop=True)
    df["episode"] = df["episode"].astype("int64")
    df["value"] = df["value"].astype("float64")
    return df


def _local_artifact_dir(artifact_uri: str | None) -> Path | None:
    """The directory of a run's artifacts when they live on this machine's file system."""
    if not artifact_uri:
        return None
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(artifact_uri)
    return None


def _seed_curves(client, runs: dict, workers: int = 4) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    cols = ["run_id", "episode", "seed", "metric", "value"]
    run_ids = list(runs)

    def one(run_id):
        local = _local_artifact_dir(runs[run_id].info.artifact_uri)
        if local is not None and local.is_dir():  # read in place: no copy, no progress bar
            path = local / SEED_CSV
            return _read_seed_csv(run_id, path) if path.is_file() else None
        with tempfile.TemporaryDirectory(prefix="uwm-seeds-") as tmp:
            try:
                names = {a.path for a in client.list_artifacts(run_id)}
                if SEED_CSV not in names:
                    return None
                path = client.download_artifacts(run_id, SEED_CSV, tmp)
            except Exception as exc:  # unreachable artifact store: say so, keep the rest
                return exc
            return _read_seed_csv(run_id, path)

    quiet = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    if quiet:  # one progress bar per downloaded CSV is noise; the caller reports progress
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(one, run_ids))
    finally:
        if quiet:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    frames = []
    absent = 0
    for run_id, part in zip(run_ids, parts):
        if part is None:
            absent += 1
        elif isinstance(part, Exception):
            notes.append(f"run {run_id}: could not read {SEED_CSV}: {part}")
        else:
            frames.append(part)
    if absent:
        notes.append(f"{absent} of {len(run_ids)} trials have no {SEED_CSV} (per-seed intervals unavailable there)")
    frames = [f for f in frames if len(f)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    df = df.astype({"run_id": "object", "episode": "int64", "seed": "int64", "metric": "object",
                    "value": "float64"})
    if len(df):
        df = df.drop_duplicates(["run_id", "metric", "seed", "episode"], keep="last").reset_index(drop=True)
    return df, notes


def _read_seed_csv(run_id: str, path) -> pd.DataFrame | Exception:
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        return exc
    missing = {"episode", "seed", "metric", "value"} - set(df.columns)
    if missing:
        return ValueError(f"{SEED_CSV} lacks columns {sorted(missing)}")
    df = df[["episode", "seed", "metric", "value"]].copy()
    df.insert(0, "run_id", run_id)
    return df


def _dedupe_points(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep one run per ``uwm.point_id``: a point retried or resumed by hand may have left a second run.
    Prefer runs with a final status, then the newest."""
    if "point_id" not in trials or trials["point_id"].isna().all() or not len(trials):
        return trials, []
    final = trials["status"].isin(layout.TRAINED).astype(int)
    order = trials.assign(_final=final).sort_values(["_final", "start_time"], ascending=[False, False])
    has_id = order["point_id"].notna()
    keep = pd.concat([order[has_id].drop_duplicates("point_id", keep="first"), order[~has_id]])
    dropped = len(trials) - len(keep)
    notes = [f"{dropped} duplicate run(s) of the same point ignored (kept the finished, newest one)"] if dropped else []
    return keep.drop(columns="_final").sort_index(), notes


def trials_table(runs, include_failed: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The ``trials`` table of a study's child runs (MLflow ``Run`` objects, or records of the same shape read
    back from an export, :mod:`analysis.export`): one row per point, sorted, with notes on what was dropped."""
    notes: list[str] = []
    trials = pd.DataFrame([_trial_row(r) for r in runs])
    if not len(trials):
        trials = pd.DataFrame(columns=["run_id", "cell", "status", "stage", "rule", "rule_variant", "width", "lr",
                                       "outgoing_norm"])
        notes.append("the study has no trial runs yet")
    trials, more = _dedupe_points(trials)
    notes += more
    if not include_failed and len(trials):
        trials = trials[~trials["status"].isin(["failed", "running"])]
    trials = trials.sort_values([c for c in ("rule_variant", "width", "outgoing_norm", "lr", "run_id")
                                 if c in trials.columns], na_position="last").reset_index(drop=True)
    return trials, notes


def load_study(name_or_parent_run_id: str, tracking_uri: str | None = None, *, seed_curves: bool = True,
               metrics: Iterable[str] | None = None, include_failed: bool = True) -> Study:
    """Load a study from MLflow.

    Args:
        name_or_parent_run_id: the study name (= experiment name; its first parent run is used)
            or the parent run's id.
        tracking_uri: MLflow tracking URI; default: ``MLFLOW_TRACKING_URI`` / MLflow's default.
        seed_curves: read every trial's ``curves_per_seed.csv`` (needed for intervals over seeds).
        metrics: restrict ``curves`` to these aggregate metric names (default: every metric but the
            ``*_std`` aggregates, which equal ``*_sem`` times the square root of the seed count).
        include_failed: keep trials whose status is ``failed`` or ``running`` (they have no summary).

    Returns:
        a :class:`Study`. Raises :class:`StudyNotFound` with one clear line if there is no such study.
    """
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    client = _client(tracking_uri)
    parent, notes = find_parent_run(client, name_or_parent_run_id)
    pid = parent.info.run_id
    exp_id = parent.info.experiment_id
    name = parent.data.tags.get(layout.STUDY) or parent.info.run_name or name_or_parent_run_id
    runs = layout.search_all(client, [exp_id], layout.point_filter(pid))
    trials, more = trials_table(runs, include_failed)
    notes += more
    run_ids = list(trials["run_id"])
    wanted = set(metrics) if metrics is not None else None
    keys_by_run = {}
    by_id = {r.info.run_id: r for r in runs}
    for rid in run_ids:
        keys = [k for k in by_id[rid].data.metrics if not k.startswith(SUMMARY_PREFIXES)]
        keys_by_run[rid] = [k for k in keys if (k in wanted if wanted is not None else not k.endswith("_std"))]
    curves = _histories(client, run_ids, keys_by_run)
    if seed_curves:
        seeds, more = _seed_curves(client, {rid: by_id[rid] for rid in run_ids})
        notes += more
    else:
        seeds = pd.DataFrame(columns=["run_id", "episode", "seed", "metric", "value"])
    spec, timing = None, pd.DataFrame()
    try:
        timing = _parent_timing(client, parent)
    except Exception as exc:
        notes.append(f"could not read the study's {layout.TIMING}: {exc}")
    try:
        import yaml

        local = _local_artifact_dir(parent.info.artifact_uri)
        if local is not None and local.is_dir():
            if (local / layout.SPEC_ARTIFACT).is_file():
                spec = yaml.safe_load((local / layout.SPEC_ARTIFACT).read_text())
        elif layout.SPEC_ARTIFACT in {a.path for a in client.list_artifacts(pid)}:
            with tempfile.TemporaryDirectory(prefix="uwm-spec-") as tmp:
                with open(client.download_artifacts(pid, layout.SPEC_ARTIFACT, tmp)) as f:
                    spec = yaml.safe_load(f)
    except Exception as exc:
        notes.append(f"could not read the study's spec.yaml: {exc}")
    failed = int(trials["status"].isin(["failed"]).sum()) if len(trials) else 0
    if failed:
        notes.append(f"{failed} trial(s) failed and carry no summary metrics")
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return Study(name=name, parent_run_id=pid, experiment_id=exp_id, tracking_uri=tracking_uri,
                 tags=dict(parent.data.tags), spec=spec, trials=trials, curves=curves, seed_curves=seeds,
                 notes=notes, timing=timing, runs=runs)


def _parent_timing(client, parent) -> pd.DataFrame:
    """The parent run's :data:`~uwm_model.layout.TIMING` rows with a ``rule_variant`` column named as the
    trials' are (empty when the study has no timing run)."""
    local = _local_artifact_dir(parent.info.artifact_uri)
    if local is not None and local.is_dir():
        path = local / layout.TIMING
        table = pd.read_csv(path) if path.is_file() else None
    elif layout.TIMING in {a.path for a in client.list_artifacts(parent.info.run_id)}:
        with tempfile.TemporaryDirectory(prefix="uwm-timing-") as tmp:
            table = pd.read_csv(client.download_artifacts(parent.info.run_id, layout.TIMING, tmp))
    else:
        table = None
    return timing_table(table)


def timing_table(table: pd.DataFrame | None) -> pd.DataFrame:
    """The timing run's rows as written (uwm-study timing) with a ``rule_variant`` column named as the
    trials' are (empty when the study has no timing run)."""
    if table is None or not len(table):
        return pd.DataFrame()
    options = [json.loads(o) if isinstance(o, str) and o else {} for o in table["rule_options"]]
    variants = [rule_variant(r, {**o, **({"baseline": b} if b not in (None, "none") and b == b else {})})
                for r, o, b in zip(table["rule"], options, table["baseline"])]
    return table.assign(rule_variant=variants)
