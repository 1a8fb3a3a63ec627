"""Actor-critic training on the batched episodic environments (docs/learning-rules.md §9): a first
version, not yet wired into studies.

A population of P members (seeds ``seed, seed+1, ...``), each with B environments, steps in lock
step. Every step: the actor (Bernoulli-logistic hidden layers, a categorical output) acts on the
observations; the environments step (auto-reset); the TD error

    delta_t = r_t + gamma (1 - terminated) V(s_{t+1}) - V(s_t)

is every layer's reward for that step; the actor's hidden layers learn by the chosen rule, the
critic (softplus MLP, linear output) by TD(lambda) with accumulating traces; both by Adam with
per-layer learning rates that fall linearly from a start to an end value over ``end_t`` steps.

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

import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from . import envs, streams
from .config import _Strict
from .network import Episode, batched_matmul, init_network, resolve_device, resolve_dtype, sample_episode
from .optim import adam_update
from .rules import batch_mean_parameters, resolve_rule
from .units import BERNOULLI, CATEGORICAL

CRITIC_SEED_OFFSET = 1 << 30     # the critic of member seed s is initialised from seed s + 2^30


class ControlConfig(_Strict):
    env: Literal["CartPole-v1", "Acrobot-v1"] = Field("CartPole-v1", description="gymnasium id of the environment")
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

    @model_validator(mode="after")
    def _check(self):
        actor_layers, critic_layers = len(self.actor_hidden) + 1, len(self.critic_hidden) + 1
        for name, layers in (("actor_lr_start", actor_layers), ("actor_lr_end", actor_layers),
                             ("critic_lr_start", critic_layers), ("critic_lr_end", critic_layers)):
            if len(getattr(self, name)) != layers:
                raise ValueError(f"{name} lists {len(getattr(self, name))} learning rates for {layers} layers")
        resolve_rule(self.rule, self.rule_options)
        return self


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


THRESHOLDS = {"CartPole-v1": 195.0, "Acrobot-v1": -100.0}   # returns that count as solved (gymnasium's CartPole-v0
                                                          # criterion; Acrobot: as often quoted)


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
        hit = running >= threshold
        first = hit.to(torch.int64).argmax(1).double() + self.window
        return torch.where(hit.any(1), first, torch.nan)


class ActorCritic:
    def __init__(self, cfg: ControlConfig):
        self.cfg = cfg
        self.dtype, self.device = resolve_dtype(cfg.dtype), resolve_device(cfg.device)
        self.env = envs.make(cfg.env, cfg.max_steps)
        self.rule, self.rule_options = resolve_rule(cfg.rule, cfg.rule_options)
        P, K, d = cfg.seeds, self.env.num_actions, self.env.observation_size
        seeds = [cfg.seed + k for k in range(P)]
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
        self.adam = {name: [[torch.zeros_like(t) for t in ws + bs], [torch.zeros_like(t) for t in ws + bs]]
                     for name, (ws, bs) in (("actor", self.actor), ("critic", self.critic))}
        self.start()

    # --- the actor ---
    def act(self, x: torch.Tensor, u: torch.Tensor) -> tuple[Episode, torch.Tensor]:
        """Sample the actor on observations x [P, B, d] with uniforms u [P, B, sum(hidden) + 1] (one per hidden
        unit, then the action's). Returns the episode (its last layer the action's one-hot) and the actions [P, B]."""
        bounds = torch.tensor([0, *self.cfg.actor_hidden, 1]).cumsum(0).tolist()
        parts = [u[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        ep = sample_episode(*self.actor, x, parts, self.units)
        return ep, CATEGORICAL.action(ep.h[-1]).long()

    def actor_gradient(self, ep: Episode, delta: torch.Tensor, U) -> list[torch.Tensor]:
        """The batch-mean ascent direction of the actor's weights then biases for reward delta [P, B]; with
        ``pin_last`` the fixed logit's row gets no gradient."""
        grad = batch_mean_parameters(self.rule.fn(self.actor[0], ep, delta, U, **self.rule_options), ep)
        if self.cfg.output_logits == "pin_last":
            grad.weights[-1] = torch.cat([grad.weights[-1][:, :-1], torch.zeros_like(grad.weights[-1][:, -1:])], 1)
            grad.biases[-1] = torch.cat([grad.biases[-1][:, :-1], torch.zeros_like(grad.biases[-1][:, -1:])], 1)
        return grad.weights + grad.biases

    def uwm_uniforms(self, u: torch.Tensor) -> list[torch.Tensor]:
        """uwm's U: one uniform per hidden unit and sample, [P, B, n_l] per hidden layer, from u [P, B, sum(hidden)]."""
        return list(u.split(self.cfg.actor_hidden, -1))

    def _adam(self, name: str, params: list[torch.Tensor], grads: list[torch.Tensor], lrs: list[float], t: int):
        m, v = self.adam[name]
        limit = self.cfg.adam_bias_correction_steps
        b1, b2 = (0.0, 0.0) if limit is not None and t >= limit else (0.9**t, 0.999**t)
        L = len(lrs)
        for i, (p, g) in enumerate(zip(params, grads)):
            params[i], m[i], v[i] = adam_update(p, g, m[i], v[i], b1, b2, lrs[i % L])
        return params[:L], params[L:]

    def start(self) -> None:
        """The run's state at step 0: environments, critic traces, returns so far, divergence marks."""
        cfg, P, B = self.cfg, self.cfg.seeds, self.cfg.envs
        self.t = 0
        self.env_state, self.obs = self.env.reset(self.seeds, B, self.dtype, self.device)
        self.traces = [torch.zeros(P, B, *p.shape[1:], dtype=self.dtype, device=self.device)
                       for p in self.critic[0] + self.critic[1]]
        self.ret = torch.zeros(P, B, dtype=self.dtype, device=self.device)
        self.returns: list[list[float]] = [[] for _ in range(P)]
        self.diverged_at = torch.full((P,), -1, dtype=torch.int64, device=self.device)

    def step(self) -> torch.Tensor:
        """One step of every member's environments and both networks' updates; returns done [P, B]."""
        cfg, P, B = self.cfg, self.cfg.seeds, self.cfg.envs
        n_units = sum(cfg.actor_hidden) + 1
        n_draws = n_units + (sum(cfg.actor_hidden) if self.rule.needs_uniforms else 0)
        obs, t = self.obs, self.t
        u = streams.uniforms(self.train_keys, t, B * n_draws, self.dtype).reshape(P, n_draws, B).transpose(1, 2)
        ep, action = self.act(obs, u[..., :n_units])
        U = self.uwm_uniforms(u[..., n_units:]) if self.rule.needs_uniforms else None
        value, cache = softplus_critic_value(*self.critic, obs)
        out = self.env.step(self.env_state, action)
        with torch.no_grad():
            next_value = softplus_critic_value(*self.critic, out.final_obs)[0]
        delta = td_error(out.reward, out.terminated, out.truncated, value, next_value, cfg.gamma, cfg.truncation)
        t = self.t = t + 1
        before = [list(self.actor[0]), list(self.actor[1]), list(self.critic[0]), list(self.critic[1])]
        # critic: accumulating traces of dV/dw, cleared at episode starts (after this step's update)
        gw, gb = softplus_critic_gradient(self.critic[0], cache)
        traces = [cfg.gamma * cfg.critic_lambda * e + g for e, g in zip(self.traces, gw + gb)]
        shape = lambda e: delta.reshape(P, B, *([1] * (e.dim() - 2)))        # noqa: E731
        critic_step = [(shape(e) * e).mean(1) for e in traces]
        self.critic[0], self.critic[1] = self._adam(
            "critic", self.critic[0] + self.critic[1], critic_step,
            schedule(cfg.critic_lr_start, cfg.critic_lr_end, cfg.end_t, t - 1), t)
        done = out.terminated | out.truncated
        keep = (~done).to(self.dtype)
        self.traces = [e * keep.reshape(P, B, *([1] * (e.dim() - 2))) for e in traces]
        # actor: this step's per-layer logit estimates with R = delta
        self.actor[0], self.actor[1] = self._adam(
            "actor", self.actor[0] + self.actor[1], self.actor_gradient(ep, delta, U),
            schedule(cfg.actor_lr_start, cfg.actor_lr_end, cfg.end_t, t - 1), t)
        self._handle_divergence(before)
        self.ret = self.ret + out.reward
        if bool(done.any()):
            frozen = (self.diverged_at >= 0).tolist()
            for p, b in done.nonzero().tolist():
                if not frozen[p]:
                    self.returns[p].append(float(self.ret[p, b]))
            self.ret = torch.where(done, 0.0, self.ret)
        self.env_state, self.obs = out.state, out.obs
        return done

    def _handle_divergence(self, before) -> None:
        """A member whose parameters turn non-finite is marked and frozen at its last finite parameters; its
        returns stop counting (the run ends without it), the other members go on unchanged."""
        after = [self.actor[0], self.actor[1], self.critic[0], self.critic[1]]
        finite = torch.stack([torch.isfinite(p).flatten(1).all(1) for group in after for p in group]).all(0)
        self.diverged_at = torch.where(~finite & (self.diverged_at < 0), self.t, self.diverged_at)
        frozen = self.diverged_at >= 0
        if bool(frozen.any()):
            for old, new in zip(before, after):
                for i, (o, n) in enumerate(zip(old, new)):
                    new[i] = torch.where(frozen.reshape(-1, *([1] * (n.dim() - 1))), o, n)

    def finished(self) -> bool:
        live = [r for r, d in zip(self.returns, self.diverged_at.tolist()) if d < 0]
        return not live or min(len(r) for r in live) >= self.cfg.episodes

    def run(self, progress=None, max_steps: int | None = None) -> ControlResult:
        """Train until every live member has ``episodes`` returns (or ``max_steps`` more steps: then the
        run can be checkpointed and resumed)."""
        tic, stop = time.perf_counter(), None if max_steps is None else self.t + max_steps
        while not self.finished() and (stop is None or self.t < stop):
            done = self.step()
            if progress and bool(done.any()):
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
                "returns": self.returns, "diverged_at": self.diverged_at, "config": self.cfg.model_dump()}

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != self.cfg.model_dump():
            raise ValueError("checkpoint was written by a different ControlConfig")
        self.start()
        self.t, self.actor, self.critic, self.adam = state["t"], state["actor"], state["critic"], state["adam"]
        self.traces, self.obs, self.ret = state["traces"], state["obs"], state["ret"]
        self.env_state = type(self.env_state)(**state["env_state"])
        self.returns, self.diverged_at = state["returns"], state["diverged_at"]

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))
