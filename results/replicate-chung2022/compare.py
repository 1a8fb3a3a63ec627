"""Compare the per-seed curves of the wm cell in the published store with a re-run's (bit for bit).

    python results/replicate-chung2022/compare.py PUBLISHED_TRACKING_URI REPRO_TRACKING_URI [REPRO_EXPERIMENT]

Every value of ``curves_per_seed.csv`` (episode, seed, metric) of the published run is looked up in the
re-run; the re-run may log more metrics (newer code), never different values.
"""

import sys
import tempfile

import pandas as pd
from mlflow.tracking import MlflowClient


def wm_curves(uri: str, experiment: str) -> pd.DataFrame:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = [r for r in client.search_runs([exp.experiment_id])
            if r.data.params.get("rule") == "wm" and "mlflow.parentRunId" in r.data.tags]
    (run,) = runs
    return pd.read_csv(client.download_artifacts(run.info.run_id, "curves_per_seed.csv", tempfile.mkdtemp()))


published = wm_curves(sys.argv[1], "replicate-chung2022")
repro = wm_curves(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "repro-wm")
both = published.merge(repro, on=["episode", "seed", "metric"], how="left", suffixes=("", "_repro"))
equal = both["value"].eq(both["value_repro"])
print(f"{int(equal.sum())} of {len(both)} published values ({published['metric'].nunique()} metrics) equal in the re-run")
sys.exit(0 if equal.all() else 1)
