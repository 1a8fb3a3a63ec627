"""A study as files: everything its report is computed from, exported from MLflow and read back without it.

    from analysis.export import write_export, load_export
    write_export(load_study("width-scaling"), "results/width-scaling")   # uwm-study export width-scaling --out ...
    study = load_export("results/width-scaling")                          # uwm-study report --from ...

One code path: :func:`analysis.load.load_study` reads the child runs (params, tags, latest metrics), the
metric histories, the per-seed curves, the timing run and the spec from MLflow; the export writes exactly
those sources, and :func:`load_export` builds the :class:`~analysis.load.Study` from them with the same
functions (:func:`~analysis.load.trials_table` turns the run records into ``trials``,
:func:`~analysis.load.timing_table` names the timing rows' rules), so a report read from an export equals
the report read from the store, CSV for CSV.

Files (format :data:`FORMAT_VERSION`; no pickle anywhere):

``export.json``          the manifest: format version, study name, parent run id, experiment id, the parent
                         run's tags, the spec, the loader's notes, the code that ran the study (tags
                         ``uwm.git_commit``, ``uwm.version``) and the package version that exported it, and
                         per file its row count and sha256.
``runs.json.gz``         one record per child run, as MLflow holds it: run_id, run_name, status, start_time
                         and end_time (ms since the epoch), params and tags (strings), metrics (the latest
                         value of each; JSON numbers, ``NaN``/``Infinity`` as Python's json writes them).
``curves.parquet``       the aggregate metric histories: run_id, episode, metric, value.
``seed_curves.parquet``  the per-seed histories (each run's ``curves_per_seed.csv``): run_id, episode, seed,
                         metric, value.
``timing.parquet``       the timing run's rows as ``uwm-study timing`` wrote them (only when the study has one).

Parquet (pyarrow, a dependency already) keeps float64 values bit for bit and dictionary-encodes the run ids
and metric names, so the long tables take a few bytes a value.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from uwm_model import layout

from .load import Study, timing_table, trials_table

FORMAT_VERSION = 1
MANIFEST = "export.json"
RUNS, CURVES, SEED_CURVES, TIMING = "runs.json.gz", "curves.parquet", "seed_curves.parquet", "timing.parquet"
TABLES = {CURVES: "curves", SEED_CURVES: "seed_curves"}


class BadExport(ValueError):
    """An export folder that cannot be read: missing, incomplete, corrupt or of another format version.
    Its message is one line naming the file and the problem."""


# ----------------------------------------------------------------------------- writing


def _run_record(run) -> dict:
    info, data = run.info, run.data
    return {"run_id": info.run_id, "run_name": info.run_name, "status": info.status,
            "start_time": info.start_time, "end_time": info.end_time,
            "params": dict(data.params), "tags": dict(data.tags), "metrics": dict(data.metrics)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_export(study: Study, out_dir) -> Path:
    """Write ``study`` (loaded from MLflow by :func:`~analysis.load.load_study` with its defaults: every
    trial, every metric, the per-seed curves) into ``out_dir`` (created; other files there are left alone:
    the manifest names the export's files) and return the manifest's path."""
    if study.runs is None:   # a selection's trials would not be rebuilt as they are (columns follow the runs)
        raise ValueError("only a whole study exports (as load_study or load_export returns it), not a selection")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    dtypes: dict[str, dict[str, str]] = {}
    # mtime=0: the same study exports to the same bytes
    with open(out / RUNS, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(json.dumps([_run_record(r) for r in study.runs]).encode())   # key order: the columns' order
    rows[RUNS] = len(study.runs)
    tables = {CURVES: study.curves, SEED_CURVES: study.seed_curves}
    timing = study.timing.drop(columns="rule_variant", errors="ignore")   # the derived column is rebuilt on reading
    if len(timing):
        tables[TIMING] = timing
    for name, table in tables.items():
        table.to_parquet(out / name, index=False, engine="pyarrow", compression="zstd")
        rows[name] = len(table)
        dtypes[name] = {str(c): str(t) for c, t in table.dtypes.items()}   # parquet reads text back as pandas' str
    from importlib.metadata import PackageNotFoundError, version

    try:
        exporter = version("uwm-study")
    except PackageNotFoundError:
        exporter = "unknown"
    manifest = {
        "format_version": FORMAT_VERSION,
        "study": study.name, "parent_run_id": study.parent_run_id, "experiment_id": str(study.experiment_id),
        "code": {"git_commit": study.tags.get(layout.GIT_COMMIT, "unknown"),
                 "version": study.tags.get(layout.VERSION, "unknown"), "exported_with": exporter},
        "files": {name: {"rows": n, "sha256": _sha256(out / name), **({"dtypes": dtypes[name]} if name in dtypes else {})}
                  for name, n in rows.items()},
        "tags": study.tags, "spec": study.spec, "notes": study.notes,
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- reading


def check_export(folder) -> dict:
    """The manifest of an export folder, after checking everything that can be checked before reading the
    tables: the folder and manifest exist, the manifest is JSON of this format version, every file it lists
    is there with the bytes it was written with (sha256). Raises :class:`BadExport` (one line)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadExport(f"{folder}: no such folder (an export folder holds {MANIFEST}; write one with "
                        "uwm-study export STUDY --out FOLDER)")
    path = folder / MANIFEST
    if not path.is_file():
        raise BadExport(f"{path}: no such file: {folder} is not a study export (uwm-study export STUDY --out FOLDER)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadExport(f"{path}: not a readable JSON manifest ({str(err).splitlines()[0]})") from None
    if not isinstance(manifest, dict):
        raise BadExport(f"{path}: not an export manifest (a JSON object)")
    got = manifest.get("format_version")
    if got != FORMAT_VERSION:
        raise BadExport(f"{path}: export format version {got!r}, this code reads version {FORMAT_VERSION} "
                        "(export the study again with this code)")
    missing = [k for k in ("study", "parent_run_id", "experiment_id", "files", "tags", "notes") if k not in manifest]
    files = manifest.get("files")
    if missing or not isinstance(files, dict) or RUNS not in files or not set(TABLES) <= set(files):
        raise BadExport(f"{path}: incomplete manifest (missing {', '.join(missing) or 'file entries'})")
    for name, entry in files.items():
        file = folder / name
        if not file.is_file():
            raise BadExport(f"{file}: missing (listed in {MANIFEST})")
        if _sha256(file) != entry.get("sha256"):
            raise BadExport(f"{file}: corrupt or changed since the export (its sha256 differs from {MANIFEST}'s)")
    return manifest


def _run(record: dict) -> SimpleNamespace:
    """A run record in the shape of an MLflow ``Run`` (the attributes :func:`~analysis.load.trials_table`
    reads)."""
    info = SimpleNamespace(run_id=record["run_id"], run_name=record["run_name"], status=record["status"],
                           start_time=record["start_time"], end_time=record["end_time"])
    return SimpleNamespace(info=info, data=SimpleNamespace(params=record["params"], tags=record["tags"],
                                                           metrics=record["metrics"]))


def load_export(folder) -> Study:
    """The :class:`~analysis.load.Study` of an export folder, as :func:`~analysis.load.load_study` returned it
    when it was exported (``tracking_uri`` is None: there is no store). Raises :class:`BadExport` (one line)."""
    folder = Path(folder)
    manifest = check_export(folder)
    try:
        with gzip.open(folder / RUNS, "rb") as f:
            runs = [_run(r) for r in json.loads(f.read())]
        tables = {name: pd.read_parquet(folder / name, engine="pyarrow").astype(entry.get("dtypes", {}))
                  for name, entry in manifest["files"].items() if name != RUNS}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BadExport(f"{folder}: cannot read the export ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    for name, table in tables.items():
        if len(table) != manifest["files"][name]["rows"]:
            raise BadExport(f"{folder / name}: {len(table)} rows, the manifest says {manifest['files'][name]['rows']}")
    trials, _ = trials_table(runs)   # its notes were the exporting load's too: they are in the manifest
    notes = list(manifest["notes"])
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return Study(name=manifest["study"], parent_run_id=manifest["parent_run_id"],
                 experiment_id=manifest["experiment_id"], tracking_uri=None, tags=manifest["tags"],
                 spec=manifest.get("spec"), trials=trials, curves=tables[CURVES], seed_curves=tables[SEED_CURVES],
                 notes=notes, timing=timing_table(tables.get(TIMING)), runs=runs)
