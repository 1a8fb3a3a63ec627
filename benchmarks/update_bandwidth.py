"""The parameter update of a large population against the device's memory bandwidth.

    python benchmarks/update_bandwidth.py                      # P = 65 536 members of the replication net, CUDA
    python benchmarks/update_bandwidth.py --device cpu --members 1024

At large populations a training step is bound by memory traffic: every member-step reads the
parameters, Adam's m and v and the gradient, and writes the three back (28 bytes per parameter in
float32). This prints the achieved bandwidth (GB/s) of a plain copy and a triad (the device's
practical limit) beside compiled forms of that update, each on a [P, N] buffer laid out as the
trainer's (N = 3 457 for the 20-bit multiplexer with hidden [64, 32]):

    adam            the update alone (the trainer's where(active) selection, per-layer learning rates)
    adam+check      the same kernel also summing each member's new parameters (the finiteness check)
    adam, check     the update, then the check as a second kernel (one more read of the parameters)

Needs only torch.
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(fn, *args, repeats: int) -> float:
    """Median seconds of one call (after two warm-up calls)."""
    fn(*args), fn(*args)
    sync = torch.cuda.synchronize if args[0].is_cuda else (lambda: None)
    times = []
    for _ in range(repeats):
        sync()
        tic = time.perf_counter()
        fn(*args)
        sync()
        times.append(time.perf_counter() - tic)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--members", type=int, default=65536)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 64, 32, 1], help="layer sizes of one member")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    dev, P, sizes = torch.device(args.device), args.members, args.sizes
    blocks = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])] + sizes[1:]
    layers = list(range(len(sizes) - 1)) * 2
    N = sum(blocks)
    make = lambda: torch.rand(P, N, device=dev)  # noqa: E731
    theta, m, v, grad = make(), make(), make(), make() - 0.5
    layer_lrs = torch.full((P, len(sizes) - 1), 1e-3, device=dev)
    b1, b2, eps = torch.full((P, 1), 0.9, device=dev), torch.full((P, 1), 0.999, device=dev), 1e-8
    p1, p2 = torch.full((P, 1), 0.5, device=dev), torch.full((P, 1), 0.9, device=dev)
    active = torch.ones(P, dtype=torch.bool, device=dev)

    def adam(theta, m, v, grad):
        lr = torch.cat([layer_lrs[:, l: l + 1].expand(-1, count) for l, count in zip(layers, blocks)], 1)
        m2 = b1 * m + (1 - b1) * grad
        v2 = b2 * v + (1 - b2) * grad * grad
        c2 = (1 - p2) ** 0.5
        t2 = theta + lr * c2 / (1 - p1) * m2 / (v2.sqrt() + eps * c2)
        keep = active.unsqueeze(1)
        return torch.where(keep, t2, theta), torch.where(keep, m2, m), torch.where(keep, v2, v)

    def adam_check(theta, m, v, grad):
        t2, m2, v2 = adam(theta, m, v, grad)
        return t2, m2, v2, torch.isfinite(t2.sum(1))

    compile = lambda fn: torch.compile(fn, fullgraph=True, dynamic=False)  # noqa: E731
    adam_c, check_c, adam_check_c = compile(adam), compile(lambda t: torch.isfinite(t.sum(1))), compile(adam_check)
    out = torch.empty_like(theta)
    rows = [("copy", lambda t, *_: out.copy_(t), 8),
            ("triad", lambda t, m, *_: torch.add(t, m, alpha=0.5, out=out), 12),
            ("adam", adam_c, 28),
            ("adam+check", adam_check_c, 28),
            ("adam, check", lambda *a: check_c(adam_c(*a)[0]), 32)]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}; {name}; P={P} members x N={N} parameters = {P * N / 1e6:.0f}M float32")
    print(f"{'kernel':>12} {'bytes/param':>11} {'ms':>8} {'GB/s':>8} {'member-steps/s':>15}")
    for label, fn, per_param in rows:
        seconds = timed(fn, theta, m, v, grad, repeats=args.repeats)
        print(f"{label:>12} {per_param:>11} {seconds * 1e3:>8.3f} {P * N * per_param / seconds / 1e9:>8.0f} "
              f"{P / seconds:>15,.0f}", flush=True)


if __name__ == "__main__":
    main()
