"""Run `uwm-study` on the head node with `ray submit` (ray submit uploads and runs one script):

    ray submit deploy/cluster.yaml deploy/submit.py run ~/uwm-study/tune_configs/width-scaling.yaml
    ray submit deploy/cluster.yaml deploy/submit.py status width-scaling

Arguments are those of `uwm-study`. torch is imported before anything else (see deploy/README.md).
"""

import torch  # noqa: F401  - first: torch imported lazily inside Ray drivers has failed to load oneMKL

import sys

from study.cli import main

sys.exit(main(sys.argv[1:]))
