"""What the trainer reports: every metric name, its meaning and how it is aggregated, and the
statuses of a point. The one registry that the trainer fills, the study spec validates against
and the analysis reads (plain Python: importing it does not import torch).

Per-seed metrics (:data:`PER_SEED`) are measured for every member; a point reports each of them
aggregated over its seeds as ``<name>_<kind>`` for every kind in :data:`AGGREGATES` (over the
seeds where it is finite). Point metrics (:data:`PER_POINT`) are computed once per point. In a
name, ``{l}`` is a hidden-layer index (1-based) and ``{label}`` a cross-rule probe label
(:func:`cross_rule_label`).
"""

from __future__ import annotations

import re
from typing import Any

# ---------------------------------------------------------------- point statuses (PointReport.status)
RUNNING = "running"
FINISHED = "finished"      # trained to its last episode
DIVERGED = "diverged"      # some seed's parameters or estimates became non-finite
STOPPED = "stopped"        # stopped early (Trainer.stop_points)

# ---------------------------------------------------------------- metrics
PER_SEED = {
    "train_reward": "mean training reward over the report window",
    "eval_reward": "mean reward of the stochastic network on eval_episodes fresh inputs, no learning",
    "running_reward": "mean training reward over the last threshold_window episodes",
    "episodes_to_threshold": "first episode at which running_reward >= threshold (absent until reached)",
    "diverged": "1 once the member's parameters or estimates became non-finite",
    "diverged_at": "episode of the member's first non-finite update (absent unless diverged)",
    "max_abs_outgoing_l{l}": "max |W^{l+1}|: largest outgoing weight of hidden layer l",
    "outgoing_norm_l{l}": "mean over units i of hidden layer l of ||W^{l+1}_{:,i}||_2",
    "probe_var_l{l}": "total per-sample variance of the weight and bias estimates of layer l (K fresh episodes)",
    "probe_mean_sq_l{l}": "squared norm of the mean estimate of layer l",
    "probe_bias_l{l}": "||mean estimate - exact gradient|| of layer l (small networks only)",
    "probe_{label}_var_l{l}": "probe_var_l{l} of the cross-rule probe's rule {label} on the same episodes",
    "probe_{label}_mean_sq_l{l}": "probe_mean_sq_l{l} of the cross-rule probe's rule {label}",
    "probe_{label}_bias_l{l}": "probe_bias_l{l} of the cross-rule probe's rule {label}",
}
AGGREGATES = {"mean": "mean over seeds", "std": "standard deviation over seeds (ddof 1; 0 for one seed)",
              "sem": "standard error of the mean over seeds"}
PER_POINT = {
    "diverged_fraction": "fraction of the point's seeds that diverged",
    "threshold_reached_fraction": "fraction of the point's seeds whose running_reward reached the threshold",
    "episodes": "episodes trained per member so far",
    "seconds_per_episode": "wall seconds of training per episode per member (whole pack)",
}

PROBE_RE = re.compile(r"^probe_(?:(?P<label>.+)_)?(?P<kind>var|mean_sq|bias)_l(?P<layer>\d+)$")


def _pattern(name: str) -> str:
    return re.escape(name).replace(r"\{l\}", r"\d+").replace(r"\{label\}", r".+")


_AGGREGATE_RE = re.compile("^(?:" + "|".join(_pattern(n) for n in PER_SEED) + ")_(?:" + "|".join(AGGREGATES) + ")$")


def is_point_metric(name: str) -> bool:
    """Whether a point reports a metric of this name (an aggregate over seeds or a point metric)."""
    return name in PER_POINT or bool(_AGGREGATE_RE.match(name))


def cross_rule_label(rule: str, options: dict[str, Any]) -> str:
    """The default label of a cross-rule probe entry: the rule name, then ``option-value`` pairs."""
    return "_".join([rule] + [f"{k}-{v}" for k, v in sorted(options.items())])
