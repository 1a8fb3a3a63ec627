"""Dataset reference points: each rule's test accuracy beside chance, logistic regression and the backprop
ceiling on the same split (:mod:`analysis.reference`); a dataset study's question only."""

from __future__ import annotations

from .. import reference
from ..reference import reference_rows, reference_tables, rule_accuracies
from . import Answer, Context
from ._text import ci

KEY, TITLE, ORDER = "reference", "Test accuracy and reference points", 60


def answer(ctx: Context) -> Answer:
    accuracies = rule_accuracies(ctx.study, level=ctx.level)
    if not len(accuracies):
        return Answer(KEY, TITLE, False, text=["Not answerable from this study: it trains on no dataset task (the "
                                               "reference points are test accuracies on a dataset's split)."])
    a = Answer(KEY, TITLE, True, text=[(reference.__doc__ or "").split("\n\n")[0].replace("\n", " ")],
               tables=reference_tables(accuracies, ctx.level),
               csv={"accuracy": accuracies, "reference_points": reference_rows(accuracies, ctx.level)})
    for _, r in accuracies.iterrows():
        a.answer.append((f"{r['rule']}, hidden {r['hidden']}",
                         f"test accuracy {ci(r['accuracy'], r['lo'], r['hi'])} ({r['seeds']} seeds)"))
    return a
