"""The dedicated timing run's plan (study/timing.py): widths beyond the grid's, and the memory bound that
admits them before any trainer is built. (The interleaved schedule is checked in test_calibration.py; the
timings themselves are measured by `uwm-study timing`, never in tests.)"""

from pathlib import Path

import pytest
import yaml

from study import cli, timing
from study.spec import validate_spec

SPEC = Path(__file__).resolve().parent.parent / "tune_configs" / "width-scaling.yaml"


def _spec():
    return validate_spec(yaml.safe_load(SPEC.read_text()))


def test_extra_widths_add_every_rule_at_the_grids_depth():
    """width-scaling's grid is 5 rule variants x widths 8..512 of two layers; --widths 1024 adds [1024, 1024]
    for each variant (5 more configurations, with their options and baseline), the grid's own untouched."""
    grid = timing.timing_configs(_spec())
    more = timing.timing_configs(_spec(), widths=[1024])
    assert len(grid) == 35 and more[:35] == grid and len(more) == 40
    assert all(c["hidden"] == [1024, 1024] and not c["probe"]["enabled"] and c["threads"] == 1 for c in more[35:])
    assert {(c["rule"], c.get("baseline", "none")) for c in more[35:]} == {(c["rule"], c.get("baseline", "none"))
                                                                           for c in grid}
    assert timing.timing_configs(_spec(), widths=[512]) == grid           # a width the grid has adds nothing


def test_a_width_that_does_not_fit_the_memory_is_skipped_with_one_line():
    """Every trainer lives through the interleaved rounds: widths are admitted smallest first while their
    trainers fit together (uwm_model.memory's estimate); with room for the grid but not for 1024, width
    1024 is skipped, said in one line naming the width and the sizes, and the rest is timed."""
    configs = timing.timing_configs(_spec(), widths=[1024])
    grid_bytes = sum(timing._trainer_bytes(c) for c in configs if c["hidden"][0] <= 512)
    wide_bytes = sum(timing._trainer_bytes(c) for c in configs if c["hidden"][0] == 1024)
    assert wide_bytes > grid_bytes                                       # the n² term: 1024 outweighs 8..512
    lines = []
    # room for width 1024 alone, not for it with the narrower widths: the trainers count together
    kept = timing.admit_widths(configs, wide_bytes * 1.01, "this test's budget", say=lines.append)
    assert [c["hidden"][0] for c in kept] == [c["hidden"][0] for c in configs if c["hidden"][0] <= 512]
    assert len(lines) == 1 and lines[0].startswith("timing: width 1024 skipped: its 5 configurations need about")
    assert "this test's budget" in lines[0]
    assert timing.admit_widths(configs, grid_bytes + wide_bytes, "x", say=lines.append) == configs and len(lines) == 1


@pytest.mark.parametrize("text", ["abc", "1024,-8", "0", "99999999"])
def test_bad_widths_are_refused_in_one_line_before_any_work(text, tmp_path, capsys):
    assert cli.main(["timing", "no-such-study", "--widths", text, "--storage", str(tmp_path),
                     "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--widths" in err[0]
    assert not (tmp_path / "m.db").exists()
    assert cli.parse_widths("1024, 2048") == [1024, 2048] and cli.parse_widths("") == []
