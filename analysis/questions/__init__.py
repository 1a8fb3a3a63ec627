"""The study's questions, one module each: adding a question is adding a module here.

Every module in this package that defines ``KEY``, ``TITLE``, ``ORDER`` and ``answer(ctx) -> Answer`` is a
question (found by :func:`questions`, in ``ORDER``). A question reads the study's tables through one
:class:`Context` (shared tables computed once, one seeded :class:`Settings`), computes its answer once and
returns a typed :class:`Answer`: the glance rows (setting, verdict text with numbers, intervals and units),
its prose, display tables, the CSV tables behind them, its figures, or ``not answerable`` with why. The
report (:mod:`analysis.report`) only renders answers (HTML and Markdown from the same objects); nothing
is recomputed there.

    from analysis.questions import Context, Settings, ask
    answers = ask(Context(study, Settings(n_boot=1000, seed=0)))
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from ..load import Study
from ..stats import DEFAULT_BOOT, DEFAULT_LEVEL


@dataclass(frozen=True)
class Settings:
    """One seeded setting for every question: bootstrap size, interval level and the seed of the streams."""
    n_boot: int = DEFAULT_BOOT
    level: float = DEFAULT_LEVEL
    seed: int = 0


@dataclass
class Answer:
    """One question's answer (also the shape of the report's other sections).

    ``present`` is False where the study cannot answer: ``text[0]`` then says why. ``answer`` holds the
    glance rows, each text or (setting, text); ``csv`` the tables written beside the report (name → frame)."""
    key: str
    title: str
    present: bool
    text: list[str] = field(default_factory=list)            # paragraphs (plain text)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)   # (caption, display table)
    figures: list[tuple[str, object]] = field(default_factory=list)        # (file stem, Figure or row of them)
    answer: list = field(default_factory=list)   # glance rows: text, or (setting, text) per row
    bullets: list[str] = field(default_factory=list)         # rendered as a list after the text
    csv: dict[str, pd.DataFrame] = field(default_factory=dict)   # tables for CSV files, by file stem
    headline: str = ""    # the one glance row over all settings (default: the rows' common verdict)
    summary: pd.DataFrame | None = None   # the report's glance section only: one headline row per question

    @property
    def why_not(self) -> str:
        """Why the study cannot answer (the first paragraph, without its lead-in), '' when it can."""
        if self.present or not self.text:
            return ""
        return self.text[0].removeprefix("Not answerable from this study: ").rstrip(".")


class Context:
    """The study and the tables every question shares, each computed once on first use."""

    def __init__(self, study: Study, settings: Settings | None = None):
        self.study = study
        self.settings = settings or Settings()

    @property
    def level(self) -> float:
        return self.settings.level

    @cached_property
    def seeds(self) -> pd.DataFrame:
        from ..speed import seed_speed

        return seed_speed(self.study)

    @cached_property
    def cells(self) -> pd.DataFrame:
        from ..speed import cell_summary

        s = self.settings
        return cell_summary(self.study, n_boot=s.n_boot, level=s.level, seed=s.seed, seeds=self.seeds)

    @cached_property
    def tuned(self) -> pd.DataFrame:
        from ..speed import select_tuned

        return select_tuned(self.study)


def questions() -> list:
    """The question modules of this package, in their ``ORDER``."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if all(hasattr(mod, a) for a in ("KEY", "TITLE", "ORDER", "answer")):
            found.append(mod)
    return sorted(found, key=lambda m: (m.ORDER, m.KEY))


def ask(ctx: Context, progress=None) -> list[Answer]:
    """Every question's answer on one study (inapplicable ones carry why)."""
    out = []
    for mod in questions():
        if progress:
            progress(mod.TITLE.lower())
        out.append(mod.answer(ctx))
    return out


__all__ = ["Answer", "Context", "Settings", "ask", "questions"]
