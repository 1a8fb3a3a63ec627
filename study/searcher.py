"""Grid x Optuna, packed: a Ray Tune Searcher that tunes every grid cell with its own Optuna study.

Ray's search algorithms cannot combine a grid with Optuna, and a Tune trial here trains a
*pack* of points as one population. :class:`GridOptunaSearcher` does both:

- one Optuna study per grid cell, TPE seeded ``spec.seed + cell index`` (constant liar, so
  points asked while others run spread out), asked ``samples_per_cell`` times in all;
- each Tune trial it suggests is one pack: ``{"pack_id": ..., "points": [point, ...]}`` where
  every point is a full TrialConfig (``point["config"]``) with a stable ``point_id``
  (``c003-search-007``: cell 3, Optuna trial 7; ``c003-confirm-0``: cell 3's first confirm
  point). ``pack_size: 1`` gives one trial per point; ``auto`` fills a GPU (``StudySpec.points_per_pack``).

Packing. A pack holds at most ``pack_size`` points that share ``TrialConfig.pack_key()`` (the
shape-fixing fields), so the trainer can run them as one population. Points of one cell always
qualify (only per-member fields are searched). Cells that differ only in per-member grid axes
(``outgoing_norm``, an ``lr`` grid, ``seed``) share a pack key and are packed together, so that
a learning-rate x norm grid trains as a few populations; cells with different rules, widths or
tasks never share a pack. A pack is filled cell by cell, and successive packs rotate over the
pack-key groups, so each cell's TPE sees results before it is asked again.

Results. The trainable reports, for every point, ``point_value/<id>`` (the spec's metric at
the point's latest report, frozen when the point ends) and ``point_status/<id>``. Each point's
own Optuna trial receives its values as intermediate values (step = episode) and, when the pack
ends, its final state:

==========  ===========================================================================
finished    COMPLETE with its final value
stopped     PRUNED (early-stopped): TPE ranks it below every completed point
diverged    PRUNED with its last finite value: a diverging region is worse than any point
            that trained to the end, without inventing a reward for it
failed      FAIL (the trial errored after its retries, or never reported): TPE ignores it
==========  ===========================================================================

Confirm stage (optional). Once every search point of a cell has ended, its ``top_k`` best
completed points are re-run with ``confirm.seeds`` fresh seeds (first seed = base seed +
``seed_offset``) as stage ``confirm``; they are packed like search points and not told to Optuna.

The whole state (Optuna studies, open packs, rung board) is saved with Tune's experiment state
and restored by ``Tuner.restore``, so an interrupted study resumes where it stopped. Each save
also writes the study's own progress record (:meth:`GridOptunaSearcher.progress`) beside it,
which Tune syncs to ``<storage>/<study>/uwm-progress.json`` (:mod:`study.progress`): the driver
reads that, never Tune's files, to tell whether the study is complete.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from collections import Counter, defaultdict

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from uwm_model import layout

from . import progress
from .spec import Cell, SearchParam, StudySpec
from .stopping import RungBoard, board_name

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

def distribution(param: SearchParam):
    if param.type == "categorical":
        return CategoricalDistribution(param.choices)
    if param.type == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=int(param.step or 1))
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def search_point_id(cell: int, number: int) -> str:
    return f"c{cell:03d}-search-{number:03d}"


def confirm_point_id(cell: int, k: int) -> str:
    return f"c{cell:03d}-confirm-{k}"


class GridOptunaSearcher(Searcher):
    """Suggests packs of points: grid cells x per-cell Optuna samples (+ confirm), see module doc."""

    def __init__(self, spec: StudySpec):
        super().__init__(metric="best", mode=spec.mode)
        self.spec = spec
        self._init_state()

    def _init_state(self) -> None:
        cells = self.spec.cells()
        self.groups: dict[str, list[int]] = defaultdict(list)   # pack key -> cell indices, in order
        for cell in cells:
            self.groups[cell.pack_key].append(cell.index)
        self.groups = dict(self.groups)
        self.studies: dict[int, optuna.Study] = {}
        self.optuna_trials: dict[str, optuna.Trial] = {}         # point id -> its Optuna trial (search)
        self.asked = [0] * len(cells)                            # search points asked, per cell
        self.ended = [0] * len(cells)                            # search points ended, per cell
        self.packs: dict[str, list[dict]] = {}                   # live Tune trial id -> its points
        self.points: dict[str, dict] = {}                        # point id -> {value, status, step}
        self.confirm_queue: list[dict] = []
        self.next_group = 0
        self.pack_count = 0
        self.board_state: dict | None = None

    # ------------------------------------------------------------------ Optuna

    def study(self, cell: int) -> optuna.Study:
        if cell not in self.studies:
            sampler = optuna.samplers.TPESampler(seed=self.spec.seed + cell, constant_liar=True)
            direction = "maximize" if self.spec.mode == "max" else "minimize"
            self.studies[cell] = optuna.create_study(direction=direction, sampler=sampler,
                                                     study_name=self.spec.cells()[cell].key)
        return self.studies[cell]

    def _ask(self, cell: Cell) -> dict:
        study = self.study(cell.index)
        names = self.spec.search_names(cell)
        trial = study.ask({name: distribution(param) for name, (_, param, _) in names.items()})
        point_id = search_point_id(cell.index, trial.number)
        self.optuna_trials[point_id] = trial
        self.asked[cell.index] += 1
        return self._point(cell, point_id, layout.STAGE_SEARCH, trial.params, self.spec.point_config(cell, trial.params))

    def _point(self, cell: Cell, point_id: str, stage: str, params: dict, config: dict) -> dict:
        self.points[point_id] = {"value": math.nan, "status": layout.PENDING, "step": -1, "cell": cell.index,
                                 "stage": stage, "params": dict(params)}
        return {"point_id": point_id, "cell": cell.key, "cell_index": cell.index, "stage": stage,
                "axes": cell.axes, "params": dict(params), "config": config}

    # ------------------------------------------------------------------ suggest

    def suggest(self, trial_id: str) -> dict | str | None:
        self.ensure_board()
        points = self._search_pack() or self._confirm_pack()
        if points:
            self.pack_count += 1
            self.packs[trial_id] = points
            return {"pack_id": f"pack-{self.pack_count:04d}", "points": points}
        return Searcher.FINISHED if self.done_suggesting() else None

    def _search_pack(self) -> list[dict]:
        cells = self.spec.cells()
        keys = list(self.groups)
        for turn in range(len(keys)):
            g = (self.next_group + turn) % len(keys)
            open_cells = [c for c in self.groups[keys[g]] if self.asked[c] < self.spec.samples_per_cell]
            if not open_cells:
                continue
            self.next_group = g + 1
            pack = []
            for c in open_cells:
                while self.asked[c] < self.spec.samples_per_cell and len(pack) < self.spec.points_per_pack:
                    pack.append(self._ask(cells[c]))
                if len(pack) == self.spec.points_per_pack:
                    break
            return pack
        return []

    def _confirm_pack(self) -> list[dict]:
        """Confirm points wait until a pack fills or no search point of their group is still open."""
        if not self.confirm_queue:
            return []
        cells = self.spec.cells()
        for key, members in self.groups.items():
            waiting = [p for p in self.confirm_queue if cells[p["cell_index"]].pack_key == key]
            if not waiting:
                continue
            open_search = any(self.ended[c] < self.spec.samples_per_cell for c in members)
            if len(waiting) >= self.spec.points_per_pack or not open_search:
                pack = waiting[: self.spec.points_per_pack]
                self.confirm_queue = [p for p in self.confirm_queue if p not in pack]
                return pack
        return []

    def done_suggesting(self) -> bool:
        if any(a < self.spec.samples_per_cell for a in self.asked) or self.confirm_queue:
            return False
        if self.spec.confirm:  # confirm points appear when a cell's search has ended
            return all(e >= self.spec.samples_per_cell for e in self.ended)
        return True

    # ------------------------------------------------------------------ results

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        episode = result.get("episode")
        for point in self.packs.get(trial_id, []):
            self._record(point["point_id"], result, episode)
            if self.points[point["point_id"]]["status"] in layout.TRAINED:
                self._end(point)   # told now, so the cell's next points already learn from it

    def _record(self, point_id: str, result: dict, episode) -> None:
        state = self.points[point_id]
        value = result.get(f"point_value/{point_id}")
        status = result.get(f"point_status/{point_id}")
        if status is not None:
            state["status"] = status
        if value is None or episode is None:
            return
        state["value"] = float(value)
        trial = self.optuna_trials.get(point_id)
        if trial is not None and episode > state["step"] and math.isfinite(value):   # intermediate value
            trial.report(float(value), int(episode))
            state["step"] = int(episode)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        points = self.packs.pop(trial_id, [])
        if result:
            for point in points:
                self._record(point["point_id"], result, result.get("episode"))
        for point in points:
            if self.points[point["point_id"]]["status"] not in layout.TRAINED:
                self.points[point["point_id"]]["status"] = layout.FAILED
            self._end(point)

    def _end(self, point: dict) -> None:
        """A point has ended: tell its Optuna trial (search points), once; confirm when a cell is done."""
        state = self.points[point["point_id"]]
        if state.get("ended"):
            return
        state["ended"] = True
        if point["stage"] != layout.STAGE_SEARCH:
            return
        self._tell(point["point_id"], state)
        cell = point["cell_index"]
        self.ended[cell] += 1
        if self.spec.confirm and self.ended[cell] == self.spec.samples_per_cell:
            self._queue_confirm(cell)

    def _tell(self, point_id: str, state: dict) -> None:
        trial = self.optuna_trials.pop(point_id, None)
        if trial is None:
            return
        study = self.study(state["cell"])
        if state["status"] == layout.FINISHED and math.isfinite(state["value"]):
            study.tell(trial, state["value"])
        elif state["status"] in (layout.STOPPED, layout.DIVERGED):
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)

    def _queue_confirm(self, cell_index: int) -> None:
        cell, confirm = self.spec.cells()[cell_index], self.spec.confirm
        done = [t for t in self.study(cell_index).trials if t.state == TrialState.COMPLETE]
        done.sort(key=lambda t: t.value, reverse=self.spec.mode == "max")
        if not done:
            log.warning("cell %s: no search point finished, nothing to confirm", cell.key)
        for k, trial in enumerate(done[: confirm.top_k]):
            seed = int(cell.config["seed"]) + confirm.seed_offset
            config = self.spec.point_config(cell, trial.params, seed=seed, seeds=confirm.seeds)
            self.confirm_queue.append(self._point(cell, confirm_point_id(cell_index, k), layout.STAGE_CONFIRM, trial.params, config))

    # ------------------------------------------------------------------ summaries

    def complete(self) -> bool:
        """Every point suggested and ended (with the confirm stage, if any)."""
        return self.done_suggesting() and not self.packs and all(p.get("ended") for p in self.points.values())

    def progress(self) -> dict:
        """The study's progress record: spec hash, stage, points by status, packs, completeness."""
        complete = self.complete()
        search_open = any(a < self.spec.samples_per_cell for a in self.asked) or any(
            not p.get("ended") for p in self.points.values() if p["stage"] == layout.STAGE_SEARCH)
        stage = "done" if complete else layout.STAGE_SEARCH if search_open or not self.spec.confirm else layout.STAGE_CONFIRM
        return {"spec_hash": self.spec.spec_hash(), "stage": stage, "complete": complete,
                "points": {"planned": self.spec.total_points, **Counter(p["status"] for p in self.points.values())},
                "packs": {"suggested": self.pack_count, "running": len(self.packs)},
                "saved": time.strftime("%Y-%m-%d %H:%M:%S")}

    def trial_counts(self) -> dict[int, dict[str, int]]:
        """Optuna trials per cell by state name."""
        out = {}
        for cell, study in self.studies.items():
            counts: dict[str, int] = defaultdict(int)
            for t in study.trials:
                counts[t.state.name] += 1
            out[cell] = dict(counts)
        return out

    # ------------------------------------------------------------------ rung board (early stopping)

    def ensure_board(self):
        """Create (or find) the study's rung board actor, loaded with any restored state."""
        stopping = self.spec.early_stopping
        if stopping is None:
            return None
        import ray

        if getattr(self, "_board", None) is None:   # keep the handle: the actor lives as long as it does
            actor = ray.remote(num_cpus=0)(RungBoard).options(name=board_name(self.spec.name), get_if_exists=True)
            self._board = actor.remote(stopping.kind, stopping.reduction_factor, stopping.min_points, self.spec.mode)
        if self.board_state is not None:
            ray.get(self._board.load.remote(self.board_state))
            self.board_state = None
        return self._board

    def _board_snapshot(self) -> dict | None:
        if self.spec.early_stopping is None:
            return None
        import ray

        if getattr(self, "_board", None) is None:
            return self.board_state
        return ray.get(self._board.state.remote(), timeout=60)

    # ------------------------------------------------------------------ save / restore

    _STATE = ("studies", "optuna_trials", "asked", "ended", "packs", "points", "confirm_queue", "next_group",
              "pack_count")

    def get_state(self) -> dict:
        state = {name: getattr(self, name) for name in self._STATE}
        state["board_state"] = self._board_snapshot()
        state["spec_hash"] = self.spec.spec_hash()
        return state

    def set_state(self, state: dict) -> None:
        if state.get("spec_hash") != self.spec.spec_hash():
            raise ValueError("searcher state was saved for another study spec")
        self._init_state()
        for name in self._STATE:
            setattr(self, name, state[name])
        self.board_state = state.get("board_state")

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)   # one dump: Optuna trials keep pointing at their studies
        # beside it, in the folder Tune syncs to the study's storage (after its experiment state, so a
        # record there means Tune can restore; a file written straight to the storage would be
        # overwritten by the stale copy a resumed Tune downloaded into that folder)
        progress.write_json(os.path.dirname(checkpoint_path), progress.PROGRESS, self.progress())

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
        self.ensure_board()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_board"}   # actor handles belong to one session


def load_searcher_state(experiment_dir: str) -> dict | None:
    """The newest saved searcher state of a study's experiment folder (for tests and debugging; the
    study itself reads its progress record)."""
    import glob
    import os

    files = sorted(glob.glob(os.path.join(experiment_dir, Searcher.CKPT_FILE_TMPL.format("*"))))
    if not files:
        return None
    with open(max(files), "rb") as f:   # names end in the session's start time; mtimes are the last sync's
        return pickle.load(f)
