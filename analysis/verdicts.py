"""Verdict words from the statistics: what a test may say, and no more.

A claim is "shown" only where a calibrated test rejects its null; a non-rejection is "not shown", with
the power the test had against a stated effect (a non-rejection at 1 % power says nothing); a claim the
design cannot test is "not answerable", with why. No analysis writes "unbiased", "no breakdown" or "not
at norm c" from a non-rejection: those would be claims of the null.
"""

from __future__ import annotations

import math


def verdict(rejected: bool | None, power: float | None = None, effect: str | None = None,
            unanswerable: str | None = None) -> str:
    """The verdict word for one test: ``unanswerable`` (a reason) wins; else "shown" on a rejection; else
    "not shown (power p% against effect)" (the power unknown: "not shown (power not computed)")."""
    if unanswerable:
        return f"not answerable ({unanswerable})"
    if rejected:
        return "shown"
    if power is None or not math.isfinite(power):
        return "not shown (power not computed)" if not effect else f"not shown (power against {effect} not computed)"
    return f"not shown (power {power:.0%} against {effect})" if effect else f"not shown (power {power:.0%})"
