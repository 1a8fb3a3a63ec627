"""Re-train one published point of a study and compare its per-seed curves with the published ones, bit for bit.

    python results/reproduce.py config  TRACKING_URI STUDY RUN_NAME_PREFIX > point.yaml
    uwm-study train point.yaml --out repro.csv          # writes repro_per_seed.csv
    python results/reproduce.py compare TRACKING_URI STUDY RUN_NAME_PREFIX repro_per_seed.csv

``config`` rebuilds the point's TrialConfig from the parameters its MLflow child run logged (floats are
logged as their shortest repr, so they read back exactly), with ``compile`` pinned to the path its pack took.
``compare`` looks every published value of the run's ``curves_per_seed.csv`` (episode, seed, metric) up in the
re-run: a re-run by newer code may log more metrics, never different values. Exit status 0 when all are equal.
Training a point alone gives the numbers it had inside its pack: each member's draws depend only on its own
seed, and its arithmetic only on its own entries.
"""

from __future__ import annotations

import json
import sys
import tempfile

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient


def published_run(uri: str, study: str, prefix: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(study)
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=50000)
            if "mlflow.parentRunId" in r.data.tags and r.info.run_name.startswith(prefix)]
    if len(runs) != 1:
        sys.exit(f"error: {len(runs)} child runs of study {study} have names starting with {prefix!r}; name one")
    return client, runs[0]


def point_config(params: dict[str, str]) -> dict:
    """The nested TrialConfig of a child run's flat parameters (cell.* are labels, not config)."""
    config: dict = {}
    for key, text in sorted(params.items()):
        if key.startswith("cell."):
            continue
        try:
            value = json.loads(text)          # numbers as logged ("1e-08" is not a float to YAML 1.1), lists, null
        except json.JSONDecodeError:
            value = yaml.safe_load(text)      # bare words: auto, none, pm1
        *path, leaf = key.split(".")
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def pack_compiled(client: MlflowClient, run) -> bool:
    """Whether the run's pack compiled its steps: ``compile: auto`` decides by the population's size, and the
    compiled and eager paths round differently in float32, so a point re-trained alone must take its pack's
    path. The pack is every trial run of the study tagged with the same ``uwm.pack``."""
    from uwm_model import Trainer, TrialConfig

    pack = client.search_runs([run.info.experiment_id], max_results=50000,
                              filter_string=f"tags.`uwm.pack` = '{run.data.tags['uwm.pack']}'")
    points = [TrialConfig.model_validate(point_config(r.data.params)) for r in pack
              if r.data.tags.get("uwm.role") == "trial"]
    return Trainer(points).compiles()


def main() -> None:
    command, uri, study, prefix, *rest = sys.argv[1:]
    client, run = published_run(uri, study, prefix)
    if command == "config":
        config = point_config(run.data.params)
        config["compile"] = "on" if pack_compiled(client, run) else "off"
        print(f"# point {run.info.run_name} of study {study} (run {run.info.run_id}); compile pinned to its pack's path")
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return
    published = pd.read_csv(client.download_artifacts(run.info.run_id, "curves_per_seed.csv", tempfile.mkdtemp()))
    repro = pd.read_csv(rest[0])
    both = published.merge(repro, on=["episode", "seed", "metric"], how="left", suffixes=("", "_repro"),
                           indicator=True)
    found = both["_merge"].eq("both")
    # a value NaN in both (a probe at a reward level the seed never reached) is the same value
    equal = found & (both["value"].eq(both["value_repro"]) | (both["value"].isna() & both["value_repro"].isna()))
    print(f"{run.info.run_name}: {int(equal.sum())} of {len(both)} published values "
          f"({published['metric'].nunique()} metrics x {published['seed'].nunique()} seeds x "
          f"{published['episode'].nunique()} reports) equal in the re-run; {int((~found).sum())} missing there")
    sys.exit(0 if equal.all() else 1)


if __name__ == "__main__":
    main()
