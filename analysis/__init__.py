"""analysis: MLflow -> pandas -> analyses -> seaborn figures -> reports.

    from analysis import load_study, write_report
    study = load_study("my-study")                     # tidy tables: trials, curves, seed_curves
    cells = analysis.speed.cell_summary(study)          # tuned lr, speed with intervals, variance
    write_report("my-study", "reports/my-study")        # HTML + CSV, attached to the parent run
    study = load_export("results/my-study")            # the same tables from an export (uwm-study export)

Modules: ``load`` (MLflow to DataFrames), ``export`` (a study as files and back, without MLflow), ``stats`` (bootstrap, Wilson, Spearman, power laws, sign-flip test),
``verdicts`` ("shown" / "not shown (power p% against effect e)" / "not answerable (why)"),
``speed`` (speed per seed, trial and cell), ``probe`` (probe metrics at matched episodes),
``variance_speed``, ``scaling``, ``norm_stress`` (the three questions), ``lr_sensitivity`` (best
learning rate, usable range and FWHM on an lr grid), ``tuning`` (each cell's search, with Optuna's plots),
``questions`` (one module per question of a study, each returning a typed Answer computed once), ``palette``
(one fixed colour per rule), ``figures``, ``report`` (renders the answers: HTML and Markdown, CSVs beside),
``synthetic`` (a study with planted answers, for demonstrations and tests).
"""

from .export import BadExport, load_export
from .load import Study, StudyNotFound, load_study


def write_report(*args, **kwargs):
    """See :func:`analysis.report.write_report` (imported lazily: it pulls in matplotlib)."""
    from .report import write_report as _write_report

    return _write_report(*args, **kwargs)


__all__ = ["BadExport", "Study", "StudyNotFound", "load_export", "load_study", "write_report"]
