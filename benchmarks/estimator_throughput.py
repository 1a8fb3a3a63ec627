"""Per-sample estimate throughput of every rule against width (two equal hidden layers).

    python benchmarks/estimator_throughput.py [--widths 8 16 ... 512] [--batch 256] [--device auto]

Prints samples/s per rule and width, the uwm/wm time ratio, and the exponent b of a fit
time-per-sample ~ width^b per rule (O(m n) per layer with equal widths means b ~ 2). Each timing
is the median of several repeats after a warm-up; the estimate includes the forward pass.
"""

import argparse
import statistics
import time

import numpy as np
import torch

import uwm_model as um
from uwm_model.rules import RULES
from uwm_model.settings import torch_settings


def time_rule(rule, net, task, x, options, repeats):
    gen = torch.Generator(device=net.device).manual_seed(0)
    um.estimate(rule, net, task, x, generator=gen, **options)          # warm-up
    times = []
    for _ in range(repeats):
        if net.device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        est = um.estimate(rule, net, task, x, generator=gen, **options)
        est.weights[0].sum().item()                                   # wait for the result
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512])
    parser.add_argument("--batch", type=int, default=64, help="samples per estimate call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch_settings(args.threads, args.device)
    device = um.resolve_device(args.device)
    task = um.Multiplexer(address_bits=3)
    options = {"hwm": {"order": 3}}
    seconds = {rule: [] for rule in RULES}
    print(f"device {device}, batch {args.batch}, samples/s (higher is better)")
    print(f"{'width':>6} " + " ".join(f"{r:>11}" for r in RULES) + "   uwm/wm")
    for width in args.widths:
        net = um.init_network([task.input_size, width, width, 1], population=1, seed=0, device=device)
        x = task.sample_inputs(args.batch, torch.Generator().manual_seed(1)).to(device)
        row = []
        for rule in RULES:
            t = time_rule(rule, net, task, x, options.get(rule, {}), args.repeats)
            seconds[rule].append(t / args.batch)
            row.append(args.batch / t)
        ratio = seconds["uwm"][-1] / seconds["wm"][-1]
        print(f"{width:>6} " + " ".join(f"{v:>11.0f}" for v in row) + f"   {ratio:6.2f}")
    print("\nfitted exponent b of time per sample ~ width^b (widths >= 64, where fixed costs fade):")
    w = np.log(np.array(args.widths, dtype=float))
    keep = np.array(args.widths) >= 64 if sum(x >= 64 for x in args.widths) >= 2 else np.ones(len(w), bool)
    for rule in RULES:
        b = np.polyfit(w[keep], np.log(np.array(seconds[rule]))[keep], 1)[0]
        print(f"  {rule:>10}: b = {b:.2f}")


if __name__ == "__main__":
    main()
