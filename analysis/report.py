"""Study reports: one self-contained HTML page (or Markdown with PNG files) plus CSV tables beside it.

    from analysis.report import write_report
    path = write_report("my-study", "reports/my-study")            # HTML, attached to the parent run
    path = write_report("my-study", "reports/my-study", fmt="md")  # Markdown + PNGs beside it

The report renders answers; it computes none. Each question of docs/learning-rules.md §8 is a module of
:mod:`analysis.questions` that computes its answer once (one seeded :class:`analysis.questions.Settings`)
and returns an :class:`analysis.questions.Answer`. The page leads with the questions this study answers
(one glance row per question and setting: verdict, numbers with intervals and units), then each answer's
evidence, the summary per cell, the learning curves and how each cell's search went; questions the study
cannot address collapse into one line at the end. HTML and Markdown are written from the same answers;
every table behind them is a CSV file beside the report, linked from the page. Figures are drawn at the
page's width (:data:`analysis.figures.PAGE_WIDTH_IN`), so a browser shows them at 100 %. The whole output
directory is attached to the study's MLflow parent run under ``report/``.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from uwm_model import layout

from . import figures as F
from .interactive import has_tips, to_svg
from .load import Study, load_study
from .questions import Answer, Context, Settings, ask
from .questions._text import caption_with_constants, ci, control_reward, for_people, median, num, pct
from .speed import MIN_TUNING_POINTS, tuning_warnings
from .stats import DEFAULT_BOOT, DEFAULT_LEVEL
from .verdicts import verdict

log = logging.getLogger("analysis.report")
FORMATS = ("html", "md")
Section = Answer      # the report's other sections (study, cells, curves, methods) have an answer's shape
MAX_AXIS_VALUES = 8   # the Study line lists at most this many values of an axis, else its count and range
FOLD_ROWS, FOLD_COLUMNS = 12, 8    # a table longer or wider than this is folded (<details>) under its caption


# ----------------------------------------------------------------------------- sections


def _overview(study: Study, cells: pd.DataFrame) -> Section:
    t = study.trials
    sec = Section("overview", "Study", True)
    statuses = t["status"].value_counts().to_dict() if len(t) else {}
    axes = []
    for c, name in (("rule_variant", "rules"), ("width", "widths"), ("depth", "depths"),
                    ("outgoing_norm", "outgoing norms"), ("lr", "learning rates")):
        if c in t and t[c].notna().any():
            vals = sorted(t[c].dropna().unique(), key=F._natural)
            shown = [num(v) if isinstance(v, float) else str(v) for v in vals]
            axes.append(f"{name}: " + (", ".join(shown) if len(shown) <= MAX_AXIS_VALUES else
                                       f"{len(shown)} values from {shown[0]} to {shown[-1]}"))
    sec.text.append(f"{len(t)} trials in {t['cell'].nunique() if len(t) else 0} cells; status: "
                    + (", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none") + ".")
    if axes:
        sec.text.append("; ".join(axes) + ".")
    seeds = int(cells["n_seeds"].sum()) if "n_seeds" in cells and len(cells) else 0
    if len(cells):
        sec.text.append(f"Each cell is reported at its tuned learning rate ({cells['tuned_by'].iloc[0]}); "
                        f"{seeds} seeds in the tuned trials in all.")
    if control_reward(study):
        sec.text.append(control_reward(study))
    for n in study.notes:
        sec.text.append(f"Note: {n}.")
    return sec


def _cell_section(study: Study, cells: pd.DataFrame, level: float) -> Section:
    sec = Section("cells", "Summary per cell", bool(len(cells)))
    if not len(cells):
        sec.text.append("The study has no finished trials yet, so there is nothing to summarise.")
        return sec
    lvl = f"{level:.0%}"
    sec.text.append(
        f"Speed measures are means over the seeds of the tuned trial(s) with {lvl} bootstrap intervals over "
        f"seeds. AUC: area under the eval-reward curve divided by the episodes trained (reward; higher is "
        f"faster). Episodes to threshold, censoring-aware (Kaplan-Meier over seeds; a seed that never reached "
        f"the threshold is censored at its budget): the median with its interval ('not reached by half' when "
        f"fewer than half the seeds got there) and the restricted mean up to the budget. Diverged seeds are "
        f"failures: they never reach the threshold and score the task's lowest reward from their divergence on. "
        f"Variance: the trained rule's probe variance summed over layers (grad² units) at "
        f"{cells.attrs.get('variance_at', 'matched episodes')}.")
    rows = []
    for _, r in cells.iterrows():
        row = {"cell": r["cell"], "rule": r.get("rule_variant"), "width": num(r.get("width")),
               "norm": num(r.get("outgoing_norm")) if pd.notna(r.get("outgoing_norm")) else "default",
               "tuned lr": r.get("lr_text") if r.get("lr_per_layer") else num(r.get("lr")),
               "seeds": num(r.get("n_seeds")),
               "AUC reward": ci(r.get("auc_reward"), r.get("auc_reward_lo"), r.get("auc_reward_hi")),
               "episodes to threshold (median)": median(r.get("episodes_to_threshold_median"),
                                                         r.get("episodes_to_threshold_median_lo"),
                                                         r.get("episodes_to_threshold_median_hi"),
                                                         r.get("episodes_budget")),
               "restricted mean": ci(r.get("episodes_to_threshold"), r.get("episodes_to_threshold_lo"),
                                      r.get("episodes_to_threshold_hi")),
               "reached": pct(r.get("reached_fraction")),
               "final reward": ci(r.get("final_reward"), r.get("final_reward_lo"), r.get("final_reward_hi")),
               "diverged": pct(r.get("diverged_fraction")),
               "variance": num(r.get("var_total")),
               "s / episode": num(r.get("seconds_per_episode"))}
        rows.append(row)
    show = pd.DataFrame(rows)
    ident = show[["rule", "width", "norm"]].astype(str).agg("|".join, axis=1)
    if ident.is_unique and "hidden" in cells and cells["hidden"].astype(str).nunique() == cells["width"].nunique():
        show = show.drop(columns="cell")  # rule, width and norm identify the cell: the key adds nothing
    sec.tables.append(("One row per cell at its tuned learning rate (intervals: " + lvl + ")", show))
    warn = tuning_warnings(study)
    warn = warn[(warn["warnings"] != "") & (warn["n_search"] > 1)]   # only cells whose lr was searched
    line = tuning_warning_line(warn, len(cells))
    if line:
        sec.text.append(line)
    return sec


def tuning_warning_line(warn: pd.DataFrame, n_cells: int) -> str | None:
    """One line counting the cells with tuning warnings, by kind (:func:`analysis.speed.tuning_warnings` rows
    with a warning): one count of "any warning" read beside the tuning section's edge count looked like a
    contradiction."""
    if not len(warn):
        return None
    kinds = [(int(warn["warnings"].str.contains(pattern).sum()), what) for pattern, what in (
        ("edge of the searched", "chose a rate at an edge of the range searched"),
        ("learning rates tried", f"tried fewer than {MIN_TUNING_POINTS} learning rates"),
        ("no confirm stage", "have no confirm stage"))]
    return (f"Tuning warnings in {len(warn)} of {n_cells} cells (" + "; ".join(f"{n} {what}" for n, what in kinds if n)
            + "): the tuned learning rate is less trustworthy there (see Tuning).")


def _curves_section(study: Study, tuned: pd.DataFrame, lr_table: pd.DataFrame | None = None) -> Section:
    """Eval reward of the tuned trials; on a learning-rate grid (``lr_table``,
    :func:`analysis.lr_sensitivity.lr_sensitivity`) only each rule's best rate: a mean over every rate of
    the grid is no rate's curve."""
    sec = Section("curves", "Learning curves", False)
    has = (len(study.seed_curves) and (study.seed_curves["metric"] == "eval_reward").any()) or \
        ("eval_reward_mean" in set(study.curves["metric"]) if len(study.curves) else False)
    if not has or not len(tuned):
        sec.text.append("No eval-reward curves in this study.")
        return sec
    sec.present = True
    if lr_table is not None and len(lr_table):
        from .lr_sensitivity import setting_labels

        best = {(r["rule_variant"], r["setting"]): r["best_lr"] for _, r in lr_table.iterrows()}
        keyed = tuned.assign(_setting=setting_labels(tuned))
        at_best = [np.isclose(r["lr"], best[(r["rule_variant"], r["_setting"])])
                   if (r["rule_variant"], r["_setting"]) in best else True for _, r in keyed.iterrows()]
        tuned = tuned[np.asarray(at_best, dtype=bool)]
        sec.text.append("Eval reward at each rule's best learning rate of the grid (see Learning-rate "
                        "sensitivity), pooled by rule, width and norm: mean over seeds with a 95% band.")
    else:
        sec.text.append("Eval reward of the tuned trial(s) of every cell, pooled by rule, width and norm: mean over "
                        "seeds with a 95% band.")
    sec.figures.append(("learning_curves", F.learning_curves(study, tuned["run_id"])))
    return sec



def _methods(level: float, n_boot: int, seed: int) -> Section:
    sec = Section("methods", "Methods", True)
    sec.text += [
        "Tuned learning rate: within a cell, trials of stage 'confirm' are preferred; among the candidates the "
        "best by the study's objective is chosen and every candidate trial at that learning rate is pooled.",
        f"Intervals: percentile bootstrap over seeds (scipy.stats.bootstrap, {n_boot} resamples, seed {seed}, each "
        f"analysis on its own stream derived from its data) with the small-sample expansion of Hesterberg (2015), "
        f"nominal {level:.0%}; proportions use Wilson intervals (statsmodels); episodes to threshold Kaplan-Meier "
        "(statsmodels; median interval by Brookmeyer-Crowley, restricted mean by bootstrap); rank correlations "
        "within settings, pooled as a cell-weighted mean, with a bootstrap of whole cells and, inside it, of seeds paired across "
        "the rules of a setting; power-law exponents a bootstrap "
        "stratified by width or a t-interval; compute t = a + b·width^k (scipy curve_fit) with a stratified "
        "bootstrap and a lack-of-fit F-test against the replicate timings; the cost ratio t_uwm / t_ref per width "
        "on the log scale with Welch's degrees of freedom. Bias at initialisation: any bias by a sign-flip test over "
        "seeds of the split-half products (mean_A − exact)·(mean_B − exact), a relative bias above 10% by a "
        "one-sided t-test over seeds (Bonferroni over norms and layers, power by the noncentral t). Every test "
        "and interval is checked on simulated data in tests/test_calibration.py. Verdicts: 'shown' on a "
        "rejection; 'not shown (power p% against effect e)' on a non-rejection; 'not answerable (why)' where the "
        "design cannot say.",
        "Matched points of training: probe values are compared at the first report episode every trial shares "
        "(each trial's first report when they share none).",
        "Tables: the CSV files beside this report (linked under each section) hold every number shown here and "
        "more.",
    ]
    return sec


# ----------------------------------------------------------------------------- analysis bundle


def analyse(study: Study, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0,
            progress: Callable[[str], None] | None = None) -> tuple[list[Section], dict[str, pd.DataFrame]]:
    """Ask every question of a loaded study once: the report's sections (answers first) and the tables for
    the CSV files (each answer's own, plus trials, cells and seed_speed)."""
    say = progress or log.info
    ctx = Context(study, Settings(n_boot=n_boot, level=level, seed=seed))
    say("speed per seed, trial and cell")
    tables: dict[str, pd.DataFrame] = {"trials": study.trials, "seed_speed": ctx.seeds, "cells": ctx.cells}
    answers = ask(ctx, progress=say)
    for a in answers:
        tables.update(a.csv)
    answered = [a for a in answers if a.present and a.key != "tuning"]
    tuning = [a for a in answers if a.key == "tuning"]
    lr_table = tables.get("lr_sensitivity")
    evidence = [_cell_section(study, ctx.cells, level), _curves_section(study, ctx.tuned, lr_table)]
    evidence[0].csv.update(cells=ctx.cells, seed_speed=ctx.seeds)
    overview = _overview(study, ctx.cells)
    overview.csv["trials"] = study.trials
    sections = [_answers(answers), overview, *answered, *evidence,
                *[a for a in tuning if a.present]]
    closed = [a for a in answers if not a.present]
    if closed:
        sections.append(_inapplicable(closed))
    sections.append(_methods(level, n_boot, seed))
    return sections, tables


def _answers(answers: list[Answer]) -> Section:
    """The study's questions: one headline row per question (``summary``: each answer's ``headline``, else
    its rows' common verdict) over the table of one row per question and setting. Questions the study cannot address
    are left out here (one line at the end names them)."""
    sec = Section("answers", "Answers at a glance", True)
    rows, heads = [], []
    for a in answers:
        if not a.present:
            continue
        mine = []
        for row in a.answer or [("", "see its section")]:
            setting, text = row if isinstance(row, tuple) else ("", row)
            mine.append((_short(a.title), setting, text))
        rows += mine
        heads.append((_short(a.title), a.headline or _headline([(st, t) for _, st, t in mine])))
    table = pd.DataFrame(rows, columns=["question", "setting", "answer"])
    if len(table) and (table["setting"] == "").all():
        table = table.drop(columns="setting")
    sec.summary = pd.DataFrame(heads, columns=["question", "answer"])
    sec.tables.append(("One row per question and setting; the sections below give the evidence", table))
    return sec


def _headline(rows: list[tuple[str, str]]) -> str:
    """One row for a question's (setting, text) rows: the text when every row says the same, else the
    first row with its setting and how many more the table below holds."""
    texts = [t for _, t in rows]
    if len(set(texts)) == 1:
        return texts[0] + (f" (all {len(texts)} rows)" if len(texts) > 1 else "")
    setting, text = rows[0]
    return (f"{setting}: " if setting else "") + text + f" (+{len(rows) - 1} more rows below)"


def _short(title: str) -> str:
    """A question's name for the glance table: its title without the subtitle ("Tuning: how ..." → "Tuning")."""
    return title.split(":")[0].split(" (")[0].rstrip("?")


def _inapplicable(closed: list[Answer]) -> Section:
    """The questions this study cannot address, in one line each reason."""
    text = "; ".join(f"{_short(a.title)}: {verdict(None, unanswerable=a.why_not)}" for a in closed)
    return Section("inapplicable", "Questions this study cannot address", True, text=[text + "."])


# ----------------------------------------------------------------------------- rendering

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;color:#222;
line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.8em}
.meta{color:#666;font-size:0.9em} .absent{color:#8a5a00;background:#fff8e6;padding:6px 10px;border-radius:4px}
table{border-collapse:collapse;font-size:0.82em;margin:8px 0 16px 0} caption{text-align:left;font-weight:600;
padding:4px 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} tr:nth-child(even) td{background:#fafafa} img{max-width:100%;height:auto;margin:8px 0}
nav a{margin-right:14px} .table-wrap{overflow-x:auto;max-width:100%} figure{margin:8px 0 18px 0}
td{overflow-wrap:anywhere} table{max-width:100%} .csv{color:#555;font-size:0.85em} .csv a{margin-right:10px}
details summary{cursor:pointer;font-weight:600;font-size:0.9em;padding:4px 0}
#answers td:last-child{min-width:40%}
figcaption{color:#555;font-size:0.88em} .fig-row{display:flex;gap:8px;align-items:flex-start}
.svg-figure{margin:8px 0} .svg-figure a path:hover{stroke-width:2.5;stroke-opacity:1}
"""


def _figure_list(fig_or_row) -> list:
    return list(fig_or_row) if isinstance(fig_or_row, (tuple, list)) else [fig_or_row]


def _figure_files(stem: str, fig_or_row) -> list[tuple[str, object]]:
    """(file stem, Figure) of one entry of Section.figures: a figure, or a row of them (stem_a, stem_b, ...)."""
    figs = _figure_list(fig_or_row)
    return [(stem, figs[0])] if len(figs) == 1 else [(f"{stem}_{chr(97 + i)}", f) for i, f in enumerate(figs)]


def _caption_of(fig_or_row) -> str:
    return " · ".join(f.get_label() for f in _figure_list(fig_or_row) if f.get_label())


def _figure_html(name: str, fig, run_link=None) -> str:
    """One figure for the self-contained page: inline SVG where its artists carry hover texts and run links
    (:mod:`analysis.interactive`), else an embedded PNG."""
    if has_tips(fig):
        return f"<div class='svg-figure' role='img' aria-label='{html.escape(name)}'>{to_svg(fig, run_link, F.DPI)}</div>"
    return f"<img alt='{html.escape(name)}' src='data:image/png;base64,{F.to_base64(fig)}'>"


def run_link_of(study: Study):
    """Run id -> its page in the study's MLflow UI: the tracking server's own address, or what ``uwm-study ui``
    serves for a local store; None for a study read from an export (no store to open)."""
    if study.tracking_uri is None:
        return None
    base = study.tracking_uri if study.tracking_uri.startswith(("http://", "https://")) else layout.UI_LOCAL
    return lambda run_id: layout.ui_url(base, study.experiment_id, run_id)


def _render_html(study: Study, sections: list[Section], fig_html: dict[str, str]) -> str:
    e = html.escape
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>uwm-study report: {e(study.name)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Study report: {e(study.name)}</h1>",
           f"<p class='meta'>parent run {e(study.parent_run_id)} · experiment {e(str(study.experiment_id))} · "
           f"generated {now} · uwm-study analysis</p>",
           "<nav>" + "".join(f"<a href='#{s.key}'>{e(s.title)}</a>" for s in sections) + "</nav>"]
    for s in sections:
        out.append(f"<section id='{s.key}'><h2>{e(s.title)}</h2>")
        for p in s.text:
            cls = " class='absent'" if not s.present else ""
            out.append(f"<p{cls}>{e(p)}</p>")
        if s.bullets:
            out.append("<ul>")
            for i, b in enumerate(s.bullets):
                if b.startswith("    "):
                    continue
                subs = []
                for nxt in s.bullets[i + 1:]:
                    if not nxt.startswith("    "):
                        break
                    subs.append(nxt.strip())
                inner = "<ul>" + "".join(f"<li>{e(x)}</li>" for x in subs) + "</ul>" if subs else ""
                out.append(f"<li>{e(b)}{inner}</li>")
            out.append("</ul>")
        summary = s.summary
        if summary is not None and len(summary):
            out.append(f"<div class='table-wrap'>{summary.to_html(index=False, escape=True, border=0)}</div>")
        for caption, df in s.tables:
            df = _for_page(s, df)
            caption = caption_with_constants(caption, df)
            if _folded(s, df):
                table = df.to_html(index=False, escape=True, na_rep="–", border=0)
                out.append(f"<details><summary>{e(caption)} ({len(df)} rows × {len(df.columns)} columns)</summary>"
                           f"<div class='table-wrap'>{table}</div></details>")
            else:
                table = _caption(df.to_html(index=False, escape=True, na_rep="–", border=0), caption)
                out.append(f"<div class='table-wrap'>{table}</div>")
        for stem, fig in s.figures:
            imgs = "".join(fig_html[name] for name, _ in _figure_files(stem, fig))
            if len(_figure_list(fig)) > 1:
                imgs = f"<div class='fig-row'>{imgs}</div>"
            cap = _caption_of(fig)
            out.append(f"<figure>{imgs}" + (f"<figcaption>{e(cap)}</figcaption>" if cap else "") + "</figure>")
        if s.csv:
            out.append("<p class='csv'>CSV: " + "".join(f"<a href='{e(n)}.csv'>{e(n)}.csv</a>" for n in s.csv)
                       + "</p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def _for_page(section: Section, df: pd.DataFrame) -> pd.DataFrame:
    """Tables as people read them (three significant figures, readable headers, constant columns dropped);
    the glance table as it is (every row and column there is an answer)."""
    return df if section.key == "answers" else for_people(df)


def _folded(section: Section, df: pd.DataFrame) -> bool:
    """Long or wide tables fold under their caption."""
    if section.key == "answers":   # the headline rows stand above; the rows per setting fold when long
        return section.summary is not None and len(df) > FOLD_ROWS
    return len(df) > FOLD_ROWS or len(df.columns) > FOLD_COLUMNS


def _caption(table_html: str, caption: str) -> str:
    end = table_html.index(">") + 1
    return table_html[:end] + f"<caption>{html.escape(caption)}</caption>" + table_html[end:]


def _md_table(df: pd.DataFrame) -> str:
    def cell(v):
        s = "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v)
        return s.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _render_md(study: Study, sections: list[Section], fig_files: dict[str, str]) -> str:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = [f"# Study report: {study.name}", "",
           f"parent run `{study.parent_run_id}` · experiment `{study.experiment_id}` · generated {now}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for p in s.text:
            out += [("> " if not s.present else "") + p, ""]
        if s.bullets:
            out += [("  - " + b.strip()) if b.startswith("    ") else f"- {b}" for b in s.bullets] + [""]
        summary = s.summary
        if summary is not None and len(summary):
            out += [_md_table(summary), ""]
        for caption, df in s.tables:
            df = _for_page(s, df)
            out += [f"**{caption_with_constants(caption, df)}**", "", _md_table(df), ""]
        for stem, fig in s.figures:
            out += [" ".join(f"![{name}]({fig_files[name]})" for name, _ in _figure_files(stem, fig)), ""]
            if _caption_of(fig):
                out += [f"*{_caption_of(fig)}*", ""]
        if s.csv:
            out += ["CSV: " + " · ".join(f"[{n}.csv]({n}.csv)" for n in s.csv), ""]
    return "\n".join(out)


def _stderr_progress() -> Callable[[str], None]:
    import sys
    import time

    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] report: {message}", file=sys.stderr, flush=True)

    return say


def write_report(study_name: str, out_dir, fmt: str = "html", tracking_uri: str | None = None, *,
                 attach: bool = True, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_LEVEL, seed: int = 0,
                 study: Study | None = None, progress: Callable[[str], None] | None = None,
                 analysis: tuple[list[Section], dict[str, pd.DataFrame]] | None = None) -> Path:
    """Write the report of a study and return the path of ``report.html`` / ``report.md``.

    Args:
        study_name: the study name (or its parent run id).
        out_dir: output directory (created); receives the report, CSV tables and, for Markdown,
            the figures as PNG files.
        fmt: "html" (self-contained: figures embedded as base64 PNG) or "md".
        tracking_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI`` / MLflow's default).
        attach: log ``out_dir`` as artifacts ``report/`` of the study's parent run.
        study: an already loaded study (skips loading).
        progress: called with a short message before each step (default: a timestamped line on stderr).
        analysis: the result of :func:`analyse` on ``study`` (skips the analyses: one study written in both
            formats is analysed once).

    Raises ``analysis.load.StudyNotFound`` (one line) if there is no such study, ValueError for a bad format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format '{fmt}'; valid: {', '.join(FORMATS)}")
    say = progress or _stderr_progress()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if study is None:
        say(f"loading study '{study_name}' from MLflow")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = load_study(study_name, tracking_uri)
    sections, tables = analysis or analyse(study, n_boot=n_boot, level=level, seed=seed, progress=say)
    say("writing tables and figures")
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv", index=False)
    import matplotlib.pyplot as plt

    figs = [pair for s in sections for stem, fig in s.figures for pair in _figure_files(stem, fig)]
    if fmt == "html":
        link = run_link_of(study)
        text = _render_html(study, sections, {stem: _figure_html(stem, fig, link) for stem, fig in figs})
        path = out / "report.html"
    else:
        files = {}
        for stem, fig in figs:
            (out / f"{stem}.png").write_bytes(F.to_png_bytes(fig))
            files[stem] = f"{stem}.png"
        text = _render_md(study, sections, files)
        path = out / "report.md"
    for _, fig in figs:
        plt.close(fig)
    path.write_text(text, encoding="utf-8")
    if attach:
        say("attaching the report to the study's MLflow parent run (report/)")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=study.tracking_uri)
        client.log_artifacts(study.parent_run_id, str(out), artifact_path="report")
        tags = answer_tags(sections)
        if tags:   # the answers at a glance as the parent run's tags: one call, columns in the runs table
            from mlflow.entities import RunTag

            client.log_batch(study.parent_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return path


def answer_tags(sections: list[Section]) -> dict[str, str]:
    """The glance table (one headline per question) as parent-run tags ``uwm.answer.<question>`` (the question
    in MLflow's key alphabet), each value cut to MLflow's tag length."""
    glance = next((s.summary for s in sections if s.summary is not None and len(s.summary)), None)
    if glance is None:
        return {}
    return {layout.answer_tag(q): str(a)[:layout.MAX_TAG_CHARS] for q, a in zip(glance["question"], glance["answer"])}
