"""Studies of learning rules: Ray Tune + Optuna + MLflow over ``uwm_model``.

- :mod:`study.spec`      StudySpec: the YAML study (base TrialConfig, grid, per-cell search), validated up front
- :mod:`study.searcher`  the Ray Tune searcher: one Optuna study per grid cell, points packed into trials
- :mod:`study.trainable` one trial = one pack of points trained as one population; per-point MLflow runs
- :mod:`study.stopping`  member-level early stopping (ASHA or median rule) through a per-study rung board
- :mod:`study.tracking`  the MLflow layout: a parent run per study, a child run per point, no duplicates
- :mod:`study.runner`    run / resume / status: local Ray or a cluster, storage, progress, summaries
- :mod:`study.preflight` paths and stores checked before anything starts (one line, exit 2, nothing created)
- :mod:`study.session`   a local Ray session's processes, and the watchdog that ends them should the driver die
- :mod:`study.plan`      ``uwm-study check``: a spec's plan, nothing started
- :mod:`study.spec_doc`  docs/spec.md generated from the spec's fields
- :mod:`study.cli`       the ``uwm-study`` command

Imports ``uwm_model``; ``uwm_model`` never imports this package.
"""
