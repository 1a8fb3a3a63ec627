"""What the trainer reports: every metric name, its meaning and how it is aggregated, and the
statuses of a point. The one registry that the trainer fills, the study spec validates against
and the analysis reads (plain Python: importing it does not import torch).

Per-seed metrics (:data:`PER_SEED`) are measured for every member; a point reports each of them
aggregated over its seeds as ``<name>_<kind>`` for every kind in :data:`AGGREGATES` (over the
seeds where it is finite). Point metrics (:data:`PER_POINT`) are computed once per point. In a
name, ``{l}`` is a hidden-layer index (1-based), ``{label}`` a cross-rule probe label
(:func:`cross_rule_label`) and ``{level}`` a reward level of ``probe.reward_levels`` (:func:`level_prefix`).
"""

from __future__ import annotations

import math
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
    "eval_reward": "mean reward of the stochastic network on eval_episodes fresh inputs (a dataset task: on every "
                   "image of its test split once), no learning",
    "eval_accuracy": "dataset tasks: fraction of the test split classified right by the stochastic network, every "
                     "test image once (absent for the multiplexer)",
    "running_reward": "mean training reward over the last threshold_window episodes",
    "episodes_to_threshold": "first episode at which running_reward >= threshold (absent until reached)",
    "diverged": "1 once the member's parameters or estimates became non-finite",
    "diverged_at": "episode of the member's first non-finite update (absent unless diverged)",
    "train_reward_all": "mean training reward over every episode trained so far (Chung 2022's figure of merit)",
    "max_abs_outgoing_l{l}": "max |W^{l+1}|: largest outgoing weight of hidden layer l",
    "outgoing_norm_l{l}": "mean over units i of hidden layer l of ||W^{l+1}_{:,i}||_2",
    "init_unit_max_outgoing_l{l}": "on the initial parameters: mean over units i of hidden layer l of their largest "
                                   "outgoing |W^{l+1}_{ji}|",
    "init_beyond_radius_l{l}": "on the initial parameters, over the probe's episodes: fraction of (unit i of hidden "
                               "layer l, unit j of the next layer, episode) with |W_ji| > sqrt(z'_j^2 + pi^2), the "
                               "radius of convergence of hwm's Taylor series of sigmoid around z'_j",
    "init_radius_ratio_l{l}": "on the initial parameters, over the probe's episodes: the mean of the largest |W_ji| / "
                              "sqrt(z'_j^2 + pi^2) over (unit i of hidden layer l, unit j of the next layer): the "
                              "per-weight axis of the pi boundary (above 1, some weight is beyond hwm's Taylor radius)",
}
AGGREGATES = {"mean": "mean over seeds", "std": "standard deviation over seeds (ddof 1; 0 for one seed)",
              "sem": "standard error of the mean over seeds"}
# What the probe measures per layer l, from K fresh episodes of one parameter state (spec section 5).
# Each is logged for the trained rule (``probe_<kind>_l{l}``), for every cross-rule probe rule
# (``probe_{label}_<kind>_l{l}``), and once more on the initial state, before any update
# (``init_probe_...``: the same names with the prefix ``init_``, measured at episode 0 on probe
# counter 0 and repeated in every report, so any report carries the initial state's numbers).
PROBE_KINDS = {
    "var": "total per-sample variance V of the weight and bias estimates of layer l (K fresh episodes, ddof 1)",
    "mean_sq": "squared norm of the mean estimate of layer l",
    "bias": "||mean estimate - exact gradient|| of layer l (small networks only; carries ~sqrt(V/K) of noise)",
    "bias_sq": "debiased squared bias ||mean - exact||^2 - V/K of layer l: unbiased for ||E estimate - exact||^2 "
               "(a U-statistic; may be negative; small networks only)",
    "bias_sq_se": "jackknife standard error of bias_sq (small networks only)",
    "bias_split": "split-half bias product (mean_A - exact).(mean_B - exact) over the first and second halves of the "
                  "K episodes of layer l: mean ||E estimate - exact||^2, symmetric about 0 when unbiased (the "
                  "calibrated bias test's statistic; small networks only)",
    "cos": "cosine of the mean estimate of layer l to the exact gradient (small networks only)",
    "exact_sq": "squared norm of the exact gradient of layer l (small networks only; the scale of bias_sq)",
    "nsr": "noise-to-signal ratio V / (B (||mean||^2 - V/K)) of layer l: the variance of one update's "
           "batch-B estimate over the debiased squared norm of its mean (scale-free; absent when that is <= 0)",
    "nsr_exact": "noise-to-signal ratio V / (B ||exact||^2) of layer l against the exact gradient (scale-free, "
                 "defined at any K; small networks only)",
    "nsr_ref": "noise-to-signal ratio V / (B S) of layer l against a reference: S unbiased for ||∇J||^2 from "
               "independent groups of REINFORCE estimates on fresh episodes, grown until S > 3 standard errors "
               "(uwm_model.signal; initial state, nets without the exact gradient, probe.reference_samples > 0; "
               "absent where refused at that cap)",
    "ref_samples": "episodes the reference gradient of nsr_ref drew for this member (same for all layers)",
}
for _kind, _meaning in PROBE_KINDS.items():
    PER_SEED[f"probe_{_kind}_l{{l}}"] = _meaning
    PER_SEED[f"probe_{{label}}_{_kind}_l{{l}}"] = f"probe_{_kind}_l{{l}} of the cross-rule probe's rule {{label}}"
    PER_SEED[f"init_probe_{_kind}_l{{l}}"] = f"probe_{_kind}_l{{l}} on the initial parameters (episode 0)"
    PER_SEED[f"init_probe_{{label}}_{_kind}_l{{l}}"] = f"probe_{{label}}_{_kind}_l{{l}} on the initial parameters"
    PER_SEED[f"at_reward_{{level}}_probe_{_kind}_l{{l}}"] = (
        f"probe_{_kind}_l{{l}} on the parameters of the first report at which the member's running_reward "
        "reached {level} (absent until then; repeated in every later report)")
    PER_SEED[f"at_reward_{{level}}_probe_{{label}}_{_kind}_l{{l}}"] = (
        f"probe_{{label}}_{_kind}_l{{l}} at reward level {{level}} (same state and episodes as at_reward_{{level}}_probe_*)")
PER_SEED["at_reward_{level}_episode"] = "episode of the report whose state the probes at reward level {level} measured"
INIT_PREFIX = "init_"
LEVEL_PREFIX = "at_reward_"


def level_prefix(level: float) -> str:
    """The prefix of the probe metrics at one reward level: ``at_reward_0.7_`` for 0.7."""
    return f"{LEVEL_PREFIX}{level:g}_"


PER_POINT = {
    "diverged_fraction": "fraction of the point's seeds that diverged",
    "threshold_reached_fraction": "fraction of the point's seeds whose running_reward reached the threshold",
    "episodes": "episodes trained per member so far",
    "seconds_per_episode": "wall seconds of training per episode per member (whole pack)",
    "episodes_to_threshold_median": "episode by which half of the point's seeds (rounded up) had reached the threshold: "
                                    "the median of episodes_to_threshold counting seeds not yet reached as later "
                                    "(absent until half have; never changes once reported, since seeds that reach "
                                    "later reach at later episodes)",
}

# ---------------------------------------------------------------- what a point's MLflow child run charts
# One series per quantity: the mean over seeds (the spread is in the run's per-seed curves artifact),
# the point metrics, and the mean eval reward over training so far (``auc_reward_mean``, written by the
# study). Left out, with why (docs/mlflow-layout.md):
SERIES_AGGREGATE = "mean"
NOT_CHARTED = {
    "episodes_to_threshold": "its mean covers only the seeds that have reached so far and moves when one more "
                             "does; threshold_reached_fraction and episodes_to_threshold_median are charted instead",
    "diverged_at": "its mean covers only the seeds that diverged; diverged_fraction is charted instead",
    "diverged": "its mean is diverged_fraction",
}

# longest kinds first, so that "bias_sq_se" is never read as label "bias_sq" + kind "se"
PROBE_RE = re.compile(r"^(?:(?P<init>init_)|at_reward_(?P<level>-?[0-9.e+-]+)_)?probe_(?:(?P<label>.+)_)?(?P<kind>"
                      + "|".join(sorted(PROBE_KINDS, key=len, reverse=True)) + r")_l(?P<layer>\d+)$")


def _pattern(name: str) -> str:
    return (re.escape(name).replace(r"\{l\}", r"\d+").replace(r"\{label\}", r".+")
            .replace(r"\{level\}", r"-?[0-9.e+-]+"))


_AGGREGATE_RE = re.compile("^(?:" + "|".join(_pattern(n) for n in PER_SEED) + ")_(?:" + "|".join(AGGREGATES) + ")$")


def is_point_metric(name: str) -> bool:
    """Whether a point reports a metric of this name (an aggregate over seeds or a point metric)."""
    return name in PER_POINT or bool(_AGGREGATE_RE.match(name))


def is_series(name: str, objective: str | None = None) -> bool:
    """Whether a point's child run logs this metric as a series: the study's objective (what the searcher
    saw), every point metric, and the mean over seeds of every per-seed metric not in :data:`NOT_CHARTED`."""
    if name == objective or name in PER_POINT:
        return True
    base, _, kind = name.rpartition("_")
    return kind == SERIES_AGGREGATE and base not in NOT_CHARTED and is_point_metric(name)


def threshold_median(reached_at: list[float], seeds: int) -> float | None:
    """``episodes_to_threshold_median`` from the reach episodes of the seeds that have reached (of ``seeds``)."""
    half = math.ceil(seeds / 2)
    return sorted(reached_at)[half - 1] if len(reached_at) >= half else None


def cross_rule_label(rule: str, options: dict[str, Any]) -> str:
    """The default label of a cross-rule probe entry: the rule name, then ``option-value`` pairs."""
    return "_".join([rule] + [f"{k}-{v}" for k, v in sorted(options.items())])
