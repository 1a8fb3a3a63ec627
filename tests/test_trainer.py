"""The population trainer: learning, packing, divergence, resume, reproducibility."""

import pytest
import torch

import uwm_model as um

SIX_BIT = {"address_bits": 2}


def config(**overrides):
    base = dict(task=SIX_BIT, hidden=[32, 32], lr=0.03, batch_size=16, episodes=48_000, report_every=12_000,
                seeds=4, threshold=0.8, threshold_window=2000, device="cpu", compile="off",
                probe={"enabled": False}, eval_episodes=1024)
    base.update(overrides)
    return um.TrialConfig(**base)


def final(trainer):
    return list(trainer.run())[-1]


@pytest.mark.slow
def test_uwm_and_wm_learn_the_6bit_multiplexer_for_every_seed():
    """Budget 48 000 episodes (3 000 updates of batch 16), Adam lr 0.03, hidden [32, 32], 4 seeds.
    Observed: uwm eval reward 0.97-0.99 per seed, wm 0.94-0.95; threshold 0.8 reached at 16-28k episodes."""
    for rule in ("uwm", "wm"):
        report = final(um.Trainer(config(rule=rule)))
        evals = [s["eval_reward"] for s in report.points[0].per_seed]
        assert min(evals) >= 0.9, (rule, evals)
        assert report.points[0].metrics["threshold_reached_fraction"] == 1.0
        assert report.points[0].status == "finished"


@pytest.mark.slow
def test_uwm_reaches_the_threshold_sooner_than_reinforce():
    """Same net, optimiser and budget (48 000 episodes, censored there). Observed: uwm reached the
    running-mean reward 0.8 at 17 792-28 016 episodes on all 4 seeds; REINFORCE on 1 seed of 4 (36 432)."""
    speed = {}
    for rule in ("uwm", "reinforce"):
        seeds = final(um.Trainer(config(rule=rule))).points[0].per_seed
        speed[rule] = sorted(s.get("episodes_to_threshold", 48_000.0) for s in seeds)
    assert max(speed["uwm"]) < 40_000, speed
    # medians of 4 (censored) with a margin of 1.4x
    median = {r: (v[1] + v[2]) / 2 for r, v in speed.items()}
    assert median["reinforce"] > 1.4 * median["uwm"], speed


def test_packed_member_equals_the_same_point_trained_alone():
    common = dict(rule="uwm", dtype="float64", episodes=320, report_every=160, batch_size=2, seeds=2,
                  hidden=[8, 6], probe={"enabled": True, "samples": 16})
    points = [config(lr=0.01, seed=0, **common),
              config(lr=[0.05, 0.02, 0.01], seed=7, outgoing_norm=4.0, adam_beta1=0.8, **common),
              config(lr=0.2, seed=3, outgoing_norm=0.5, **common)]
    pack = um.Trainer(points)
    pack_reports = list(pack.run())
    offset = 0
    for i, point in enumerate(points):
        alone = um.Trainer(point)
        alone_reports = list(alone.run())
        members = slice(offset, offset + point.seeds)
        offset += point.seeds
        assert torch.allclose(pack.theta[members], alone.theta, rtol=0, atol=1e-12)
        for a, b in zip(pack_reports, alone_reports):
            for key, value in b.points[0].metrics.items():
                if key != "seconds_per_episode":
                    assert abs(a.points[i].metrics[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_points_that_differ_in_shape_fixing_fields_are_refused():
    import pytest
    with pytest.raises(ValueError, match="shape-fixing"):
        um.Trainer([config(rule="uwm"), config(rule="uwm", hidden=[16, 16])])
    with pytest.raises(ValueError, match="shape-fixing"):
        um.Trainer([config(rule="uwm"), config(rule="wm")])


def test_a_diverging_member_stops_and_leaves_the_others_untouched():
    common = dict(rule="uwm", episodes=640, report_every=320, seeds=2, dtype="float64")
    healthy = config(lr=0.01, seed=0, **common)
    exploding = config(lr=1e308, seed=10, **common)
    pack = um.Trainer([healthy, exploding])
    reports = list(pack.run())
    alone = um.Trainer(healthy)
    list(alone.run())
    assert torch.equal(pack.theta[:2], alone.theta)
    last = reports[-1].points
    assert last[0].status == "finished" and last[0].metrics["diverged_fraction"] == 0
    assert last[1].status == "diverged" and last[1].metrics["diverged_fraction"] == 1.0
    diverged_at = [s["diverged_at"] for s in last[1].per_seed]
    assert all(0 < e <= 640 for e in diverged_at)
    assert torch.isfinite(pack.theta).all(), "a diverged member keeps the values of its last report"
    # it diverged in the first window, so its last report's values are its initial ones
    assert all(e <= 320 for e in diverged_at)
    assert torch.equal(pack.theta[2:], um.Trainer(exploding).theta)


def assert_reports_equal(got, expected):
    """Same number of reports, and every report's episode, statuses, per-seed rows and aggregates equal
    (no zip truncation; wall-clock metrics excepted)."""
    assert [r.episode for r in got] == [r.episode for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert len(a.points) == len(b.points)
        for pa, pb in zip(a.points, b.points, strict=True):
            assert pa.status == pb.status
            assert pa.per_seed == pb.per_seed
            clock = {"seconds_per_episode"}
            assert {k: v for k, v in pa.metrics.items() if k not in clock} == \
                {k: v for k, v in pb.metrics.items() if k not in clock}


def test_resume_equals_uninterrupted(tmp_path):
    cfg = config(rule="uwm", episodes=480, report_every=160, batch_size=4, seeds=3, probe={"enabled": True, "samples": 8})
    whole = um.Trainer(cfg)
    expected = list(whole.run())
    first = um.Trainer(cfg)
    runner = first.run()
    next(runner)
    first.save(tmp_path / "ckpt.pt")
    resumed = um.Trainer.load(tmp_path / "ckpt.pt")
    rest = list(resumed.run())
    assert torch.equal(resumed.theta, whole.theta)
    assert_reports_equal(rest, expected[1:])


def test_resume_of_reinforce_with_ema_baseline_after_the_threshold_was_reached(tmp_path):
    """The checkpoint must carry the EMA baseline, the threshold window and the episode at which each
    member reached the threshold: saved mid-window after some members reached it, resumed runs must
    report exactly what the uninterrupted run reports."""
    cfg = config(rule="reinforce", baseline="ema", baseline_decay=0.9, task={"address_bits": 1}, hidden=[6, 4],
                 episodes=600, report_every=100, batch_size=4, seeds=4, lr=0.05, threshold=0.2, threshold_window=40,
                 dtype="float64", eval_episodes=64, probe={"enabled": True, "samples": 8})
    whole = um.Trainer(cfg)
    expected = list(whole.run())
    first = um.Trainer(cfg)
    runner = first.run()
    head = [next(runner) for _ in range(3)]
    reached = [r.get("episodes_to_threshold") for r in head[-1].points[0].per_seed]
    assert any(e is not None for e in reached), "the checkpoint must come after the threshold was reached"
    assert (first.baseline != 0).all()
    first.save(tmp_path / "ckpt.pt")
    resumed = um.Trainer.load(tmp_path / "ckpt.pt")
    assert torch.equal(resumed.baseline, first.baseline) and torch.equal(resumed.reached_at, first.reached_at)
    assert first.resumed_from == [] and resumed.resumed_from == [300]     # the marker the study tests read
    rest = list(resumed.run())
    assert_reports_equal(head + rest, expected)
    assert torch.equal(resumed.theta, whole.theta) and torch.equal(resumed.baseline, whole.baseline)


def test_same_config_and_seed_give_the_same_numbers():
    cfg = config(rule="hwm", episodes=320, report_every=160, batch_size=4)
    a, b = um.Trainer(cfg), um.Trainer(cfg)
    ra, rb = list(a.run()), list(b.run())
    assert torch.equal(a.theta, b.theta)
    assert ra[-1].points[0].per_seed == rb[-1].points[0].per_seed


def test_reports_carry_the_documented_metrics():
    cfg = config(rule="uwm", hidden=[4, 3], episodes=64, report_every=32, batch_size=4, seeds=2,
                 probe={"enabled": True, "samples": 64, "cross_rule": True})
    report = final(um.Trainer(cfg))
    seed = report.points[0].per_seed[0]
    for key in ("train_reward", "eval_reward", "running_reward", "max_abs_outgoing_l1", "max_abs_outgoing_l2",
                "outgoing_norm_l1", "probe_var_l1", "probe_mean_sq_l3", "probe_bias_l1",
                "probe_reinforce_var_l1", "probe_uwm_bias_l2", "probe_hwm_mean_sq_l1"):
        assert key in seed, key
    metrics = report.points[0].metrics
    for key in ("eval_reward_mean", "eval_reward_std", "eval_reward_sem", "diverged_fraction", "seconds_per_episode"):
        assert key in metrics
    # the cross-rule probe of the trained rule on the same episodes gives the trained rule's numbers
    assert seed["probe_uwm_var_l1"] == seed["probe_var_l1"]


@pytest.mark.slow
def test_ema_baseline_reduces_reinforce_probe_variance():
    """Same state, same probe episodes: the EMA baseline (about the mean reward) lowers the variance."""
    runs = {}
    for baseline in ("none", "ema"):
        cfg = config(rule="reinforce", baseline=baseline, episodes=4000, report_every=4000, batch_size=4, seeds=2,
                     lr=0.0, probe={"enabled": True, "samples": 4096}, task={"address_bits": 2, "rewards": "10"})
        runs[baseline] = final(um.Trainer(cfg)).points[0].metrics["probe_var_l1_mean"]
    # rewards 1/0 have mean 1/2 at chance: the baseline removes most of the squared offset
    assert runs["ema"] < 0.7 * runs["none"], runs


@pytest.mark.slow   # 30-45 s: the full tier's (see docs/performance.md)
def test_compiled_training_matches_eager_training():
    """torch.compile fuses the step (and unrolls STEPS_PER_CALL steps per call): the same numbers up to
    round-off. float64 and a tiny net keep the compile short (~20 s on 2 cores, cold cache)."""
    # windows of 25 steps: four-step calls and single steps, each generating its own uniforms in the graph
    common = dict(rule="uwm", hidden=[4, 3], episodes=100, report_every=50, batch_size=2, seeds=2, dtype="float64",
                  probe={"enabled": False})
    eager, compiled = um.Trainer(config(compile="off", **common)), um.Trainer(config(compile="on", **common))
    list(eager.run())
    reports = list(compiled.run())
    assert compiled.compiled and reports[-1].compile_seconds > 0
    assert torch.allclose(eager.theta, compiled.theta, rtol=0, atol=1e-10)


def test_eager_training_draws_each_windows_steps_once_in_bounded_blocks(monkeypatch):
    """Only the steps a window trains are drawn, each once, in order; blocks and member slices stay within
    the draw budget, and the numbers do not depend on the budget."""
    from uwm_model import streams, trainer as trainer_module

    cfg = config(rule="uwm", hidden=[4, 3], episodes=50 * 2, report_every=25 * 2, batch_size=2, seeds=3)
    reference = um.Trainer(cfg)
    list(reference.run())

    calls, real = [], streams.uniform_parts
    monkeypatch.setattr(streams, "uniform_parts", lambda keys, counter, n, dtype: calls.append(
        (keys.shape[0], torch.as_tensor(counter).flatten().tolist(), n)) or real(keys, counter, n, dtype))
    trainer = um.Trainer(cfg)
    per_uniform = trainer_module.DRAW_BYTES_PER_UNIFORM
    draws = trainer._draws_per_step()
    budget = 2 * draws * per_uniform                       # one step of two members
    monkeypatch.setattr(trainer_module, "DRAW_BUDGET_BYTES", budget)
    assert trainer.draw_block_steps() == 1                 # one step of three members exceeds it ...
    list(trainer.run())
    train = [(members, counters) for members, counters, n in calls if n == draws]
    assert {members for members, _ in train} == {1, 2}     # ... so each is drawn for 2 + 1 members
    assert [c for members, counters in train if members == 2 for c in counters] == list(range(50))
    assert all(members * len(counters) * draws * per_uniform <= budget for members, counters in train)
    assert torch.equal(trainer.theta, reference.theta)

    calls.clear()
    monkeypatch.setattr(trainer_module, "DRAW_BUDGET_BYTES", 10 * 3 * draws * per_uniform)
    trainer = um.Trainer(cfg)
    assert trainer.draw_block_steps() == 10
    list(trainer.run())
    blocks = [counters for members, counters, n in calls if n == draws]
    assert blocks == [list(range(s, s + 10)) for s in (0, 10)] + [list(range(20, 25))] + \
                     [list(range(s, s + 10)) for s in (25, 35)] + [list(range(45, 50))]   # never past a window
    assert torch.equal(trainer.theta, reference.theta)


def test_members_split_across_processes_give_the_same_numbers():
    from uwm_model.parallel import run_parallel, split_members

    points = [config(rule="wm", seeds=3, seed=0, episodes=128, report_every=64, batch_size=4, lr=0.02),
              config(rule="wm", seeds=2, seed=9, episodes=128, report_every=64, batch_size=4, lr=0.05)]
    parts = split_members(points, 2)
    assert [[(i, c.seed, c.seeds) for i, c in part] for part in parts] == [[(0, 0, 3)], [(1, 9, 2)]]
    assert [[(i, c.seed, c.seeds) for i, c in part] for part in split_members(points, 3)] == \
        [[(0, 0, 2)], [(0, 2, 1), (1, 9, 1)], [(1, 10, 1)]]
    together = list(um.Trainer(points).run())
    apart = list(run_parallel(points, workers=3))
    assert len(apart) == len(together)
    for a, b in zip(apart, together):
        for pa, pb in zip(a.points, b.points):
            assert pa.per_seed == pb.per_seed and pa.status == pb.status
            assert pa.metrics["eval_reward_mean"] == pb.metrics["eval_reward_mean"]


def test_evaluation_and_probes_in_member_slices_give_the_same_numbers(monkeypatch):
    """Large populations evaluate and probe slice by slice within the draw budget: same numbers."""
    from uwm_model import trainer as trainer_module

    cfg = config(rule="wm", rule_options={"p": 2}, hidden=[4, 3], episodes=32, report_every=32, batch_size=2, seeds=5,
                 eval_episodes=16, probe={"enabled": True, "samples": 8, "cross_rule": True})
    points = [cfg, cfg.model_copy(update={"rule_options": {"p": 3}, "seed": 50, "seeds": 2})]   # p per member
    whole = [p.per_seed for p in final(um.Trainer(points)).points]
    sliced_trainer = um.Trainer(points)
    probe_draws = 8 * sum(sliced_trainer._draws_per_episode(True))
    monkeypatch.setattr(trainer_module, "DRAW_BUDGET_BYTES", 2 * probe_draws * trainer_module.DRAW_BYTES_PER_UNIFORM)
    assert len(sliced_trainer._member_slices(probe_draws)) == 4       # 7 members: 2 + 2 + 2 + 1
    assert [p.per_seed for p in final(sliced_trainer).points] == whole


def test_train_reward_all_is_the_mean_over_every_episode_and_resumes_exactly(tmp_path):
    cfg = config(rule="uwm", hidden=[4, 3], episodes=96, report_every=32, batch_size=4, seeds=2,
                 probe={"enabled": True, "samples": 16})
    trainer = um.Trainer(cfg)
    reports = list(trainer.run())
    windows = torch.tensor([[r["train_reward"] for r in rep.points[0].per_seed] for rep in reports], dtype=torch.float64)
    for i, rep in enumerate(reports):      # equal windows: the mean over all episodes is the mean of the window means
        got = [r["train_reward_all"] for r in rep.points[0].per_seed]
        assert torch.allclose(torch.tensor(got, dtype=torch.float64), windows[: i + 1].mean(0), atol=1e-12)
    first = um.Trainer(cfg)
    next(first.run())
    first.save(tmp_path / "ckpt.pt")
    resumed = um.Trainer.load(tmp_path / "ckpt.pt")
    last = list(resumed.run())[-1].points[0].per_seed
    for a, b in zip(last, reports[-1].points[0].per_seed):
        assert a["train_reward_all"] == b["train_reward_all"]
        assert a["init_probe_var_l1"] == b["init_probe_var_l1"]     # the initial probe travels in the checkpoint


def test_init_probe_measures_the_initial_state_on_common_episodes():
    """The init probe equals a probe taken on the untrained parameters at counter 0, and the cross-rule
    probe of the trained rule matches its own probe there (same episodes for every rule)."""
    cfg = config(rule="hwm", rule_options={"order": 3}, hidden=[4, 3], episodes=32, report_every=32, batch_size=4,
                 seeds=2, probe={"enabled": True, "samples": 32, "cross_rule": True,
                                 "rules": [{"rule": "hwm", "options": {"order": 3}}, {"rule": "uwm"}]})
    fresh = um.Trainer(cfg).probe(0)
    seed = final(um.Trainer(cfg)).points[0].per_seed[0]
    assert seed["init_probe_var_l1"] == fresh["probe_var_l1"][0].item()
    assert seed["init_probe_hwm_order-3_var_l1"] == seed["init_probe_var_l1"]
    assert seed["init_probe_uwm_bias_sq_l1"] == fresh["probe_uwm_bias_sq_l1"][0].item()
    assert seed["probe_var_l1"] != seed["init_probe_var_l1"]           # trained: a different state


def test_layer_statistics_equal_the_brute_force_u_statistic_and_jackknife():
    """The O(K) formulas against per-sample estimates materialised and a literal leave-one-out jackknife."""
    from uwm_model.trainer import _layer_statistics

    gen = torch.Generator().manual_seed(3)
    P, K, n_in, n_out = 2, 9, 3, 2
    g = torch.randn(P, K, n_out, generator=gen, dtype=torch.float64)
    h = torch.randn(P, K, n_in, generator=gen, dtype=torch.float64)
    e_w = torch.randn(P, n_out, n_in, generator=gen, dtype=torch.float64)
    e_b = torch.randn(P, n_out, generator=gen, dtype=torch.float64)
    x = torch.cat([(g.unsqueeze(-1) * h.unsqueeze(-2)).reshape(P, K, -1), g], -1)        # per-sample estimates
    e = torch.cat([e_w.reshape(P, -1), e_b], -1)
    mean = x.mean(1)
    stats = _layer_statistics(g, h, mean[:, : n_out * n_in].view(P, n_out, n_in), mean[:, n_out * n_in:], 4, (e_w, e_b))
    d = x - e.unsqueeze(1)

    def u_stat(d):
        gram = d @ d.transpose(1, 2)
        k = d.shape[1]
        return (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (k * (k - 1))

    var = x.var(1).sum(1)
    assert torch.allclose(stats["var"], var)
    assert torch.allclose(stats["bias_sq"], u_stat(d))
    assert torch.allclose(stats["bias_sq"], (mean - e).pow(2).sum(1) - var / K)
    loo = torch.stack([u_stat(torch.cat([d[:, :i], d[:, i + 1:]], 1)) for i in range(K)], 1)
    jack = ((K - 1) / K * (loo - loo.mean(1, keepdim=True)).pow(2).sum(1)).sqrt()
    assert torch.allclose(stats["bias_sq_se"], jack)
    assert torch.allclose(stats["cos"], torch.nn.functional.cosine_similarity(mean, e, dim=1))
    half = K // 2                                                     # halves of unequal size: K odd
    assert torch.allclose(stats["bias_split"], ((x[:, :half].mean(1) - e) * (x[:, half:].mean(1) - e)).sum(1))
    signal = mean.pow(2).sum(1) - var / K
    assert torch.allclose(stats["nsr"], torch.where(signal > 0, var / (4 * signal), torch.nan), equal_nan=True)


def test_debiased_bias_finds_hwm_bias_above_pi_and_none_for_uwm():
    """Oracle z-test at initialisation, outgoing norm 4 (above the Taylor radius), the norm-stress net:
    hwm of order 3 is biased in hidden layer 2, uwm in neither layer (z = mean debiased squared bias over
    seeds over its standard error; measured z: uwm 0.4 and 0.6, hwm order 3 about 8)."""
    cfg = config(rule="uwm", hidden=[6, 4], outgoing_norm=4.0, seeds=8, episodes=4, report_every=4, batch_size=4,
                 probe={"enabled": True, "samples": 32768, "cross_rule": True,
                        "rules": [{"rule": "uwm"}, {"rule": "hwm", "options": {"order": 3}}]})
    probe = um.Trainer(cfg).probe(0)

    def z(label, layer):
        b, se = probe[f"probe_{label}_bias_sq_l{layer}"], probe[f"probe_{label}_bias_sq_se_l{layer}"]
        return (b.mean() / (se.pow(2).sum().sqrt() / len(b))).item()

    assert abs(z("uwm", 1)) < 4 and abs(z("uwm", 2)) < 4
    assert z("hwm_order-3", 2) > 4


def test_chunked_probe_equals_the_unchunked_probe(monkeypatch):
    """uwm's probe goes over chunks of samples within PROBE_CHUNK_BYTES: the same numbers."""
    from uwm_model import trainer as trainer_module

    cfg = config(rule="uwm", hidden=[5, 4], seeds=3, episodes=4, report_every=4, batch_size=4,
                 probe={"enabled": True, "samples": 40, "cross_rule": True})
    whole = um.Trainer(cfg).probe(1)
    monkeypatch.setattr(trainer_module, "PROBE_CHUNK_BYTES", 3 * 20 * 8 * trainer_module.PROBE_TEMPORARIES * 7)
    chunked = um.Trainer(cfg).probe(1)       # chunks of 7 samples
    assert whole.keys() == chunked.keys()
    for k in whole:
        assert torch.allclose(whole[k], chunked[k], rtol=1e-10, atol=1e-14, equal_nan=True), k


@pytest.mark.slow
def test_reward_level_probe_measures_each_member_once_where_it_first_reaches_the_level(tmp_path):
    """Member-level trigger at report boundaries: a member is probed at level r on the state of the first
    report where its running reward is >= r (on the level's own episodes, every rule on the same ones), the
    values then repeat; a member that never reaches r has no value. A REINFORCE-EMA cross-rule entry on a
    REINFORCE-EMA member is its own probe. The probes travel in the checkpoint."""
    from uwm_model.trainer import LEVEL_PROBE_COUNTER

    levels = [0.3, 0.6]
    cfg = config(rule="reinforce", baseline="ema", task={"address_bits": 1}, hidden=[4, 3], lr=0.05, episodes=3000,
                 report_every=500, batch_size=1, seeds=2, threshold_window=200,
                 probe={"enabled": True, "samples": 16, "cross_rule": True, "reward_levels": levels,
                        "rules": [{"rule": "uwm"}, {"rule": "reinforce", "baseline": "ema"}]})
    slow = cfg.model_copy(update={"lr": 1e-6, "seed": 7})                  # never reaches 0.3
    trainer = um.Trainer([cfg, slow])
    seen = {}
    for report in trainer.run():
        rows = report.points[0].per_seed + report.points[1].per_seed
        for i, level in enumerate(levels):
            due = [m for m, row in enumerate(rows) if row.get(f"at_reward_{level:g}_episode") == report.episode]
            if due:
                fresh = trainer.probe(LEVEL_PROBE_COUNTER + i)
                for m in due:
                    assert rows[m]["running_reward"] >= level and (i, m) not in seen
                    seen[i, m] = rows[m][f"at_reward_{level:g}_probe_var_l1"]
                    assert seen[i, m] == pytest.approx(fresh["probe_var_l1"][m].item(), rel=1e-9)
                    assert rows[m][f"at_reward_{level:g}_probe_uwm_bias_sq_l1"] == pytest.approx(
                        fresh["probe_uwm_bias_sq_l1"][m].item(), rel=1e-9)
            for m in range(len(rows)):                                   # repeated after, absent before
                assert (f"at_reward_{level:g}_probe_var_l1" in rows[m]) == ((i, m) in seen)
                if (i, m) in seen:
                    assert rows[m][f"at_reward_{level:g}_probe_var_l1"] == seen[i, m]
                    assert rows[m][f"at_reward_{level:g}_probe_reinforce_baseline-ema_var_l1"] == \
                        rows[m][f"at_reward_{level:g}_probe_var_l1"]
    assert {m for _, m in seen} == {0, 1} and (0, 0) in seen and (1, 0) in seen     # the fast seeds reach both
    assert not any(m >= 2 for _, m in seen)                                            # the slow point none
    assert "at_reward_0.3_probe_var_l1_mean" in report.points[0].metrics
    assert "at_reward_0.3_probe_var_l1_mean" not in report.points[1].metrics

    first = um.Trainer([cfg, slow])
    run = first.run()
    for _ in range(3):
        next(run)
    first.save(tmp_path / "ckpt.pt")
    resumed = final(um.Trainer.load(tmp_path / "ckpt.pt"))
    for pa, pb in zip(resumed.points, report.points):
        for a, b in zip(pa.per_seed, pb.per_seed):
            assert {k: v for k, v in a.items() if k.startswith("at_reward_")} == \
                {k: v for k, v in b.items() if k.startswith("at_reward_")}


def test_a_cross_rule_baseline_needs_a_rule_that_takes_one():
    from uwm_model.config import CrossRule

    assert CrossRule(rule="reinforce", baseline="ema").name == "reinforce_baseline-ema"
    with pytest.raises(ValueError, match="takes no reward baseline"):
        CrossRule(rule="uwm", baseline="ema")
    with pytest.raises(ValueError, match="not a probe option"):
        CrossRule(rule="reinforce", options={"baseline": 0.5})


def test_the_initial_probe_takes_its_own_sample_count():
    """probe.init_samples sets K of the initial-state probe only: the same numbers as a probe of the untrained
    parameters at counter 0 with that K, while the report probes keep probe.samples."""
    cfg = config(rule="hwm", rule_options={"order": 3}, hidden=[4, 3], episodes=32, report_every=32, batch_size=4,
                 seeds=2, probe={"enabled": True, "samples": 16, "init_samples": 64})
    fresh = um.Trainer(cfg)
    big, small = fresh.probe(0, samples=64), fresh.probe(0)
    seed = final(um.Trainer(cfg)).points[0].per_seed[0]
    assert seed["init_probe_var_l1"] == big["probe_var_l1"][0].item() != small["probe_var_l1"][0].item()


def test_compile_auto_depends_on_the_population_and_on_or_off_decide_alone():
    """`compile: auto` weighs the eager cost of the whole population against compiling, so the same point can
    compile in a large pack and run eagerly alone (results/reproduce.py pins its pack's choice)."""
    alone = config(compile="auto")
    assert not um.Trainer(alone).compiles()
    assert um.Trainer([alone, config(compile="auto", seed=100, seeds=28)]).compiles()
    assert um.Trainer(config(compile="on", episodes=16, report_every=16)).compiles()
    assert not um.Trainer(config(compile="off", seeds=64)).compiles()
