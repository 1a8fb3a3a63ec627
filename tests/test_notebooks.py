"""The analysis notebooks are committed with their outputs (from the synthetic demo study, written and run by
`./dev notebooks`): the saved outputs belong to the code beside them, every code cell ran, none raised, and
warnings are printed, not swallowed. (tests/test_analysis_e2e.py executes them against a real study.)"""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

FOLDER = Path(__file__).resolve().parent.parent / "analysis" / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
spec = importlib.util.spec_from_file_location("regenerate", FOLDER / "regenerate.py")
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"variance_vs_speed", "scaling", "norm_stress"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_carries_current_outputs_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    saved = nb.metadata.get(regenerate.METADATA, {})
    assert saved.get("code_sha256") == regenerate.code_sha256(nb), \
        f"{path.name}: its code changed since its outputs were saved: run ./dev notebooks"
    assert regenerate.DEMO in saved.get("outputs_from", "")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{path.name}: a code cell was not executed"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], path.name
    text = json.dumps([o.get("text", "") for o in outputs if o.output_type == "stream"])
    assert f"study '{regenerate.DEMO}'" in text and "trials selected" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no figure saved"
    assert any("text/html" in o.get("data", {}) for o in outputs), f"{path.name}: no table saved"
    source = "\n".join(c.source for c in code)
    assert "catch_warnings" not in source and "simplefilter(\"ignore\"" not in source   # warnings are shown
    assert "warnings.showwarning" in source and "SELECT" in source
    assert "synthetic" in nb.cells[0].source   # the saved outputs say where they come from
