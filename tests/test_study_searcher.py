"""The grid x Optuna packing searcher and the rung board, driven the way Tune drives them (real Optuna).

These tests call the searcher's Tune interface (suggest / on_trial_result / on_trial_complete /
save / restore) directly with results computed from the suggested configurations; the end-to-end
tests in test_study_run.py run the same searcher under Ray Tune.
"""

import math
from collections import Counter

import pytest
from optuna.trial import TrialState

from study.searcher import GridOptunaSearcher
from study.spec import validate_spec
from study.stopping import RungBoard, rung_episodes
from uwm_model.config import TrialConfig

SPEC = {
    "name": "s",
    "base": {"task": {"address_bits": 1}, "hidden": [4], "episodes": 400, "report_every": 100, "seeds": 2},
    "grid": {"method": [{"rule": "uwm"}, {"rule": "wm"}], "hidden": [[4], [8]], "outgoing_norm": [1.0, 2.0]},
    "search": {"lr": {"low": 1e-3, "high": 0.3, "log": True}, "baseline_decay": {"low": 0.5, "high": 0.9}},
    "samples_per_cell": 5,
}


def objective(config: dict) -> float:
    """A made-up reward that peaks at lr = 0.03 (stands in for training)."""
    return -abs(math.log10(config["lr"]) - math.log10(0.03)) + 0.01 * (config["outgoing_norm"] or 0)


def drive(searcher: GridOptunaSearcher, status_of=lambda p: "finished", stop_after: int | None = None):
    """Run the searcher like Tune with two trials in flight; return the packs it suggested
    (after ``stop_after`` packs, finish those in flight and return)."""
    packs, live, n = [], [], 0
    while True:
        while len(live) < 2 and (stop_after is None or len(packs) < stop_after):
            n += 1
            suggestion = searcher.suggest(f"t{n}")
            if suggestion is None or suggestion == "FINISHED":
                break
            packs.append(suggestion)
            live.append((f"t{n}", suggestion))
        if not live:
            return packs
        trial_id, pack = live.pop(0)
        result = {"episode": 400, "best": 0.0}
        for p in pack["points"]:
            result[f"point_value/{p['point_id']}"] = objective(p["config"])
            result[f"point_status/{p['point_id']}"] = status_of(p)
        searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)


@pytest.mark.parametrize("pack_size", [1, 3, 8])
def test_every_cell_gets_its_own_study_and_samples_and_packs_never_mix_pack_keys(pack_size):
    spec = validate_spec({**SPEC, "pack_size": pack_size})
    searcher = GridOptunaSearcher(spec)
    packs = drive(searcher)
    points = [p for pack in packs for p in pack["points"]]
    cells = spec.cells()
    assert len(points) == len({p["point_id"] for p in points}) == len(cells) * 5
    assert Counter(p["cell_index"] for p in points) == {c.index: 5 for c in cells}
    for pack in packs:
        assert 1 <= len(pack["points"]) <= pack_size
        keys = {TrialConfig.model_validate(p["config"]).pack_key() for p in pack["points"]}
        assert len(keys) == 1                                     # shape-fixing fields equal
        assert len({p["config"]["rule"] for p in pack["points"]}) == 1
        assert len({tuple(p["config"]["hidden"]) for p in pack["points"]}) == 1
    # one Optuna study per cell, each with exactly its own samples, all told
    counts = searcher.trial_counts()
    assert counts == {c.index: {"COMPLETE": 5} for c in cells}
    # the studies are seeded per cell: the first proposals of two cells differ
    first = [searcher.studies[c.index].trials[0].params["lr"] for c in cells]
    assert len(set(first)) == len(cells)
    # a point's config holds its cell's axes and its own sampled values
    for p in points:
        for path, value in p["axes"].items():
            node = p["config"]
            for part in path.split("."):
                node = node[part]
            assert node == value
        assert p["config"]["lr"] == p["params"]["lr"]


def test_packing_fills_packs_across_per_member_axes():
    # hidden and rule fix shapes (4 groups); outgoing_norm does not: its two cells share packs
    spec = validate_spec({**SPEC, "pack_size": 10})
    packs = drive(GridOptunaSearcher(spec))
    assert len(packs) == 4 and all(len(p["points"]) == 10 for p in packs)
    assert all(len({p["cell"] for p in pack["points"]}) == 2 for pack in packs)


def test_pack_size_8_and_1_give_the_same_points_and_optuna_trials():
    outcomes = []
    for pack_size in (8, 1):
        searcher = GridOptunaSearcher(validate_spec({**SPEC, "pack_size": pack_size}))
        packs = drive(searcher)
        outcomes.append((sorted(p["point_id"] for pack in packs for p in pack["points"]), searcher.trial_counts()))
    assert outcomes[0] == outcomes[1]


def test_statuses_reach_optuna_as_complete_pruned_or_fail():
    spec = validate_spec({**SPEC, "grid": {"rule": ["uwm"]}, "samples_per_cell": 8, "pack_size": 8})
    searcher = GridOptunaSearcher(spec)
    statuses = ["finished", "finished", "stopped", "diverged", "running", "finished", "stopped", "finished"]
    pack = searcher.suggest("t1")
    result = {"episode": 200, "best": 0.0}
    for p, s in zip(pack["points"], statuses):
        result[f"point_value/{p['point_id']}"] = 0.5
        result[f"point_status/{p['point_id']}"] = s
    searcher.on_trial_result("t1", result)
    searcher.on_trial_complete("t1", error=True)     # the pack died after its retries
    states = [t.state for t in searcher.studies[0].trials]
    expected = {"finished": TrialState.COMPLETE, "stopped": TrialState.PRUNED, "diverged": TrialState.PRUNED,
                "running": TrialState.FAIL}
    assert states == [expected[s] for s in statuses]
    assert searcher.points[pack["points"][4]["point_id"]]["status"] == "failed"
    assert searcher.suggest("t2") == "FINISHED"


def test_save_and_restore_continue_the_same_study(tmp_path):
    spec = validate_spec({**SPEC, "pack_size": 3})
    whole = drive(GridOptunaSearcher(spec))

    first = GridOptunaSearcher(spec)
    part = drive(first, stop_after=5)
    # two packs are still in flight when the state is saved, as when a driver dies
    in_flight = [first.suggest("x1"), first.suggest("x2")]
    first.save(str(tmp_path / "state.pkl"))
    second = GridOptunaSearcher(spec)
    second.restore(str(tmp_path / "state.pkl"))
    assert set(second.packs) == {"x1", "x2"}
    for trial_id, pack in zip(("x1", "x2"), in_flight):   # Tune resumes them and they complete
        result = {"episode": 400}
        for p in pack["points"]:
            result[f"point_value/{p['point_id']}"] = objective(p["config"])
            result[f"point_status/{p['point_id']}"] = "finished"
        second.on_trial_complete(trial_id, result)
    rest = drive(second)
    ids = [p["point_id"] for pack in part + in_flight + rest for p in pack["points"]]
    assert len(ids) == len(set(ids)) == len([p for pack in whole for p in pack["points"]])
    assert all(c == {"COMPLETE": 5} for c in second.trial_counts().values())

    other = GridOptunaSearcher(validate_spec({**SPEC, "samples_per_cell": 6}))
    with pytest.raises(ValueError, match="another study spec"):
        other.restore(str(tmp_path / "state.pkl"))


def test_confirm_reruns_the_best_points_of_each_cell_with_fresh_seeds():
    spec = validate_spec({**SPEC, "grid": {"rule": ["uwm", "wm"]}, "samples_per_cell": 4, "pack_size": 4,
                          "confirm": {"top_k": 2, "seeds": 3, "seed_offset": 500}})
    searcher = GridOptunaSearcher(spec)
    packs = drive(searcher)
    confirm = [p for pack in packs for p in pack["points"] if p["stage"] == "confirm"]
    assert sorted(p["point_id"] for p in confirm) == ["c000-confirm-0", "c000-confirm-1", "c001-confirm-0",
                                                      "c001-confirm-1"]
    for p in confirm:
        assert p["config"]["seed"] == 500 and p["config"]["seeds"] == 3
        study = searcher.studies[p["cell_index"]]
        best = sorted((t for t in study.trials), key=lambda t: t.value, reverse=True)[: 2]
        assert p["params"] in [t.params for t in best]
    # confirm packs come after their cells' search ended, and are not told to Optuna
    first_confirm = min(i for i, pack in enumerate(packs) if pack["points"][0]["stage"] == "confirm")
    assert all(pack["points"][0]["stage"] == "search" for pack in packs[:first_confirm])
    assert all(len(s.trials) == 4 for s in searcher.studies.values())


def test_rung_board_keeps_the_top_fraction_per_cell_and_answers_repeats_the_same():
    assert rung_episodes(100, 3, 1000) == [100, 300, 900]
    assert rung_episodes(100, 2, 100) == []
    board = RungBoard("asha", reduction_factor=3, min_points=3, mode="max")
    decisions = [board.decide("a", 100, f"p{i}", v) for i, v in enumerate([0.1, 0.5, 0.2, 0.9, 0.3, 0.4])]
    assert decisions[:2] == [True, True]                 # too few values to judge
    assert decisions[2] is False and decisions[3] is True and decisions[4] is False
    assert board.decide("a", 100, "p2", 10.0) is False    # a retried report gets its first answer
    assert board.decide("b", 100, "q0", -5.0) is True     # cells do not compete
    assert board.decide("a", 100, "p9", math.nan) is False
    restored = RungBoard("asha", 3, 3, "max", state=board.state())
    assert restored.decide("a", 100, "p3", 0.0) is True

    median = RungBoard("median", reduction_factor=3, min_points=2, mode="min")
    assert [median.decide("c", 10, f"p{i}", v) for i, v in enumerate([3.0, 1.0, 2.0, 5.0])] == [True, True, True, False]


def test_each_save_writes_the_progress_record_the_driver_reads(tmp_path):
    """The study's own progress record (study.progress): stage, points by status, packs, completeness."""
    from study import progress

    spec = validate_spec({**SPEC, "grid": {"rule": ["uwm", "wm"]}, "samples_per_cell": 4, "pack_size": 4,
                          "confirm": {"top_k": 1, "seeds": 2, "seed_offset": 500}})
    searcher = GridOptunaSearcher(spec)
    searcher.save(str(tmp_path / "state.pkl"))
    record = progress.read_json(str(tmp_path), progress.PROGRESS)
    assert record["spec_hash"] == spec.spec_hash() and record["stage"] == "search" and not record["complete"]
    assert record["packs"] == {"suggested": 0, "running": 0} and record["points"] == {"planned": spec.total_points}

    drive(searcher, stop_after=2)          # both cells' search points asked and ended: confirm is next
    in_flight = searcher.suggest("x1")
    assert in_flight["points"][0]["stage"] == "confirm"
    searcher.save(str(tmp_path / "state.pkl"))
    record = progress.read_json(str(tmp_path), progress.PROGRESS)
    assert record["stage"] == "confirm" and not record["complete"]
    assert record["packs"] == {"suggested": 3, "running": 1}
    assert record["points"]["finished"] == 8 and record["points"]["pending"] == 2   # both confirm points: one in flight

    drive(searcher)
    searcher.on_trial_complete("x1", {f"point_status/{p['point_id']}": "finished" for p in in_flight["points"]})
    drive(searcher)
    searcher.save(str(tmp_path / "state.pkl"))
    record = progress.read_json(str(tmp_path), progress.PROGRESS)
    assert record["stage"] == "done" and record["complete"] and record["packs"]["running"] == 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["state.pkl", progress.PROGRESS]   # no temporary left
