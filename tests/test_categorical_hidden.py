"""Categorical hidden units (spec 3.8) against the exact oracle.

K = 2 is a Bernoulli unit: a Bernoulli network embedded as a K = 2 network (value 0's logit and outgoing weights
zero, value 1's those of the Bernoulli unit) has the same J, the same exact gradient and, from the same
random stream, the same estimates of every rule (to 1e-12, float64).

K = 3: networks [3, 2x3, 2x3, 1] on the 3-bit multiplexer (9 x 9 hidden states, enumerated), drawn like the spec's
table networks, and a sibling with every outgoing column of W2, W3 at norm 2 (switch directions W[:, k'] - W[:, k]
then have norms up to ~4, the Bernoulli norm-4 net's shifts). N samples of each of the 8 inputs; z as in
tests/test_unbiasedness.py. With 64 parameters an unbiased rule's max |z| exceeds 5 with probability ~4e-5.
Power against a 10% bias: on at least one of the two networks a bias of 10% of the largest exact gradient entry
must move that entry's z by a margin m > 5 + 1.65, so the test fails with probability >= Phi(m - 5) > 95% (one
tail); and a 10% bias planted there (the samples shifted by 0.1 |exact|, either sign) is caught in this very draw.
Observed (seed 1, N = 60 000; table net / norm 2), max |z| and the margin m: reinforce 2.2 (2.4) / 2.4 (10.3);
uwm individual 2.7 (13.4) / 2.6 (2.8), global 3.4 (2.4) / 2.0 (8.5), individual rb 2.0 (17.9) / 2.1 (5.3),
global rb 2.0 (3.7) / 2.1 (10.4). Power against 10%, from the better net's margin: reinforce Phi(5.3), uwm
individual Phi(8.4), global Phi(3.5) = 0.9998, individual rb Phi(12.9), global rb Phi(5.4): above 0.9998 for every
rule (the 10% requirement needs no more samples here; the weakest, uwm global, would still have 95% at 0.62 N).
Biased max |z|: ste 294, ste identity 1089, wm 144, hwm P=1 23.6. At column norm 4 (shifts up to ~8) uwm with the
individual signal stays inside |z| < 5 but its importance weights are so heavy-tailed that the test has no power
there (margin 0.03).
"""

import math

import pytest
import torch

import uwm_model as um
from uwm_model.units import CategoricalHidden, hidden_unit_type

from networks import glorot_pair
from test_unbiasedness import BIASED, UNBIASED

ALL_RULES = UNBIASED + BIASED + [("hwm", {"order": 3}), ("hwm", {"order": 3, "form": "rb"})]
K2 = CategoricalHidden(2)


def embed_as_k2(net):
    """The Bernoulli network as a network of K = 2 categorical hidden units (value 1 = the Bernoulli h = 1)."""
    L, weights, biases = len(net.weights), [], []
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        P, n_out, n_in = w.shape
        rows = 2 * n_out if l < L - 1 else n_out
        cols = 2 * n_in if l > 0 else n_in
        row_index = torch.arange(n_out) * 2 + 1 if l < L - 1 else torch.arange(n_out)
        col_index = torch.arange(n_in) * 2 + 1 if l > 0 else torch.arange(n_in)
        big = torch.zeros(P, rows, cols, dtype=w.dtype)
        big[:, row_index[:, None], col_index[None, :]] = w
        bb = torch.zeros(P, rows, dtype=b.dtype)
        bb[:, row_index] = b
        weights.append(big)
        biases.append(bb)
    return um.Network(weights, biases)


def embedded(t, l, L, rows=True, cols=True):
    """The entries of a K = 2 tensor that correspond to the Bernoulli network's."""
    if rows and l < L - 1:
        t = t[..., 1::2, :] if t.dim() == 4 or (t.dim() == 3 and cols is not None) else t
    if cols and l > 0:
        t = t[..., 1::2]
    return t


def test_k2_oracle_equals_bernoulli(table_networks, mux3):
    for net in table_networks:
        J, grad = um.exact_gradient(net, mux3)
        J2, grad2 = um.exact_gradient(embed_as_k2(net), mux3, hidden_units=K2)
        assert torch.allclose(J, J2, rtol=0, atol=1e-12)
        L = len(net.weights)
        for l in range(L):
            w2 = grad2.weights[l][:, 1::2] if l < L - 1 else grad2.weights[l]
            w2 = w2[..., 1::2] if l > 0 else w2
            b2 = grad2.biases[l][:, 1::2] if l < L - 1 else grad2.biases[l]
            assert torch.allclose(grad.weights[l], w2, rtol=0, atol=1e-12)
            assert torch.allclose(grad.biases[l], b2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule,options", ALL_RULES, ids=lambda v: str(v))
def test_k2_estimates_equal_bernoulli(table_networks, mux3, rule, options):
    inputs, _ = mux3.enumerate()
    x = inputs.repeat_interleave(500, 0)
    for net in table_networks:
        a = um.estimate(rule, net, mux3, x, generator=torch.Generator().manual_seed(3), **options)
        b = um.estimate(rule, embed_as_k2(net), mux3, x, generator=torch.Generator().manual_seed(3),
                        hidden_units=K2, **options)
        assert torch.equal(a.reward, b.reward)
        L = len(net.weights)
        for l in range(L):
            g2 = b.biases[l][..., 1::2] if l < L - 1 else b.biases[l]
            assert torch.allclose(a.biases[l], g2, rtol=0, atol=1e-12), (rule, l, (a.biases[l] - g2).abs().max())


def test_categorical_sampler_and_outcomes_agree():
    """The sampler's frequencies match the declared probabilities; outcomes enumerate every one-hot state once."""
    kind = CategoricalHidden(3)
    z = torch.tensor([[[0.3, -1.0, 0.8, 1.5, 0.0, -0.5]]], dtype=torch.float64)
    u = torch.rand(1, 200_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h, pi = kind.sample(z.expand(1, 200_000, 6), u)
    assert torch.equal(h.reshape(-1, 2, 3).sum(-1), torch.ones(200_000, 2, dtype=torch.float64))
    freq = h.mean(1)[0]
    se = (pi[0, 0] * (1 - pi[0, 0]) / 200_000).sqrt()
    assert ((freq - pi[0, 0]).abs() / se).max() < 5
    outcomes = kind.outcomes(6)
    assert outcomes.shape == (9, 6) and len({tuple(o.tolist()) for o in outcomes}) == 9
    assert torch.allclose(kind.log_transition(z, outcomes).exp().sum(-1), torch.ones(1, 1, dtype=torch.float64))


def test_ste_backward_is_the_softmax_jacobian():
    kind, gen = CategoricalHidden(3), torch.Generator().manual_seed(0)
    z = torch.randn(1, 2, 6, generator=gen, dtype=torch.float64)
    back = torch.randn(1, 2, 6, generator=gen, dtype=torch.float64)
    _, vjp = torch.autograd.functional.vjp(kind.probabilities, z, back)
    assert torch.allclose(kind.ste_backward(back, kind.probabilities(z)), vjp, rtol=0, atol=1e-12)


def test_hidden_unit_type_validation():
    assert hidden_unit_type() is um.BERNOULLI
    with pytest.raises(ValueError, match="categories >= 2"):
        hidden_unit_type("categorical", 1)
    with pytest.raises(ValueError, match="unknown hidden unit type"):
        hidden_unit_type("gaussian")
    with pytest.raises(ValueError, match="whole number of units"):
        CategoricalHidden(3).draws(4)


# ------------------------------------------------------------------------------------------------- K = 3

N = 60_000


@pytest.fixture(scope="module")
def k3_networks():
    return glorot_pair([3, 6, 6, 1], outgoing_norm=2)


_cache = {}


def statistics(net, task, rule, options, kind, seed=1, n=N):
    """(max |z|, relative bias, power margin, z at the largest exact entry) of a rule against the oracle: the
    margin is 0.1 |exact| / se at the largest exact entry (a 10% bias there moves its z by this much)."""
    key = (id(net), rule, tuple(sorted(options.items())), kind.categories)
    if key not in _cache:
        _, exact = um.exact_gradient(net, task, hidden_units=kind)
        exact = torch.cat([t.flatten() for t in exact.weights + exact.biases])
        inputs, targets = task.enumerate()
        x = inputs.repeat_interleave(n, 0)
        est = um.estimate(rule, net, task, x, generator=torch.Generator().manual_seed(seed), hidden_units=kind,
                          **options)
        flat = torch.cat([t.reshape(x.shape[0], -1) for t in est.weights + est.biases], 1)
        per_input = flat.reshape(len(inputs), n, -1)
        mean = per_input.mean(1).mean(0)
        se = per_input.var(1).sum(0).sqrt() / math.sqrt(n) / len(inputs)
        top = exact.abs().argmax()
        z = (mean - exact) / se
        _cache[key] = (z.abs().max().item(), ((mean - exact).norm() / exact.norm()).item(),
                       (0.1 * exact[top].abs() / se[top]).item(), z[top].item())
    return _cache[key]


@pytest.mark.parametrize("rule,options", UNBIASED, ids=lambda v: str(v))
@pytest.mark.slow
def test_unbiased_rules_pass_the_z_test_with_categorical_hidden_units(k3_networks, mux3, rule, options):
    from test_fan_out import MARGIN_95, power_against_10_percent
    margins = []
    for net in k3_networks:
        z, _, margin, z_top = statistics(net, mux3, rule, options, CategoricalHidden(3))
        assert z < 5, f"{rule} {options}: max |z| = {z:.1f}"
        margins.append(margin)
        if margin > MARGIN_95:       # this net carries the power: a planted 10% bias, either sign, is caught here
            assert abs(z_top + margin) > 5 and abs(z_top - margin) > 5, (rule, options, z_top, margin)
    power = power_against_10_percent(max(margins))
    assert max(margins) > MARGIN_95, f"{rule} {options}: too few samples to detect a 10% bias (margins {margins}, " \
                                     f"power {power:.0%})"


@pytest.mark.parametrize("rule,options", BIASED, ids=lambda v: str(v))
@pytest.mark.slow
def test_biased_rules_are_caught_with_categorical_hidden_units(k3_networks, mux3, rule, options):
    z = max(statistics(net, mux3, rule, options, CategoricalHidden(3))[0] for net in k3_networks)
    assert z > 10, f"{rule} {options} was not caught: max |z| = {z:.1f}"


# ------------------------------------------------------------------------------------------------- trials


def test_trial_config_validates_the_hidden_unit_type():
    base = dict(task={"address_bits": 1}, hidden=[4], episodes=64, report_every=64, device="cpu")
    with pytest.raises(ValueError, match="needs categories"):
        um.TrialConfig(**base, hidden_units="categorical")
    with pytest.raises(ValueError, match="categorical only"):
        um.TrialConfig(**base, categories=3)
    with pytest.raises(ValueError, match="greater than or equal to 2"):
        um.TrialConfig(**base, hidden_units="categorical", categories=1)
    cfg = um.TrialConfig(**base, hidden_units="categorical", categories=3)
    assert cfg.sizes() == [3, 12, 1] and cfg.hidden_unit_type == CategoricalHidden(3)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["uwm", "hwm", "wm", "reinforce", "ste"])
@pytest.mark.slow
def test_a_trial_of_categorical_hidden_units_learns_the_3bit_multiplexer(rule):
    """Hidden [8, 8] units of K = 3 values, Adam lr 0.03, batch 16, 24 000 episodes, 2 seeds: every rule runs the
    trainer's step on categorical layers; uwm, wm and hwm learn (eval reward > 0.8; chance is 0)."""
    cfg = um.TrialConfig(task={"address_bits": 1}, hidden=[8, 8], hidden_units="categorical", categories=3, rule=rule,
                         lr=0.03, batch_size=16, episodes=24_000, report_every=24_000, seeds=2, threshold=0.8,
                         threshold_window=2000, device="cpu", compile="off", probe={"enabled": False})
    report = list(um.Trainer(cfg).run())[-1]
    evals = [s["eval_reward"] for s in report.points[0].per_seed]
    assert all(math.isfinite(e) for e in evals)
    if rule in ("uwm", "wm", "hwm"):
        assert min(evals) > 0.8, (rule, evals)
