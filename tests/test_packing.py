"""Packing: every per-member field differs between the points of one population, and every point's
numbers (parameters, per-seed rows, aggregates, status) equal the same point trained alone."""

import pytest
import torch

import uwm_model as um
from uwm_model.config import per_member_fields

COMMON = dict(task={"address_bits": 1}, hidden=[5, 4], batch_size=2, episodes=240, report_every=80,
              threshold_window=16, dtype="float64", device="cpu", compile="off", eval_episodes=64,
              probe={"enabled": True, "samples": 8, "cross_rule": True})


def assert_point_equals_alone(pack_reports, pack, points):
    offset = 0
    for i, point in enumerate(points):
        alone = um.Trainer(point)
        alone_reports = list(alone.run())
        assert len(pack_reports) == len(alone_reports)
        members = slice(offset, offset + point.seeds)
        offset += point.seeds
        assert torch.allclose(pack.theta[members], alone.theta, rtol=0, atol=1e-12)
        assert torch.allclose(pack.baseline[members], alone.baseline, rtol=0, atol=1e-12)
        assert torch.equal(pack.reached_at[members], alone.reached_at)
        for a, b in zip(pack_reports, alone_reports):
            assert a.episode == b.episode
            pa, pb = a.points[i], b.points[0]
            assert pa.status == pb.status, (i, pa.status, pb.status)
            assert len(pa.per_seed) == len(pb.per_seed) == point.seeds
            for row_a, row_b in zip(pa.per_seed, pb.per_seed):
                assert row_a.keys() == row_b.keys(), i
                for key, value in row_b.items():
                    assert row_a[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (i, key)
            keys = set(pb.metrics) - {"seconds_per_episode"}
            assert keys == set(pa.metrics) - {"seconds_per_episode"}
            for key in keys:
                assert pa.metrics[key] == pytest.approx(pb.metrics[key], rel=1e-9, abs=1e-12), (i, key)


def test_every_per_member_field_varies_at_once_wm():
    """WM's p, per-layer lr, outgoing norm, Adam betas and eps, seeds count, seed, name and threshold all
    differ between the three points; the thresholds are chosen so that one point reaches its threshold
    at once, one never, and one in between (a pack using point 0's threshold would be caught)."""
    points = [
        um.TrialConfig(rule="wm", name="a", seed=0, seeds=2, lr=0.05, rule_options={"p": 2.0}, threshold=-1.0,
                       **COMMON),
        um.TrialConfig(rule="wm", name="b", seed=10, seeds=1, lr=[0.2, 0.01, 0.1], outgoing_norm=3.0,
                       rule_options={"p": 3.5}, adam_beta1=0.5, adam_beta2=0.9, adam_eps=1e-3, threshold=1.0,
                       **COMMON),
        um.TrialConfig(rule="wm", name="c", seed=20, seeds=3, lr=[0.01, 0.3, 0.02], outgoing_norm=0.5,
                       rule_options={"p": 1.0}, adam_beta1=0.99, adam_beta2=0.95, adam_eps=1e-6, threshold=0.3,
                       **COMMON),
    ]
    pack = um.Trainer(points)
    assert isinstance(pack.rule_options["p"], torch.Tensor)      # per member, not point 0's value
    reports = list(pack.run())
    last = reports[-1].points
    assert last[0].metrics["threshold_reached_fraction"] == 1.0
    assert last[1].metrics["threshold_reached_fraction"] == 0.0
    assert_point_equals_alone(reports, pack, points)


def test_every_per_member_field_varies_at_once_reinforce_with_ema_baseline():
    """REINFORCE with the EMA baseline: the decay differs per point (and so does everything else)."""
    common = {**COMMON, "probe": {"enabled": True, "samples": 8}}
    points = [
        um.TrialConfig(rule="reinforce", baseline="ema", baseline_decay=0.5, seed=1, seeds=2, lr=0.1,
                       threshold=-0.5, **common),
        um.TrialConfig(rule="reinforce", baseline="ema", baseline_decay=0.999, seed=7, seeds=1,
                       lr=[0.3, 0.1, 0.05], outgoing_norm=2.0, adam_beta1=0.7, adam_beta2=0.99, adam_eps=1e-4,
                       threshold=0.1, **common),
        um.TrialConfig(rule="reinforce", baseline="ema", baseline_decay=0.9, seed=3, seeds=2, lr=0.01,
                       adam_beta1=0.0, threshold=1.0, **common),
    ]
    pack = um.Trainer(points)
    reports = list(pack.run())
    # the baselines really differ per point (a shared decay would make them follow one EMA)
    assert len({round(b, 9) for b in pack.baseline.tolist()}) == pack.P
    assert_point_equals_alone(reports, pack, points)


def test_the_packing_tests_cover_every_per_member_field():
    """A new per-member field must be added to the tests above (they vary every one)."""
    covered = {"seed", "seeds", "lr", "outgoing_norm", "baseline_decay", "adam_beta1", "adam_beta2", "adam_eps",
               "name", "threshold", "rule_options.p"}
    assert set(per_member_fields()) == covered


def test_stop_points_freezes_the_chosen_points_and_leaves_the_others_as_if_alone():
    """Member-level early stopping outside Ray: after the first report point 1 stops; its parameters and
    optimiser state stay as they were, it reports "stopped" from then on, and points 0 and 2 go on exactly
    as if trained alone."""
    common = {**COMMON, "probe": {"enabled": False}}
    points = [um.TrialConfig(rule="uwm", seed=s, seeds=2, lr=lr, **common) for s, lr in ((0, 0.05), (10, 0.1), (20, 0.02))]
    pack = um.Trainer(points)
    runner = pack.run()
    first = next(runner)
    assert [p.status for p in first.points] == ["running"] * 3
    pack.stop_points([1])
    frozen = pack.theta[2:4].clone(), pack.adam_m[2:4].clone(), pack.updates[2:4].clone()
    rest = list(runner)
    assert [p.status for p in rest[-1].points] == ["finished", "stopped", "finished"]
    assert torch.equal(pack.theta[2:4], frozen[0]) and torch.equal(pack.adam_m[2:4], frozen[1])
    assert torch.equal(pack.updates[2:4], frozen[2])
    assert pack.updates[:2].tolist() == [120, 120]
    for i, members in ((0, slice(0, 2)), (2, slice(4, 6))):
        alone = um.Trainer(points[i])
        reports = list(alone.run())
        assert torch.allclose(pack.theta[members], alone.theta, rtol=0, atol=1e-12)
        assert rest[-1].points[i].per_seed == reports[-1].points[0].per_seed
    pack.stop_points([0])                              # stopping a finished or diverged member changes nothing else
    assert pack.stopped.tolist() == [True, True, True, True, False, False]


def test_training_leaves_the_process_wide_torch_settings_alone():
    """Threads and denormal handling are the entry point's (uwm_model.settings): a Trainer must not change them,
    or results would depend on which test ran first."""
    threads, interop = torch.get_num_threads(), torch.get_num_interop_threads()
    default_dtype = torch.get_default_dtype()
    list(um.Trainer(um.TrialConfig(rule="wm", threads=2, **{**COMMON, "episodes": 80, "probe": {"enabled": False}})).run())
    assert (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype()) == \
        (threads, interop, default_dtype)


def test_stopping_a_diverged_point_keeps_it_diverged():
    common = {**COMMON, "probe": {"enabled": False}}
    points = [um.TrialConfig(rule="uwm", seed=0, lr=0.05, **common), um.TrialConfig(rule="uwm", seed=5, lr=1e308, **common)]
    pack = um.Trainer(points)
    runner = pack.run()
    first = next(runner)
    assert first.points[1].status == "diverged"
    diverged_at = pack.diverged_at.clone()
    pack.stop_points([1])
    last = list(runner)[-1]
    assert [p.status for p in last.points] == ["finished", "diverged"]
    assert torch.equal(pack.diverged_at, diverged_at) and (diverged_at[1:] > 0).all()
    assert [row["diverged_at"] for row in last.points[1].per_seed] == diverged_at[1:].tolist()


def _same(a, b) -> bool:
    return a == b or (a != a and b != b)          # NaN (a reward level never reached) equals NaN


@pytest.mark.parametrize("rule", ["uwm", "wm"])
def test_packing_changes_no_float32_number_in_eager_steps(rule):
    """Bit for bit in float32, eager: a point's parameters and every per-seed value equal the same point
    trained alone. (torch.sigmoid rounds a CPU tensor's tail elements differently from the rest, so with it a
    member's numbers depended on the pack's size: 1e-5 apart after 5 000 episodes, then different runs.)"""
    common = {**COMMON, "dtype": "float32", "episodes": 160}
    points = [um.TrialConfig(rule=rule, seed=s, seeds=n, lr=lr, outgoing_norm=c, **common)
              for s, n, lr, c in ((0, 3, 0.05, None), (10, 2, 0.1, 3.0), (20, 5, 0.02, 0.5))]
    pack = um.Trainer(points)
    reports = list(pack.run())
    assert not pack.compiled
    offset = 0
    for i, point in enumerate(points):
        alone = um.Trainer(point)
        alone_reports = list(alone.run())
        assert torch.equal(pack.theta[offset: offset + point.seeds], alone.theta), i
        offset += point.seeds
        for a, b in zip(reports, alone_reports, strict=True):
            for row_a, row_b in zip(a.points[i].per_seed, b.points[0].per_seed, strict=True):
                assert row_a.keys() == row_b.keys()
                differ = [k for k in row_b if not _same(row_a[k], row_b[k])]
                assert not differ, (i, a.episode, differ[:5])
