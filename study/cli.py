"""``uwm-study``: run studies of learning rules on a laptop or a Ray cluster, and browse them.

    uwm-study check tune_configs/quickstart.yaml        # validate a spec and print its plan; starts nothing
    uwm-study run tune_configs/quickstart.yaml          # local Ray + ./mlflow.db, results in ./runs
    uwm-study status quickstart                         # points by status, best point per cell
    uwm-study resume quickstart                         # continue an interrupted study
    uwm-study ui                                        # MLflow UI of ./mlflow.db on 127.0.0.1
    uwm-study train config.yaml --set lr=0.01           # one configuration, here, with a progress bar
    uwm-study timing width-scaling                      # time every rule and width alone, for the compute fit
    uwm-study report quickstart --out reports/quickstart
    uwm-study export quickstart --out results/quickstart  # what the report reads, as files (no MLflow needed after)
    uwm-study report --from results/quickstart --out results/quickstart/md --format md

Every mistake a user can make (a bad spec field, an unreachable tracking server, an unknown
study, a trial the machine can never hold) is reported as one line, ``error: <where>: <problem>``,
with exit code 2, before any work starts.

exit codes:
  0    every point ended with results (finished, diverged or stopped early)
  1    the study stopped before the end (uwm-study resume continues it)
  2    bad input: nothing was started
  3    the study ended, but some points failed (their packs errored after every retry; uwm-study resume
       trains them again)
  130  interrupted (Ctrl-C): running points are marked interrupted; uwm-study resume continues them
"""

from __future__ import annotations

import torch  # noqa: F401,I001 - import torch first in every entry module (oneMKL load failures under `ray job submit`)

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage too)
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _set_option(p):
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field by dotted path, value read as YAML (repeatable), e.g. --set samples_per_cell=4")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="uwm-study", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="run a study from a YAML spec")
    p.add_argument("spec", help="study spec (YAML), e.g. tune_configs/quickstart.yaml")
    p.add_argument("--name", help="study name (default: the spec's name)")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start Ray locally)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    p.add_argument("--storage", help="folder or URI for Ray Tune results and checkpoints (default: ./runs)")
    p.add_argument("--fresh", action="store_true",
                   help="start the study again under the same name: delete its folder in --storage and mark its "
                        "MLflow runs deleted (other studies are not touched)")
    _set_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a spec and print its plan (cells, points, packs, resources, work); "
                                     "starts nothing")
    p.add_argument("spec", help="study spec (YAML); its fields: docs/spec.md")
    p.add_argument("--name", help="study name (default: the spec's name)")
    _set_option(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("resume", help="continue an interrupted study")
    p.add_argument("name")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start Ray locally)")
    p.add_argument("--storage", help="where the study was run (default: ./runs)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="points by status and the best point of every cell")
    p.add_argument("name")
    p.add_argument("--storage", help="where the study was run (default: ./runs)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("ui", help="serve the MLflow UI of the local store on 127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", help="store to serve (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("train", help="train one configuration here (no Ray), with a progress bar")
    p.add_argument("config", help="a TrialConfig (YAML)")
    p.add_argument("--out", default="curves.csv",
                   help="aggregated curves file (.csv or .parquet); per-seed curves go to <stem>_per_seed<suffix>")
    p.add_argument("--workers", type=int, default=1,
                   help="processes to spread the seeds over (members are independent: same numbers, more cores)")
    _set_option(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("timing", help="time the training step of every rule and width of a study, for its compute fit")
    p.add_argument("name")
    p.add_argument("--repeats", type=int, default=5, help="timed windows per rule and width (default 5)")
    p.add_argument("--seconds", type=float, default=0.2, help="about this long per window (default 0.2)")
    p.add_argument("--widths", default="",
                   help="comma-separated equal widths to time beyond the grid's, e.g. 1024 (each skipped, with a "
                        "line, where its trainers do not fit the memory)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's, else MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--storage", help="where the study was run (default: ./runs)")
    p.set_defaults(func=cmd_timing)

    p = sub.add_parser("report", help="write a study's report (analysis package)")
    p.add_argument("name", nargs="?", help="the study in the tracking store (or use --from)")
    p.add_argument("--from", dest="source", metavar="FOLDER",
                   help="read the study from an export folder (uwm-study export) instead of MLflow")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("html", "md"), default="html")
    p.add_argument("--force", action="store_true", help="replace the report already in --out")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's, else MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--storage", help="where the study was run (default: ./runs)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write what a study's report is computed from into a folder (analysis.export): "
                                      "runs, curves, per-seed curves, timing, spec; report --from reads it back")
    p.add_argument("name")
    p.add_argument("--out", required=True, help="output folder (other files there are left alone)")
    p.add_argument("--force", action="store_true", help="replace the export already in --out")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's, else MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--storage", help="where the study was run (default: ./runs)")
    p.set_defaults(func=cmd_export)
    return parser


# ----------------------------------------------------------------------------- commands


def cmd_run(args) -> int:
    from .preflight import check_input_file
    from .spec import load_spec

    check_input_file(args.spec)
    spec = load_spec(args.spec, args.set, args.name)
    from . import runner, tracking   # after the spec: a malformed one is refused before Ray and MLflow load (seconds)
    if runner.in_ray_job():   # the job's working directory is a temporary copy: results must go elsewhere
        if not (args.storage or os.environ.get("UWM_STUDY_STORAGE")):
            raise UserError("--storage", "inside a Ray job pass --storage (a folder every node can reach, or s3://...)")
        if not (args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
            raise UserError("--tracking-uri", "inside a Ray job pass --tracking-uri (an MLflow server, or an absolute "
                                              "sqlite:////path on a shared disk)")
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    storage = runner.resolve_storage(args.storage)
    runner.leave_job_working_dir()   # every path is absolute now
    return runner.run_study(spec, uri, storage, args.address, fresh=args.fresh, spec_path=args.spec)


def cmd_check(args) -> int:
    from .plan import plan_text
    from .preflight import check_input_file
    from .spec import load_spec

    check_input_file(args.spec)
    print(plan_text(load_spec(args.spec, args.set, args.name), args.spec))
    return 0


def cmd_resume(args) -> int:
    from . import runner

    storage = runner.resolve_storage(args.storage)
    runner.leave_job_working_dir()   # every path is absolute now
    return runner.resume_study(args.name, storage, args.address)


def cmd_status(args) -> int:
    from . import runner

    print(runner.status_text(args.name, runner.resolve_storage(args.storage)))
    return 0


def cmd_ui(args) -> int:
    from uwm_model import layout

    from . import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    if tracking.is_server(uri):
        print(f"{uri} is an MLflow server: open {layout.ui_url(uri)} in a browser")
        return 0
    db = tracking.sqlite_path(uri)
    if db is not None and not db.exists():
        raise UserError("tracking", f"no MLflow store at {db} yet: run a study first (uwm-study run ...)")
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if mlflow is None:
        raise UserError("ui", "the mlflow command is not installed in this environment")
    print(f"MLflow UI of {uri} at {layout.ui_url(f'http://127.0.0.1:{args.port}')}  (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call([mlflow, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)])
    except KeyboardInterrupt:
        return 0


def cmd_train(args) -> int:
    from . import control_trial
    from .preflight import check_input_file, check_output_folder
    from .spec import apply_overrides, load_trial_config, read_yaml

    check_input_file(args.config, "config")
    data = apply_overrides(read_yaml(args.config, "config"), list(args.set))
    if control_trial.is_control(data):           # task: {env: ...}: the actor-critic, not a TrialConfig
        cfg = control_trial.control_config(data)
    else:
        cfg = load_trial_config(args.config, args.set)
    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise UserError("--out", f"{out} must end in .csv or .parquet")
    if not out.parent.is_dir():
        raise UserError("--out", f"folder {out.parent} does not exist")
    check_output_folder(out.parent, "--out")
    if control_trial.is_control(data):
        control_trial.train(cfg, out)
        return 0

    import pandas as pd
    from tqdm import tqdm

    from uwm_model.parallel import run_parallel
    from uwm_model.settings import torch_settings

    if args.workers < 1:
        raise UserError("--workers", f"must be >= 1, got {args.workers}")
    if cfg.cuda_index is not None and cfg.cuda_index >= torch.cuda.device_count():
        raise UserError("device", f"{cfg.device} does not exist here ({torch.cuda.device_count()} CUDA devices); "
                                  "use device: auto or cpu")
    torch_settings(cfg.threads, cfg.device)
    rows, seed_rows, report = [], [], None
    start = time.time()
    with tqdm(total=cfg.episodes, unit="ep", desc=f"{cfg.rule} {cfg.hidden} x{cfg.seeds} seeds", dynamic_ncols=True) as bar:
        for report in run_parallel(cfg, workers=args.workers):
            pr = report.points[0]
            rows.append({"episode": report.episode, **pr.metrics})
            for seed, values in zip(cfg.member_seeds, pr.per_seed):
                seed_rows.extend({"episode": report.episode, "seed": seed, "metric": k, "value": v} for k, v in values.items())
            bar.update(report.episode - bar.n)
            bar.set_postfix(eval=f"{pr.metrics.get('eval_reward_mean', math.nan):.3f}", status=pr.status)
    per_seed = out.with_name(f"{out.stem}_per_seed{out.suffix}")
    for table, path in ((pd.DataFrame(rows), out), (pd.DataFrame(seed_rows), per_seed)):
        table.to_parquet(path, index=False) if out.suffix == ".parquet" else table.to_csv(path, index=False)
    pr = report.points[0]
    m = pr.metrics
    print(f"{cfg.rule} on the {cfg.task.describe()}, hidden {cfg.hidden}, "
          f"{cfg.seeds} seeds x {report.episode} episodes in {time.time() - start:.1f} s: status {pr.status}")
    for key, label in (("eval_reward_mean", "eval reward"), ("train_reward_mean", "train reward"),
                       ("running_reward_mean", "running reward")):
        if key in m:
            print(f"  {label:<22} {m[key]:7.3f} +- {m.get(key.replace('_mean', '_sem'), 0):.3f} (sem over seeds)")
    print(f"  {'reached threshold':<22} {m.get('threshold_reached_fraction', 0):7.0%} of seeds"
          + (f", at {m['episodes_to_threshold_mean']:.0f} episodes on average" if "episodes_to_threshold_mean" in m else ""))
    print(f"  {'diverged':<22} {m.get('diverged_fraction', 0):7.0%} of seeds")
    print(f"  {'compute':<22} {m.get('seconds_per_episode', math.nan) * 1e6:7.1f} us per episode per seed")
    print(f"curves: {out} (aggregated), {per_seed} (per seed)")
    return 0


def parse_widths(text: str) -> list[int]:
    """``--widths``: comma-separated positive widths (at most 65 536); one clear line otherwise."""
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        widths = [0]
    if any(not 0 < w <= 65536 for w in widths):
        raise UserError("--widths", f"'{text}' is not a comma-separated list of widths between 1 and 65536 (e.g. 1024,2048)")
    return widths


def cmd_timing(args) -> int:
    import yaml

    from uwm_model import layout

    from . import runner, timing, tracking
    from .spec import validate_spec

    if args.repeats < 2 or not 0 < args.seconds <= 60:
        raise UserError("--repeats" if args.repeats < 2 else "--seconds",
                        "need --repeats >= 2 (the fit's interval needs replicates) and 0 < --seconds <= 60")
    widths = parse_widths(args.widths)
    meta = runner.read_meta(runner.resolve_storage(args.storage), args.name)
    uri = args.tracking_uri or (meta or {}).get("tracking_uri") or tracking.resolve_tracking_uri(None)
    tracking.check_tracking(uri)
    client = tracking.client(uri)
    exp = client.get_experiment_by_name(args.name)
    parents = client.search_runs([exp.experiment_id], filter_string=layout.parent_filter(),
                                 order_by=["attributes.start_time ASC"], max_results=1) if exp else []
    if not parents:
        raise UserError("name", f"no study named '{args.name}' in {uri}: run it first (the timing is attached to it)")
    parent = parents[0].info.run_id
    with tempfile.TemporaryDirectory(prefix="uwm-spec-") as tmp:
        spec = validate_spec(yaml.safe_load(Path(client.download_artifacts(parent, layout.SPEC_ARTIFACT, tmp))
                                            .read_text()))
    if spec.control:
        raise UserError("name", f"study '{args.name}' is a control study: timing times the multiplexer trainer's step "
                                "(a control step's speed: benchmarks/control_throughput.py)")
    table = timing.run_timing(spec, args.repeats, args.seconds, widths=widths)
    timing.log_timing(client, parent, table)
    print(f"timing: {len(table)} windows attached to study {args.name} as {layout.TIMING}")
    return 0


def _study_store(args) -> str:
    """The tracking URI of the study ``args.name``, after checking that it holds the study (one line, exit 2,
    before anything is written; a SQLite store is never created)."""
    from . import runner, tracking

    meta = runner.read_meta(runner.resolve_storage(args.storage), args.name)
    uri = args.tracking_uri or (meta or {}).get("tracking_uri") or tracking.resolve_tracking_uri(None)
    tracking.check_tracking(uri, write=False)   # a report or an export only reads the store
    try:
        from analysis.load import StudyNotFound, find_parent_run
    except ImportError as err:
        raise UserError(args.command, f"the analysis package is not available ({err})") from None
    db = tracking.sqlite_path(uri)
    if db is not None and not db.exists():
        raise UserError("name", f"no study named '{args.name}': there is no tracking store at {db} (pass the "
                                "--tracking-uri or --storage it was run with)")
    try:
        find_parent_run(tracking.client(uri), args.name)
    except StudyNotFound as err:
        raise UserError("name", str(err).strip("'\"")) from None
    return uri


def _exported_study(folder):
    """The study of an export folder (uwm-study export), checked before any work (one line, exit 2)."""
    from analysis.export import BadExport, check_export, load_export

    try:
        check_export(folder)
        import warnings

        with warnings.catch_warnings():   # its notes are in the report
            warnings.simplefilter("ignore")
            return load_export(folder)
    except BadExport as err:
        raise UserError("--from", str(err)) from None


def cmd_report(args) -> int:
    from .preflight import check_output_folder

    if (args.name is None) == (args.source is None):
        raise UserError("report", "name a study in the tracking store or pass --from FOLDER (an export), one of the two")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise UserError("--out", f"{out} already exists and is not empty: pass --force to replace the report there, "
                                 "or choose another folder")
    check_output_folder(out, "--out")
    try:
        from analysis.report import write_report
    except ImportError as err:
        raise UserError("report", f"the analysis package is not available ({err})") from None
    if args.source is not None:
        if args.tracking_uri or args.storage:
            raise UserError("--from", "an export is read without a tracking store: drop --tracking-uri and --storage")
        study = _exported_study(args.source)
        path = write_report(study.name, args.out, args.format, study=study, attach=False)
    else:
        path = write_report(args.name, args.out, args.format, _study_store(args))
    print(f"report written: {path or args.out}")
    return 0


def cmd_export(args) -> int:
    from .preflight import check_output_folder

    out = Path(args.out)
    check_output_folder(out, "--out")
    from analysis.export import MANIFEST

    if (out / MANIFEST).exists() and not args.force:
        raise UserError("--out", f"{out} already holds an export ({MANIFEST}): pass --force to replace it, or choose "
                                 "another folder")
    uri = _study_store(args)
    import warnings

    from analysis.export import write_export
    from analysis.load import load_study

    with warnings.catch_warnings():   # the loader's notes go into the manifest
        warnings.simplefilter("ignore")
        study = load_study(args.name, uri)
    manifest = write_export(study, out)
    files = [manifest, *(out / name for name in json.loads(manifest.read_text())["files"])]
    size = sum(p.stat().st_size for p in files)
    print(f"export written: {out} ({len(study.trials)} trials, {len(study.curves)} curve rows, "
          f"{len(study.seed_curves)} per-seed rows; {len(files)} files, {size / 1e6:.2f} MB); "
          f"uwm-study report --from {out} --out DIR regenerates its report")
    return 0


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err.where}: {err.problem}" if err.where else f"error: {err.problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # before or after a study's Tune run (which handles its own Ctrl-C)
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
