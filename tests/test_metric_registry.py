"""Every metric the trainer reports is named in the registry (uwm_model.metrics) that the study spec
validates against and the analysis reads; names outside it are refused."""

from uwm_model import metrics
from uwm_model.config import TrialConfig
from uwm_model.trainer import Trainer


def test_every_reported_metric_is_in_the_registry():
    cfg = TrialConfig(task={"address_bits": 1}, hidden=[3, 2], rule="wm", episodes=64, report_every=32, seeds=3,
                      lr=5.0, optimizer="sgd", threshold=-1.0, threshold_window=8, eval_episodes=8, compile="off",
                      device="cpu", probe={"samples": 4, "cross_rule": True, "rules": [{"rule": "uwm"}, {"rule": "wm", "options": {"p": 3}}]})
    report = list(Trainer(cfg).run())[-1]
    point = report.points[0]
    assert point.status in (metrics.FINISHED, metrics.DIVERGED)
    per_seed = {k for row in point.per_seed for k in row}
    # the run reaches the (trivial) threshold, so every kind of name shows up, layers 1 and 2 included
    assert {"episodes_to_threshold", "probe_uwm_var_l2", "probe_wm_p-3_bias_l1", "max_abs_outgoing_l2"} <= per_seed
    assert all(metrics.is_point_metric(f"{name}_{kind}") for name in per_seed for kind in metrics.AGGREGATES)
    assert all(metrics.is_point_metric(name) for name in point.metrics), sorted(point.metrics)
    assert set(metrics.PER_POINT) <= set(point.metrics)
    for unknown in ("eval_rewrd_mean", "eval_reward", "probe_var_l1_median", "diverged_fraction_mean"):
        assert not metrics.is_point_metric(unknown)


def test_the_registry_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, uwm_model.metrics, uwm_model.layout, analysis.load; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
