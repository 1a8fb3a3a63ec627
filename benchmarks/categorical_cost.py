"""Cost of a categorical hidden layer against a Bernoulli layer, and of connectivity masks (issue 26, spec 3.8-3.9).

    python benchmarks/categorical_cost.py [--units 32] [--categories 3 4] [--batch 256] [--device auto]
    python benchmarks/categorical_cost.py --step [--units 16] [--categories 3 4] [--rules uwm wm ...]

--step (the claim of issue 26, item 5) times the trainer's compiled step (torch.compile, STEPS_PER_CALL steps a
call, uniforms drawn outside as in training; 16 members, batch 16, Adam, 6-bit multiplexer, float32, 1 thread),
in one run and side by side:
  - a categorical layer pair of n units with K values (hidden [n, n]) against Bernoulli layers of n(K - 1) units;
  - Bernoulli layers [2n(K-1), 2n(K-1)] without masks, with masks that keep every weight (density 1: the mask's
    cost alone) and with masks at fan-out CV 1, density 0.25.
The configurations of one comparison are timed in alternation (one call each, repeated), so a load change on the
shared machine hits both; each ratio is the median over those rounds of the per-round ratio.

Without --step, for each K, times every rule's per-sample estimate (forward pass included, eager, fastest of 15
repeats) on a network of two hidden layers of n categorical units with K values (n*K logits each) against one of
two Bernoulli layers of n*(K-1) units, the 6-bit multiplexer, and prints the time ratio. The claim to check:
a categorical layer costs no more than the Bernoulli layer of n*(K-1) units.

Compiled step (--step, n = 16, on the shared 2-core CPU at load average 9-14: upper figures; per-round median
ratios, categorical / Bernoulli n(K-1) at K = 3, then masks all ones / absent and CV 1 / absent on [64, 64]):
reinforce 2.21 (0.75 / 0.33 ms), masks 1.05, 1.29; wm 2.70 (0.91 / 0.36 ms), masks 1.03, 1.18; ste 2.59
(0.74 / 0.30 ms), masks 1.16, 1.26; hwm(3) 9.00 (4.07 / 0.43 ms), masks 1.01, 1.08 (one run, --rounds 50);
uwm 9.53 (10.7 / 1.12 ms), masks 1.17, 1.07 (a second run, the same settings). An earlier uwm run at niceness 15
(absolute times inflated tenfold by the load): 8.68 at K = 3, 5.81 at K = 4, masks on [96, 96] 1.28 and 1.26.
The target (no more than n(K-1) Bernoulli units) does not hold for any rule's compiled step here; absent masks add
no operation (aten op counts, tests/test_fan_out.py).

Eager estimate, measured only on a shared, contended 2-core CPU (n = 16, batch 128 and 256, K = 3 / 4): reinforce,
ste and wm 1.6-2x the Bernoulli time; uwm 1.2x (K = 3, self CPU time under the profiler) to 5-17x (wall clock), hwm
9-160x between runs. The target is not established. Where it may fail: uwm and hwm build per-sample switch directions
([P, B, n', G*K], permuted, and for hwm raised to every power) where the Bernoulli path shares W across the batch.
"""

import argparse
import statistics
import time

import torch

import uwm_model as um
from uwm_model.rules import RULES
from uwm_model.settings import torch_settings
from uwm_model.trainer import STEPS_PER_CALL
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


def compiled_step(rule: str, **fields):
    """A compiled trainer's step function and its arguments (a block of STEPS_PER_CALL steps' uniforms)."""
    options = {"p": 2} if rule == "wm" else {"order": 3} if rule == "hwm" else {}
    cfg = um.TrialConfig(task={"address_bits": 2}, rule=rule, rule_options=options, optimizer="adam", lr=0.01,
                         batch_size=16, episodes=16 * STEPS_PER_CALL * 4, report_every=16 * STEPS_PER_CALL * 4,
                         seeds=16, threshold_window=16 * STEPS_PER_CALL, dtype="float32", device="cpu", compile="on",
                         probe={"enabled": False}, **fields)
    trainer = um.Trainer(cfg)
    trainer._prepare()
    u = trainer.draw_steps(torch.arange(STEPS_PER_CALL))
    return lambda: trainer._steps(trainer.train_state, u)


def alternate(calls: dict, rounds: int) -> dict:
    """Seconds per step of each call, timed in alternation: {name: [one time per round]}."""
    times = {name: [] for name in calls}
    for call in calls.values():
        call()                                               # warm-up (caches, allocator)
    for _ in range(rounds):
        for name, call in calls.items():
            tic = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - tic) / STEPS_PER_CALL)
    return times


def ratio(times: dict, a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def step_table(args) -> None:
    torch_settings(1, "cpu")
    n = args.units
    print(f"torch {torch.__version__}; compiled step, 16 members x batch 16, float32, 1 thread; "
          f"median over {args.rounds} alternating rounds (ms per step)")
    for rule in args.rules:
        for K in args.categories:
            times = alternate({"cat": compiled_step(rule, hidden=[n, n], hidden_units="categorical", categories=K),
                               "ber": compiled_step(rule, hidden=[n * (K - 1)] * 2)}, args.rounds)
            print(f"{rule:9s} K={K}: categorical [{n}, {n}] {statistics.median(times['cat']) * 1e3:7.3f}   "
                  f"bernoulli [{n * (K - 1)}, {n * (K - 1)}] {statistics.median(times['ber']) * 1e3:7.3f}   "
                  f"ratio {ratio(times, 'cat', 'ber'):5.2f}", flush=True)
        m = 2 * n * (max(args.categories) - 1)
        times = alternate({"none": compiled_step(rule, hidden=[m, m]),
                           "ones": compiled_step(rule, hidden=[m, m], fan_out={"cv": 0.0, "density": 1.0}),
                           "cv1": compiled_step(rule, hidden=[m, m], fan_out={"cv": 1.0, "density": 0.25})},
                          args.rounds)
        print(f"{rule:9s} masks [{m}, {m}]: absent {statistics.median(times['none']) * 1e3:7.3f}   "
              f"all ones {statistics.median(times['ones']) * 1e3:7.3f} (ratio {ratio(times, 'ones', 'none'):5.2f})   "
              f"cv 1 {statistics.median(times['cv1']) * 1e3:7.3f} (ratio {ratio(times, 'cv1', 'none'):5.2f})",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=None, help="n (default 32, with --step 16)")
    parser.add_argument("--categories", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--step", action="store_true", help="time the compiled training step (see above)")
    parser.add_argument("--rules", nargs="+", default=list(RULES), help="with --step")
    parser.add_argument("--rounds", type=int, default=200, help="with --step: alternating rounds per comparison")
    args = parser.parse_args()
    if args.step:
        args.units = args.units or 16
        return step_table(args)
    args.units = args.units or 32
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
