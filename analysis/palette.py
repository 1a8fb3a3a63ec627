"""One fixed colour per rule, the same in every report, figure and notebook.

A rule's colour depends on its name only, never on which other rules a study trained (a palette built
from the sorted names of one study gives uwm another colour in the next). Variants of a rule
(``reinforce(baseline=ema)``, ``hwm(order=5)``) take their rule's hue at a lightness fixed by the variant's
text, so they stay recognisably that rule and tell apart from each other.
"""

from __future__ import annotations

import colorsys
import math
import zlib

# the five rules of docs/learning-rules.md and the control baselines; tab10 colours
RULE_COLOURS = {
    "uwm": (0.839, 0.153, 0.157),        # red
    "wm": (0.122, 0.467, 0.706),         # blue
    "hwm": (0.173, 0.627, 0.173),        # green
    "ste": (0.580, 0.404, 0.741),        # purple
    "reinforce": (1.000, 0.498, 0.055),  # orange
    "actor_critic": (0.549, 0.337, 0.294),   # brown
    "backprop": (0.498, 0.498, 0.498),   # grey: a reference, not a learning rule of stochastic units
}
OTHER = [(0.090, 0.745, 0.812), (0.737, 0.741, 0.133), (0.890, 0.467, 0.761)]   # cyan, olive, pink


def base_rule(variant: str) -> str:
    """'reinforce(baseline=ema)' → 'reinforce'."""
    return str(variant).split("(")[0].strip()


def rule_colour(variant: str) -> tuple[float, float, float]:
    """The colour of a rule variant: its rule's fixed colour; a variant with options a lighter or darker shade
    of it, fixed by the variant's text."""
    name = str(variant)
    base = base_rule(name)
    colour = RULE_COLOURS.get(base) or OTHER[zlib.crc32(base.encode()) % len(OTHER)]
    if name == base:
        return colour
    h, l, s = colorsys.rgb_to_hls(*colour)
    shift = (zlib.crc32(name.encode()) % 5 - 2) * 0.09 or 0.18     # never the rule's own shade
    return colorsys.hls_to_rgb(h, min(0.85, max(0.15, l + shift)), s)


def rule_palette(rules) -> dict[str, tuple]:
    """{variant: colour} for the rule variants given (None and NaN left out)."""
    names = {str(r) for r in rules if r is not None and not (isinstance(r, float) and math.isnan(r))}
    return {n: rule_colour(n) for n in sorted(names)}
