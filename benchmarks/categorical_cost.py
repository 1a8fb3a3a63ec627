"""Cost of a categorical hidden layer against a Bernoulli layer (issue 26, spec 3.8).

    python benchmarks/categorical_cost.py [--units 32] [--categories 3 4] [--batch 256] [--device auto]

For each K, times every rule's per-sample estimate (forward pass included, eager, fastest of 15 repeats) on a
network of two hidden layers of n categorical units with K values (n*K logits each) against one of two
Bernoulli layers of n*(K-1) units, the 6-bit multiplexer, and prints the time ratio. The claim to check:
a categorical layer costs no more than the Bernoulli layer of n*(K-1) units.

Measured only on a shared, contended 2-core CPU (n = 16, batch 128 and 256, K = 3 / 4): reinforce, ste and wm
1.6-2x the Bernoulli time; uwm 1.2x (K = 3, self CPU time under the profiler) to 5-17x (wall clock), hwm 9-160x
between runs. The target is not established. Where it may fail: uwm and hwm build per-sample switch directions
([P, B, n', G*K], permuted, and for hwm raised to every power) where the Bernoulli path shares W across the batch.
"""

import argparse
import time

import torch

import uwm_model as um
from uwm_model.rules import RULES
from uwm_model.units import CategoricalHidden


def seconds(rule, net, task, x, hidden_units, repeats=15):
    gen = torch.Generator(device=net.device).manual_seed(0)
    um.estimate(rule, net, task, x, generator=gen, hidden_units=hidden_units)          # warm-up
    times = []
    for _ in range(repeats):
        if net.device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        um.estimate(rule, net, task, x, generator=gen, hidden_units=hidden_units)
        if net.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    return min(times)          # the CPU is shared: the fastest repeat is the least disturbed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--categories", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    task = um.Multiplexer(address_bits=2)
    x, _ = task.sample(torch.rand(1, args.batch, task.input_draws, generator=torch.Generator().manual_seed(0)),
                       torch.float32)
    n = args.units
    for K in args.categories:
        cat = um.init_network([6, n * K, n * K, 1], device=args.device)
        ber = um.init_network([6, n * (K - 1), n * (K - 1), 1], device=args.device)
        xs = x[0].to(cat.device)
        for rule in RULES:
            tc = seconds(rule, cat, task, xs, CategoricalHidden(K))
            tb = seconds(rule, ber, task, xs, None)
            print(f"K={K} n={n} {rule:9s} categorical {tc * 1e3:7.2f} ms  bernoulli n(K-1) {tb * 1e3:7.2f} ms  "
                  f"ratio {tc / tb:5.2f}", flush=True)


if __name__ == "__main__":
    main()
