"""StudySpec, the shipped study specs and the CLI's user errors (no Ray, no MLflow)."""

import math
import os
import socket
import sys
from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.control_trial import trial_config
from study.errors import UserError
from study.spec import load_spec, read_yaml, validate_spec
from uwm_model.config import TrialConfig
from uwm_model.config import TrialConfig

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "tune_configs").glob("*.yaml"))
RULES = {"reinforce", "ste", "wm", "hwm", "uwm"}

TINY = {
    "name": "tiny",
    "base": {"task": {"address_bits": 1}, "hidden": [4], "episodes": 400, "report_every": 100, "seeds": 2,
             "eval_episodes": 64, "compile": "off", "probe": {"enabled": False}},
    "grid": {"method": [{"rule": "uwm"}, {"rule": "hwm", "rule_options": {"order": 3}}], "outgoing_norm": [1, 4]},
    "search": {"lr": {"low": 1e-3, "high": 0.3, "log": True}},
    "samples_per_cell": 3,
}


def test_every_shipped_spec_validates_and_expands():
    assert {p.stem for p in SPECS} >= {"quickstart", "replicate-chung2022", "width-scaling", "outgoing-norm-stress",
                                       "lr-sensitivity"}
    for path in SPECS:
        spec = load_spec(path)
        cells = spec.cells()
        assert cells and spec.name == path.stem
        for cell in cells:   # a control study's (task: {env: ...}) as a control trial file's
            trial_config(cell.config)
            params = {n: p.corners()[0] for n, (_, p, _) in spec.search_names(cell).items()}
            trial_config(spec.point_config(cell, params))


def test_shipped_specs_ask_what_their_studies_need():
    quick = load_spec(ROOT / "tune_configs/quickstart.yaml")
    assert {c.config["rule"] for c in quick.cells()} == RULES
    assert quick.samples_per_cell == 4 and quick.base["task"]["address_bits"] == 2 and "lr" in quick.search

    chung = load_spec(ROOT / "tune_configs/replicate-chung2022.yaml")
    wm = next(c.config for c in chung.cells() if c.config["rule"] == "wm")
    assert (wm["task"]["address_bits"], wm["hidden"], wm["lr"], wm["batch_size"], wm["episodes"], wm["seeds"]) == \
        (4, [64, 32], [0.01, 0.001, 0.0001], 1, 800_000, 10)
    assert wm["rule_options"] == {"p": 2} and wm["optimizer"] == "adam"
    assert {"uwm", "reinforce"} <= {c.config["rule"] for c in chung.cells()}

    width = load_spec(ROOT / "tune_configs/width-scaling.yaml")
    assert {c.config["rule"] for c in width.cells()} == RULES
    widths = {c.config["hidden"][0] for c in width.cells()}
    assert min(widths) == 8 and max(widths) == 512 and "lr" in width.search

    stress = load_spec(ROOT / "tune_configs/outgoing-norm-stress.yaml")
    norms = {c.config["outgoing_norm"] for c in stress.cells()}
    assert min(norms) == 0.5 and max(norms) == 8 and sum(n > math.pi for n in norms) >= 3
    orders = {c.config["rule_options"].get("order") for c in stress.cells() if c.config["rule"] == "hwm"}
    assert len(orders) >= 3 and any(c.config["rule"] == "uwm" for c in stress.cells())

    lrs = load_spec(ROOT / "tune_configs/lr-sensitivity.yaml")
    assert len({c.config["lr"] for c in lrs.cells()}) >= 6


def test_shipped_searches_confirm_their_choice_on_fresh_seeds():
    for path in SPECS:
        spec = load_spec(path)
        if spec.search:
            assert spec.confirm is not None and spec.confirm.seeds >= spec.base.get("seeds", 1), path.name


def test_the_cross_rule_probe_measures_every_grid_variant_by_default():
    probing = {**TINY, "base": {**TINY["base"], "probe": {"enabled": True, "cross_rule": True}}}
    rules = validate_spec(probing).cells()[0].config["probe"]["rules"]
    entries = [(r["rule"], r["options"]) for r in rules]
    assert ("hwm", {"order": 3}) in entries and ("uwm", {}) in entries
    assert {r for r, o in entries if not o} == RULES                   # every rule's default stays
    assert len(entries) == len({(r, str(o)) for r, o in entries})      # no duplicates
    chosen = [{"rule": "uwm", "options": {}}]                          # a list the user gives is kept as given
    own = {**probing, "base": {**probing["base"], "probe": {"enabled": True, "cross_rule": True, "rules": chosen}}}
    assert [(r["rule"], r["options"]) for r in validate_spec(own).cells()[0].config["probe"]["rules"]] == [("uwm", {})]
    ema = {**probing, "grid": {"method": [{"rule": "reinforce"}, {"rule": "reinforce", "baseline": "ema"}]}}
    rules = [TrialConfig.model_validate(c.config).probe.rules for c in validate_spec(ema).cells()][1]
    assert [r.name for r in rules if r.rule == "reinforce"] == ["reinforce", "reinforce_baseline-ema"]
    assert len({r.name for r in rules}) == len(rules)                  # labels stay distinct


def test_grid_cells_keys_and_pack_groups():
    spec = validate_spec(TINY)
    cells = spec.cells()
    assert [c.key for c in cells] == ["rule=uwm|outgoing_norm=1.0", "rule=uwm|outgoing_norm=4.0",
                                      "rule=hwm|rule_options.order=3|outgoing_norm=1.0",
                                      "rule=hwm|rule_options.order=3|outgoing_norm=4.0"]
    # outgoing_norm is per-member data: cells of one rule share a pack key, different rules never do
    assert cells[0].pack_key == cells[1].pack_key != cells[2].pack_key == cells[3].pack_key
    assert spec.total_points == 12
    per_layer = validate_spec({**TINY, "search": {"lr": {"low": 1e-3, "high": 0.1, "log": True, "per_layer": True}}})
    assert list(per_layer.search_names(cells[0])) == ["lr.l1", "lr.l2"]
    assert per_layer.point_config(cells[0], {"lr.l1": 0.01, "lr.l2": 0.02})["lr"] == [0.01, 0.02]


def _with(**changes):
    data = yaml.safe_load(yaml.safe_dump(TINY))
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return data


@pytest.mark.parametrize("changes, field, words", [
    ({"bogus": 1}, "bogus", "unknown field"),
    ({"pack_size": 0}, "pack_size", "greater than or equal to 1"),
    ({"base__task__address_bits": 9}, "base.task.address_bits", "less than or equal to 5"),
    ({"base__rule": "sgd"}, "base.rule", "Input should be"),
    ({"base__lr": [0.1, 0.2, 0.3]}, "base", "3 learning rates for 2 layers"),
    ({"grid__outgoing_norm": [1, -2]}, "grid.outgoing_norm", "outgoing_norm=-2"),
    ({"grid__hiden": [[4]]}, "grid.hiden", "did you mean 'hidden'"),
    ({"grid__method": [{"rule": "uwm", "rule_options": {"order": 3}}]}, "grid", "has no option 'order'"),
    ({"grid__hidden": [[4], [4]]}, "grid", "same settings"),
    ({"search__lr": {"low": -1, "high": 0.1, "log": True}}, "search.lr", "low > 0"),
    ({"search__hidden": {"low": 1, "high": 3, "type": "int"}}, "search.hidden", "per-member"),
    ({"search__baseline_decay": {"low": 0.5, "high": 1.0}}, "search.baseline_decay", "less than 1"),
    ({"metric": "eval_rewrd_mean"}, "metric", "unknown metric"),
    ({"early_stopping": {"grace_period": 10, "reduction_factor": 1}}, "early_stopping.reduction_factor", "greater than 1"),
])
def test_bad_specs_fail_with_the_field_named(changes, field, words):
    with pytest.raises(UserError) as err:
        validate_spec(_with(**changes))
    assert err.value.where == field, err.value
    assert words in err.value.problem, err.value


def test_cli_reports_a_bad_spec_in_one_line_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(_with(grid__outgoing_norm=[1, -2])))
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: grid.outgoing_norm: ")
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml"]          # no mlflow.db, no runs/
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()

    for argv, start in [(["run", str(tmp_path / "missing.yaml")], "error: "),
                        (["run", str(spec), "--set", "nokey"], "error: --set: expected key=value"),
                        (["run", str(spec), "--set", "grid.outgoing_norm=[1]", "--set", "seed=-1"], "error: seed: "),
                        (["resume", "nothing-here"], "error: name: no study 'nothing-here'"),
                        (["status", "nothing-here"], "error: name: no study 'nothing-here'")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith(start) and "\n" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml"]


def test_cli_reports_an_unreachable_tracking_server_before_starting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "ok.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(spec), "--tracking-uri", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: tracking: cannot reach the MLflow server at http://127.0.0.1:{port}"), err
    assert "\n" not in err
    import ray

    assert not ray.is_initialized()     # refused before any work: no Ray started (state, not wall-clock time)
    assert sorted(os.listdir(tmp_path)) == ["ok.yaml"]


def test_cli_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_train_command_writes_curves_and_prints_a_summary(tmp_path, capsys):
    cfg = tmp_path / "one.yaml"
    cfg.write_text(yaml.safe_dump({"task": {"address_bits": 1}, "hidden": [4], "rule": "uwm", "episodes": 300,
                                   "report_every": 100, "seeds": 2, "eval_episodes": 32, "compile": "off",
                                   "probe": {"enabled": False}}))
    out = tmp_path / "curves.csv"
    assert main(["train", str(cfg), "--set", "lr=0.05", "--out", str(out)]) == 0
    import pandas as pd

    agg, per_seed = pd.read_csv(out), pd.read_csv(tmp_path / "curves_per_seed.csv")
    assert list(agg["episode"]) == [100, 200, 300] and "eval_reward_mean" in agg
    assert set(per_seed["seed"]) == {0, 1} and {"episode", "seed", "metric", "value"} <= set(per_seed.columns)
    printed = capsys.readouterr().out
    assert "eval reward" in printed and "curves:" in printed
    assert main(["train", str(cfg), "--set", "lr=-1"]) == 2
    assert capsys.readouterr().err.startswith("error: lr: ")


def _laughs(levels: int, width: int = 9) -> str:
    """A "billion laughs" YAML: each level an alias list of the level below (width^levels values)."""
    lines = ['l0: &l0 ["lol"]']
    for k in range(1, levels + 1):
        lines.append(f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * width)}]")
    return "\n".join(lines) + f"\nname: bomb\ngrid: {{hidden: [*l{levels}]}}\n"


@pytest.mark.parametrize("content, words", [
    (b"name: a\nseed: 1\nname: b\n", ["duplicate key 'name'", "line 1", ":3"]),
    (b"name: a\nbase: {episodes: 100, episodes: 200}\n", ["duplicate key 'episodes'"]),
    (b"name: caf\xe9\n", ["not UTF-8", "0xe9"]),
    (b"name: a\x00\n", ["NUL"]),
    (("a: " + "[" * 3000 + "]" * 3000 + "\n").encode(), ["nested more than"]),
    (_laughs(9).encode(), ["expands to more than"]),
    (b"name: [unclosed\n", ["invalid YAML"]),
    (b"- a\n- b\n", ["must be a YAML mapping"]),
])
def test_yaml_that_hides_a_mistake_or_exhausts_memory_is_one_user_error(tmp_path, content, words):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        read_yaml(path)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_yaml_merge_keys_may_be_overridden_and_small_aliases_load(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("base: &b {episodes: 100, seeds: 2}\nother:\n  <<: *b\n  episodes: 5\n" + _laughs(3))
    data = read_yaml(path)
    assert data["other"] == {"episodes": 5, "seeds": 2} and len(data["grid"]["hidden"][0]) == 9


def test_a_huge_spec_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: big\ndescription: " + "x" * (2 << 20) + "\n")
    with pytest.raises(UserError, match="too large"):
        read_yaml(path)


def test_pack_size_auto_fills_the_trials_share_of_a_gpu():
    from uwm_model.memory import FIXED_BYTES, MAX_MEMBERS, member_bytes

    big = {**TINY, "base": {**TINY["base"], "task": {"address_bits": 4}, "hidden": [64, 32], "batch_size": 8, "seeds": 4, "report_every": 200},
           "pack_size": "auto"}
    assert validate_spec(big).points_per_pack == 16                              # no GPU asked for: the CPU default
    quarter = validate_spec({**big, "resources": {"gpus": 0.25, "gpu_memory_gib": 80}})
    widest = max(member_bytes(TrialConfig.model_validate(c.config)) for c in quarter.cells())
    members = int((0.8 * 0.25 * 80 * 2**30 - FIXED_BYTES) // widest)
    assert quarter.points_per_pack == members // 4 > 1000
    whole = validate_spec({**big, "resources": {"gpus": 1, "gpu_memory_gib": 80}})
    assert whole.points_per_pack == min(MAX_MEMBERS, int((0.8 * 80 * 2**30 - FIXED_BYTES) // widest)) // 4
    assert whole.points_per_pack > quarter.points_per_pack
    small = validate_spec({**big, "resources": {"gpus": 0.25, "gpu_memory_gib": 8}})
    assert small.points_per_pack == 1                                           # nothing fits: one point a pack
    tiny = validate_spec({**TINY, "pack_size": "auto", "resources": {"gpus": 1, "gpu_memory_gib": 80}})
    assert tiny.points_per_pack == MAX_MEMBERS // 2                              # tiny nets: capped at 65 536 members
    assert validate_spec({**TINY, "pack_size": 5}).points_per_pack == 5


def test_the_gpu_sweep_is_sized_for_one_gpu():
    spec = load_spec(ROOT / "tune_configs/gpu-sweep.yaml")
    assert spec.resources.gpus == 0.25 and spec.pack_size == "auto" and spec.total_points >= 2000
    assert {c.config["rule"] for c in spec.cells()} == RULES
    packed = validate_spec({**spec.model_dump(mode="json"), "resources": {"gpus": 0.25, "gpu_memory_gib": 80}})
    assert packed.points_per_pack >= 1024                                       # a rule's 4 x 256 points in one pack
