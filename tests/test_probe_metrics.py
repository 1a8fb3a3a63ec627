"""Reported metrics against an independent computation: the probe's variance, squared mean norm and bias,
the evaluation reward and the weight norms, recomputed member by member and episode by episode from the
same streams with plain loops (centred variances, explicit per-sample weight estimates)."""

import math

import pytest
import torch

import uwm_model as um
from uwm_model import streams
from uwm_model.rules import resolve_rule


def per_episode_estimates(net, task, u, sizes, rule, options):
    """Per-episode flat estimates [K, layer entries] per layer, one episode at a time (member 0 of ``net``)."""
    K = u.shape[0]
    widths = sizes[1:]
    layout = [sizes[0], *widths, *widths[:-1]]
    rows = [[] for _ in widths]
    rule_spec, opts = resolve_rule(rule, options)
    for k in range(K):
        parts = list(torch.split(u[k].view(1, 1, -1), layout, dim=2))
        x = task.inputs_from_uniforms(parts[0], torch.float64)
        ep = um.sample_episode(net.weights, net.biases, x, parts[1: 1 + len(widths)])
        R = task.reward(x, ep.action)
        grads = rule_spec.fn(net.weights, ep, R, parts[1 + len(widths):], **opts)
        for l, g in enumerate(grads):
            weight = g[0, 0].unsqueeze(1) * ep.h[l][0, 0].unsqueeze(0)      # g_i h_j, [n_out, n_in]
            rows[l].append(torch.cat([weight.flatten(), g[0, 0]]))
    return [torch.stack(r) for r in rows]


def test_probe_eval_and_norm_metrics_match_an_independent_computation():
    K, E = 32, 48
    cfg = um.TrialConfig(rule="uwm", task={"address_bits": 1}, hidden=[3, 2], seeds=2, seed=5, batch_size=2,
                         episodes=32, report_every=16, lr=0.05, outgoing_norm=2.0, dtype="float64", device="cpu",
                         compile="off", eval_episodes=E,
                         probe={"enabled": True, "samples": K, "cross_rule": True,
                                "rules": [{"rule": "reinforce"}, {"rule": "wm", "options": {"p": 3}},
                                          {"rule": "uwm", "options": {"signal": "global"}}]})
    trainer = um.Trainer(cfg)
    report = list(trainer.run())[-1]
    counter = 2                                     # the report's index: probes and evaluation draw counter 2
    task, sizes = trainer.task, trainer.sizes
    probe_draws = K * (sizes[0] + sum(sizes[1:]) + sum(sizes[1:-1]))
    eval_draws = E * (sizes[0] + sum(sizes[1:]))
    probe_u = streams.uniforms(trainer.probe_keys, counter, probe_draws, torch.float64)
    eval_u = streams.uniforms(trainer.eval_keys, counter, eval_draws, torch.float64)
    rules = [("", "uwm", {}), ("reinforce_", "reinforce", {}), ("wm_p-3_", "wm", {"p": 3}),
             ("uwm_signal-global_", "uwm", {"signal": "global"})]
    for m, row in enumerate(report.points[0].per_seed):
        weights, biases = trainer.unflatten(trainer.theta[m: m + 1])
        net = um.Network([w.clone() for w in weights], [b.clone() for b in biases])
        _, exact = um.exact_gradient(net, task)
        for prefix, rule, options in rules:
            samples = per_episode_estimates(net, task, probe_u[m].view(K, -1), sizes, rule, options)
            for l, s in enumerate(samples):
                mean = s.mean(0)
                variance = ((s - mean) ** 2).sum(1).sum() / (K - 1)          # total per-sample variance
                exact_flat = torch.cat([exact.weights[l][0].flatten(), exact.biases[l][0]])
                name = f"l{l + 1}"
                assert row[f"probe_{prefix}var_{name}"] == pytest.approx(variance.item(), rel=1e-9, abs=1e-12)
                assert row[f"probe_{prefix}mean_sq_{name}"] == pytest.approx(mean.pow(2).sum().item(), rel=1e-9)
                assert row[f"probe_{prefix}bias_{name}"] == pytest.approx((mean - exact_flat).norm().item(), rel=1e-9)

        # evaluation: E fresh episodes of the stochastic network, mean reward
        rewards = []
        layout = [sizes[0], *sizes[1:]]
        for e in range(E):
            parts = list(torch.split(eval_u[m].view(E, -1)[e].view(1, 1, -1), layout, dim=2))
            x = task.inputs_from_uniforms(parts[0], torch.float64)
            ep = um.sample_episode(net.weights, net.biases, x, parts[1:])
            rewards.append(task.reward(x, ep.action).item())
        assert row["eval_reward"] == pytest.approx(sum(rewards) / E, abs=1e-12)

        for l in range(1, len(weights)):
            w = net.weights[l][0]                                   # [n_out, n_in]: column i is unit i's outgoing
            assert row[f"max_abs_outgoing_l{l}"] == pytest.approx(w.abs().max().item())
            assert row[f"outgoing_norm_l{l}"] == pytest.approx(w.norm(dim=0).mean().item())


def test_aggregates_are_mean_std_and_sem_over_seeds():
    cfg = um.TrialConfig(rule="wm", task={"address_bits": 1}, hidden=[3, 2], seeds=5, batch_size=2, episodes=16,
                         report_every=16, dtype="float64", device="cpu", compile="off", eval_episodes=32,
                         probe={"enabled": False})
    point = list(um.Trainer(cfg).run())[-1].points[0]
    for key in ("eval_reward", "train_reward", "outgoing_norm_l1"):
        values = torch.tensor([row[key] for row in point.per_seed], dtype=torch.float64)
        assert point.metrics[f"{key}_mean"] == pytest.approx(values.mean().item())
        assert point.metrics[f"{key}_std"] == pytest.approx(values.std().item())
        assert point.metrics[f"{key}_sem"] == pytest.approx(values.std().item() / 5 ** 0.5)
    assert len({row["eval_reward"] for row in point.per_seed}) > 1     # seeds differ: std is not trivially 0


def test_the_reference_noise_to_signal_ratio_agrees_with_the_exact_one():
    """nsr_ref (V over a REINFORCE reference's ||∇J||², uwm_model.signal) against nsr_exact (V over the
    oracle's) on the same initial states of a small net, 48 seeds:
    the two agree on average within 10 % where it resolved (S resolved to 1/3 of itself per state; a state whose
    gradient is too small for the cap is refused, as at most 10 % here)."""
    cfg = um.TrialConfig(rule="uwm", task={"address_bits": 1}, hidden=[4, 3], seeds=48, seed=3, batch_size=4,
                         episodes=16, report_every=16, outgoing_norm=2.0, dtype="float64", device="cpu",
                         compile="off", probe={"enabled": True, "samples": 64, "reference_samples": 1 << 17})
    trainer = um.Trainer(cfg)
    trainer._prepare()
    probe = trainer.probe(0)
    variances = [probe[f"probe_var_l{l}"] for l in (1, 2, 3)]
    ref = trainer._reference_noise(variances)
    for l in (1, 2, 3):
        exact, new = probe[f"probe_nsr_exact_l{l}"], ref[f"init_probe_nsr_ref_l{l}"]
        ok = torch.isfinite(new)
        assert ok.float().mean() >= 0.9, l
        assert (new / exact)[ok].mean().item() == pytest.approx(1.0, abs=0.1), l
    assert (ref["init_probe_ref_samples_l1"] >= 256).all()


def test_nsr_ref_is_logged_on_a_net_without_the_exact_gradient():
    """Where the oracle cannot enumerate the net, the initial probe carries nsr_ref and its sample count
    (and no nsr_exact); with reference_samples 0 (the default) neither."""
    base = dict(rule="reinforce", task={"address_bits": 2}, hidden=[24, 24], seeds=2, batch_size=4, episodes=16,
                report_every=16, dtype="float64", device="cpu", compile="off")
    row = list(um.Trainer(um.TrialConfig(**base, probe={"samples": 32, "reference_samples": 4096})).run())[-1]
    row = row.points[0].per_seed[0]
    assert "init_probe_nsr_exact_l1" not in row and row["init_probe_ref_samples_l1"] >= 256
    assert all(f"init_probe_nsr_ref_l{l}" in row or row["init_probe_ref_samples_l1"] == 4096 for l in (1, 2))
    off = list(um.Trainer(um.TrialConfig(**base, probe={"samples": 32})).run())[-1].points[0].per_seed[0]
    assert not any("nsr_ref" in k or "ref_samples" in k for k in off)


def test_the_taylor_radius_metrics_match_a_direct_count():
    """init_beyond_radius and init_radius_ratio against a loop over episodes and weights on the probe's own
    episodes: the fraction of |W_ji| > sqrt(z'_j² + π²) and the mean over episodes of the largest ratio."""
    import math

    K = 16
    cfg = um.TrialConfig(rule="hwm", task={"address_bits": 1}, hidden=[3, 2], seeds=2, seed=4, batch_size=2,
                         episodes=16, report_every=16, outgoing_norm=5.0, dtype="float64", device="cpu",
                         compile="off", probe={"samples": K})
    trainer = um.Trainer(cfg)
    trainer._prepare()
    got = trainer._taylor_radius(0)
    weights, ep, _, _ = trainer._draw_episode(trainer.theta.double(), trainer.probe_keys, 0, K, True)
    for l in (1, 2):
        w, z = weights[l], ep.z[l]            # hidden layer l's outgoing weights, the next layer's logits
        for m in range(2):
            beyond, largest = 0, 0.0
            for k in range(K):
                ratios = [abs(w[m, j, i].item()) / math.sqrt(z[m, k, j].item() ** 2 + math.pi ** 2)
                          for j in range(w.shape[1]) for i in range(w.shape[2])]
                beyond += sum(r > 1 for r in ratios)
                largest += max(ratios)
            assert got[f"init_beyond_radius_l{l}"][m].item() == pytest.approx(beyond / (K * w.shape[1] * w.shape[2]))
            assert got[f"init_radius_ratio_l{l}"][m].item() == pytest.approx(largest / K)
    assert 0 < got["init_beyond_radius_l1"].mean() < 1


def test_the_reference_draws_its_own_episodes_and_sums_reinforce_estimates():
    """One round of the reference (reference_samples 256) against a direct computation: REINFORCE's
    per-episode estimates on the uniforms of probe counter REFERENCE_COUNTER (not the probe's own episodes),
    16 group means of 16 episodes, S = sum_{i != j} m_i . m_j / (16 · 15); nsr_ref = V / (B S) where S
    exceeds 3 jackknife errors, else absent (NaN)."""
    from uwm_model.signal import GROUPS, group_signal
    from uwm_model.trainer import REFERENCE_COUNTER

    K = 256
    P = 8
    cfg = um.TrialConfig(rule="uwm", task={"address_bits": 1}, hidden=[2], seeds=P, seed=6, batch_size=2,
                         episodes=16, report_every=16, outgoing_norm=4.0, dtype="float64", device="cpu",
                         compile="off", probe={"samples": 32, "reference_samples": K})
    trainer = um.Trainer(cfg)
    trainer._prepare()
    variances = [torch.full((P,), 1.0, dtype=torch.float64) for _ in range(2)]
    got = trainer._reference_noise(variances)
    sizes = trainer.sizes
    draws = K * (sizes[0] + sum(sizes[1:]) + sum(sizes[1:-1]))
    u = streams.uniforms(trainer.probe_keys, REFERENCE_COUNTER, draws, torch.float64)
    finite = 0
    for m in range(P):
        weights, biases = trainer.unflatten(trainer.theta[m: m + 1].double())
        net = um.Network([w.clone() for w in weights], [b.clone() for b in biases])
        for l, x in enumerate(per_episode_estimates(net, trainer.task, u[m].view(K, -1), sizes, "reinforce", {})):
            sums = x.view(GROUPS, K // GROUPS, -1).sum(1).unsqueeze(0)
            s, se = group_signal(sums, torch.tensor([K // GROUPS]))
            value = got[f"init_probe_nsr_ref_l{l + 1}"][m].item()
            if s.item() > 3 * se.item():
                assert value == pytest.approx(1.0 / (cfg.batch_size * s.item()), rel=1e-9)
                finite += 1
            else:
                assert math.isnan(value)
    assert finite >= 2, finite
