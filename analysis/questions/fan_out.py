"""Uneven fan-out: does a unit's number of outgoing connections change its bias, variance or learning speed under
each rule (does WM's norm-based reward starve units with few outgoing connections)?

Answered from the fan-out probe of studies with ``fan_out`` masks (:mod:`analysis.fan_out`): per rule, CV and
hidden layer, the sign-flip test over seeds of Spearman's rho between a unit's fan-out and its statistic.
"""

from __future__ import annotations

from ..fan_out import RHO_FOR_POWER, fan_out_rhos, fan_out_tests
from . import Answer, Context
from ._text import for_people, num

KEY, TITLE, ORDER = "fan_out", "Uneven fan-out: per-unit bias, variance and speed against fan-out", 70


def answer(ctx: Context) -> Answer:
    tuned = ctx.tuned if "stage" in ctx.study.trials and len(ctx.study.trials) else None
    rhos = fan_out_rhos(ctx.study, None if tuned is None else tuned["run_id"])
    tests = fan_out_tests(rhos, ctx.settings.level, ctx.settings.seed)
    sec = Answer(KEY, TITLE, bool(len(tests)), csv={"fan_out_rho": rhos, "fan_out_tests": tests})
    if not len(tests):
        sec.text.append("Not answerable from this study: no trial logged the fan-out probe (it needs `fan_out` "
                        "masks, a CV above 0 and the probe on).")
        return sec
    sec.text.append(
        "Each cell's tuned trials (confirm stage where there is one). Every seed is one network with its own "
        "connectivity masks: its Spearman rho over a layer's units between "
        "a unit's fan-out and its statistic is one independent draw. bias: the debiased squared bias of the unit's "
        "estimate (against the exact gradient, or uwm on the same episodes); var: its per-sample variance; speed: "
        "how far its incoming parameters moved since initialisation (at the last report). Shown where the "
        "two-sided sign-flip test over seeds rejects rho symmetric about 0, Bonferroni over each rule's tests; "
        f"otherwise not shown with the power against |rho| = {RHO_FOR_POWER}.")
    trained = tests[tests["when"] == "trained"]
    for rule, g in trained.groupby("rule_variant", sort=True):
        speed = g[g["statistic"] == "speed"]
        parts = []
        for _, r in speed.iterrows():
            what = r["reading"] if r["shown"] else r["verdict"]
            parts.append(f"cv {num(r['cv'])}, layer {r['layer']}: {what} (mean rho {num(r['mean_rho'], 2)})")
        if parts:
            sec.answer.append((rule, "speed against fan-out: " + "; ".join(parts)))
    shown = tests[tests["shown"]]
    sec.bullets.extend(f"{r['rule_variant']}, cv {num(r['cv'])}, layer {r['layer']}, {r['when']}: {r['reading']} "
                       f"(mean rho {num(r['mean_rho'], 2)}, p {num(r['p'], 2)})" for _, r in shown.iterrows())
    sec.tables.append(("Spearman rho of per-unit statistics against fan-out, over seeds",
                       for_people(tests.drop(columns=["alpha"]), keep=("rule_variant", "statistic"))))
    return sec
