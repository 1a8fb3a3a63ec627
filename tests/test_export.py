"""A study exported from MLflow to files (analysis.export, uwm-study export) gives the same report as the store:
the same tables read back, every CSV byte for byte; an export in the repository regenerates its published CSVs;
a broken export is refused in one line before any work.

The store is a real MLflow SQLite file written by analysis.synthetic (the study runner's layout: a failed
trial, a duplicate run of a point, confirm points, per-seed curves) plus a timing run as uwm-study timing
attaches it."""

import gzip
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.export import FORMAT_VERSION, MANIFEST, RUNS, SEED_CURVES, load_export, write_export
from analysis.load import load_study
from analysis.report import write_report
from analysis.synthetic import BEST_LR, write_synthetic_study
from study import cli

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "data" / "exported-study"   # made by its make.py
NAME = "tiny"
REGENERATE = "uwm-study report --from {src} --out {src}/md --format md --force"   # a results/ study
REGENERATE_FIXTURE = "./dev python tests/data/exported-study/make.py"


def _timing_csv() -> str:
    """Timing rows as study.timing.run_timing writes them (planted t = 1e-4 * width)."""
    rows = [{"rule": r, "rule_options": "{}", "baseline": "none", "hidden": f"[{w}, {w}]", "width": w, "seeds": 1,
             "device": "cpu", "repeat": k, "position": i, "steps": 10, "seconds_per_episode": 1e-4 * w * (1 + k / 10)}
            for k in range(3) for i, (r, w) in enumerate((r, w) for r in ("reinforce", "uwm") for w in (8, 32))]
    buffer = io.StringIO()
    pd.DataFrame(rows).to_csv(buffer, index=False)
    return buffer.getvalue()


def make_study(uri: str) -> None:
    from mlflow.tracking import MlflowClient

    s = write_synthetic_study(uri, name=NAME, rules=("reinforce", "uwm"), widths=(8, 32), norms=(None,),
                              lrs=(0.01, BEST_LR), seeds=4, episodes=2000, report_every=500, extras=True, seed=0)
    MlflowClient(uri).log_text(s.parent_run_id, _timing_csv(), "timing.csv")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_study(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = load_study(NAME, uri)
    return uri, study, root


@pytest.fixture(scope="module")
def exported(store):
    uri, _, root = store
    folder = root / "exported"
    assert cli.main(["export", NAME, "--out", str(folder), "--tracking-uri", uri]) == 0
    return folder


def _csvs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


def test_an_export_reads_back_as_the_study_loaded_from_mlflow(store, exported):
    _, study, _ = store
    manifest = json.loads((exported / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["study"] == NAME
    assert manifest["code"]["git_commit"] == "synthetic"       # the code that ran the study (its parent's tags)
    assert manifest["files"][RUNS]["rows"] == len(study.runs) == len(study.trials) + 1   # + the dropped duplicate
    assert manifest["files"][SEED_CURVES]["rows"] == len(study.seed_curves) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = load_export(exported)
    for table in ("trials", "curves", "seed_curves", "timing"):
        pd.testing.assert_frame_equal(getattr(back, table), getattr(study, table), check_exact=True, obj=table)
    assert len(back.timing) == 12 and set(back.timing["rule_variant"]) == {"reinforce", "uwm"}
    assert (back.name, back.parent_run_id, back.experiment_id) == (study.name, study.parent_run_id, study.experiment_id)
    assert back.tags == study.tags and back.spec == study.spec and back.notes == study.notes
    assert any("duplicate" in n for n in back.notes) and back.tracking_uri is None
    assert sum(p.stat().st_size for p in exported.iterdir()) < 200_000


def test_the_report_from_an_export_equals_the_report_from_mlflow(store, exported, tmp_path):
    uri, study, _ = store
    write_report(NAME, tmp_path / "mlflow", "md", study=study, attach=False, progress=lambda _: None)
    assert cli.main(["report", "--from", str(exported), "--out", str(tmp_path / "files"), "--format", "md"]) == 0
    a, b = _csvs(tmp_path / "mlflow"), _csvs(tmp_path / "files")
    assert len(a) >= 10 and a.keys() == b.keys()
    assert [n for n in a if a[n] != b[n]] == []
    page = [(tmp_path / d / "report.md").read_text().splitlines() for d in ("mlflow", "files")]
    strip = [[line for line in p if "generated" not in line] for p in page]   # the page's time stamp differs
    assert strip[0] == strip[1]


def test_an_export_is_the_same_bytes_every_time(store, exported, tmp_path):
    _, study, _ = store
    write_export(study, tmp_path)
    for name in json.loads((exported / MANIFEST).read_text())["files"]:
        assert (tmp_path / name).read_bytes() == (exported / name).read_bytes(), name


def test_only_a_whole_study_exports(store, tmp_path):
    """A selection's trials would be rebuilt from its runs with other columns (they follow the runs): refused."""
    _, study, _ = store
    with pytest.raises(ValueError, match="only a whole study exports"):
        write_export(study.select("rule == 'uwm'"), tmp_path)
    assert not any(tmp_path.iterdir())


def _numeric_equal(ours: pd.DataFrame, published: pd.DataFrame) -> list[str]:
    """Columns that differ: text exactly, numbers to 1e-9 relative (a library's last-digit rounding)."""
    if list(ours.columns) != list(published.columns) or len(ours) != len(published):
        return [f"shape {ours.shape} vs {published.shape} or columns differ"]
    bad = []
    for c in ours.columns:
        x, y = ours[c], published[c]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            if not np.allclose(x.to_numpy(float), y.to_numpy(float), rtol=1e-9, atol=0, equal_nan=True):
                bad.append(c)
        elif not x.astype(str).equals(y.astype(str)):
            bad.append(c)
    return bad


def _published_exports():
    found = [pytest.param(FIXTURE, id="tests/data/exported-study")]
    found += [pytest.param(p.parent, id=str(p.parent.relative_to(ROOT)), marks=pytest.mark.slow)
              for p in sorted((ROOT / "results").glob(f"*/{MANIFEST}"))]
    return found


@pytest.mark.parametrize("folder", _published_exports())
def test_a_published_export_regenerates_its_csvs(folder, tmp_path):
    """Every CSV in the folder's md/ is what the report of its export computes now. When the analysis changes
    on purpose, regenerate the folder's md/ with the command in the failure message and commit it."""
    published = {p.name: p for p in sorted((folder / "md").glob("*.csv"))}
    assert published, f"{folder}/md holds no CSV"
    assert cli.main(["report", "--from", str(folder), "--out", str(tmp_path), "--format", "md"]) == 0
    ours = {p.name: p for p in sorted(tmp_path.glob("*.csv"))}
    again = REGENERATE_FIXTURE if folder == FIXTURE else REGENERATE.format(src=folder.relative_to(ROOT))
    hint = f"; if the analysis changed on purpose, regenerate with: {again}"
    assert ours.keys() == published.keys(), f"CSV files differ{hint}"
    for name in ours:
        if ours[name].read_bytes() == published[name].read_bytes():
            continue
        read = [pd.read_csv(p) if p.stat().st_size > 1 else pd.DataFrame() for p in (ours[name], published[name])]
        assert _numeric_equal(*read) == [], f"{name} differs{hint}"


@pytest.mark.slow
@pytest.mark.parametrize("folder", [p for p in _published_exports() if (p.values[0] / "html" / "report.html").is_file()])
def test_a_published_report_reads_in_chromium(folder, tmp_path):
    """The published HTML report, as a reader opens it (Chromium at 1200 × 900): no sideways scroll, no table
    or figure wider than the text column, each question's verdict on the first screen, every CSV it links
    published beside it, and its glance rows word for word those of the published Markdown report (the two
    renderings of the same answers: one regenerated without the other would differ)."""
    import re

    from test_analysis_study import chromium_layout

    path = folder / "html" / "report.html"
    page = chromium_layout(path, tmp_path)
    assert page["scroll"] <= page["inner"], "the page scrolls sideways"
    assert max(page["tables"]) <= page["content"] + 1, "a table is wider than the text column"
    assert all(img["w"] <= page["content"] + 1 for img in page["imgs"]), page["imgs"]
    assert all(width <= page["content"] + 1 for width in page["svgs"]), page["svgs"]
    assert page["firstRow"] and max(page["firstRow"].values()) < 900, page["firstRow"]
    linked = set(re.findall(r"<a href='([^'#/]+\.csv)'", path.read_text()))
    assert linked and all((folder / "html" / name).is_file() for name in linked), linked
    assert len(page["cells"]) >= 4, page["cells"]
    markdown = " ".join((folder / "md" / "report.md").read_text().replace("\\|", "|").split())
    for cell in page["cells"]:
        assert " ".join(cell.split()) in markdown, cell


# ----------------------------------------------------------------------------- bad input


def _broken(exported: Path, tmp_path: Path, how: str) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(exported, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if how == "no manifest":
        (folder / MANIFEST).unlink()
    elif how == "manifest not json":
        (folder / MANIFEST).write_text("{ not json")
    elif how == "other format version":
        manifest["format_version"] = FORMAT_VERSION + 1
        (folder / MANIFEST).write_text(json.dumps(manifest))
    elif how == "file missing":
        (folder / SEED_CURVES).unlink()
    elif how == "file corrupt":
        data = bytearray((folder / SEED_CURVES).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / SEED_CURVES).write_bytes(bytes(data))
    elif how == "runs truncated":
        (folder / RUNS).write_bytes(gzip.compress(b"[{\"run_id\": "))
    return folder


@pytest.mark.parametrize("how, says", [
    ("no folder", "no such folder"),
    ("no manifest", "is not a study export"),
    ("manifest not json", "not a readable JSON manifest"),
    ("other format version", f"export format version {FORMAT_VERSION + 1}, this code reads version {FORMAT_VERSION}"),
    ("file missing", f"{SEED_CURVES}: missing"),
    ("file corrupt", "corrupt or changed since the export"),
    ("runs truncated", "corrupt or changed since the export"),
])
def test_a_broken_export_is_refused_in_one_line_before_any_work(exported, tmp_path, capsys, how, says):
    folder = tmp_path / "nowhere" if how == "no folder" else _broken(exported, tmp_path, how)
    out = tmp_path / "report"
    capsys.readouterr()
    assert cli.main(["report", "--from", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --from: ") and says in err and "\n" not in err, err
    assert not out.exists()


def test_report_takes_a_study_or_an_export_and_export_keeps_an_earlier_one(store, exported, tmp_path, capsys):
    uri, _, _ = store
    out = str(tmp_path / "r")
    assert cli.main(["report", NAME, "--from", str(exported), "--out", out]) == 2
    assert cli.main(["report", "--out", out]) == 2
    assert cli.main(["report", "--from", str(exported), "--tracking-uri", uri, "--out", out]) == 2
    assert cli.main(["export", NAME, "--out", str(exported), "--tracking-uri", uri]) == 2     # already there
    assert cli.main(["export", "nope", "--out", str(tmp_path / "e"), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("error: ") for line in err), err
    assert "already holds an export" in err[3] and "no study named 'nope'" in err[4]
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()
