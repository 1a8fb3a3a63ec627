"""Dataset tasks (uwm_model.datasets): the fixed split, what training and evaluation read, packing, learning."""

import numpy as np
import pytest
import torch

import uwm_model as um
from uwm_model.datasets import DatasetTask, load_split, split_sizes
from uwm_model.tasks import make_task

from test_packing import assert_point_equals_alone
from test_study_run import ROOT, procs  # noqa: F401  (a fixture)

TINY = dict(hidden=[6, 4], batch_size=4, episodes=160, report_every=80, threshold_window=16, device="cpu",
            compile="off", probe={"enabled": True, "samples": 8, "cross_rule": True})


@pytest.mark.slow
def test_splits_are_fixed_stratified_and_disjoint():
    for name, sizes, per_digit in (("mnist5k", (3500, 500, 1000), (50, 100)), ("digits", (1259, 179, 359), None)):
        split = load_split(name)
        assert (len(split.y_train), len(split.y_val), len(split.y_test)) == sizes
        assert split.x_train.min() >= 0 and split.x_train.max() <= 1
        val, test = np.bincount(split.y_val, minlength=10), np.bincount(split.y_test, minlength=10)
        if per_digit:
            assert (val == per_digit[0]).all() and (test == per_digit[1]).all()
        totals = val + test + np.bincount(split.y_train, minlength=10)
        assert np.abs(test - 0.2 * totals).max() <= 0.5             # 20% of every digit, rounded
        assert np.abs(val - 0.1 * totals).max() <= 0.5              # 10% of every digit, rounded
        # no image is in two splits (the datasets hold no duplicates)
        rows = [{row.tobytes() for row in x} for x in (split.x_train, split.x_val, split.x_test)]
        assert sum(map(len, rows)) == len(set().union(*rows)) == sum(sizes)
    load_split.cache_clear()
    assert np.array_equal(load_split("digits").y_test, split.y_test)   # reproducible from the seed alone
    assert np.array_equal(load_split("digits").y_val, split.y_val)


def test_the_test_split_is_the_one_before_the_validation_split_existed():
    """The validation images come out of the training split only: the test split is the first 20% of each
    digit's seeded permutation, as before there was a validation split (the published test accuracies and
    the reference points are on the same images)."""
    from sklearn.datasets import load_digits

    y = load_digits().target
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == d))[: round(0.2 * (y == d).sum())] for d in range(10)])
    assert np.array_equal(np.sort(y[test]), np.sort(load_split("digits").y_test))
    assert np.array_equal(np.sort(test), np.sort(np.flatnonzero(np.isin(np.arange(len(y)), test))))
    x = load_digits().data / 16.0
    assert {r.tobytes() for r in x[test]} == {r.tobytes() for r in load_split("digits").x_test}


def test_classes_and_pixels_options():
    binary = make_task(um.TaskConfig(dataset="digits", classes=[3, 8], pixels="binary"))
    assert binary.output_size == 1 and binary.output_units.name == "bernoulli"
    assert set(binary.x_train.unique().tolist()) == {0.0, 1.0}
    assert set(binary.y_train.tolist()) == {0, 1}
    split = load_split("digits")
    assert len(binary.y_train) == int(((split.y_train == 3) | (split.y_train == 8)).sum())
    assert (len(binary.y_train), len(binary.y_val), len(binary.y_test)) == split_sizes("digits", [3, 8])
    groups = make_task(um.TaskConfig(dataset="digits", classes=[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]))
    assert len(groups.y_train) == len(split.y_train) and groups.classes == 2
    ten = make_task(um.TaskConfig(dataset="digits"))
    assert ten.output_size == 10 and ten.output_units.name == "categorical"
    assert ten.chance() == pytest.approx(np.bincount(split.y_test).max() / 359)


class RecordingTask(DatasetTask):
    """A planted dataset task that records every input it hands out for training."""

    seen: list

    def sample(self, u, dtype):
        x, y = super().sample(u, dtype)
        self.seen.append(x.double())
        return x, y


def test_training_draws_only_training_images_evaluation_the_validation_split_and_the_test_split_only_reports():
    """Planted splits: training images hold values in [0, 0.5), every validation image is the distinct value
    0.6, every test image 0.75. Training, the probes and the initial probe must never see 0.6 or 0.75; the eval
    reward (what a study tunes on) reads every validation image, and test_reward every test image."""
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = torch.rand(40, 64, generator=gen, dtype=torch.float64) / 2, torch.arange(40) % 3
    x_val, y_val = torch.full((5, 64), 0.6, dtype=torch.float64), torch.arange(5) % 3
    x_test, y_test = torch.full((7, 64), 0.75, dtype=torch.float64), torch.arange(7) % 3
    cfg = um.TrialConfig(task={"dataset": "digits", "classes": [0, 1, 2]}, rule="uwm", seeds=2, **TINY)
    planted = RecordingTask(x_train, y_train, x_test, y_test, classes=3, x_val=x_val, y_val=y_val)
    planted.seen = []
    trainer = um.Trainer(cfg, task=planted)
    reports = list(trainer.run())
    seen = torch.cat([x.reshape(-1, 64) for x in planted.seen])
    steps = cfg.episodes // cfg.batch_size
    assert len(planted.seen) >= steps
    assert (seen < 0.5).all()                                       # never a validation or test image
    # training steps read float32 images, probes float64 ones
    rows = {tuple(r.tolist()) for dtype in (torch.float32, torch.float64) for r in x_train.to(dtype).double()}
    assert all(tuple(r.tolist()) in rows for r in seen[:: 97])
    assert len({tuple(r.tolist()) for r in seen.float()}) == 40       # uniform draws reach every training image
    # evaluation: the whole validation split once per member, in order; the test split likewise, apart
    x_eval, y_eval = trainer.eval_inputs
    assert torch.equal(x_eval, x_val.float()) and torch.equal(y_eval, y_val)
    x_held, y_held = trainer.test_inputs
    assert torch.equal(x_held, x_test.float()) and torch.equal(y_held, y_test)
    for row in reports[-1].points[0].per_seed:
        assert row["eval_accuracy"] * 5 == pytest.approx(round(row["eval_accuracy"] * 5))   # a fraction of 5 images
        assert row["test_accuracy"] * 7 == pytest.approx(round(row["test_accuracy"] * 7))   # a fraction of 7 images
        assert row["test_accuracy"] == pytest.approx((row["test_reward"] + 1) / 2)


def test_the_test_split_is_scored_by_the_network_not_copied_from_the_validation_split():
    """A planted network that gets every validation image right and every test image wrong: its output unit's
    hidden unit fires only above a mean pixel of 0.675 (0.6 on validation images, 0.75 on test images) and the
output answers 1 exactly when it is silent; every target is 1."""
    x_train, y_train = torch.full((4, 64), 0.25, dtype=torch.float64), torch.zeros(4, dtype=torch.int64)
    x_val, y_val = torch.full((6, 64), 0.6, dtype=torch.float64), torch.ones(6, dtype=torch.int64)
    x_test, y_test = torch.full((9, 64), 0.75, dtype=torch.float64), torch.ones(9, dtype=torch.int64)
    task = DatasetTask(x_train, y_train, x_test, y_test, classes=2, x_val=x_val, y_val=y_val)
    cfg = um.TrialConfig(task={"dataset": "digits", "classes": [0, 1]}, rule="reinforce", seeds=1, lr=1e-12,
                         **{**TINY, "hidden": [1], "probe": {"enabled": False}})
    trainer = um.Trainer(cfg, task=task)
    with torch.no_grad():
        weights, biases = trainer.unflatten(trainer.theta)
        weights[0].fill_(1000.0)                                        # the hidden unit fires at 0.6 and 0.75
        biases[0].fill_(-1000.0 * 64 * 0.675)                           # ... only above a mean pixel of 0.675
        weights[1].fill_(-1000.0)                                       # the output answers 1 when it is silent
        biases[1].fill_(500.0)
    row = list(trainer.run())[-1].points[0].per_seed[0]
    assert row["eval_accuracy"] == 1.0 and row["test_accuracy"] == 0.0


@pytest.mark.parametrize("task", [{"dataset": "digits"}, {"dataset": "digits", "classes": [[0, 1, 2], [7, 8]]}],
                         ids=["10-class", "binary-groups"])
def test_a_packed_dataset_trial_equals_the_same_point_alone(task):
    points = [um.TrialConfig(task=task, rule="uwm", seed=0, seeds=2, lr=0.05, dtype="float64", **TINY),
              um.TrialConfig(task=task, rule="uwm", seed=7, seeds=1, lr=[0.1, 0.01, 0.2], outgoing_norm=2.0,
                             dtype="float64", **TINY)]
    pack = um.Trainer(points)
    assert_point_equals_alone(list(pack.run()), pack, points)


@pytest.mark.parametrize("rule", ["uwm", "wm"])
def test_packing_a_categorical_output_changes_no_float32_number(rule):
    common = {**TINY, "episodes": 80, "report_every": 40}
    points = [um.TrialConfig(task={"dataset": "digits"}, rule=rule, seed=s, seeds=n, lr=lr, dtype="float32", **common)
              for s, n, lr in ((0, 3, 0.05), (10, 2, 0.1))]
    pack = um.Trainer(points)
    list(pack.run())
    alone = um.Trainer(points[1])
    list(alone.run())
    assert torch.equal(pack.theta[3:], alone.theta)


@pytest.mark.slow
def test_ten_class_mnist_uwm_and_wm_beat_chance_clearly():
    """A learning test, not a timed one: 6 000 episodes (1.5 passes over the 4 000 training images) at batch 8
    on 10-class MNIST-5k, hidden [64]. Chance is 0.10 on the test split; measured 0.5-0.6 for uwm and wm
    (4 seeds, 8 000 episodes, lr 0.003); the bar is 0.3 in every seed's test accuracy."""
    for rule in ("uwm", "wm"):
        cfg = um.TrialConfig(task={"dataset": "mnist5k"}, hidden=[64], rule=rule, lr=0.003, batch_size=8,
                             episodes=6000, report_every=6000, seeds=2, device="cpu", compile="off",
                             probe={"enabled": False})
        last = list(um.Trainer(cfg).run())[-1].points[0]
        accuracies = [row["test_accuracy"] for row in last.per_seed]
        assert min(accuracies) > 0.3, (rule, accuracies)


@pytest.mark.slow
def test_a_dataset_study_runs_end_to_end_and_its_report_shows_the_reference_points(tmp_path, procs):
    """tune_configs/mnist-10class.yaml shrunk to the 8x8 digits (real Ray, MLflow on SQLite, Optuna): every rule
    trains, logs eval_accuracy, and the report puts each rule's test accuracy beside the reference points."""
    from mlflow import MlflowClient
    from test_study_run import children, uwm_study

    tiny = ["--set", "base.task.dataset=digits", "--set", "base.hidden=[4]", "--set", "base.episodes=400",
            "--set", "base.report_every=200", "--set", "base.seeds=2", "--set", "base.probe.samples=8",
            "--set", "grid.hidden=[[4]]", "--set", "samples_per_cell=1", "--set", "confirm=null"]
    out = uwm_study("run", str(ROOT / "tune_configs/mnist-10class.yaml"), *tiny, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, kids = children(client, "mnist-10class")
    assert len(kids) == 5 and {r.data.tags["uwm.status"] for r in kids} == {"finished"}
    for run in kids:
        assert run.data.params["task.dataset"] == "digits" and 0 <= run.data.metrics["eval_accuracy_mean"] <= 1
        assert 0 <= run.data.metrics["test_accuracy_mean"] <= 1
    report = uwm_study("report", "mnist-10class", "--out", str(tmp_path / "report"), "--format", "md", cwd=tmp_path,
                       timeout=900)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    text = "\n".join(p.read_text() for p in (tmp_path / "report").glob("*.md"))
    assert "Test accuracy and reference points" in text and "logistic regression (scikit-learn)" in text
    assert text.count("| rule ") >= 5 and "(ceiling)" in text
