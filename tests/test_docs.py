"""The docs in docs/ name every contract they describe, so a new metric, tag or artifact that is not
documented fails here; and nothing in the repository points outside it."""

import re
import subprocess
from pathlib import Path

from uwm_model import layout, metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_the_metric_glossary_lists_every_registered_metric():
    text = (DOCS / "metrics.md").read_text()
    for name in [*metrics.PER_SEED, *metrics.PER_POINT, *(f"_{k}" for k in metrics.AGGREGATES)]:
        assert f"`{name}`" in text, f"docs/metrics.md does not list {name}"


def test_the_layout_page_names_every_tag_status_and_artifact():
    text = (DOCS / "mlflow-layout.md").read_text()
    names = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)}
    names |= set(layout.ENDED)
    for name in sorted(names):
        assert name in text, f"docs/mlflow-layout.md does not mention {name!r}"


def test_nothing_in_the_repository_points_outside_it():
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.ipynb", "*.yaml"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    # the developers' folder beside the checkout, spelled in pieces so this file does not match itself
    outside = re.compile("|".join([r"\.\./" + "shared", "shared" + "/docs", "shared" + "/tools"]))
    offenders = [f for f in files if outside.search((ROOT / f).read_text(errors="replace"))]
    assert not offenders, offenders


def test_relative_links_in_the_docs_and_readme_resolve():
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
