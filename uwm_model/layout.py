"""The MLflow layout of a study: every tag, status, artifact and run name, in one place.

The ``study`` package writes this layout and ``analysis`` reads it; both import the names from
here, so renaming a tag or adding a status is a one-line change. Standard library and the torch-free
:mod:`uwm_model.metrics` only (names, no MLflow import), so ``analysis`` imports it without importing
``study`` (Ray, Optuna) or torch.

- Experiment: the study name. Parent run ``run_name = <study>``, tags :data:`ROLE` = ``study``,
  :data:`STUDY`, :data:`SPEC_HASH` (sha256 of the canonical spec), :data:`GIT_COMMIT`,
  :data:`VERSION`; artifacts :data:`SPEC_ARTIFACT` and :data:`GLOSSARY`; at the end, metrics ``points_<status>``,
  ``best_<metric>`` and ``best_<metric>/<cell>`` (:func:`cell_metric`), tag :data:`BEST_POINT` and artifact
  :data:`BEST_PER_CELL` (each cell's point from :func:`chosen_points`).
- Child run per point, ``run_name`` = :func:`point_run_name` (rule, options, widths, lr, seeds, then the point
  id), description :data:`NOTE` = :func:`point_note`, tag :data:`PARENT`, tags :data:`ROLE` = ``trial``,
  :data:`STUDY`, :data:`CELL`, :data:`POINT_ID`, :data:`STAGE`, :data:`PACK`, :data:`CONFIG_HASH`,
  :data:`NODE`, :data:`NODE_IP`, :data:`NODES`, :data:`HOST`, :data:`PID`, :data:`DEVICE` and :data:`STATUS` (:data:`RUNNING`, then one of :data:`ENDED`);
  params ``TrialConfig.flat()`` plus ``cell.<axis>``, ``width`` and ``depth`` (:func:`point_params`); metric series at step = episode, one per quantity
  (``uwm_model.metrics.is_series``) and :data:`AUC_REWARD` (stores written before that layout also hold
  one-point ``final_*`` summaries: :data:`FINAL_PREFIX`); artifact :data:`SEED_CURVES`.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlparse

# ---------------------------------------------------------------- tags
PARENT = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
ROLE = "uwm.role"
STUDY = "uwm.study"
SPEC_HASH = "uwm.spec_hash"
GIT_COMMIT = "uwm.git_commit"
VERSION = "uwm.version"
CELL = "uwm.cell"
POINT_ID = "uwm.point_id"
STAGE = "uwm.stage"
PACK = "uwm.pack"
CONFIG_HASH = "uwm.config_hash"
NODE = "uwm.node"
NODE_IP = "uwm.node_ip"     # the address Ray knows the node by
HOST = "uwm.host"
NODES = "uwm.nodes"         # every node an attempt of the point trained on, "<node id[:8]> at <ip>", comma-separated
PID = "uwm.pid"             # the process id of the attempt that trains the point, on that node
DEVICE = "uwm.device"       # the torch device a pack trained on (cpu where a GPU trial found no CUDA)
TIMELINE = "uwm.timeline"   # where the pack's trial function spent its time, JSON (study.timeline), set when it ends
STATUS = "uwm.status"

ANSWER_PREFIX = "uwm.answer."   # parent run, once a report is written: one tag per question, its answer at a glance
MAX_METRIC_NAME = 250         # MLflow's limit on a metric's name (a longer per-cell name is left to best_per_cell.csv)
MAX_TAG_CHARS = 5000           # MLflow's limit on a tag value (longer answers are cut: the report holds them whole)
BEST_POINT = "uwm.best_point"  # parent run: the point id of the best finished point of the study
EXPERIMENT_KIND = "mlflow.experimentKind"          # experiment tag: which MLflow UI the experiment opens in
KIND_TRAINING = "custom_model_development"         # model training (MLflow would guess GenAI otherwise)
# MLflow 3's UI decides GenAI or model training per browser (default GenAI), not by the experiment's kind:
# links into it carry this query so that they open the runs table and metric charts
UI_TRAINING_VIEW = "workflowType=machine_learning"

ROLE_STUDY, ROLE_TRIAL = "study", "trial"
STAGE_SEARCH, STAGE_CONFIRM = "search", "confirm"

# ---------------------------------------------------------------- point statuses
# running, finished, diverged and stopped are the trainer's (PointReport.status); the study adds two
from uwm_model.metrics import DIVERGED, FINISHED, RUNNING, STOPPED  # noqa: E402,F401  (torch-free)

PENDING = "pending"          # suggested, not yet reporting (searcher only)
FAILED = "failed"            # its trial errored after its retries, or never reported
TRAINED = (FINISHED, DIVERGED, STOPPED)   # ended with results the trainer reported
ENDED = (*TRAINED, FAILED)                # final: a run with one of these is never written again

# ---------------------------------------------------------------- artifacts and metrics
SPEC_ARTIFACT = "spec.yaml"
GLOSSARY = "glossary.md"   # parent run: every metric name a run of the study logs, its meaning and unit
SEED_CURVES = "curves_per_seed.csv"
BEST_PER_CELL = "best_per_cell.csv"   # parent run: the best finished point of every cell, with its metrics
TIMING = "timing.csv"   # parent run: the dedicated timing run of `uwm-study timing` (study.timing)
SEED_CURVE_COLUMNS = ("episode", "seed", "metric", "value")
FINAL_PREFIX = "final_"
AUC_REWARD = "auc_reward_mean"
POINT_COUNT_PREFIX = "points_"


def answer_tag(question: str) -> str:
    """The parent-run tag of one question's answer: ``uwm.answer.which_rule_learns_fastest``."""
    key = "".join(c if c.isalnum() else "_" for c in question.lower()).strip("_")
    return ANSWER_PREFIX + "_".join(filter(None, key.split("_")))


def cell_metric(name: str, cell: str) -> str:
    """A per-cell metric's name on the parent run, ``<name>/<cell>`` with the cell key in MLflow's metric
    alphabet: ``best_eval_reward_mean/rule_uwm hidden_16x16`` for cell ``rule=uwm|hidden=[16, 16]``."""
    text = cell.replace(", ", "x").replace(",", "x").replace("|", " ").replace("=", "_")
    return f"{name}/" + "".join(c if c.isalnum() or c in "_-. /:" else "" if c in "[]" else "-" for c in text)


def chosen_points(points, mode: str = "max") -> dict:
    """The one chosen point of every cell, the study's single answer to "which point is best here": the
    terminal summary, the parent run's ``best_per_cell.csv`` and :data:`BEST_POINT`, and the report all call this.

    ``points``: mappings with ``cell``, ``stage``, ``status`` and ``value`` (the study metric, None or NaN if
    never reported), in a fixed order (ties keep the first). Only trained points (:data:`TRAINED`) count. A cell
    with a confirm stage is answered by its confirm points: they re-ran the search's choice on fresh seeds, while
    the best search point's value is the maximum over noisy points (optimistic). Returns cell -> the chosen
    mapping (the first candidate, value None, when none reported a value), in the cells' first-seen order."""
    sign = 1 if mode == "max" else -1
    by_cell: dict = {}
    for p in points:
        if p.get("status") in TRAINED:
            by_cell.setdefault(p["cell"], []).append(p)
    chosen = {}
    for cell, cand in by_cell.items():
        if any(p.get("stage") == STAGE_CONFIRM for p in cand):
            cand = [p for p in cand if p.get("stage") == STAGE_CONFIRM]
        scored = [p for p in cand if _finite(p.get("value"))]
        chosen[cell] = max(scored, key=lambda p: sign * p["value"]) if scored else {**cand[0], "value": None}
    return chosen


def _finite(value) -> bool:
    try:
        return value is not None and value == value and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


UI_LOCAL = "http://127.0.0.1:5000"     # where `uwm-study ui` serves a local store's MLflow UI by default


def ui_url(base: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """A link into the MLflow UI at ``base`` (the experiments list, an experiment, or one run of it) that opens
    in its model-training view."""
    path = "/#/experiments" + (f"/{experiment_id}" if experiment_id else "") + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}{path}?{UI_TRAINING_VIEW}"


def config_hash(config: dict) -> str:
    """Tag CONFIG_HASH: a point's full TrialConfig (as JSON data), hashed."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def point_params(flat_config: dict, axes: dict) -> dict[str, str]:
    """A child run's params: every field of ``TrialConfig.flat()``, ``cell.<axis>`` for every grid axis, and the
    architecture as numbers the runs table can sort and plot: ``width`` (the first hidden layer's, as the analysis
    reads it), ``depth`` (hidden layers) and, where the hidden layers differ, ``width.l<i>`` per layer;
    all as text (strings as they are, everything else as JSON)."""
    text = lambda v: v if isinstance(v, str) else json.dumps(v)  # noqa: E731
    hidden = flat_config.get("hidden")
    shape = {}
    if isinstance(hidden, list) and hidden:
        shape = {"width": hidden[0], "depth": len(hidden)}
        if len(set(hidden)) > 1:
            shape.update({f"width.l{i}": n for i, n in enumerate(hidden, 1)})
    return {**{k: text(v) for k, v in flat_config.items()}, **{f"cell.{k}": text(v) for k, v in axes.items()},
            **{k: text(v) for k, v in shape.items()}}


def _point_words(config: dict) -> tuple[str, str, str, str, str]:
    """(rule with options, hidden widths, norm, lr, seeds) as a run's name shows them."""
    options = "".join(f" {k}={v}" for k, v in sorted((config.get("rule_options") or {}).items()))
    baseline = " baseline=ema" if config.get("baseline") == "ema" else ""
    hidden = "x".join(str(n) for n in config.get("hidden", config.get("actor_hidden", [])))   # a control task: the actor's
    norm = "" if config.get("outgoing_norm") is None else f" norm {config['outgoing_norm']:g}"
    lr = config.get("lr")
    lr_text = "/".join(f"{v:.2g}" for v in lr) if isinstance(lr, list) else "schedule" if lr is None else f"{lr:.2g}"
    first = config.get("seed", 0)
    seeds = f"s{first}" if config.get("seeds", 1) == 1 else f"s{first}-{first + config['seeds'] - 1}"
    return f"{config.get('rule')}{options}{baseline}", hidden, norm, lr_text, seeds


def point_run_name(point_id: str, config: dict) -> str:
    """A child run's name: what tells points apart in MLflow's run list first (rule and options, hidden widths,
    outgoing norm, learning rate(s), seed range), so a name cut short in the table still says it, then the point
    id, e.g. ``uwm signal=global [64x64] norm 4 lr 0.012 s0-3 c003-search-007``."""
    rule, hidden, norm, lr, seeds = _point_words(config)
    return f"{rule} [{hidden}]{norm} lr {lr} {seeds} {point_id}"


def point_note(point: dict) -> str:
    """A child run's description (tag :data:`NOTE`, shown above the run's page): one line saying what the point
    is, where it sits in the study and where the metric names are explained."""
    config = point["config"]
    rule, hidden, norm, lr, seeds = _point_words(config)
    stage = point.get("stage")
    why = ("re-runs the search's choice for its cell on fresh seeds" if stage == STAGE_CONFIRM
           else "a point of its cell's search")
    layers = len(config.get("hidden", config.get("actor_hidden", [])))
    return (f"{rule} on {layers} hidden layer{'s' * (layers != 1)} [{hidden}]{norm}, lr {lr}, "
            f"{config.get('seeds', 1)} seeds ({seeds}), {config.get('episodes')} episodes: {why} "
            f"(cell {point.get('cell')}, point {point.get('point_id')}). Metric names: {GLOSSARY} on the study's "
            "parent run.")


def point_filter(parent_run_id: str, point_id: str | None = None) -> str:
    """MLflow filter of a study's child runs (of one point when ``point_id`` is given)."""
    text = f"tags.`{PARENT}` = '{parent_run_id}'"
    return text + (f" and tags.`{POINT_ID}` = '{quote(point_id)}'" if point_id is not None else "")


def parent_filter(study: str | None = None) -> str:
    """MLflow filter of a study's parent run (of any study when ``study`` is None)."""
    text = f"tags.`{ROLE}` = '{ROLE_STUDY}'"
    return text + (f" and tags.`{STUDY}` = '{quote(study)}'" if study is not None else "")


def quote(value: str) -> str:
    return value.replace("'", "\\'")


def search_all(client, experiment_ids: list[str], filter_string: str, retry=None, **kwargs) -> list:
    """Every run matching ``filter_string`` (all pages). ``retry(fn, *args, **kwargs)`` wraps each call
    (the study retries while a SQLite store is locked); ``kwargs`` go to ``search_runs`` (``order_by``)."""
    call = retry or (lambda fn, *a, **k: fn(*a, **k))
    runs, token = [], None
    while True:
        page = call(client.search_runs, experiment_ids, filter_string, max_results=1000, page_token=token, **kwargs)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def is_remote(path: str) -> bool:
    """Whether a storage path is a URI (``s3://``, ``gs://``, ``file://``...) rather than a local folder:
    URIs are reached through their filesystem client, never globbed or resolved as local paths."""
    return "://" in path


def is_server(uri: str) -> bool:
    """Whether a tracking URI names an MLflow server (http or https)."""
    return urlparse(uri).scheme in ("http", "https")


def auc_reward(curve) -> float:
    """Area under an eval-reward curve over the episodes trained: sum over reports of the reward times the
    episodes since the previous report, divided by the last report's episode; 1 for a point perfect from the
    start. ``curve``: (episode, reward) pairs in episode order, finite rewards only; NaN when empty."""
    area, previous = 0.0, 0
    for episode, value in curve:
        area += value * (episode - previous)
        previous = episode
    return area / previous if previous else float("nan")
