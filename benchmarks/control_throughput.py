"""Actor-critic control on the batched torch environments: (1) training steps of the published config, eager
against compiled; (2) network-episodes/s of a fixed policy, our environments beside gymnasium's own vector
environment stepping the same policy, side by side in one run.

    python benchmarks/control_throughput.py                       # both parts, CartPole-v1 and Acrobot-v1
    python benchmarks/control_throughput.py --part train --seeds 10 --steps 2000
    python benchmarks/control_throughput.py --part policy --populations 1 64 1024 --compile

Part train: ms per step of ``uwm_model.control.ActorCritic`` on Chung's config (tune_configs/trials/
chung2022-<env>.yaml: WM, [64, 32] actor and critic, B = 1) for P members (default 10, the replication), eager
(``compile: off``) and compiled (``compile: on``, 4 steps a call; compile time reported apart), after a
warm-up, one torch thread.
Part policy: the actor network at its initial weights (member k: seed k) acts on P x 1 environments for
``--seconds``; network-episodes/s = episodes ended / s, and environment steps/s, with
  torch      our batched environment stepped with the policy (sample_episode + env.step), eager;
  compiled   the same under torch.compile with --compile (compile time reported apart);
  gym-sync   gymnasium.vector.SyncVectorEnv of P environments; the same policy computed by the same torch
             code on its observations each step (numpy <-> torch each step, as a cleanrl agent does).
Timings only: tests/test_envs.py and tests/test_control*.py prove the numbers.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import gymnasium
import numpy as np
import torch

from study.control_trial import control_config
from study.spec import read_yaml
from uwm_model import envs, streams
from uwm_model.control import ActorCritic, ControlConfig
from uwm_model.settings import torch_settings

TRIALS = pathlib.Path(__file__).resolve().parent.parent / "tune_configs" / "trials"
NAMES = {"CartPole-v1": "cartpole", "Acrobot-v1": "acrobot"}


def train_ms_per_step(env: str, seeds: int, steps: int, compile: str) -> tuple[float, float]:
    """(ms per training step, compile seconds) of the published config with ``seeds`` members."""
    cfg = control_config(read_yaml(TRIALS / f"chung2022-{NAMES[env]}.yaml", "config")).model_dump()
    ac = ActorCritic(ControlConfig(**{**cfg, "seeds": seeds, "compile": compile}))
    ac.run(max_steps=0)                                   # compiles when compile is on
    ac.run(max_steps=40)                                  # warm-up
    tic = time.perf_counter()
    ac.run(max_steps=steps)
    return (time.perf_counter() - tic) / steps * 1e3, ac.compile_seconds


def policy_side(env: str, P: int, seconds: float, compiled: bool, gym: bool) -> tuple[float, float, float]:
    """(network-episodes/s, environment steps/s, compile seconds) of the fixed initial policy on P environments."""
    ac = ActorCritic(ControlConfig(env=env, seeds=P, envs=1, episodes=1, compile="off"))
    n_units = sum(ac.cfg.actor_hidden) + 1

    def act(obs: torch.Tensor, t: int) -> torch.Tensor:
        u = streams.uniforms(ac.train_keys, t, n_units, ac.dtype).unsqueeze(1)
        return ac.act(obs, u)[1]

    if gym:
        vec = gymnasium.make_vec(env, num_envs=P, vectorization_mode="sync")
        obs_np, _ = vec.reset(seed=0)

        def step(t):
            nonlocal obs_np
            a = act(torch.as_tensor(obs_np, dtype=ac.dtype).reshape(P, 1, -1), t)
            obs_np, _, term, trunc, _ = vec.step(a.reshape(P).numpy())
            return int((term | trunc).sum())
        compile_s = 0.0
    else:
        env_obj, state = ac.env, ac.env_state
        holder = [state, ac.obs]

        def pure(state, obs, u):
            a = ac.act(obs, u)[1]
            out = env_obj.step(state, a)
            return out.state, out.obs, (out.terminated | out.truncated).sum()
        fn = torch.compile(pure, fullgraph=True, dynamic=False) if compiled else pure
        tic = time.perf_counter()
        if compiled:
            fn(holder[0], holder[1].clone(), streams.uniforms(ac.train_keys, 0, n_units, ac.dtype).unsqueeze(1))
        compile_s = time.perf_counter() - tic

        def step(t):
            u = streams.uniforms(ac.train_keys, t, n_units, ac.dtype).unsqueeze(1)
            holder[0], holder[1], ended = fn(holder[0], holder[1], u)
            return int(ended)
    for t in range(20):
        step(t)
    episodes, steps, tic = 0, 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        episodes += step(steps + 20)
        steps += 1
    wall = time.perf_counter() - tic
    if gym:
        vec.close()
    return episodes / wall, P * steps / wall, compile_s


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["train", "policy", "both"], default="both")
    ap.add_argument("--envs", nargs="+", default=list(envs.ENVS), choices=list(envs.ENVS))
    ap.add_argument("--seeds", type=int, default=10, help="members P of the training part")
    ap.add_argument("--steps", type=int, default=1000, help="timed training steps")
    ap.add_argument("--populations", nargs="+", type=int, default=[1, 64, 1024])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per policy measurement")
    ap.add_argument("--compile", action="store_true", help="policy part: also the compiled torch side")
    args = ap.parse_args(argv)
    with torch_settings(threads=1):
        print(f"torch {torch.__version__}, gymnasium {gymnasium.__version__}, 1 thread, float32")
        if args.part in ("train", "both"):
            print(f"\ntraining steps, published config, P = {args.seeds}, B = 1 (ms per step)")
            print(f"{'env':<12} {'eager':>8} {'compiled':>9} {'compile s':>10} {'speed-up':>9}")
            for name in args.envs:
                eager, _ = train_ms_per_step(name, args.seeds, args.steps, "off")
                comp, cs = train_ms_per_step(name, args.seeds, args.steps, "on")
                print(f"{name:<12} {eager:>8.2f} {comp:>9.2f} {cs:>10.0f} {eager / comp:>8.1f}x", flush=True)
        if args.part in ("policy", "both"):
            print("\nfixed initial policy, B = 1: network-episodes/s | environment steps/s")
            cols = ["torch"] + (["compiled"] if args.compile else []) + ["gym-sync"]
            print(f"{'env':<12} {'P':>5} " + " ".join(f"{c:>22}" for c in cols) + f" {'torch/gym':>10}")
            for name in args.envs:
                for P in args.populations:
                    row = {"torch": policy_side(name, P, args.seconds, False, False)}
                    if args.compile:
                        row["compiled"] = policy_side(name, P, args.seconds, True, False)
                    row["gym-sync"] = policy_side(name, P, args.seconds, False, True)
                    cells = [f"{row[c][0]:>10,.0f} | {row[c][1]:>9,.0f}" for c in cols]
                    print(f"{name:<12} {P:>5} " + " ".join(f"{c:>22}" for c in cells)
                          + f" {row['torch'][1] / row['gym-sync'][1]:>9.1f}x", flush=True)


if __name__ == "__main__":
    main()
