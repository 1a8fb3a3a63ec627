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
    "train_reward": "mean training reward over the report window (a control task: the mean return of the member's "
                    "episodes in the window)",
    "eval_reward": "mean reward of the stochastic network on eval_episodes fresh inputs (a dataset task: on every "
                   "image of its validation split once), no learning; what a study tunes on. A control task has no "
                   "separate evaluation: its train_reward, the return of the episodes it learns from (as Chung 2022 "
                   "measures), so its auc_reward_mean is the average return over all episodes",
    "eval_accuracy": "dataset tasks: fraction of the validation split classified right by the stochastic network, "
                     "every validation image once (absent for the multiplexer)",
    "test_reward": "dataset tasks: mean reward of the stochastic network on every image of the held-out test split "
                   "once; read only to report, never to tune (absent for the multiplexer)",
    "test_accuracy": "dataset tasks: fraction of the held-out test split classified right by the stochastic "
                     "network, every test image once; read only to report (absent for the multiplexer)",
    "running_reward": "mean training reward over the last threshold_window episodes (a control task: the last 100 "
                      "returns)",
    "episodes_to_threshold": "first episode at which running_reward >= threshold (absent until reached)",
    "diverged": "1 once the member's parameters or estimates became non-finite",
    "diverged_at": "episode of the member's first non-finite update (absent unless diverged)",
    "train_reward_all": "mean training reward over every episode trained so far (Chung 2022's figure of merit; a "
                        "control task: the average return over all episodes)",
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
# With fan_out connectivity masks (spec 3.9): per hidden layer l whose units fan out through a mask, Spearman's rho
# over its units between a unit's fan-out and a per-unit statistic of the trained rule (NaN, so absent, when every
# fan-out is equal). Not named probe_*: they are not per-layer probe kinds (PROBE_RE).
FAN_OUT_KINDS = {
    "bias": "debiased squared bias (mean d)^2 - var(d)/K of the unit's logit estimate, d = estimate - exact gradient "
            "(small networks) or - uwm's estimate on the same episodes",
    "var": "per-sample variance of the unit's logit estimate over the probe's K episodes",
    "speed": "squared distance the unit's incoming weights and bias moved since initialisation",
}
for _kind, _meaning in FAN_OUT_KINDS.items():
    PER_SEED[f"fanout_rho_{_kind}_l{{l}}"] = f"Spearman rho over the units of hidden layer l of fan-out against: {_meaning}"
    PER_SEED[f"init_fanout_rho_{_kind}_l{{l}}"] = f"fanout_rho_{_kind}_l{{l}} on the initial parameters (episode 0)"
    PER_SEED[f"at_reward_{{level}}_fanout_rho_{_kind}_l{{l}}"] = f"fanout_rho_{_kind}_l{{l}} at reward level {{level}}"
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
    "at_reward_{level}_reached_fraction": "fraction of the point's seeds whose running_reward has reached {level}: the "
                                          "seeds the probes at that level cover",
    "at_reward_{level}_episode_median": "episode by which half of the point's seeds (rounded up) had reached reward "
                                        "level {level}, counting seeds not yet reached as later (absent until half have)",
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
_POINT_RE = re.compile("^(?:" + "|".join(_pattern(n) for n in PER_POINT) + ")$")


def is_point_metric(name: str) -> bool:
    """Whether a point reports a metric of this name (an aggregate over seeds or a point metric)."""
    return bool(_POINT_RE.match(name) or _AGGREGATE_RE.match(name))


def is_series(name: str, objective: str | None = None) -> bool:
    """Whether a point's child run logs this metric as a series: the study's objective (what the searcher
    saw), every point metric, and the mean over seeds of every per-seed metric not in :data:`NOT_CHARTED`
    and not :func:`is_logged_at_end`."""
    if name == objective or _POINT_RE.match(name):
        return True
    base, _, kind = name.rpartition("_")
    return (kind == SERIES_AGGREGATE and base not in NOT_CHARTED and not is_logged_at_end(name)
            and is_point_metric(name))


def is_logged_at_end(name: str) -> bool:
    """Whether a point's child run logs this metric once, when the point ends, instead of as a series: the means
    over seeds at a reward level (``at_reward_{level}_*_mean``) cover only the seeds that have reached it, so while
    the point trains they move as slower seeds reach (the episode's mean climbs); the series of a level are its
    censored ``at_reward_{level}_reached_fraction`` and ``at_reward_{level}_episode_median``."""
    return name.startswith(LEVEL_PREFIX) and name.endswith(f"_{SERIES_AGGREGATE}") and bool(_AGGREGATE_RE.match(name))


def level_summary(per_seed: list[dict[str, float]], levels) -> dict[str, float]:
    """A point's metrics of each reward level over all its seeds (those not yet reached counted as censored):
    ``at_reward_{level}_reached_fraction`` and, once half have reached, ``at_reward_{level}_episode_median``."""
    out = {}
    for level in levels:
        key = f"{level_prefix(level)}episode"
        reached = [r[key] for r in per_seed if key in r]
        out[f"{level_prefix(level)}reached_fraction"] = len(reached) / len(per_seed)
        median = threshold_median(reached, len(per_seed))
        if median is not None:
            out[f"{level_prefix(level)}episode_median"] = median
    return out


def threshold_median(reached_at: list[float], seeds: int) -> float | None:
    """``episodes_to_threshold_median`` from the reach episodes of the seeds that have reached (of ``seeds``)."""
    half = math.ceil(seeds / 2)
    return sorted(reached_at)[half - 1] if len(reached_at) >= half else None


def cross_rule_label(rule: str, options: dict[str, Any]) -> str:
    """The default label of a cross-rule probe entry: the rule name, then ``option-value`` pairs."""
    return "_".join([rule] + [f"{k}-{v}" for k, v in sorted(options.items())])


# ---------------------------------------------------------------- units and the glossary a study logs
WRITTEN_BY_STUDY = {   # metrics the study writes itself (not the trainer), on child and parent runs
    "auc_reward_mean": "mean eval reward over training so far (each report's eval_reward_mean weighted by the "
                       "episodes since the previous one); its last value is the point's area under its learning curve",
    "best_{metric}": "parent run: the study metric of the best cell's chosen point (the confirm stage where the "
                     "cell has one); uwm.best_point names it",
    "best_{metric}/{cell}": "parent run: the study metric of each cell's chosen point (best_per_cell.csv)",
    "points_{status}": "parent run: the study's points by final status",
}
_PROBE_UNITS = {"var": "gradient units squared (summed over the layer's weights and biases)",
                "mean_sq": "gradient units squared", "bias": "gradient units", "bias_sq": "gradient units squared",
                "bias_sq_se": "gradient units squared", "bias_split": "gradient units squared",
                "cos": "dimensionless, -1 to 1", "exact_sq": "gradient units squared",
                "nsr": "dimensionless ratio", "nsr_exact": "dimensionless ratio", "nsr_ref": "dimensionless ratio",
                "ref_samples": "episodes"}


def unit(name: str) -> str:
    """The unit of a metric's values, from its name (a registry name, template or concrete, with or without an
    aggregate suffix: the mean, std and sem of a quantity share its unit)."""
    base, _, kind = name.rpartition("_")
    if kind in AGGREGATES and base:
        name = base
    probe = PROBE_RE.match(name.replace("{l}", "1").replace("{label}", "x").replace("{level}", "0.5"))
    if probe:
        return _PROBE_UNITS[probe["kind"]]
    if "fanout_rho" in name:
        return "rank correlation, -1 to 1"
    if name == "seconds_per_episode":
        return "seconds per episode per member"
    if name in ("eval_accuracy", "test_accuracy"):
        return f"fraction of {'validation' if name == 'eval_accuracy' else 'test'} images, 0 to 1"
    if name == "init_radius_ratio_l{l}":
        return "dimensionless ratio (|W| over the Taylor radius)"
    if name.endswith("_fraction") or name == "init_beyond_radius_l{l}":
        return "fraction, 0 to 1"
    if name in ("diverged",):
        return "0 or 1"
    if "reward" in name and not name.endswith(("episode", "episode_median")):
        return ("reward per episode (the task's rewards: -1 to 1 or 0 to 1; a control task: the return, the sum of an "
                "episode's rewards: CartPole 0 to 500, Acrobot -500 to 0)")
    if "episode" in name or name == "diverged_at":
        return "episodes"
    if "outgoing" in name:
        return "weight units"
    if name.startswith("points_"):
        return "points"
    return "see meaning"


def glossary(metric: str | None = None) -> list[tuple[str, str, str]]:
    """(name, meaning, unit) of every metric a study's runs log, the templates as written here (``{l}`` a hidden
    layer, ``{label}`` a cross-rule probe rule, ``{level}`` a reward level); ``metric`` fills ``best_{metric}``."""
    rows = []
    for name, meaning in PER_SEED.items():
        kinds = "; ".join(f"_{k}: {v}" for k, v in AGGREGATES.items())
        rows.append((f"{name}_mean (_std, _sem)", f"{meaning} [{kinds}]", unit(name)))
    rows += [(name, meaning, unit(name)) for name, meaning in PER_POINT.items()]
    for name, meaning in WRITTEN_BY_STUDY.items():
        shown = name.replace("{metric}", metric) if metric else name
        u = unit(metric) if name.startswith("best_") and metric else unit(name)
        rows.append((shown, meaning, "the study metric's unit" if name.startswith("best_") and u == "see meaning" else u))
    return rows


def glossary_markdown(metric: str | None = None) -> str:
    """:func:`glossary` as a Markdown table (the study logs it on its parent run as ``glossary.md``)."""
    esc = lambda t: t.replace("|", "\\|")  # noqa: E731
    lines = ["# Metrics of this study", "",
             "Every metric a run of this study logs: its meaning and unit. Series are logged at step = episode; "
             "a point's child run charts the mean over seeds (std and sem are in its curves_per_seed.csv).", "",
             "| name | meaning | unit |", "|---|---|---|"]
    lines += [f"| `{n}` | {esc(m)} | {u} |" for n, m, u in glossary(metric)]
    return "\n".join(lines) + "\n"
