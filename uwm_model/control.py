"""Actor-critic training on the batched episodic environments (docs/learning-rules.md §9); one trial runs
through ``uwm-study train`` (study/control_trial.py), a study's packs through
:mod:`uwm_model.control_trainer`.

A population of P members (seeds ``seed, seed+1, ...``), each with B environments, steps in lock
step. Every step: the actor (Bernoulli-logistic hidden layers, a categorical output) acts on the
observations; the environments step (auto-reset); the TD error

    delta_t = r_t + gamma (1 - terminated) V(s_{t+1}) - V(s_t)

is every layer's reward for that step; the actor's hidden layers learn by the chosen rule, the
critic (softplus MLP, linear output) by TD(lambda) with accumulating traces; both by Adam with
per-layer learning rates that fall linearly from a start to an end value over ``end_t`` steps.

A step is a pure function of a :class:`ControlState` (``train_step``), so it compiles whole, environment
included (``compile: on``, or ``auto`` for long runs): STEPS_PER_CALL steps unrolled into one graph, the
uniforms of DRAW_STEPS steps drawn in one generator call outside it, the learning rates and Adam's powers as a
per-step table; eager runs the same function. Compiled equals eager to rounding in float64, and a member's
numbers do not depend on its pack (tests/test_control_compiled.py).

The output is one categorical unit over the K actions, :class:`uwm_model.units.Categorical` (K logits),
sampled by :func:`uwm_model.network.sample_episode` like any other layer, so every rule (reinforce, ste,
wm, hwm, uwm) reads it through the unit type's methods. Chung's parametrisation (the last logit fixed
at 0, K - 1 free rows) is the option ``output_logits: pin_last``: the last row of the output weights and
its bias start at 0 and their gradient is masked, so they stay 0. That is the same family of laws and,
with the free rows, the same score ``(e_a - pi)[:K-1]`` Chung's code follows; a unit type of its own is
not needed. ``free`` learns all K rows (the softmax's usual parametrisation).

Published-code quirks (§9): Adam's bias correction stopping after 1 000 steps is an option
(``adam_bias_correction_steps``); WM rewards from the next layer's already-updated weights are not
followed (the rule uses the weights the step sampled with); episode boundaries act on the fresh
episode's first observation (not the last one's).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from . import envs, streams
from .config import _Strict, flatten
from .network import Episode, batched_matmul, init_network, resolve_device, resolve_dtype, sample_episode
from .optim import adam_update
from .rules import batch_mean_parameters, resolve_rule
from .settings import compile_cache
from .units import BERNOULLI, CATEGORICAL

ENV_SHORT_NAMES = {"CartPole-v1": "cartpole", "Acrobot-v1": "acrobot"}   # as trial files and studies name them
THRESHOLD_WINDOW = 100    # returns in the running mean of "solved" (gymnasium's CartPole criterion)
CONTROL_PER_MEMBER_FIELDS = ("seed", "seeds", "lr", "threshold")   # may differ between the points of one population
CRITIC_SEED_OFFSET = 1 << 30     # the critic of member seed s is initialised from seed s + 2^30
STEPS_PER_CALL = 4               # steps unrolled into one compiled call
DRAW_STEPS = 64                  # steps whose uniforms are drawn in one generator call (a multiple of STEPS_PER_CALL)
COMPILE_MIN_EPISODES = 200       # "auto" compiles runs of at least this many episodes: compiling the published
                                 # config took 35-48 s on the shared 2-core CPU (21 min once, beside other compiles)
                                 # and then cut a 3.5 ms eager step to 0.6-1.9 ms (benchmarks/control_throughput.py)

THRESHOLDS = {"CartPole-v1": 195.0, "Acrobot-v1": -100.0}   # returns that count as solved (gymnasium's CartPole-v0
                                                          # criterion; Acrobot: as often quoted)


class ControlConfig(_Strict):
    env: Literal["CartPole-v1", "Acrobot-v1"] = Field("CartPole-v1", description="gymnasium id of the environment "
                                                      "(trial files and studies give it as task.env: cartpole or acrobot)")
    max_steps: int = Field(500, ge=1, description="time limit: steps per episode before truncation")
    actor_hidden: list[int] = Field([64, 32], min_length=1, description="widths of the actor's Bernoulli layers")
    critic_hidden: list[int] = Field([64, 32], min_length=1, description="widths of the critic's softplus layers")
    rule: Literal["reinforce", "ste", "wm", "hwm", "uwm"] = Field("wm", description="rule of the actor's hidden layers")
    rule_options: dict = Field(default_factory=dict, description="the rule's options (wm: p; hwm: order, form; "
                               "uwm: signal, form)")
    output_logits: Literal["pin_last", "free"] = Field("pin_last", description="pin_last: the last action's logit "
                                                       "stays 0 (Chung's K - 1 free rows); free: all K rows learn")
    gamma: float = Field(0.98, gt=0, le=1, description="discount")
    critic_lambda: float = Field(0.8, ge=0, le=1, description="TD(lambda) trace decay of the critic (traces decay by gamma * lambda)")
    actor_lr_start: list[float] = Field([0.02, 2e-4, 2e-5], description="actor learning rate per layer at step 0")
    actor_lr_end: list[float] = Field([2e-4, 2e-6, 2e-7], description="actor learning rate per layer from end_t on")
    critic_lr_start: list[float] = Field([0.04, 4e-5, 4e-6], description="critic learning rate per layer at step 0")
    critic_lr_end: list[float] = Field([0.004, 4e-5, 4e-6], description="critic learning rate per layer from end_t on")
    end_t: int = Field(50_000, ge=1, description="steps over which learning rates fall linearly from start to end")
    adam_bias_correction_steps: int | None = Field(None, ge=1, description="stop Adam's bias correction after this many "
                                                   "steps (Chung's code: 1000); none: always correct")
    truncation: Literal["zero", "bootstrap"] = Field("zero", description="delta at a truncation: zero (Chung's code) "
                                                     "or r + gamma V(final observation) - V(s)")
    episodes: int = Field(1000, ge=1, description="episodes per member (counted over its environments)")
    seed: int = Field(0, ge=0, description="seed of member 0; member k uses seed + k")
    seeds: int = Field(1, ge=1, description="members (independent runs) trained at once")
    envs: int = Field(1, ge=1, description="environments per member (the batch of each update)")
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile the step: auto compiles runs "
                                                  "of at least 200 episodes; the numbers are the eager ones to rounding")
    lr: float | None = Field(None, gt=0, description="the actor's first-layer starting learning rate, the whole actor "
                             "schedule (every layer, start and end) scaled with it (per member: what a study tunes); "
                             "none: the schedule as written")
    threshold: float | None = Field(None, description="return that counts as solved, read from the running mean of "
                                    "100 episodes (per member); none: 195 on CartPole, -100 on Acrobot")
    report_every: int = Field(100, ge=1, description="episodes between a study's reports (every member has ended "
                                                      "this many more; the last report at episodes)")
    threads: int = Field(1, ge=1, le=1024, description="CPU threads for torch")
    probe_samples: int = Field(32, ge=0, description="K of a study's estimator probe: each member's current states "
                               "replicated K times, one step each, at every report and before training (0: no probe; "
                               "docs/learning-rules.md §9)")

    @model_validator(mode="after")
    def _check(self):
        actor_layers, critic_layers = len(self.actor_hidden) + 1, len(self.critic_hidden) + 1
        for name, layers in (("actor_lr_start", actor_layers), ("actor_lr_end", actor_layers),
                             ("critic_lr_start", critic_layers), ("critic_lr_end", critic_layers)):
            if len(getattr(self, name)) != layers:
                raise ValueError(f"{name} lists {len(getattr(self, name))} learning rates for {layers} layers")
        resolve_rule(self.rule, self.rule_options)
        if self.probe_samples == 1:
            raise ValueError("probe_samples is 1: a per-sample variance needs at least 2 (0 turns the probe off)")
        if self.threshold is None:      # object.__setattr__: assignment would validate the model again, recursively
            object.__setattr__(self, "threshold", THRESHOLDS[self.env])
        return self

    # the interface a study reads of any trial configuration (uwm_model.config.TrialConfig has the same)
    @property
    def layers(self) -> int:
        return len(self.actor_hidden) + 1

    @property
    def member_seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def threshold_window(self) -> int:
        """Returns in the running mean that the threshold reads."""
        return THRESHOLD_WINDOW

    @property
    def cuda_index(self) -> int | None:
        """The CUDA device this configuration names (0 for ``cuda``), or None for auto and cpu."""
        return int(self.device.partition(":")[2] or 0) if self.device.startswith("cuda") else None

    @property
    def lr_scale(self) -> float:
        """The factor on the actor's learning-rate schedule that ``lr`` sets."""
        return 1.0 if self.lr is None else self.lr / self.actor_lr_start[0]

    def pack_key(self) -> str:
        """Everything that must be equal for two configurations to train in one population."""
        data = self.model_dump(mode="json")
        for field in CONTROL_PER_MEMBER_FIELDS:
            data.pop(field, None)
        return json.dumps(data, sort_keys=True)

    def trial_data(self) -> dict:
        """The configuration as JSON data in a trial file's form, ``task: {env: cartpole}``: how a study holds it."""
        data = self.model_dump(mode="json")
        return {"task": {"env": ENV_SHORT_NAMES[data.pop("env")]}, **data}

    def flat(self) -> dict:
        """The configuration as one flat dict with dotted keys (for trackers and tables; the environment as
        ``task.env``)."""
        return flatten(self.trial_data())


def member_bytes(cfg: ControlConfig) -> int:
    """Upper estimate of the memory one member of ``cfg``'s population needs, as uwm_model.memory counts a
    multiplexer member: 15 x its parameters (actor and critic: values, Adam's moments, the step's temporaries),
    the critic's traces per environment (twice: old and new), and DRAW_STEPS steps of uniforms per environment."""
    obs = envs.make(cfg.env, cfg.max_steps)
    actor = [obs.observation_size, *cfg.actor_hidden, obs.num_actions]
    critic = [obs.observation_size, *cfg.critic_hidden, 1]
    count = lambda sizes: sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))    # noqa: E731
    draws = 2 * sum(cfg.actor_hidden) + 1
    itemsize = 8 if cfg.dtype == "float64" else 4
    return itemsize * (15 * (count(actor) + count(critic)) + 2 * cfg.envs * count(critic) + DRAW_STEPS * cfg.envs * draws)


class ControlState(NamedTuple):
    """What one step reads and writes (lists per layer; [P, ...] tensors). Immutable: a step returns a new one,
    so the step is a pure function and compiles."""

    actor_w: list
    actor_b: list
    critic_w: list
    critic_b: list
    adam_actor: list         # [m, v]: Adam's moments of the actor's weights then biases
    adam_critic: list
    traces: list             # the critic's eligibility traces [P, B, ...] of its weights then biases
    env: envs.EnvState
    obs: torch.Tensor        # [P, B, d] what the actor acts on next
    ret: torch.Tensor        # [P, B] the return of each environment's episode so far
    diverged_at: torch.Tensor  # [P] the step a member's parameters turned non-finite (-1: never)


def adam(params: list, grads: list, moments: list, lrs: torch.Tensor, beta1_power, beta2_power):
    """Adam on every tensor of ``params`` (weights then biases, layer l's learning rate lrs[l] for both).
    Returns the new parameters and [m, v]."""
    L, out, m, v = len(lrs), [], [], []
    for i, (p, g) in enumerate(zip(params, grads)):
        lr = lrs[i % L]
        lr = lr.reshape(-1, *[1] * (p.dim() - 1)) if lr.dim() else lr     # per member: [P] -> [P, 1, ...]
        p, mi, vi = adam_update(p, g, moments[0][i], moments[1][i], beta1_power, beta2_power, lr)
        out.append(p)
        m.append(mi)
        v.append(vi)
    return out, [m, v]


def softplus_critic_value(weights, biases, x):
    """V(s) and the activations needed for its gradient. x: [P, B, d]; returns V [P, B] and the cache."""
    h, pre = [x], []
    for w, b in zip(weights[:-1], biases[:-1]):
        a = batched_matmul(h[-1], w.transpose(1, 2)) + b.unsqueeze(1)
        pre.append(a)
        h.append(F.softplus(a))
    v = (batched_matmul(h[-1], weights[-1].transpose(1, 2)) + biases[-1].unsqueeze(1)).squeeze(-1)
    return v, (h, pre)


def softplus_critic_gradient(weights, cache):
    """Per-sample dV/dparameters ([P, B, ...] per weight and bias), by hand: two small layers."""
    h, pre = cache
    g = weights[-1].expand(-1, h[-1].shape[1], -1)                      # dV/dh_last: [P, B, n]
    gw, gb = [h[-1].unsqueeze(-2)], [torch.ones_like(h[-1][..., :1])]
    for l in range(len(pre) - 1, -1, -1):
        g = g * torch.sigmoid(pre[l])                                     # through softplus
        gw.insert(0, g.unsqueeze(-1) * h[l].unsqueeze(-2))
        gb.insert(0, g)
        g = batched_matmul(g, weights[l])
    return gw, gb


def td_error(reward, terminated, truncated, value, next_value, gamma: float, truncation: str = "zero"):
    """delta = r + gamma (1 - terminated) V(s') - V(s), [P, B]; at a truncation that is not also a
    termination, 0 (``truncation="zero"``, Chung's code) or the bootstrapped value as written."""
    delta = reward + gamma * (~terminated).to(value.dtype) * next_value - value
    if truncation == "zero":
        delta = torch.where(truncated & ~terminated, 0.0, delta)
    return delta


def schedule(start, end, end_t: int, t: int) -> list[float]:
    """Chung's linear schedule: start + (end - start) * min(t, end_t) / end_t, per layer."""
    f = min(t, end_t) / end_t
    return [s + (e - s) * f for s, e in zip(start, end)]




@dataclass
class ControlResult:
    returns: torch.Tensor          # [P, episodes]: each member's episode returns in the order they ended (NaN after
                                   # its divergence)
    steps: int                     # steps taken (per environment)
    seconds: float
    diverged_at: torch.Tensor      # [P] the step at which a member's parameters became non-finite (-1: never)
    window: int = 100

    @property
    def average_return(self) -> torch.Tensor:
        """The anchor's figure: each member's mean return over all its episodes, [P] (NaN if it diverged)."""
        return self.returns.mean(1)

    def running_mean(self) -> torch.Tensor:
        """[P, episodes]: the mean of the last ``window`` returns (of all of them before the window fills)."""
        csum = torch.nn.functional.pad(self.returns.cumsum(1), (1, 0))
        n = torch.arange(1, self.returns.shape[1] + 1, dtype=torch.float64)
        lo = (n - self.window).clamp_min(0).long()
        return (csum[:, 1:] - csum[:, lo]) / (n - lo)

    def episodes_to_threshold(self, threshold: float) -> torch.Tensor:
        """[P]: the first episode (1-based) at which the mean of the last ``window`` returns (a full window) is
        >= threshold, as the multiplexer trainer's episodes_to_threshold; NaN if never."""
        running = self.running_mean()[:, self.window - 1:]
        if running.shape[1] == 0:                     # a run shorter than the window never fills it
            return torch.full((len(running),), torch.nan, dtype=torch.float64)
        hit = running >= threshold
        first = hit.to(torch.int64).argmax(1).double() + self.window
        return torch.where(hit.any(1), first, torch.nan)


class ActorCritic:
    """One or more configurations (points) that share ``pack_key()`` trained as one population: point i contributes
    its ``seeds`` members (seeds ``seed, seed + 1, ...``), which differ only in their streams, learning-rate factor
    (``lr``) and threshold; a member's numbers do not depend on which points share its population."""

    def __init__(self, configs: ControlConfig | list[ControlConfig]):
        self.points = [configs] if isinstance(configs, ControlConfig) else list(configs)
        if len({c.pack_key() for c in self.points}) > 1:
            raise ValueError("configurations packed into one ActorCritic must agree on every field but "
                             f"{', '.join(CONTROL_PER_MEMBER_FIELDS)}")
        cfg = self.cfg = self.points[0]
        self.dtype, self.device = resolve_dtype(cfg.dtype), resolve_device(cfg.device)
        self.env = envs.make(cfg.env, cfg.max_steps)
        self.rule, self.rule_options = resolve_rule(cfg.rule, cfg.rule_options)
        seeds = [s for c in self.points for s in c.member_seeds]
        self.P = P = len(seeds)
        K, d = self.env.num_actions, self.env.observation_size
        # per-member factors on the actor's schedule; None where every point keeps its schedule as written (then the
        # step multiplies by nothing, and runs of trial files are the numbers they were before studies had lr)
        self.lr_scale = None if all(c.lr is None for c in self.points) else torch.tensor(
            [c.lr_scale for c in self.points for _ in c.member_seeds], dtype=self.dtype, device=self.device)
        actor = init_network([d, *cfg.actor_hidden, K], P, seeds, dtype=torch.float64, device="cpu")
        if cfg.output_logits == "pin_last":    # Chung: drawn at the scale of K outputs, the last logit fixed at 0
            actor.weights[-1][:, -1] = 0.0
            actor.biases[-1][:, -1] = 0.0
        self.units = [BERNOULLI] * len(cfg.actor_hidden) + [CATEGORICAL]
        critic = init_network([d, *cfg.critic_hidden, 1], P, [s + CRITIC_SEED_OFFSET for s in seeds],
                              dtype=torch.float64, device="cpu")
        cast = lambda ts: [t.to(self.device, self.dtype) for t in ts]          # noqa: E731
        self.actor = [cast(actor.weights), cast(actor.biases)]
        self.critic = [cast(critic.weights), cast(critic.biases)]
        self.train_keys = streams.member_keys(torch.tensor(seeds, device=self.device), streams.TRAIN)
        self.seeds = torch.tensor(seeds, device=self.device)
        self.probe_keys = streams.member_keys(self.seeds, streams.PROBE)     # never the training stream
        self.adam = {name: [[torch.zeros_like(t) for t in ws + bs], [torch.zeros_like(t) for t in ws + bs]]
                     for name, (ws, bs) in (("actor", self.actor), ("critic", self.critic))}
        n_hidden = sum(cfg.actor_hidden)
        self.n_draws = n_hidden + 1 + (n_hidden if self.rule.needs_uniforms else 0)   # per environment and step
        self._step, self._steps, self.compile_seconds = None, None, 0.0
        self.start()

    # --- the actor ---
    def act(self, x: torch.Tensor, u: torch.Tensor, actor=None) -> tuple[Episode, torch.Tensor]:
        """Sample the actor (default: its current parameters) on observations x [P, B, d] with uniforms u
        [P, B, sum(hidden) + 1] (one per hidden unit, then the action's). Returns the episode (its last layer the
        action's one-hot) and the actions [P, B]."""
        bounds = list(itertools.accumulate([0, *self.cfg.actor_hidden, 1]))
        parts = [u[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        ep = sample_episode(*(actor or self.actor), x, parts, self.units)
        return ep, CATEGORICAL.action(ep.h[-1]).long()

    def actor_gradient(self, ep: Episode, delta: torch.Tensor, U, weights=None) -> list[torch.Tensor]:
        """The batch-mean ascent direction of the actor's weights then biases for reward delta [P, B]; with
        ``pin_last`` the fixed logit's row gets no gradient."""
        weights = self.actor[0] if weights is None else weights
        grad = batch_mean_parameters(self.rule.fn(weights, ep, delta, U, **self.rule_options), ep)
        if self.cfg.output_logits == "pin_last":
            grad.weights[-1] = torch.cat([grad.weights[-1][:, :-1], torch.zeros_like(grad.weights[-1][:, -1:])], 1)
            grad.biases[-1] = torch.cat([grad.biases[-1][:, :-1], torch.zeros_like(grad.biases[-1][:, -1:])], 1)
        return grad.weights + grad.biases

    @torch.no_grad()
    def probe_estimates(self, counter: int, K: int, members: torch.Tensor | None = None
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The estimator probe's per-sample estimates (docs/learning-rules.md §9): each member's B current
        environment states replicated K times, the actor sampled on every copy with counter ``counter`` of the
        member's PROBE stream, every copy stepped once, the TD error from the current critic as a training step
        computes it, and the trained rule's per-sample logit estimates for that reward. Reads the run's state and
        changes nothing (its own stream, copies of the environments). Returns per actor layer the logit estimates
        [P, B, K, n_out] (with ``pin_last`` the fixed logit's column left out: it gets no gradient) and the
        layer's inputs [P, B, K, n_in], float64; with ``members`` (indices) those members' only."""
        cfg, B = self.cfg, self.cfg.envs
        pick = (lambda t: t) if members is None else (lambda t: t[members])          # noqa: E731
        actor, critic = [[pick(t) for t in ts] for ts in self.actor], [[pick(t) for t in ts] for ts in self.critic]
        rep = lambda t: pick(t).repeat_interleave(K, 1)           # noqa: E731  [P, B, ...] -> [P, B * K, ...]
        env = type(self.env_state)(**{k: pick(v) if k == "keys" else rep(v) for k, v in vars(self.env_state).items()})
        keys = pick(self.probe_keys)
        P = len(keys)
        u = streams.uniforms(keys, counter, B * K * self.n_draws, self.dtype).reshape(P, B * K, -1)
        n_units, x = sum(cfg.actor_hidden) + 1, rep(self.obs)
        ep, action = self.act(x, u[..., :n_units], actor)
        U = self.uwm_uniforms(u[..., n_units:]) if self.rule.needs_uniforms else None
        out = self.env.step(env, action)
        value, next_value = (softplus_critic_value(*critic, y)[0] for y in (x, out.final_obs))
        delta = td_error(out.reward, out.terminated, out.truncated, value, next_value, cfg.gamma, cfg.truncation)
        grads = list(self.rule.fn(actor[0], ep, delta, U, **self.rule_options))
        if cfg.output_logits == "pin_last":
            grads[-1] = grads[-1][..., :-1]
        split = lambda t: t.reshape(P, B, K, *t.shape[2:]).double()   # noqa: E731
        return [split(g) for g in grads], [split(h) for h in ep.h[:-1]]

    def uwm_uniforms(self, u: torch.Tensor) -> list[torch.Tensor]:
        """uwm's U: one uniform per hidden unit and sample, [P, B, n_l] per hidden layer, from u [P, B, sum(hidden)]."""
        return list(u.split(self.cfg.actor_hidden, -1))

    def start(self) -> None:
        """The run's state at step 0: environments, critic traces, returns so far, divergence marks."""
        cfg, P, B = self.cfg, self.P, self.cfg.envs
        self.t = 0
        self.env_state, obs = self.env.reset(self.seeds, B, self.dtype, self.device)
        self.obs = obs.clone()            # not CartPole's physics itself: a compiled step's guards see no aliasing
        self.traces = [torch.zeros(P, B, *p.shape[1:], dtype=self.dtype, device=self.device)
                       for p in self.critic[0] + self.critic[1]]
        self.ret = torch.zeros(P, B, dtype=self.dtype, device=self.device)
        self.returns: list[list[float]] = [[] for _ in range(P)]
        self.diverged_at = torch.full((P,), -1, dtype=torch.int64, device=self.device)
        self._drawn = (-1, None)          # (first step, uniforms [DRAW_STEPS, P, n]) of the block drawn last

    # --- one step as a pure function of tensors (eager, or compiled: the same code) ---
    @property
    def state(self) -> ControlState:
        return ControlState(list(self.actor[0]), list(self.actor[1]), list(self.critic[0]), list(self.critic[1]),
                            [list(x) for x in self.adam["actor"]], [list(x) for x in self.adam["critic"]],
                            list(self.traces), self.env_state, self.obs, self.ret, self.diverged_at)

    @state.setter
    def state(self, s: ControlState) -> None:
        self.actor, self.critic = [s.actor_w, s.actor_b], [s.critic_w, s.critic_b]
        self.adam = {"actor": s.adam_actor, "critic": s.adam_critic}
        self.traces, self.env_state, self.obs, self.ret, self.diverged_at = s.traces, s.env, s.obs, s.ret, s.diverged_at

    def _schedules(self, t0: int, steps: int) -> torch.Tensor:
        """[steps, La + Lc + 3] float64: per step t0 + 1 .. t0 + steps (1-based, as Adam counts) the actor's then
        the critic's learning rates (Chung's schedule at t - 1), Adam's b1^t and b2^t (0 once bias correction
        stops), and t itself (the divergence mark)."""
        cfg, rows, limit = self.cfg, [], self.cfg.adam_bias_correction_steps
        for t in range(t0 + 1, t0 + steps + 1):
            b1, b2 = (0.0, 0.0) if limit is not None and t >= limit else (0.9**t, 0.999**t)
            rows.append(schedule(cfg.actor_lr_start, cfg.actor_lr_end, cfg.end_t, t - 1)
                        + schedule(cfg.critic_lr_start, cfg.critic_lr_end, cfg.end_t, t - 1) + [b1, b2, float(t)])
        return torch.tensor(rows, dtype=torch.float64, device=self.device)

    def _uniforms(self, t0: int, steps: int) -> torch.Tensor:
        """[steps, P, B, n_draws]: the uniforms of steps t0 .. t0 + steps - 1 (counter t of the member's TRAIN
        stream for step t), drawn DRAW_STEPS steps at a time (one vectorised generator call, aligned to the
        step count so a resumed run draws alike)."""
        P, B, n = self.P, self.cfg.envs, self.n_draws
        first, block = self._drawn
        if block is None or not (first <= t0 and t0 + steps <= first + DRAW_STEPS):
            first = t0 - t0 % DRAW_STEPS
            counters = torch.arange(first, first + DRAW_STEPS, dtype=torch.int64, device=self.device)
            block = streams.uniforms(self.train_keys, counters, B * n, self.dtype).reshape(DRAW_STEPS, P, n, B)
            self._drawn = (first, block)
        return block[t0 - first: t0 - first + steps].transpose(2, 3)

    def train_steps(self, s: ControlState, u: torch.Tensor, sched: torch.Tensor):
        """``len(u)`` consecutive steps (u [S, P, B, n_draws], sched [S, ...] from :meth:`_schedules`): one graph
        when compiled. Returns the new state and, per step, which episodes ended and counted ([S, P, B] bool:
        ended, member not diverged) and their returns [S, P, B]."""
        counted, returns = [], []
        for i in range(len(u)):
            s, c, r = self.train_step(s, u[i], sched[i])
            counted.append(c)
            returns.append(r)
        return s, torch.stack(counted), torch.stack(returns)

    def train_step(self, s: ControlState, u: torch.Tensor, sched: torch.Tensor):
        """One step of every member's environments and both networks' updates, a pure function of tensors."""
        cfg, P, B = self.cfg, self.P, self.cfg.envs
        n_units, La = sum(cfg.actor_hidden) + 1, len(cfg.actor_hidden) + 1
        actor, critic = [s.actor_w, s.actor_b], [s.critic_w, s.critic_b]
        ep, action = self.act(s.obs, u[..., :n_units], actor)
        U = self.uwm_uniforms(u[..., n_units:]) if self.rule.needs_uniforms else None
        value, cache = softplus_critic_value(*critic, s.obs)
        out = self.env.step(s.env, action)
        next_value = softplus_critic_value(*critic, out.final_obs)[0]
        delta = td_error(out.reward, out.terminated, out.truncated, value, next_value, cfg.gamma, cfg.truncation)
        lr_actor, lr_critic, (b1, b2, t) = sched[:La], sched[La:-3], sched[-3:]
        if self.lr_scale is not None:     # [La, P]: each member's factor on the actor's schedule
            lr_actor = lr_actor.to(self.dtype).unsqueeze(1) * self.lr_scale
        # critic: accumulating traces of dV/dw, cleared at episode starts (after this step's update)
        gw, gb = softplus_critic_gradient(s.critic_w, cache)
        traces = [cfg.gamma * cfg.critic_lambda * e + g for e, g in zip(s.traces, gw + gb)]
        shape = lambda e: delta.reshape(P, B, *([1] * (e.dim() - 2)))        # noqa: E731
        new_critic, adam_critic = adam(s.critic_w + s.critic_b, [(shape(e) * e).mean(1) for e in traces],
                                       s.adam_critic, lr_critic, b1, b2)
        done = out.terminated | out.truncated
        keep = (~done).to(self.dtype)
        traces = [e * keep.reshape(P, B, *([1] * (e.dim() - 2))) for e in traces]
        # actor: this step's per-layer logit estimates with R = delta
        new_actor, adam_actor = adam(s.actor_w + s.actor_b, self.actor_gradient(ep, delta, U, actor[0]),
                                     s.adam_actor, lr_actor, b1, b2)
        # divergence: a member whose parameters turn non-finite is marked and frozen at its last finite
        # parameters; its returns stop counting (the run ends without it), the other members go on unchanged
        old, new = s.actor_w + s.actor_b + s.critic_w + s.critic_b, new_actor + new_critic
        finite = torch.stack([torch.isfinite(p).flatten(1).all(1) for p in new]).all(0)
        diverged_at = torch.where(~finite & (s.diverged_at < 0), t.to(torch.int64), s.diverged_at)
        frozen = diverged_at >= 0
        new = [torch.where(frozen.reshape(-1, *([1] * (n.dim() - 1))), o, n) for o, n in zip(old, new)]
        ret = s.ret + out.reward
        counted = done & ~frozen.unsqueeze(1)
        Lc = len(s.critic_w)
        state = ControlState(new[:La], new[La:2 * La], new[2 * La:2 * La + Lc], new[2 * La + Lc:], adam_actor,
                             adam_critic, traces, out.state, out.obs, torch.where(done, 0.0, ret), diverged_at)
        return state, counted, ret

    def compiles(self) -> bool:
        """Whether steps are compiled: ``compile`` on, or auto and the run long enough to repay compiling."""
        return self.cfg.compile == "on" or (self.cfg.compile == "auto" and self.cfg.episodes >= COMPILE_MIN_EPISODES)

    @property
    def compiled(self) -> bool:
        """Whether the steps run compiled (known once the run is prepared)."""
        return self._steps is not None

    def _prepare(self) -> None:
        """Choose eager or compiled steps once; compiling happens here, on the real state, so training time
        excludes it."""
        if self._step is not None:
            return
        if not self.compiles():
            self._step, self._steps = self.train_step, None
            return
        tic = time.perf_counter()
        compile_cache()   # this process's trainers each compile their own steps
        compile = lambda fn: torch.compile(fn, fullgraph=True, dynamic=False)  # noqa: E731
        # the unrolled graph now, on the real state; the single step (runs cut at a step count that is not a
        # multiple of STEPS_PER_CALL) compiles when first needed
        self._step, self._steps = compile(self.train_step), compile(self.train_steps)
        t = self.t - self.t % STEPS_PER_CALL
        self._steps(self.state, self._uniforms(t, STEPS_PER_CALL), self._schedules(t, STEPS_PER_CALL))
        self.compile_seconds += time.perf_counter() - tic

    def step(self, steps: int = 1) -> torch.Tensor:
        """``steps`` steps (unrolled into one compiled call when compiled and ``steps`` is STEPS_PER_CALL);
        records the returns of the episodes that ended. Returns whether any episode ended."""
        self._prepare()
        t = self.t
        if steps == 1:
            s, counted, ret = self._step(self.state, self._uniforms(t, 1)[0], self._schedules(t, 1)[0])
            counted, ret = counted.unsqueeze(0), ret.unsqueeze(0)
        else:
            s, counted, ret = (self._steps or self.train_steps)(self.state, self._uniforms(t, steps),
                                                               self._schedules(t, steps))
        self.state, self.t = s, t + steps
        ended = bool(counted.any())
        if ended:
            for i, p, b in counted.nonzero().tolist():
                self.returns[p].append(float(ret[i, p, b]))
        return ended

    def finished(self, episodes: int | None = None) -> bool:
        """Whether every live member has ``episodes`` returns (default: the configuration's episodes)."""
        live = [r for r, d in zip(self.returns, self.diverged_at.tolist()) if d < 0]
        return not live or min(len(r) for r in live) >= (episodes or self.cfg.episodes)

    def run(self, progress=None, max_steps: int | None = None, episodes: int | None = None) -> ControlResult:
        """Train until every live member has ``episodes`` returns (default: the configuration's; or ``max_steps``
        more steps: then the run can be checkpointed and resumed)."""
        self._prepare()
        tic, stop = time.perf_counter(), None if max_steps is None else self.t + max_steps
        unroll = STEPS_PER_CALL if self._steps is not None else 1
        while not self.finished(episodes) and (stop is None or self.t < stop):
            # compiled: STEPS_PER_CALL steps a call, aligned to the step count (a resumed run calls alike)
            steps = unroll if self.t % unroll == 0 and (stop is None or self.t + unroll <= stop) else 1
            if self.step(steps) and progress:
                progress(self.t, self.returns)
        return self.result(time.perf_counter() - tic)

    def result(self, seconds: float = 0.0) -> ControlResult:
        E = self.cfg.episodes
        returns = torch.tensor([r[:E] + [math.nan] * (E - len(r[:E])) for r in self.returns], dtype=torch.float64)
        return ControlResult(returns, self.t, seconds, self.diverged_at.cpu(), window=100)

    # --- checkpoints ---
    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly as if it had not stopped."""
        return {"t": self.t, "actor": self.actor, "critic": self.critic, "adam": self.adam, "traces": self.traces,
                "env_state": vars(self.env_state), "obs": self.obs, "ret": self.ret,
                "returns": self.returns, "diverged_at": self.diverged_at,
                "configs": [c.model_dump() for c in self.points]}

    def load_state_dict(self, state: dict) -> None:
        if state["configs"] != [c.model_dump() for c in self.points]:
            raise ValueError("checkpoint was written by different ControlConfigs")
        self.start()
        self.t, self.actor, self.critic, self.adam = state["t"], state["actor"], state["critic"], state["adam"]
        self.traces, self.obs, self.ret = state["traces"], state["obs"], state["ret"]
        self.env_state = type(self.env_state)(**state["env_state"])
        self.returns, self.diverged_at = state["returns"], state["diverged_at"]

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))
