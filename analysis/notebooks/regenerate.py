"""Regenerate the outputs saved in the analysis notebooks: ``./dev notebooks``.

Writes ``demo-synthetic``, a small synthetic study with planted answers (:mod:`analysis.synthetic`: three
rules, three widths, two initial outgoing norms, three learning rates and a confirm point per cell, four
seeds), to a temporary SQLite store, executes every notebook in this folder against it (one kernel each,
as a reader would run it), and saves each with its outputs and, in its metadata, the SHA-256 of its code
cells (``tests/test_notebooks.py`` checks that the saved outputs belong to the code beside them and carry
no error). Exit 1 if a notebook raised.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEMO = "demo-synthetic"
DEMO_STUDY = dict(name=DEMO, rules=("reinforce", "hwm", "uwm"), widths=(8, 16, 32), norms=(1.0, 4.0),
                  lrs=(0.01, 0.03, 0.1), seeds=4, episodes=4000, report_every=400, seed=0)
METADATA = "uwm"   # notebook metadata key: {"outputs_from": ..., "code_sha256": ...}


def code_sha256(nb) -> str:
    """The hash of a notebook's code cells, in order: what its saved outputs were computed from."""
    code = "\n\x00\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from analysis.synthetic import write_synthetic_study

    notebooks = sorted(HERE.glob("*.ipynb"))
    failed = []
    with tempfile.TemporaryDirectory(prefix="uwm-demo-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        start = time.time()
        write_synthetic_study(uri, **DEMO_STUDY)
        print(f"wrote the synthetic study {DEMO} in {time.time() - start:.0f} s", flush=True)
        os.environ.update({"UWM_STUDY": DEMO, "MLFLOW_TRACKING_URI": uri, "UWM_N_BOOT": "2000",
                           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        os.environ.pop("UWM_SELECT", None)
        for path in notebooks:
            start = time.time()
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                                    resources={"metadata": {"path": tmp}})
            try:
                client.execute()
            except Exception as err:  # noqa: BLE001 - the notebook is saved with its error, and the run fails
                failed.append(f"{path.name}: {type(err).__name__}")
            nb.metadata[METADATA] = {"outputs_from": f"{DEMO} (analysis/synthetic.py; ./dev notebooks)",
                                     "code_sha256": code_sha256(nb)}
            nbformat.write(nb, path)
            print(f"{path.relative_to(ROOT)}: executed in {time.time() - start:.0f} s", flush=True)
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
