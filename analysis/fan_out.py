"""Uneven fan-out: how a unit's bias, variance and learning speed depend on its number of outgoing connections.

The trainer's fan-out probe (``fan_out`` masks on, spec 3.9) logs, per seed and hidden layer l whose units fan out
through a mask, Spearman's rho over the layer's units between the fan-out and a per-unit statistic of the trained
rule (:func:`uwm_model.fanout.unit_statistics`): ``bias`` (debiased squared bias of the unit's estimate, against
the exact gradient or uwm on the same episodes), ``var`` (its per-sample variance) and ``speed`` (how far its
incoming parameters moved since initialisation). ``fanout_rho_{stat}_l{l}`` at each report and
``init_fanout_rho_...`` at initialisation.

The test: each seed is one network (its own masks, state and episodes), so its rho is one independent draw; the
claim "the statistic depends on fan-out under this rule at this CV" is the two-sided sign-flip test over seeds of
H0 "rho is symmetric about 0" (:func:`analysis.stats.sign_flip_p`, exact for up to 14 seeds), Bonferroni-corrected
over the tests of a rule variant. A non-rejection is "not shown" with the power of a normal-approximation test
against |rho| = :data:`RHO_FOR_POWER` at the observed spread; with too few seeds for the test to reach its level
at all (2 * 2^-n above it) the answer is "not answerable", with the seeds it needs. A rule's "starving" claim reads ``speed``: a
positive rho shown means units with few outgoing connections move less.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .load import Study
from .stats import DEFAULT_LEVEL, SIGN_FLIP_DRAWS, SIGN_FLIP_EXACT_MAX, _normal_quantile, sign_flip_p
from .verdicts import verdict

RHO_FOR_POWER = 0.3
STATISTICS = ("bias", "var", "speed")
METRIC = re.compile(r"^(init_)?fanout_rho_(bias|var|speed)_l(\d+)$")
COLUMNS = ["rule_variant", "cv", "density", "layer", "statistic", "when", "seed", "rho"]
TEST_COLUMNS = ["rule_variant", "cv", "density", "layer", "statistic", "when", "n_seeds", "mean_rho", "sd_rho", "p",
                "alpha", "shown", "power", "verdict", "reading"]
READINGS = {"bias": ("more bias", "less bias"), "var": ("more variance", "less variance"),
            "speed": ("learn faster", "learn slower")}


def fan_out_rhos(study: Study, run_ids=None) -> pd.DataFrame:
    """One row per (setting, seed, layer, statistic, when): the seed's rho at its last report (``when`` =
    "trained") or at initialisation ("init"), with the trial's rule variant and fan-out setting, from the trials
    ``run_ids`` (default all; the question passes each cell's tuned trials). A seed counts once per setting: trials
    of a cell that share a seed share its masks and initial state. Empty without the probe."""
    sc = study.seed_curves
    if not len(sc) or "fan_out.cv" not in study.trials:
        return pd.DataFrame(columns=COLUMNS)
    names = pd.Series(sc["metric"].unique())
    names = names[names.str.match(METRIC)]
    if not len(names):
        return pd.DataFrame(columns=COLUMNS)
    d = sc[sc["metric"].isin(set(names))]
    if run_ids is not None:
        d = d[d["run_id"].isin(set(run_ids))]
    d = d[d["episode"] == d.groupby(["run_id", "metric"])["episode"].transform("max")]
    parts = d["metric"].str.extract(METRIC)
    trials = study.trials.set_index("run_id")
    out = pd.DataFrame({
        "rule_variant": d["run_id"].map(trials["rule_variant"]).to_numpy(),
        "cv": d["run_id"].map(trials["fan_out.cv"]).astype(float).to_numpy(),
        "density": d["run_id"].map(trials["fan_out.density"]).astype(float).to_numpy()
        if "fan_out.density" in trials else np.nan,
        "layer": parts[2].astype(int).to_numpy(), "statistic": parts[1].to_numpy(),
        "when": np.where(parts[0].notna(), "init", "trained"), "seed": d["seed"].to_numpy(),
        "rho": d["value"].astype(float).to_numpy()})
    out = out[np.isfinite(out["rho"])]
    return out.drop_duplicates(["rule_variant", "cv", "density", "layer", "statistic", "when", "seed"]).reset_index(
        drop=True)


def smallest_p(n: int) -> float:
    """The smallest two-sided p-value the sign-flip test can return over n seeds (all patterns enumerated up to
    SIGN_FLIP_EXACT_MAX seeds, else SIGN_FLIP_DRAWS random ones and the identity)."""
    return 2 * (2.0 ** -n if n <= SIGN_FLIP_EXACT_MAX else 1 / (SIGN_FLIP_DRAWS + 1))


def _power(n: int, sd: float, alpha: float, effect: float = RHO_FOR_POWER) -> float:
    """Power of a two-sided level-alpha test of a mean over n seeds against a mean rho of ``effect`` (normal
    approximation at the observed spread)."""
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return np.nan
    from scipy.stats import norm
    shift = effect * np.sqrt(n) / sd
    z = _normal_quantile(1 - alpha / 2)
    return float(norm.sf(z - shift) + norm.cdf(-z - shift))


def fan_out_tests(rhos: pd.DataFrame, level: float = DEFAULT_LEVEL, seed: int = 0) -> pd.DataFrame:
    """Per (rule variant, cv, density, layer, statistic, when): the seeds' mean rho, the two-sided sign-flip p over
    seeds, ``shown`` where p <= alpha = (1 - level) / (tests of the rule variant), the power against |rho| = 0.3,
    the verdict word and its reading ("units with more outgoing connections learn faster", ...)."""
    if not len(rhos):
        return pd.DataFrame(columns=TEST_COLUMNS)
    keys = ["rule_variant", "cv", "density", "layer", "statistic", "when"]
    groups = list(rhos.groupby(keys, sort=True, dropna=False))
    per_rule = pd.Series([k[0] for k, _ in groups]).value_counts()
    rows = []
    for key, g in groups:
        x = g.sort_values("seed")["rho"].to_numpy(float)
        n = len(x)
        p = float(min(1.0, 2 * min(sign_flip_p(x, seed), sign_flip_p(-x, seed)))) if n else np.nan
        alpha = (1 - level) / per_rule[key[0]]
        sd = float(x.std(ddof=1)) if n > 1 else np.nan
        floor = smallest_p(n)
        too_few = None
        if n < 2:
            too_few = "fewer than 2 seeds"
        elif floor > alpha:
            needed = next(k for k in range(n, 64) if smallest_p(k) <= alpha)
            too_few = (f"{n} seeds: the sign-flip test's smallest p-value {floor:.3g} is above its level "
                       f"{alpha:.2g}; it needs {needed} seeds")
        shown = bool(too_few is None and p <= alpha)
        power = 0.0 if too_few else _power(n, sd, alpha)
        more, less = READINGS[key[4]]
        reading = ""
        if shown:
            reading = f"units with more outgoing connections get {more}" if key[4] != "speed" else \
                f"units with more outgoing connections {more}"
            if x.mean() < 0:
                reading = reading.replace(more, less)
        rows.append(dict(zip(keys, key), n_seeds=n, mean_rho=float(x.mean()) if n else np.nan, sd_rho=sd, p=p,
                         alpha=alpha, shown=shown, power=power,
                         verdict=verdict(shown, power, f"|rho| = {RHO_FOR_POWER}", too_few),
                         reading=reading))
    return pd.DataFrame(rows, columns=TEST_COLUMNS)
