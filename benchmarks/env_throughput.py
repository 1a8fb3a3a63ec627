"""Environment steps/s of the batched torch environments (uwm_model/envs) beside gymnasium's own
vector environments stepping the same actions, side by side in one run.

    python benchmarks/env_throughput.py                          # CartPole-v1 and Acrobot-v1, P = 1, 64, 1024
    python benchmarks/env_throughput.py --populations 1 64 1024 16384 --device cuda --dtype float32
    python benchmarks/env_throughput.py --compile                # also the torch step under torch.compile

Each row steps P members x B environments (default B = 1) through ``--seconds`` of steps, auto-resets
included, with actions drawn beforehand (uniform over the actions, the same array for every side), and
reports environment steps/s (P x B x steps / seconds) after a warm-up. Sides:
  torch       our pure step in eager mode (float32 unless --dtype), on --device;
  compiled    the same under torch.compile (compile time reported apart) with --compile;
  gym-sync    gymnasium.vector.SyncVectorEnv of P x B gymnasium environments (one Python env each);
  gym-vector  gymnasium's numpy-vectorised entry point where it has one (CartPole-v1 only);
  train       with --train: whole actor-critic training steps (uwm_model.control, WM, the published
              config) per second, environment included, so the environment's share can be read off.
Needs gymnasium (the dev extra). Timings only: tests/test_envs.py proves the numbers equal.
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np
import torch

from uwm_model import envs
from uwm_model.control import ActorCritic, ControlConfig
from uwm_model.settings import torch_settings
from uwm_model.network import resolve_device, resolve_dtype

WARMUP = 20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, steps: int, device: torch.device | None = None) -> float:
    """Seconds of ``steps`` calls of step(t) after WARMUP calls."""
    for t in range(WARMUP):
        step(t)
    if device is not None:
        sync(device)
    tic = time.perf_counter()
    for t in range(steps):
        step(t)
    if device is not None:
        sync(device)
    return time.perf_counter() - tic


def torch_side(name: str, actions: torch.Tensor, dtype, device, compiled: bool) -> tuple[float, float]:
    """(steps/s, compile seconds) of our environment; actions [T, P, B]."""
    env = envs.make(name)
    T, P, B = actions.shape
    state, _ = env.reset(torch.arange(P), B, dtype, device)
    holder = [state]
    fn = torch.compile(env.step, dynamic=False) if compiled else env.step
    compile_s = 0.0
    if compiled:
        tic = time.perf_counter()
        fn(state, actions[0])
        sync(device)
        compile_s = time.perf_counter() - tic

    def step(t):
        holder[0] = fn(holder[0], actions[t % T]).state

    seconds = timed(step, T - WARMUP, device)
    return P * B * (T - WARMUP) / seconds, compile_s


def gym_side(name: str, actions: np.ndarray, mode: str) -> float:
    """steps/s of gymnasium's vector env (``sync`` or ``vector_entry_point``); actions [T, N]."""
    T, N = actions.shape
    vec = gymnasium.make_vec(name, num_envs=N, vectorization_mode=mode)
    vec.reset(seed=0)
    seconds = timed(lambda t: vec.step(actions[t % T]), T - WARMUP)
    vec.close()
    return N * (T - WARMUP) / seconds


def train_side(name: str, P: int, B: int, dtype: str, device: str) -> float:
    """Environment steps/s of whole actor-critic training steps: two episodes per member, cut at 20 steps
    (a step costs the same whatever the time limit; Acrobot's untrained episodes would last 500)."""
    trainer = ActorCritic(ControlConfig(env=name, seeds=P, envs=B, episodes=2, max_steps=20, dtype=dtype,
                                        device=device))
    result = trainer.run()
    return P * B * result.steps / result.seconds


def steps_for(rate_guess: float, n: int, seconds: float) -> int:
    return max(WARMUP + 10, int(seconds * rate_guess / n) + WARMUP)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=list(envs.ENVS), choices=list(envs.ENVS))
    ap.add_argument("--populations", nargs="+", type=int, default=[1, 64, 1024])
    ap.add_argument("--batch", type=int, default=1, help="environments per member (B)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--seconds", type=float, default=1.0, help="rough time per measurement")
    ap.add_argument("--no-gym", action="store_true", help="only the torch side (large populations)")
    ap.add_argument("--train", action="store_true", help="also whole actor-critic training steps/s")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    if args.threads:
        torch_settings(threads=args.threads, device=device)
    print(f"torch {torch.__version__}, gymnasium {gymnasium.__version__}, {torch.get_num_threads()} threads, "
          f"device {device}, {args.dtype}, B = {args.batch}; environment steps/s (P x B x steps / s)")
    header = (f"{'env':<12} {'P':>6} {'torch':>12} {'compiled':>16} {'gym-sync':>12} {'gym-vector':>12} "
              f"{'torch/sync':>10} {'train':>10}")
    print(header)
    print("-" * len(header))
    for name in args.envs:
        n_actions = envs.ENVS[name].num_actions
        for P in args.populations:
            N = P * args.batch
            rng = np.random.default_rng(0)
            # a first short run sizes T so each side takes about --seconds
            T = steps_for(2e4 if device.type == "cpu" else 5e3, 1, args.seconds)
            actions = rng.integers(0, n_actions, size=(T, P, args.batch))
            ours, _ = torch_side(name, torch.as_tensor(actions, device=device), dtype, device, False)
            T = steps_for(ours, N, args.seconds)
            actions = rng.integers(0, n_actions, size=(T, P, args.batch))
            ours, _ = torch_side(name, torch.as_tensor(actions, device=device), dtype, device, False)
            row = {"torch": f"{ours:,.0f}", "compiled": "-", "gym-sync": "-", "gym-vector": "-", "ratio": "-",
                   "train": "-"}
            if args.compile:
                rate, compile_s = torch_side(name, torch.as_tensor(actions, device=device), dtype, device, True)
                row["compiled"] = f"{rate:,.0f}"
                row["compiled"] += f" ({compile_s:.0f}s)"
            if not args.no_gym:
                flat = actions.reshape(len(actions), N)
                sync_rate = gym_side(name, flat[: steps_for(2e4 if name == "CartPole-v1" else 5e3, N, args.seconds)], "sync")
                row["gym-sync"], row["ratio"] = f"{sync_rate:,.0f}", f"{ours / sync_rate:.1f}x"
                if name == "CartPole-v1":
                    row["gym-vector"] = f"{gym_side(name, flat, 'vector_entry_point'):,.0f}"
            if args.train:
                row["train"] = f"{train_side(name, P, args.batch, args.dtype, str(device)):,.0f}"
            print(f"{name:<12} {P:>6} {row['torch']:>12} {row['compiled']:>16} {row['gym-sync']:>12} "
                  f"{row['gym-vector']:>12} {row['ratio']:>10} {row['train']:>10}", flush=True)


if __name__ == "__main__":
    main()
