"""Tasks, networks, options and optimisers."""

import math

import pytest
import torch

import uwm_model as um


def reference_target(bits, address_bits):
    address = 0
    for b in bits[:address_bits]:
        address = 2 * address + b
    return bits[address_bits + address]


@pytest.mark.parametrize("address_bits", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("inputs", ["pm1", "01"])
def test_multiplexer_targets_match_a_plain_reference(address_bits, inputs):
    task = um.Multiplexer(address_bits, inputs=inputs)
    assert task.input_size == address_bits + 2**address_bits == [3, 6, 11, 20, 37][address_bits - 1]
    if task.input_size <= 11:
        x = task.all_inputs()
        assert x.shape == (2**task.input_size, task.input_size)
    else:
        x = task.sample_inputs(4096, torch.Generator().manual_seed(address_bits), dtype=torch.float64)
    bits = (x > 0).long().tolist()
    expected = torch.tensor([reference_target(b, address_bits) for b in bits])
    assert torch.equal(task.target(x), expected)
    assert set(x.unique().tolist()) == ({-1.0, 1.0} if inputs == "pm1" else {0.0, 1.0})
    action = expected.unsqueeze(-1).to(x.dtype)
    assert torch.all(task.reward(x, action) == 1)
    assert torch.all(task.reward(x, 1 - action) == -1)
    assert torch.all(um.Multiplexer(address_bits, inputs=inputs, rewards="10").reward(x, 1 - action) == 0)


def test_sample_inputs_shapes():
    task = um.Multiplexer(2)
    gen = torch.Generator().manual_seed(0)
    assert task.sample_inputs(5, gen).shape == (5, 6)
    assert task.sample_inputs(5, gen, population=3).shape == (3, 5, 6)


def test_population_member_equals_population_of_one():
    sizes = [6, 8, 4, 1]
    big = um.init_network(sizes, population=5, seed=10, outgoing_norm=2.0, dtype=torch.float64, device="cpu")
    for k in range(5):
        alone = um.init_network(sizes, population=1, seed=10 + k, outgoing_norm=2.0, dtype=torch.float64, device="cpu")
        for a, b in zip(big.weights + big.biases, alone.weights + alone.biases):
            assert torch.equal(a[k], b[0])
    # estimates of member k do not depend on the other members either: same draws, same numbers
    assert not torch.equal(big.weights[0][0], big.weights[0][1])


def test_initialisation_follows_the_spec():
    sizes = [20, 64, 32, 1]
    net = um.init_network(sizes, population=3, seed=0, dtype=torch.float64, device="cpu")
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        s = math.sqrt(6 / (n_in + n_out))
        assert net.weights[l].shape == (3, n_out, n_in) and net.biases[l].shape == (3, n_out)
        assert net.weights[l].abs().max() <= s and net.weights[l].abs().max() > 0.9 * s
        assert net.biases[l].abs().max() <= 1e-3
    # first draws of the member generator: W1 then b1 (torch.rand in that order)
    gen = torch.Generator().manual_seed(1)
    w1 = (2 * torch.rand(64, 20, generator=gen, dtype=torch.float64) - 1) * math.sqrt(6 / 84)
    b1 = (2 * torch.rand(64, generator=gen, dtype=torch.float64) - 1) * 1e-3
    assert torch.equal(net.weights[0][1], w1) and torch.equal(net.biases[0][1], b1)
    f32 = um.init_network(sizes, population=3, seed=0, device="cpu")
    assert f32.dtype == torch.float32 and torch.allclose(f32.weights[0].double(), net.weights[0], atol=1e-7)


def test_outgoing_norm_rescales_every_hidden_units_outgoing_weights():
    net = um.init_network([6, 8, 4, 1], population=2, outgoing_norm=[4.0, 0.5], dtype=torch.float64, device="cpu")
    assert torch.allclose(net.weights[1][0].norm(dim=0), torch.full((8,), 4.0, dtype=torch.float64))
    assert torch.allclose(net.weights[2][0].abs(), torch.full((1, 4), 4.0, dtype=torch.float64))
    assert torch.allclose(net.weights[2][1].abs(), torch.full((1, 4), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="outgoing_norm"):
        um.init_network([6, 1], outgoing_norm=1.0)


def test_device_is_chosen_automatically_and_overridable():
    assert um.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert um.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            um.resolve_device("cuda")


@pytest.mark.parametrize("rule,options,message", [
    ("backprop", {}, "unknown rule 'backprop'; valid rules: reinforce, ste, wm, hwm, uwm"),
    ("uwm", {"signl": "global"}, "rule 'uwm' has no option 'signl'; valid options: signal, form"),
    ("uwm", {"form": "exact"}, "option form='exact' is not one of: reinforce, rb"),
    ("wm", {"form": "rb"}, "wm has no rb form"),
    ("hwm", {"order": 0}, "order=0 must be >= 1"),
    ("hwm", {"order": 2.5}, "must be an integer"),
])
def test_unknown_rules_and_options_are_named(rule, options, message):
    task = um.Multiplexer(1)
    net = um.init_network([3, 2, 1], device="cpu")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        um.estimate(rule, net, task, task.sample_inputs(2), generator=torch.Generator(), **options)


@pytest.mark.parametrize("rule", list(um.RULES))
def test_estimate_shapes_and_shared_or_per_member_inputs(rule):
    task = um.Multiplexer(2)
    net = um.init_network([6, 5, 4, 1], population=3, device="cpu")
    gen = torch.Generator().manual_seed(0)
    for x in (task.sample_inputs(7, gen), task.sample_inputs(7, gen, population=3)):
        g = um.estimate(rule, net, task, x, generator=gen)
        assert [tuple(w.shape) for w in g.weights] == [(3, 7, 5, 6), (3, 7, 4, 5), (3, 7, 1, 4)]
        assert [tuple(b.shape) for b in g.biases] == [(3, 7, 5), (3, 7, 4), (3, 7, 1)]
        assert g.reward.shape == (3, 7) and torch.isfinite(g.weights[0]).all()


def test_reinforce_baseline_per_member_tensor():
    task = um.Multiplexer(1)
    net = um.init_network([3, 2, 1], population=2, dtype=torch.float64, device="cpu")
    x = task.sample_inputs(4)
    a = um.estimate("reinforce", net, task, x, generator=torch.Generator().manual_seed(0), baseline=torch.tensor([0.0, 0.5]))
    b = um.estimate("reinforce", net, task, x, generator=torch.Generator().manual_seed(0), baseline=0.5)
    assert torch.equal(a.biases[0][1], b.biases[0][1]) and not torch.equal(a.biases[0][0], b.biases[0][0])


def test_adam_equals_torch_adam_minimising_the_negated_gradient():
    net = um.init_network([3, 4, 1], population=2, dtype=torch.float64, device="cpu")
    ref = [t.clone().requires_grad_(True) for t in net.weights + net.biases]
    torch_opt = torch.optim.Adam(ref, lr=0.01)
    opt = um.Adam(net, lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        grad = um.Gradient([torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in net.weights],
                           [torch.randn(b.shape, generator=gen, dtype=torch.float64) for b in net.biases])
        opt.step(grad)
        for p, g in zip(ref, grad.weights + grad.biases):
            p.grad = -g
        torch_opt.step()
    for a, b in zip(net.weights + net.biases, ref):
        assert torch.allclose(a, b.detach(), atol=1e-12)


def test_per_layer_learning_rates():
    net = um.init_network([3, 4, 1], population=1, dtype=torch.float64, device="cpu")
    before = net.clone()
    um.SGD(net, lr=[0.1, 0.0]).step(um.Gradient([torch.ones_like(w) for w in net.weights], [torch.ones_like(b) for b in net.biases]))
    assert torch.allclose(net.weights[0], before.weights[0] + 0.1)
    assert torch.equal(net.weights[1], before.weights[1]) and torch.equal(net.biases[1], before.biases[1])
    with pytest.raises(ValueError, match="2 layers"):
        um.SGD(net, lr=[0.1, 0.1, 0.1])
