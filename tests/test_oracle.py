"""The exact oracle against a hand computation and an independent brute force."""

import itertools
import math

import pytest
import torch

import uwm_model as um


def test_hand_computed_gradient_of_a_single_unit(mux3):
    # [3, 1] with W = 0, b = 0: pi = 1/2 everywhere, J = mean_x (2 pi - 1) t(x) = 0, with t = +-1 the
    # target's sign; dJ/dW_j = mean_x 2 sigma'(0) t(x) x_j = 0.5 E[t x_j] = (0, 0.25, 0.25): the
    # target equals data bit d0 when the address is -1 and d1 when it is +1; dJ/db = 0.5 E[t] = 0.
    net = um.Network([torch.zeros(1, 1, 3, dtype=torch.float64)], [torch.zeros(1, 1, dtype=torch.float64)])
    J, grad = um.exact_gradient(net, mux3)
    assert J.item() == pytest.approx(0.0, abs=1e-15)
    assert grad.weights[0][0, 0].tolist() == pytest.approx([0.0, 0.25, 0.25], abs=1e-15)
    assert grad.biases[0].item() == pytest.approx(0.0, abs=1e-15)
    # rewards 1/0 halve the reward's range: J = 1/2, gradient halved
    J, grad = um.exact_gradient(net, um.Multiplexer(1, rewards="10"))
    assert J.item() == pytest.approx(0.5)
    assert grad.weights[0][0, 0].tolist() == pytest.approx([0.0, 0.125, 0.125], abs=1e-15)


def brute_force_J(weights, biases, task):
    """Plain Python floats: sum over inputs and every joint configuration of all units."""
    sizes = [len(weights[0][0])] + [len(w) for w in weights]
    total = 0.0
    xs = list(itertools.product([0, 1], repeat=sizes[0]))
    for bits in xs:
        x = [(2 * b - 1) if task.inputs == "pm1" else b for b in bits]
        address = int("".join(str(b) for b in bits[: task.address_bits]), 2)
        target = bits[task.address_bits + address]
        for config in itertools.product([0, 1], repeat=sum(sizes[1:])):
            prob, h, offset = 1.0, x, 0
            for w, b in zip(weights, biases):
                n = len(w)
                out = config[offset: offset + n]
                offset += n
                for i in range(n):
                    p = 1 / (1 + math.exp(-(sum(w[i][j] * h[j] for j in range(len(h))) + b[i])))
                    prob *= p if out[i] else 1 - p
                h = out
            correct = h[0] == target
            reward = (1.0 if correct else -1.0) if task.rewards == "pm1" else float(correct)
            total += prob * reward
    return total / len(xs)


@pytest.mark.parametrize("inputs,rewards", [("pm1", "pm1"), ("01", "10")])
def test_oracle_matches_brute_force_and_finite_differences(inputs, rewards):
    task = um.Multiplexer(1, inputs=inputs, rewards=rewards)
    net = um.init_network([3, 2, 2, 1], population=2, seed=3, dtype=torch.float64, device="cpu")
    for l in range(3):  # move away from the near-zero default biases
        net.biases[l] = net.biases[l] + torch.linspace(-0.7, 0.9, net.biases[l].numel(), dtype=torch.float64).reshape(net.biases[l].shape)
    J, grad = um.exact_gradient(net, task)
    for k in range(2):
        weights = [w[k].tolist() for w in net.weights]
        biases = [b[k].tolist() for b in net.biases]
        assert J[k].item() == pytest.approx(brute_force_J(weights, biases, task), abs=1e-12)
        eps = 1e-6
        for l, (i, j) in itertools.product(range(3), [(0, 0), (-1, -1)]):
            for which, params in (("w", weights), ("b", biases)):
                def shifted(delta):
                    ws, bs = [[r[:] for r in w] for w in weights], [b[:] for b in biases]
                    if which == "w":
                        ws[l][i][j] += delta
                    else:
                        bs[l][i] += delta
                    return brute_force_J(ws, bs, task)
                numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
                exact = grad.weights[l][k, i, j] if which == "w" else grad.biases[l][k, i]
                assert exact.item() == pytest.approx(numeric, abs=1e-8)


def test_oracle_refuses_networks_too_large_to_enumerate():
    task = um.Multiplexer(2)
    net = um.init_network([task.input_size, 30, 1], device="cpu")
    with pytest.raises(ValueError, match="too large for the exact oracle"):
        um.exact_gradient(net, task)
    with pytest.raises(ValueError, match="too many to enumerate"):
        um.Multiplexer(5).all_inputs()


def brute_force_dataset_J(weights, biases, xs, ys, classes, rewards="pm1"):
    """Plain Python floats for a dataset task: mean over the images of the sum over every joint configuration
    of the hidden units and every output (a softmax over `classes` logits, or one Bernoulli unit for 2)."""
    total = 0.0
    for x, y in zip(xs, ys):
        hidden_sizes = [len(w) for w in weights[:-1]]
        for config in itertools.product([0, 1], repeat=sum(hidden_sizes)):
            prob, h, offset = 1.0, x, 0
            for w, b in zip(weights[:-1], biases[:-1]):
                out = config[offset: offset + len(w)]
                offset += len(w)
                for i in range(len(w)):
                    p = 1 / (1 + math.exp(-(sum(w[i][j] * h[j] for j in range(len(h))) + b[i])))
                    prob *= p if out[i] else 1 - p
                h = out
            logits = [sum(row[j] * h[j] for j in range(len(h))) + bias for row, bias in zip(weights[-1], biases[-1])]
            if classes == 2:
                p1 = 1 / (1 + math.exp(-logits[0]))
                action_probs = [1 - p1, p1]
            else:
                top = max(logits)
                exps = [math.exp(v - top) for v in logits]
                action_probs = [e / sum(exps) for e in exps]
            for action, p in enumerate(action_probs):
                right = action == y
                total += prob * p * ((1.0 if right else -1.0) if rewards == "pm1" else float(right))
    return total / len(xs)


@pytest.mark.parametrize("classes,rewards", [(3, "pm1"), (4, "10"), (2, "pm1")])
def test_categorical_oracle_matches_brute_force_and_finite_differences(classes, rewards):
    from uwm_model.datasets import DatasetTask, load_split
    split = load_split("digits")
    x_train, y_train = split.x_train, split.y_train
    rows = [i for digit in range(classes) for i in (y_train == digit).nonzero()[0][:2]]
    x = torch.tensor(x_train[rows][:, [20, 28, 36]])
    y = torch.tensor(y_train[rows])
    task = DatasetTask(x, y, x, y, classes=classes, rewards=rewards)
    out = 1 if classes == 2 else classes
    net = um.init_network([3, 2, 2, out], population=2, seed=5, dtype=torch.float64, device="cpu")
    for l in range(3):
        net.biases[l] = net.biases[l] + torch.linspace(-0.7, 0.9, net.biases[l].numel(), dtype=torch.float64).reshape(net.biases[l].shape)
    J, grad = um.exact_gradient(net, task)
    xs, ys = x.tolist(), y.tolist()
    for k in range(2):
        weights = [w[k].tolist() for w in net.weights]
        biases = [b[k].tolist() for b in net.biases]
        assert J[k].item() == pytest.approx(brute_force_dataset_J(weights, biases, xs, ys, classes, rewards), abs=1e-12)
        eps = 1e-6
        for l, (i, j) in itertools.product(range(3), [(0, 0), (-1, -1)]):
            ws = [[r[:] for r in w] for w in weights]
            ws[l][i][j] += eps
            up = brute_force_dataset_J(ws, biases, xs, ys, classes, rewards)
            ws[l][i][j] -= 2 * eps
            down = brute_force_dataset_J(ws, biases, xs, ys, classes, rewards)
            assert grad.weights[l][k, i, j].item() == pytest.approx((up - down) / (2 * eps), abs=1e-8)
