"""Reference points for a dataset task: what the same test split gives to methods that are not learning rules
of stochastic networks, printed beside each rule's test accuracy.

- chance: always answering the test split's most frequent class;
- logistic regression: scikit-learn's ``LogisticRegression`` (lbfgs, default L2 penalty C = 1, up to 2 000
  iterations) fitted on the training split;
- backprop ceiling: the same network shape with *continuous* units (each hidden unit outputs its firing
  probability, the deterministic mean-field network) trained by backprop on the cross-entropy (Adam, lr 1e-3,
  batch 32, 6 000 updates: 48 epochs of MNIST-5k, 133 of the 8x8 digits), mean over ``seeds`` initialisations with a t-interval. A ceiling for reference, not a
  competitor: it needs the gradient that the learning rules of stochastic units must estimate.

Everything is computed on the fixed split of :mod:`uwm_model.datasets` (the references fit the training split,
as the trials do, and are scored on the test split, which the trials never tuned on), on the CPU, deterministic
given the seeds. The reference points of a (task, shape, seeds, updates) are computed once per machine and kept
in a small JSON cache (``$UWM_CACHE_DIR``, default ``~/.cache/uwm-study``; delete it to recompute): the backprop
ceiling takes minutes, and every report of a study asks for the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

BACKPROP_UPDATES, BACKPROP_LR, BACKPROP_BATCH = 6000, 1e-3, 32
# bump when the references' method or the datasets' split changes: cached points of another version are ignored
CACHE_VERSION = 2      # 2: the training split lost its validation images (uwm_model.datasets.VALIDATION_FRACTION)


def _task(task: dict):
    from uwm_model.config import TaskConfig
    from uwm_model.tasks import make_task
    return make_task(TaskConfig.model_validate(task), device="cpu")


def _t_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    if len(values) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def backprop_accuracy(task, hidden: list[int], seed: int, updates: int = BACKPROP_UPDATES) -> float:
    """Test accuracy of the continuous network [inputs, *hidden, outputs] trained by backprop."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    sizes = [task.input_size, *hidden, task.output_size]
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        linear = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
        bound = np.sqrt(6 / (n_in + n_out))                     # the trials' initialisation scale
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=gen)
            linear.bias.zero_()
        layers += [linear, torch.nn.Sigmoid()]
    net = torch.nn.Sequential(*layers[:-1])
    optimiser = torch.optim.Adam(net.parameters(), lr=BACKPROP_LR)
    x, y = task.x_train.double(), task.y_train
    binary = task.output_size == 1
    loss_fn = torch.nn.BCEWithLogitsLoss() if binary else torch.nn.CrossEntropyLoss()
    for _ in range(-(-updates * BACKPROP_BATCH // len(y))):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), BACKPROP_BATCH):
            rows = order[start: start + BACKPROP_BATCH]
            out = net(x[rows])
            loss = loss_fn(out.squeeze(-1), y[rows].double()) if binary else loss_fn(out, y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        out = net(task.x_test.double())
        predicted = (out.squeeze(-1) > 0).long() if binary else out.argmax(-1)
    return float((predicted == task.y_test).double().mean())


@lru_cache(maxsize=None)
def logistic_accuracy(task_json: str) -> float:
    """Test accuracy of scikit-learn's logistic regression on a task's split (cached per task)."""
    from sklearn.linear_model import LogisticRegression

    data = _task(json.loads(task_json))
    logistic = LogisticRegression(max_iter=2000).fit(data.x_train.double().numpy(), data.y_train.numpy())
    return float((logistic.predict(data.x_test.double().numpy()) == data.y_test.numpy()).mean())


def cache_dir() -> Path:
    return Path(os.environ.get("UWM_CACHE_DIR") or Path.home() / ".cache" / "uwm-study")


def reference_points(task: dict, hidden: list[int], seeds: int = 3, level: float = 0.95,
                     updates: int = BACKPROP_UPDATES) -> pd.DataFrame:
    """One row per reference: ``reference``, ``accuracy`` (test split), ``lo``, ``hi``, ``note``; from the cache
    when this machine computed them before."""
    key = json.dumps({"version": CACHE_VERSION, "task": task, "hidden": list(hidden), "seeds": seeds,
                      "level": level, "updates": updates, "lr": BACKPROP_LR, "batch": BACKPROP_BATCH}, sort_keys=True)
    path = cache_dir() / f"reference-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    try:                                       # the file's name is the key's hash; it holds the key for people
        return pd.DataFrame(json.loads(path.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        pass                                   # absent or unreadable: compute
    table = compute_reference_points(task, hidden, seeds, level, updates)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"key": key, "rows": table.to_dict("records")}))
        partial.replace(path)                  # atomic: a concurrent report never reads half a file
    except OSError:
        pass                                   # a read-only home: the numbers are still right, only not kept
    return table


def compute_reference_points(task: dict, hidden: list[int], seeds: int = 3, level: float = 0.95,
                             updates: int = BACKPROP_UPDATES) -> pd.DataFrame:
    """:func:`reference_points` without the cache."""
    data = _task(task)
    lr_accuracy = logistic_accuracy(json.dumps(task, sort_keys=True))
    backprop = np.array([backprop_accuracy(data, hidden, seed, updates) for seed in range(seeds)])
    lo, hi = _t_interval(backprop, level)
    return pd.DataFrame([
        {"reference": "chance (most frequent class)", "accuracy": data.chance(), "lo": np.nan, "hi": np.nan,
         "note": "exact"},
        {"reference": "logistic regression (scikit-learn)", "accuracy": lr_accuracy, "lo": np.nan, "hi": np.nan,
         "note": "deterministic fit"},
        {"reference": f"backprop, continuous units, hidden {list(hidden)} (ceiling)", "accuracy": float(backprop.mean()),
         "lo": lo, "hi": hi, "note": f"{seeds} seeds, t-interval {level:.0%}"},
    ])


def rule_accuracies(study, level: float = 0.95) -> pd.DataFrame:
    """Per tuned cell of a dataset study: the test accuracy (``test_accuracy`` at each seed's last report: the
    held-out split, not the validation split the learning rate was tuned on), mean over seeds with a t-interval;
    with the cell's task and hidden widths for :func:`reference_points`. Empty when the study has no dataset
    trials with a test split."""
    from .speed import select_tuned

    seeds = study.seed_curves
    if not len(seeds) or "test_accuracy" not in set(seeds["metric"]):
        return pd.DataFrame()
    tuned = select_tuned(study)
    acc = seeds[(seeds["metric"] == "test_accuracy") & seeds["run_id"].isin(tuned["run_id"])]
    last = acc.sort_values("episode").groupby(["run_id", "seed"]).tail(1)
    rows = []
    for cell, g in tuned.groupby("cell", sort=False):
        values = last[last["run_id"].isin(g["run_id"])]["value"].to_numpy(float)
        if not len(values):
            continue
        first = g.iloc[0]
        lo, hi = _t_interval(values, level)
        task = _plain({k.split(".", 1)[1]: first[k] for k in g.columns if k.startswith("task.") and _given(first[k])})
        rows.append({"cell": cell, "rule": first["rule_variant"], "hidden": _plain(list(first["hidden"])),
                     "task": task, "accuracy": float(values.mean()), "lo": lo, "hi": hi, "seeds": len(values),
                     "episodes": float(last[last["run_id"].isin(g["run_id"])]["episode"].max())})
    return pd.DataFrame(rows)


def _plain(value):
    """Plain Python values (params parsed from MLflow may hold numpy scalars or arrays)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _given(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def reference_rows(accuracies: pd.DataFrame, level: float = 0.95, **options) -> pd.DataFrame:
    """The reference points of every task and hidden widths of :func:`rule_accuracies`, one row per reference
    and setting (columns ``task``, ``hidden`` and those of :func:`reference_points`): the CSV the report's
    reference numbers come from."""
    parts = []
    for _, g in accuracies.groupby(accuracies.apply(lambda r: repr((r["task"], r["hidden"])), axis=1), sort=False):
        task, hidden = g.iloc[0]["task"], g.iloc[0]["hidden"]
        refs = reference_points(task, hidden, level=level, **options)
        parts.append(refs.assign(task=[task] * len(refs), hidden=[hidden] * len(refs)))
    return pd.concat(parts, ignore_index=True)[["task", "hidden", "reference", "accuracy", "lo", "hi", "note"]]


def reference_tables(accuracies: pd.DataFrame, level: float = 0.95, **options) -> list[tuple[str, pd.DataFrame]]:
    """One (caption, table) per task and hidden widths of :func:`rule_accuracies`: every rule's test accuracy,
    then the reference points of that setting (which it computes; ``options`` go to :func:`reference_points`)."""
    out = []
    for key, g in accuracies.groupby(accuracies.apply(lambda r: repr((r["task"], r["hidden"])), axis=1), sort=False):
        task, hidden = g.iloc[0]["task"], g.iloc[0]["hidden"]
        refs = reference_points(task, hidden, level=level, **options)
        fmt = lambda v: "" if not np.isfinite(v) else f"{v:.3f}"    # noqa: E731
        rows = [{"method": f"rule {r['rule']}", "test accuracy": fmt(r["accuracy"]),
                 "interval": f"[{fmt(r['lo'])}, {fmt(r['hi'])}]" if np.isfinite(r["lo"]) else "",
                 "note": f"{r['seeds']} seeds, {int(r['episodes'])} episodes, t-interval {level:.0%}"}
                for _, r in g.iterrows()]
        rows += [{"method": r["reference"], "test accuracy": fmt(r["accuracy"]),
                  "interval": f"[{fmt(r['lo'])}, {fmt(r['hi'])}]" if np.isfinite(r["lo"]) else "", "note": r["note"]}
                 for _, r in refs.iterrows()]
        out.append((f"Test accuracy, task {task}, hidden {hidden}", pd.DataFrame(rows)))
    return out
