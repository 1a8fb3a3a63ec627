"""Training throughput of large populations on one GPU, side by side with the CPU cores of the same machine.

    python benchmarks/gpu_throughput.py                                # the default table (needs CUDA)
    python benchmarks/gpu_throughput.py --populations 65536x8 --rules uwm wm --cpu-populations none
    python benchmarks/gpu_throughput.py --device cpu --populations 16x1 64x8 --steps 8   # same code, no GPU

Needs only torch, numpy, pyyaml and pydantic. Config: the replication network (20-bit multiplexer,
hidden [64, 32], Adam, float32) at each population P (members) and batch B, one rule. Each row
trains two report windows of ``--steps`` steps (compilation, when on, happens before and is timed
apart) and counts network-episodes/s (P x B x steps / seconds) over the second window only; peak is
the device's peak allocated memory (CUDA) or the process's peak resident memory growth (CPU, "~").
Rows of the CPU side use ``--cpu-steps`` steps (a CPU step of a large population takes seconds).
"""

from __future__ import annotations

import argparse
import os
import resource

import torch

import uwm_model as um


def measure(P: int, B: int, rule: str, compile_mode: str, device: str, steps: int, draws: str = "auto",
            profile: str | None = None) -> dict:
    window = steps * B
    cfg = um.TrialConfig(task={"address_bits": 4}, hidden=[64, 32], rule=rule,
                         rule_options={"p": 2} if rule == "wm" else {}, lr=[0.01, 0.001, 0.0001], batch_size=B,
                         seeds=P, episodes=2 * window, report_every=window, device=device, dtype="float32",
                         compile=compile_mode, eval_episodes=64, probe={"enabled": False})
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer = um.Trainer(cfg)
    if draws != "auto":
        trainer.draws_in_step = draws == "step"
    windows = trainer.run()
    first = next(windows)
    if profile:
        # the second window under torch's profiler: its kernels by device time, appended to the file
        from torch.profiler import ProfilerActivity, profile as profiler
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
        with profiler(activities=activities) as prof:
            second = next(windows)
        sort = "cuda_time_total" if torch.device(device).type == "cuda" else "cpu_time_total"
        with open(profile, "a") as f:
            f.write(f"\n=== P={P} batch={B} {rule} compile={compile_mode} draws={draws} on {device}\n")
            f.write(prof.key_averages().table(sort_by=sort, row_limit=45, max_name_column_width=160))
    else:
        second = next(windows)
    seconds = second.wall_seconds - first.wall_seconds
    if dev.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(dev) / 2**30:.1f}"
    else:
        peak = f"~{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 2**20:.1f}"   # KiB -> GiB
    return dict(eps=P * B * steps / seconds, compile=second.compile_seconds, peak=peak,
                draws="step" if trainer.draws_in_step else "block")


def population(text: str) -> tuple[int, int]:
    p, b = text.lower().split("x")
    return int(p), int(b)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: the same code path, no GPU)")
    parser.add_argument("--populations", nargs="+", type=population,
                        default=[(10, 1), (1024, 8), (4096, 8), (8192, 1), (16384, 1), (65536, 1), (65536, 8)],
                        help="P x batch, e.g. 65536x8")
    parser.add_argument("--rules", nargs="+", default=["wm", "uwm"])
    parser.add_argument("--modes", nargs="+", default=["on"], choices=["on", "off"], help="compiled (on), eager (off)")
    parser.add_argument("--steps", type=int, default=200, help="steps per timed window on the device")
    parser.add_argument("--cpu-populations", nargs="*", default=None,
                        help="populations for the CPU side (default: the same; 'none' skips it)")
    parser.add_argument("--cpu-steps", type=int, default=8)
    parser.add_argument("--cpu-modes", nargs="+", choices=["on", "off"], help="modes of the CPU side (default: --modes)")
    parser.add_argument("--draws", nargs="+", default=["auto"], choices=["auto", "block", "step"],
                        help="where a step's uniforms come from: the trainer's choice, drawn blocks, or inside the step")
    parser.add_argument("--profile", help="append torch profiler tables (top kernels of each row's timed window) to this file")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.exit(2, "error: --device cuda but torch sees no CUDA device (use --device cpu for the CPU code path)\n")
    cpu_pops = args.populations if args.cpu_populations is None else \
        [] if args.cpu_populations == ["none"] else [population(p) for p in args.cpu_populations]

    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}; device {args.device} ({name}); {os.cpu_count()} CPU cores, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'where':>6} {'P':>6} {'batch':>5} {'rule':>4} {'mode':>8} {'draws':>5} {'net-episodes/s':>15} "
          f"{'compile s':>9} {'peak GiB':>9}")
    sides = [(args.device, args.populations, args.steps, args.modes)]
    if not args.device.startswith("cpu") and cpu_pops:
        sides.append(("cpu", cpu_pops, args.cpu_steps, args.cpu_modes or args.modes))
    for device, pops, steps, modes in sides:
        for P, B in pops:
            for rule in args.rules:
                for mode in modes:
                    for draws in args.draws:
                        r = measure(P, B, rule, mode, device, steps, draws, args.profile)
                        label = "compiled" if mode == "on" else "eager"
                        print(f"{device:>6} {P:>6} {B:>5} {rule:>4} {label:>8} {r['draws']:>5} {r['eps']:>15,.0f} "
                              f"{r['compile']:>9.1f} {r['peak']:>9}", flush=True)


if __name__ == "__main__":
    main()
