"""Connectivity masks and uneven fan-out (spec 3.9): the profiles, the masks, exact zeros through training, and
every rule against the exact oracle on masked networks.

Oracle tests: the spec's table networks grown to [3, 4, 4, 1] (so a hidden unit may feed 1 to 4 units) with an
explicit mask on W2 giving the four layer-1 units fan-outs 1, 1, 2, 4 (CV 0.61) and one on W3 cutting one of the four
layer-2 units from the output, on the 3-bit multiplexer, N = 320 000 samples of each of the 8 inputs on the table net
and 100 000 on the norm-3 net (drawn in chunks of 100 000, each from its own generator); z per free parameter as in
tests/test_unbiasedness.py (masked entries are estimated and differentiated as exactly 0 and left out). With 33 free
parameters an unbiased rule's max |z| exceeds 5 with probability ~2e-5.

Power against a 10% bias. A bias of 10% of the largest exact entry moves that entry's z by the margin
m = 0.1 |exact| / se; the test then fails (|z| > 5 there) with probability >= Phi(m - 5) (one tail; the other
entries can only add). The test asserts m > 6.65 on at least one of the two networks: power > 95%. The margin grows
as sqrt(N): at N = 100 000 on both nets (the previous size) it was 2.4-5.1, 95% power against 18% only. On the table
net every unbiased rule's margin was 3.8 at 100 000, so 320 000 there (the smallest round N past 6.65) gives each rule
its 95%; the norm-3 net keeps 100 000 (its z < 5 check needs no power of its own), which keeps the cost at ~2x.
Observed (seed 1; table net at 320 000 / norm-3 net at 100 000), max |z| and the 10% margin m: reinforce 2.8 (6.81)
/ 2.8 (2.76); uwm individual 2.8 (6.81) / 2.4 (2.82), global 1.8 (6.81) / 2.8 (3.73), individual rb 2.2 (6.81) /
2.3 (5.13), global rb 2.3 (6.81) / 2.5 (5.04); hwm P = 5 1.8 (6.81) on the table net (its norm-3 net is beyond its
radius, not asserted). Power against 10%: Phi(1.81) = 96.5% for every rule, from the table net, whose largest
entry is an output weight (every rule estimates the output layer alike, hence one margin). At the largest
hidden-layer entry the table net's margins are 17.6 (uwm individual and global, hwm P = 5) and 25.8 (both rb
forms): power ~1 against a 10% bias in a hidden unit's estimate (asserted > 6.65 for every rule but reinforce);
reinforce's is only 1.21 there (its hidden
estimates are noisy: 10% power there would take ~30x the samples). Biased max |z| (table / norm 3): ste 185 / 95,
ste identity 3919 / 242, wm 337 / 42, hwm P = 1 5.9 / 132. Each rule is also checked against its own
planted 10% bias: the estimator's samples shifted by 0.1 |exact| at the largest entry (either sign) are caught in
this very draw (|z| > 5 there), which is what the power statement predicts for m > 6.65 with probability > 95%.
A replicated simulation of that power (many independent draws of N samples) would cost minutes per rule; not done.
"""

import math

import pytest
import torch

import uwm_model as um
from uwm_model.fanout import CV_TOLERANCE, fan_out_counts, fan_outs, max_fan_out_cv, member_masks

from networks import glorot_pair
from test_unbiasedness import BIASED, UNBIASED

SAMPLES = (320_000, 100_000)   # per input: the table net (which carries the power), the norm-3 net
CHUNK = 100_000          # samples per estimate call: memory stays at one chunk of one input
MARGIN_95 = 6.65        # a 10% bias at the largest entry moves its z by more than 5 + 1.65: power > 95%


def cv_of(counts):
    c = counts.double()
    return (c.std(unbiased=False) / c.mean()).item()


@pytest.mark.parametrize("units,next_units,density", [(32, 64, 0.125), (64, 32, 0.25), (16, 16, 0.5), (7, 5, 0.4)])
def test_fan_out_profiles_hit_the_cv_at_a_fixed_mean(units, next_units, density):
    top = max_fan_out_cv(units, next_units, density)
    total = round(density * next_units * units)
    for cv in [0.0, 0.3, 0.7, top / 2, top]:
        counts = fan_out_counts(units, next_units, cv, density)
        assert counts.sum().item() == total and counts.min() >= 1 and counts.max() <= next_units
        assert abs(cv_of(counts) - cv) <= CV_TOLERANCE or (cv == 0 and cv_of(counts) < 1 / counts.double().mean()), cv
    with pytest.raises(ValueError, match=f"out of reach for {units} units feeding {next_units}.*at most"):
        fan_out_counts(units, next_units, top + 0.2, density)


def test_masks_are_per_member_seeded_and_deal_the_profile():
    a = member_masks([3, 32, 64, 1], 5, 1.5, 0.125)
    b = member_masks([3, 32, 64, 1], 5, 1.5, 0.125)
    c = member_masks([3, 32, 64, 1], 6, 1.5, 0.125)
    assert a[0] is None and a[2] is None and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert torch.equal(fan_outs(a[1]).sort().values.long(), fan_out_counts(32, 64, 1.5, 0.125))
    assert not torch.equal(fan_outs(a[1]), fan_outs(a[1]).sort().values)    # dealt to the units in a random order
    # categorical units: all K x K' weights between two units share their connection
    k3 = member_masks([3, 12, 12, 1], 0, 0.5, 0.5, categories=3)[1]
    blocks = k3.reshape(4, 3, 4, 3)
    assert torch.equal(blocks, blocks[:, :1, :, :1].expand_as(blocks))


def test_network_init_zeroes_masked_weights_and_keeps_the_dense_draws():
    dense = um.init_network([3, 8, 8, 1], population=3, seed=[1, 2, 3], dtype=torch.float64, device="cpu")
    masked = um.init_network([3, 8, 8, 1], population=3, seed=[1, 2, 3], dtype=torch.float64, device="cpu",
                             fan_out=(0.5, 0.5, 1))
    assert dense.masks is None and masked.masks[0] is None and masked.masks[2] is None
    m = masked.masks[1]
    assert torch.equal(masked.weights[1], dense.weights[1] * m) and torch.equal(masked.weights[0], dense.weights[0])
    assert not torch.equal(m[0], m[1])                    # members draw their own masks
    one = um.init_network([3, 8, 8, 1], population=1, seed=2, dtype=torch.float64, device="cpu", fan_out=(0.5, 0.5, 1))
    assert torch.equal(one.masks[1][0], m[1])               # ... from their own seed
    assert torch.equal(masked.member(1).masks[1], m[1:2]) and masked.clone().masks[1] is not m


RULES_AND_OPTIMISERS = [(rule, opt) for rule in um.RULES for opt in ("adam", "sgd")]


@pytest.mark.parametrize("rule,optimizer", RULES_AND_OPTIMISERS)
def test_masked_weights_and_their_adam_moments_stay_exactly_zero_in_training(rule, optimizer):
    cfg = um.TrialConfig(task={"address_bits": 1}, hidden=[6, 6], fan_out={"cv": 0.6, "density": 0.5}, rule=rule,
                         optimizer=optimizer, lr=0.05, batch_size=4, episodes=400, report_every=400, seeds=2,
                         device="cpu", compile="off", probe={"enabled": False})
    trainer = um.Trainer(cfg)
    list(trainer.run())
    masked = ~trainer.mask
    assert masked.sum() > 0 and trainer.updates.min() == 100
    for state in (trainer.theta, trainer.adam_m, trainer.adam_v):
        assert torch.equal(state[masked], torch.zeros_like(state[masked]))
    free = trainer.mask & (trainer.theta != trainer.init_theta)
    assert free.sum() > 0.5 * trainer.mask[:, :18 + 36].sum()   # the free weights do move


@pytest.mark.slow   # 30-45 s: the full tier's (see docs/performance.md)
def test_the_compiled_step_keeps_masked_weights_at_zero():
    cfg = um.TrialConfig(task={"address_bits": 1}, hidden=[6, 6], fan_out={"cv": 0.6, "density": 0.5}, rule="uwm",
                         lr=0.05, batch_size=4, episodes=64, report_every=64, device="cpu", compile="on",
                         probe={"enabled": False})
    trainer = um.Trainer(cfg)
    list(trainer.run())
    masked = ~trainer.mask
    assert all(torch.equal(t[masked], torch.zeros_like(t[masked])) for t in (trainer.theta, trainer.adam_m, trainer.adam_v))


def test_the_optimiser_classes_keep_masked_weights_at_zero(mux3):
    gen = torch.Generator().manual_seed(0)
    for make in (lambda net: um.Adam(net, 0.05), lambda net: um.SGD(net, 0.05)):
        net = um.init_network([3, 6, 6, 1], population=2, seed=0, dtype=torch.float64, device="cpu",
                              fan_out=(0.6, 0.5, 1))
        opt = make(net)
        for _ in range(5):
            grad = um.estimate("wm", net, mux3, mux3.enumerate()[0], generator=gen).mean()
            grad.weights[1] = torch.ones_like(grad.weights[1])    # even a gradient that is not masked
            opt.step(grad)
        zero = net.masks[1] == 0
        assert torch.equal(net.weights[1][zero], torch.zeros_like(net.weights[1][zero]))
        assert (net.weights[1][~zero] != 0).all()
        for moments in (getattr(opt, "m", None), getattr(opt, "v", None)):
            if moments is not None:
                assert torch.equal(moments[1][zero], torch.zeros_like(moments[1][zero]))


def test_fan_out_config_is_validated_in_one_line():
    base = dict(task={"address_bits": 1}, episodes=64, report_every=64, device="cpu")
    with pytest.raises(ValueError, match="fan_out needs at least two hidden layers"):
        um.TrialConfig(**base, hidden=[8], fan_out={"cv": 1})
    with pytest.raises(ValueError, match=r"fan_out cv 3 is out of reach for hidden layer 1 \(64 units feeding 32\) "
                                         r"at density 0.25: at most 1.60"):
        um.TrialConfig(**base, hidden=[64, 32], fan_out={"cv": 3})
    with pytest.raises(ValueError, match="greater than 0"):
        um.TrialConfig(**base, hidden=[8, 8], fan_out={"density": 0})
    cfg = um.TrialConfig(**base, hidden=[32, 64], fan_out={"cv": 2, "density": 0.125})
    assert cfg.fan_out.cv == 2 and cfg.pack_key() != cfg.model_copy(update={"fan_out": None}).pack_key()


# ------------------------------------------------------------------------------------------------- the oracle


def masked_pair():
    small, large = glorot_pair([3, 4, 4, 1], outgoing_norm=3)
    w2 = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=torch.float64)   # fan-outs 1 1 2 4
    w3 = torch.tensor([[1, 1, 0, 1]], dtype=torch.float64)
    masks = [None, w2.unsqueeze(0), w3.unsqueeze(0)]
    for net in (small, large):
        net.masks = masks
        net.weights[:] = [w if m is None else w * m for w, m in zip(net.weights, masks)]
    return small, large


@pytest.fixture(scope="module")
def masked_networks():
    return masked_pair()


_cache = {}


def statistics(net, task, rule, options, n, seed=1):
    """(max |z| over the free parameters, the 10% margin 0.1 |exact| / se at the largest exact entry, that entry's
    signed z, the 10% margin at the largest exact entry of the hidden layers). Input by input and chunk by chunk,
    each from its own generator (chunk c of input i seeded 1000 seed + i + 100 c), so memory stays at one chunk.
    A free parameter whose estimate has no spread (a unit cut from the output: its incoming weights' estimate and
    gradient are 0) must equal the exact value."""
    key = (id(net), rule, tuple(sorted(options.items())), n)
    if key not in _cache:
        _, exact = um.exact_gradient(net, task)
        free = torch.cat([(m if m is not None else torch.ones_like(w)).flatten() != 0
                          for w, m in zip(exact.weights, net.masks)] + [torch.ones(b.numel(), dtype=torch.bool)
                                                                       for b in exact.biases])
        L = len(exact.weights)
        hidden = torch.cat([torch.full((t.numel(),), l < L - 1) for l, t in
                            list(enumerate(exact.weights)) + list(enumerate(exact.biases))])[free]
        exact = torch.cat([t.flatten() for t in exact.weights + exact.biases])
        assert torch.equal(exact[~free], torch.zeros_like(exact[~free]))
        exact = exact[free]
        inputs, targets = task.enumerate()
        means, variances = [], []
        for i in range(len(inputs)):
            total, squares, count = 0.0, 0.0, 0
            for c, start in enumerate(range(0, n, CHUNK)):
                size = min(CHUNK, n - start)
                x = inputs[i: i + 1].expand(size, -1)
                gen = torch.Generator().manual_seed(seed * 1000 + i + 100 * c)
                est = um.estimate(rule, net, task, x, generator=gen, targets=targets[i: i + 1].expand(size), **options)
                flat = torch.cat([t.reshape(size, -1) for t in est.weights + est.biases], 1)
                assert torch.equal(flat[:, ~free], torch.zeros_like(flat[:, ~free]))
                flat = flat[:, free] - exact           # centred on the exact value: sums of squares stay accurate
                total, squares, count = total + flat.sum(0), squares + flat.pow(2).sum(0), count + size
            mean = total / count
            means.append(mean + exact)
            variances.append((squares - count * mean.pow(2)) / (count - 1))
        mean = torch.stack(means).mean(0)
        se = torch.stack(variances).clamp(min=0).sum(0).sqrt() / math.sqrt(n) / len(inputs)
        spread = se > 0
        assert torch.allclose(mean[~spread], exact[~spread], rtol=0, atol=1e-12), (rule, options)
        z = (mean - exact) / se
        top = exact.abs().argmax()
        top_hidden = torch.where(hidden, exact.abs(), torch.zeros_like(exact)).argmax()
        _cache[key] = (z[spread].abs().max().item(), (0.1 * exact[top].abs() / se[top]).item(), z[top].item(),
                       (0.1 * exact[top_hidden].abs() / se[top_hidden]).item())
    return _cache[key]


def power_against_10_percent(margin):
    """Probability that a 10% bias at the largest entry takes its z beyond 5 (normal approximation, one tail)."""
    return 0.5 * math.erfc((5 - margin) / math.sqrt(2))


def test_the_oracle_of_a_masked_net_is_the_dense_oracle_with_zero_weights(masked_networks, mux3):
    net = masked_networks[0]
    dense = um.Network(net.weights, net.biases)
    J, grad = um.exact_gradient(net, mux3)
    J_dense, grad_dense = um.exact_gradient(dense, mux3)
    assert torch.equal(J, J_dense)
    for g, gd, m in zip(grad.weights, grad_dense.weights, net.masks):
        keep = torch.ones_like(gd) if m is None else m
        assert torch.equal(g, gd * keep)
        assert m is None or (gd[m == 0] != 0).any()      # the dense derivative along a masked weight is not 0


@pytest.mark.slow
@pytest.mark.parametrize("rule,options", UNBIASED + [("hwm", {"order": 5})], ids=lambda v: str(v))
def test_unbiased_rules_pass_the_z_test_on_masked_nets(masked_networks, mux3, rule, options):
    nets = masked_networks[:1] if rule == "hwm" else masked_networks      # hwm: small weights only
    margins, hidden_margins = [], []
    for net, n in zip(nets, SAMPLES):
        z, margin, z_top, hidden_margin = statistics(net, mux3, rule, options, n)
        assert z < 5, f"{rule} {options}: max |z| = {z:.1f}"
        margins.append(margin)
        hidden_margins.append(hidden_margin)
        if margin > MARGIN_95:       # this net carries the power: a planted 10% bias, either sign, is caught here
            assert abs(z_top + margin) > 5 and abs(z_top - margin) > 5, (rule, options, z_top, margin)
    power = power_against_10_percent(max(margins))
    assert max(margins) > MARGIN_95, f"{rule} {options}: too few samples to detect a 10% bias (margins {margins}, " \
                                     f"power {power:.0%})"
    if rule != "reinforce":          # the rules that shape a hidden unit's signal: 95% power in the hidden layers too
        assert max(hidden_margins) > MARGIN_95, f"{rule} {options}: hidden-layer margins {hidden_margins}"


@pytest.mark.slow
@pytest.mark.parametrize("rule,options", BIASED, ids=lambda v: str(v))
def test_biased_rules_are_caught_on_masked_nets(masked_networks, mux3, rule, options):
    z = max(statistics(net, mux3, rule, options, n)[0] for net, n in zip(masked_networks, SAMPLES))
    assert z > 10, f"{rule} {options} was not caught: max |z| = {z:.1f}"


# ------------------------------------------------------------------------------------------------- the probe


def test_probe_metrics_of_a_masked_net_match_an_independent_computation():
    """The probe's variance, mean norm and bias on a masked net leave the masked entries out, and the fan-out rhos
    are Spearman's rho (analysis.stats.spearman, an independent implementation) of per-unit statistics computed
    episode by episode (tests/test_probe_metrics.py's harness)."""
    from analysis.stats import spearman
    from test_probe_metrics import per_episode_estimates
    from uwm_model import streams

    K = 32
    cfg = um.TrialConfig(rule="wm", task={"address_bits": 1}, hidden=[4, 4], fan_out={"cv": 0.6, "density": 0.5},
                         seeds=2, seed=3, batch_size=2, episodes=32, report_every=16, lr=0.05, dtype="float64",
                         device="cpu", compile="off", probe={"samples": K, "reward_levels": []})
    trainer = um.Trainer(cfg)
    report = list(trainer.run())[-1]
    task, sizes = trainer.task, trainer.sizes
    draws = K * (sizes[0] + sum(sizes[1:]) + sum(sizes[1:-1]))
    probe_u = streams.uniforms(trainer.probe_keys, 2, draws, torch.float64)
    w0, b0 = trainer.unflatten(trainer.init_theta)
    for m, row in enumerate(report.points[0].per_seed):
        weights, biases = trainer.unflatten(trainer.theta[m: m + 1])
        masks = [None if t is None else t[m: m + 1] for t in trainer.masks]
        net = um.Network([w.clone() for w in weights], [b.clone() for b in biases], masks)
        _, exact = um.exact_gradient(net, task)
        samples = per_episode_estimates(net, task, probe_u[m].view(K, -1), sizes, "wm", {})
        for l, s in enumerate(samples):
            keep = torch.cat([(masks[l][0] if masks[l] is not None else torch.ones_like(weights[l][0])).flatten(),
                              torch.ones(sizes[l + 1], dtype=torch.float64)])
            s = s * keep
            mean = s.mean(0)
            exact_flat = torch.cat([exact.weights[l][0].flatten(), exact.biases[l][0]])
            assert row[f"probe_var_l{l + 1}"] == pytest.approx(((s - mean) ** 2).sum().item() / (K - 1), rel=1e-9)
            assert row[f"probe_mean_sq_l{l + 1}"] == pytest.approx(mean.pow(2).sum().item(), rel=1e-9)
            assert row[f"probe_bias_l{l + 1}"] == pytest.approx((mean - exact_flat).norm().item(), rel=1e-9)
        g = samples[0][:, -sizes[1]:]                                 # layer-1 logit estimates [K, n1]
        fan = masks[1][0].sum(0)
        var = g.var(0)
        bias = (g - exact.biases[0][0]).mean(0).pow(2) - (g - exact.biases[0][0]).var(0) / K
        speed = (weights[0][0] - w0[0][m]).pow(2).sum(1) + (biases[0][0] - b0[0][m]).pow(2)
        for kind, value in (("var", var), ("bias", bias), ("speed", speed)):
            assert row[f"fanout_rho_{kind}_l1"] == pytest.approx(spearman(fan.numpy(), value.numpy()), abs=1e-9)
        assert "fanout_rho_speed_l1" not in row or math.isfinite(row["fanout_rho_speed_l1"])


def test_rank_correlation_and_the_debiased_unit_bias():
    from analysis.stats import spearman
    from uwm_model.fanout import rank_correlation, unit_statistics

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 5, (3, 20), generator=gen).double()              # ties, as fan-outs have
    y = x + torch.randn(3, 20, generator=gen, dtype=torch.float64)
    got = rank_correlation(x, y)
    assert all(got[i].item() == pytest.approx(spearman(x[i].numpy(), y[i].numpy()), abs=1e-12) for i in range(3))
    assert torch.isnan(rank_correlation(torch.ones(1, 5), torch.arange(5.0).unsqueeze(0))).all()
    # an unbiased estimate's debiased squared bias averages 0 (its plain squared bias would be var / K > 0)
    g = torch.randn(1, 16, 4000, generator=gen, dtype=torch.float64) * 2 + 1
    stats = unit_statistics(g, torch.ones(1, 4000, dtype=torch.float64), False, torch.zeros(1, 4000))
    bias = stats["bias"]
    assert abs(bias.mean().item()) < 4 * bias.std().item() / math.sqrt(4000)
    assert stats["var"].mean().item() == pytest.approx(4, rel=0.05)
