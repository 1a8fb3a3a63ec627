"""Run `uwm-study` on the head node with `ray submit` (ray submit uploads and runs one script):

    ray submit deploy/cluster.yaml deploy/submit.py -- run '~/uwm-study/tune_configs/width-scaling.yaml'
    ray submit deploy/cluster.yaml deploy/submit.py -- status width-scaling

Arguments (after `--`) are those of `uwm-study`; quote paths that start with `~` so that they
reach the head unexpanded. The head's shell has the cluster's settings from deploy/cluster.yaml
(~/uwm-study.env: RAY_ADDRESS, UWM_STUDY_STORAGE, MLFLOW_TRACKING_URI), so the study joins the
running cluster and writes where every node can reach. Without them (a cluster.yaml of your own)
it joins the cluster running on this node and needs --storage and --tracking-uri.
torch is imported before anything else (see deploy/README.md).
"""

import torch  # noqa: F401  - first: torch imported lazily inside Ray drivers has failed to load oneMKL

import os
import sys

from study.cli import main

args = sys.argv[1:]
os.environ.setdefault("RAY_ADDRESS", "auto")   # the Ray this node runs, never a new local one
if args[:1] == ["run"]:
    for flag, var in (("--storage", "UWM_STUDY_STORAGE"), ("--tracking-uri", "MLFLOW_TRACKING_URI")):
        if not (var in os.environ or any(a == flag or a.startswith(flag + "=") for a in args)):
            print(f"error: {flag}: on a cluster pass {flag} (or set {var} on the head, as deploy/cluster.yaml "
                  "does in ~/uwm-study.env): ./runs and ./mlflow.db are not shared", file=sys.stderr)
            sys.exit(2)
sys.exit(main(args))
