"""The population trainer: one or more configurations (points) trained as one population.

Every point contributes ``cfg.seeds`` members; all members share the shapes and the step's code
(``TrialConfig.pack_key``) and differ in per-member data held as tensors over the population
axis: seed, per-layer learning rates, initial outgoing norm, Adam betas and epsilon, the
REINFORCE baseline decay, WM's p. Each member draws from its own counter-based stream
(:mod:`uwm_model.streams`), so a point's numbers never depend on which points share its
population. A report comes every ``report_every`` episodes with per-seed metrics and their
aggregates per point (names and meanings in :mod:`uwm_model.metrics`).

    trainer = Trainer([cfg_a, cfg_b])
    for report in trainer.run():
        print(report.episode, report.points[0].metrics["eval_reward_mean"])
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from . import streams
from .metrics import DIVERGED, FINISHED, LEVEL_PREFIX, RUNNING, STOPPED, level_prefix, level_summary, threshold_median
from .config import TrialConfig, per_member_fields
from .fanout import fan_outs, rank_correlation, unit_statistics
from .network import Network, init_network, resolve_device, resolve_dtype, sample_episode
from .optim import adam_update, sgd_update
from .settings import compile_cache
from .oracle import exact_gradient, oracle_fits
from .rules import REWARD_BASELINE, RULES, Gradient, batch_mean_parameters, resolve_rule
from .tasks import make_task
from .units import layer_units

# "auto" compiles when the expected saving exceeds the cost of compiling (about 30 s on 2 cores with
# a cold cache). An eager step costs a fixed ~0.5 ms of operator launches plus ~30 ns per parameter
# entry of the population (measured on the replication config: 1.1 ms for 10 x 3457 entries), and
# compiling saves about 80% of it (benchmarks/train_throughput.py).
COMPILE_SECONDS = 30.0
EAGER_STEP_FIXED_SECONDS, EAGER_STEP_PER_ENTRY_SECONDS, COMPILE_SAVING = 5e-4, 3e-8, 0.8
STEPS_PER_CALL = 4  # steps unrolled into one compiled call
# Training draws the uniforms of up to DRAW_BLOCK steps at once (one vectorised generator call instead
# of one per step): as many steps as fit DRAW_BUDGET_BYTES, counting the generator's int64 words and
# temporaries (DRAW_BYTES_PER_UNIFORM; the measured peak is 24 bytes per uniform on the CPU, float32 or
# float64), never more than the report window trains, and a step too large for the budget in slices of
# members. (Generating them inside the compiled step instead cost the replication config 12% more CPU
# time per step: the compiler recomputes the generator in every loop that reads a uniform.)
DRAW_BLOCK = 1024
DRAW_BUDGET_BYTES = 256 * 2**20
DRAW_BYTES_PER_UNIFORM = 32
# The probe evaluates every rule on K episodes in chunks of samples: uwm's importance weights form
# [members, samples, n, n'] intermediates (about PROBE_TEMPORARIES of them live at once, float64), which
# for K = 256 at width 512 would be ~8.6 GB unchunked; each chunk stays within PROBE_CHUNK_BYTES.
PROBE_CHUNK_BYTES = 128 * 2**20
PROBE_TEMPORARIES = 8
# Probe counters: 0 is the initial state, 1, 2, ... the reports, LEVEL_PROBE_COUNTER + i the probe at
# reward level i (far beyond any report index, so no two probes of a member share episodes).
LEVEL_PROBE_COUNTER = 1 << 48
# The reference gradient of nsr_ref (uwm_model.signal) draws its round r on probe counter REFERENCE_COUNTER + r.
REFERENCE_COUNTER = 1 << 47
REFERENCE_START = 256


class TrainState(NamedTuple):
    """What one step reads and writes, per member ([P, N] parameters and moments, [P, 1] Adam powers,
    [P] the rest). Immutable: a step returns a new state (optax-style), so compiled steps stay pure."""

    theta: torch.Tensor
    adam_m: torch.Tensor
    adam_v: torch.Tensor
    beta1_power: torch.Tensor       # Adam's beta1^t, per member
    beta2_power: torch.Tensor
    baseline: torch.Tensor          # EMA of the batch-mean rewards (a rule's reward baseline)
    active: torch.Tensor            # neither diverged nor stopped
    updates: torch.Tensor           # updates applied


@dataclass
class PointReport:
    status: str
    metrics: dict[str, float]
    per_seed: list[dict[str, float]]


@dataclass
class Report:
    episode: int
    points: list[PointReport]
    wall_seconds: float
    compile_seconds: float
    episodes_per_second: float = field(default=0.0)


class Trainer:
    """Trains the members of one or more configurations that share ``pack_key()``."""

    # where a step's uniforms come from: drawn in blocks before the steps (False) or generated inside the
    # compiled step (True); None lets the trainer choose (inside on a GPU, compiled). Numbers are the same.
    draws_in_step: bool | None = None

    def __init__(self, configs: TrialConfig | Sequence[TrialConfig], task=None):
        """``task``: a task object to train on instead of the one ``cfg.task`` builds (same input and output
        sizes; tests plant datasets this way)."""
        self.points = [configs] if isinstance(configs, TrialConfig) else list(configs)
        if not self.points:
            raise ValueError("Trainer needs at least one configuration")
        keys = {cfg.pack_key() for cfg in self.points}
        if len(keys) > 1:
            raise ValueError("configurations packed into one Trainer must agree on every shape-fixing field "
                             f"(all but {', '.join(per_member_fields())})")
        cfg = self.cfg = self.points[0]
        self.device, self.dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
        # a dataset's splits live on the trial's device
        self.task = make_task(cfg.task, self.device, self.dtype) if task is None else task
        self.sizes = cfg.sizes(self.task.input_size)
        self.units = layer_units(self.task, len(self.sizes) - 1, cfg.hidden_unit_type)
        self.eval_inputs = self.task.eval_set(self.dtype, self.device)   # a fixed eval set (x, target), or None
        self.test_inputs = self.task.test_set(self.dtype, self.device)   # a held-out test set, or None
        self.rule = RULES[cfg.rule]
        self.member_point = [i for i, c in enumerate(self.points) for _ in range(c.seeds)]
        members = [(c, s) for c in self.points for s in c.member_seeds]
        self.P = P = len(members)
        dev, dt = self.device, self.dtype

        def per_member(values, dtype=dt):
            return torch.tensor(values, dtype=dtype, device=dev)

        # ---- per-member hyperparameters, [P] or [P, 1]
        self.seeds = per_member([s for _, s in members], torch.int64)
        lrs = per_member([c.layer_lrs for c, _ in members])                       # [P, L]
        self.layer_of_param = self._layer_index()
        self.layer_lrs = lrs
        self.beta1 = per_member([c.adam_beta1 for c, _ in members]).unsqueeze(1)
        self.beta2 = per_member([c.adam_beta2 for c, _ in members]).unsqueeze(1)
        self.eps = per_member([c.adam_eps for c, _ in members]).unsqueeze(1)
        self.baseline_decay = per_member([c.baseline_decay for c, _ in members])
        self.threshold = per_member([c.threshold for c, _ in members])
        # the rule's options; those it declares per member as a [P] tensor, or as the plain number when
        # all members share it (so a rule can take a cheaper path, as wm does for p = 2)
        member_options = [resolve_rule(c.rule, c.rule_options)[1] for c, _ in members]
        self.rule_options = dict(member_options[0])
        for name in self.rule.per_member:
            values = per_member([float(o[name]) for o in member_options])
            self.rule_options[name] = values if len(set(values.tolist())) > 1 else float(values[0])
        self.train_keys = streams.member_keys(self.seeds, streams.TRAIN)
        self.eval_keys = streams.member_keys(self.seeds, streams.EVAL)
        self.test_keys = streams.member_keys(self.seeds, streams.TEST)
        self.probe_keys = streams.member_keys(self.seeds, streams.PROBE)

        # ---- state
        fan_out = None if cfg.fan_out is None else (cfg.fan_out.cv, cfg.fan_out.density, cfg.categories or 1)
        net = init_network(self.sizes, population=P, seed=[s for _, s in members],
                           outgoing_norm=[c.outgoing_norm for c, _ in members], dtype=dt, device=dev, fan_out=fan_out)
        self.theta = self.flatten(net.weights, net.biases)                      # [P, N]
        # connectivity masks (cfg.fan_out): [P, N] bool, False on a masked weight; None without masks, and then
        # the step has no masking op at all. The step zeroes a masked weight's gradient, so Adam's moments and the
        # weight itself stay exactly 0.
        self.masks = net.masks
        self.mask = None if net.masks is None else self.flatten(
            [torch.ones_like(w) if m is None else m for w, m in zip(net.weights, net.masks)],
            [torch.ones_like(b) for b in net.biases]) != 0
        self.init_theta = None if net.masks is None else self.theta.clone()   # per-unit learning speed (probe)
        self.adam_m = torch.zeros_like(self.theta)
        self.adam_v = torch.zeros_like(self.theta)
        self.beta1_power = torch.ones(P, 1, dtype=dt, device=dev)     # Adam's beta1^t, per member
        self.beta2_power = torch.ones(P, 1, dtype=dt, device=dev)
        self.baseline = torch.zeros(P, dtype=dt, device=dev)          # REINFORCE EMA baseline
        self.active = torch.ones(P, dtype=torch.bool, device=dev)     # neither diverged nor stopped
        self.updates = torch.zeros(P, dtype=torch.int64, device=dev)  # updates applied, per member
        self.reached_at = torch.full((P,), -1, dtype=torch.int64, device=dev)
        self.stopped = torch.zeros(P, dtype=torch.bool, device=dev)
        self.step_count = 0
        self.reward_tail = torch.zeros(0, P, dtype=dt, device=dev)   # last window of per-step rewards
        self.reward_sum = torch.zeros(P, dtype=torch.float64, device=dev)  # sum of every step's batch-mean reward
        self.init_probe: dict[str, torch.Tensor] | None = None      # the probe of the initial state
        # probes at the reward levels (probe.reward_levels): NaN until the member's running reward reaches the level
        self.level_probe: dict[str, torch.Tensor] = {}
        self.level_probe_episode = torch.full((len(self.cfg.probe.reward_levels), P), -1, dtype=torch.int64, device=dev)
        self.wall_seconds = 0.0
        self.compile_seconds = 0.0
        self.compiled: bool | None = None   # chosen by _prepare
        self.resumed_from: list[int] = []   # the episode of every checkpoint this run was restored from (checked by tests)
        self._step = self._steps = self._uniform_parts = self._step_at = self._steps_at = None

    # ------------------------------------------------------------------ layout

    def _layer_blocks(self) -> list[tuple[int, int]]:
        """(layer, entries) of each consecutive block of the flat parameter vector: weights, then biases."""
        counts = [n_out * n_in for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:])] + self.sizes[1:]
        return list(zip(list(range(len(self.sizes) - 1)) * 2, counts))

    def _layer_index(self) -> torch.Tensor:
        """For every entry of the flat parameter vector, the index of its layer."""
        layers, counts = zip(*self._layer_blocks())
        return torch.repeat_interleave(torch.tensor(layers), torch.tensor(counts)).to(self.device)

    def flatten(self, weights, biases) -> torch.Tensor:
        """The flat [P, N] layout: each weight matrix stored transposed ([n_in, n_out] row-major), so the
        innermost run of every block is a layer width, which compiled kernels vectorise; then the biases."""
        P = weights[0].shape[0]
        return torch.cat([w.transpose(1, 2).reshape(P, -1) for w in weights] + [b.reshape(P, -1) for b in biases], 1)

    def unflatten(self, theta: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Views of the flat [P, N] parameters as weights [P, n_out, n_in] and biases [P, n_out]."""
        weights, biases, offset = [], [], 0
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        for n_in, n_out in pairs:
            weights.append(theta[:, offset: offset + n_out * n_in].view(-1, n_in, n_out).transpose(1, 2))
            offset += n_out * n_in
        for _, n_out in pairs:
            biases.append(theta[:, offset: offset + n_out])
            offset += n_out
        return weights, biases

    @property
    def lr(self) -> torch.Tensor:
        """[P, N] learning rate of every parameter entry, expanded from the per-layer rates [P, L] inside
        the step: a [P, N] tensor of rates would be one more full pass over memory per step, which is what
        bounds a large population on a GPU."""
        return torch.cat([self.layer_lrs[:, l: l + 1].expand(-1, count) for l, count in self._layer_blocks()], 1)

    @property
    def network(self) -> Network:
        weights, biases = self.unflatten(self.theta)
        return Network([w.clone() for w in weights], [b.clone() for b in biases])

    @property
    def diverged_at(self) -> torch.Tensor:
        """[P] episode at which each member diverged (its first non-finite update), -1 if it did not."""
        diverged = ~self.active & ~self.stopped
        return torch.where(diverged, (self.updates + 1) * self.cfg.batch_size, -1)

    @property
    def episode(self) -> int:
        return self.step_count * self.cfg.batch_size

    # ------------------------------------------------------------------ one step

    def _draws_per_episode(self, with_u: bool) -> list[int]:
        """Layout of one episode's uniforms: the input's, each layer's units', then (uwm) U per hidden unit."""
        widths = self.sizes[1:]
        units = [kind.draws(n) for kind, n in zip(self.units, widths)]
        u_draws = [kind.u_draws(n) for kind, n in zip(self.units[:-1], widths[:-1])] if with_u else []
        return [self.task.input_draws, *units, *u_draws]

    def _draw_episode(self, theta, keys, counter, batch: int, with_u: bool, inputs=None):
        """Sample inputs (unless given) and every layer from the members' streams: (weights, episode, reward, U)."""
        u = streams.uniforms(keys, counter, batch * sum(self._draws_per_episode(with_u)), theta.dtype)
        return self._episode(theta, u, batch, with_u, inputs)

    def _episode(self, theta, u, batch: int, with_u: bool, inputs=None):
        """An episode from given uniforms u: [P, batch * draws per episode]; ``inputs`` = (x [batch, d], target
        [batch]) replaces the inputs the uniforms would draw (a dataset's test split)."""
        widths = self.sizes[1:]
        parts = list(torch.split(u.view(theta.shape[0], batch, -1), self._draws_per_episode(with_u), dim=2))
        x, target = self.task.sample(parts[0], theta.dtype) if inputs is None else \
            (inputs[0].to(theta.dtype).expand(theta.shape[0], -1, -1), inputs[1].expand(theta.shape[0], -1))
        weights, biases = self.unflatten(theta)
        ep = sample_episode(weights, biases, x, parts[1: 1 + len(widths)], self.units)
        return weights, ep, self.task.score(target, ep.action), parts[1 + len(widths):]

    def _rule_options(self, baseline):
        """The options of the trained rule in this step: the reward baseline is the trainer's EMA ([P])."""
        if not self.rule.reward_baseline:
            return self.rule_options
        return {**self.rule_options, REWARD_BASELINE: baseline if self.cfg.baseline == "ema" else 0.0}

    @property
    def train_state(self) -> TrainState:
        return TrainState(*(getattr(self, name) for name in TrainState._fields))

    @train_state.setter
    def train_state(self, state: TrainState) -> None:
        for name, value in zip(TrainState._fields, state):
            setattr(self, name, value)

    def train_step(self, state: TrainState, u) -> tuple[TrainState, torch.Tensor]:
        """One update of every active member: sample a batch from the step's uniforms u ([P, D]), estimate,
        ascend. A pure function of its inputs; returns the new state and the batch-mean rewards [P]."""
        theta, adam_m, adam_v, beta1_power, beta2_power, baseline, active, updates = state
        weights, ep, reward, U = self._episode(theta, u, self.cfg.batch_size, self.rule.needs_uniforms)
        logit_grads = self.rule.fn(weights, ep, reward, U, **self._rule_options(baseline))
        mean = batch_mean_parameters(logit_grads, ep)
        grad = self.flatten(mean.weights, mean.biases)
        if self.mask is not None:
            grad = torch.where(self.mask, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))

        if self.cfg.optimizer == "adam":
            new_theta, new_m, new_v = adam_update(theta, grad, adam_m, adam_v, beta1_power * self.beta1,
                                                  beta2_power * self.beta2, self.lr, self.beta1, self.beta2, self.eps)
        else:
            new_theta, new_m, new_v = sgd_update(theta, grad, self.lr), adam_m, adam_v

        # A member whose new parameters are not finite stops (diverged): it updates no more, and after the
        # window its state is reset to the window's start (_train). The [P, N] arrays select on `active`,
        # known before the step, so the step writes them in the same pass that sums each member's new
        # parameters (a sum is finite iff every term is, short of overflow near the float limit); selecting
        # on this step's sum would read every parameter a second time.
        update = active & torch.isfinite(new_theta.sum(1))
        was_active = active.unsqueeze(1)
        return TrainState(
            theta=torch.where(was_active, new_theta, theta), adam_m=torch.where(was_active, new_m, adam_m),
            adam_v=torch.where(was_active, new_v, adam_v),
            beta1_power=torch.where(update.unsqueeze(1), beta1_power * self.beta1, beta1_power),
            beta2_power=torch.where(update.unsqueeze(1), beta2_power * self.beta2, beta2_power),
            baseline=torch.where(update, self.baseline_decay * baseline + (1 - self.baseline_decay) * reward.mean(1), baseline),
            active=update, updates=updates + update.to(updates.dtype)), reward.mean(1)

    def train_steps(self, state: TrainState, u) -> tuple[TrainState, torch.Tensor]:
        """``len(u)`` consecutive steps (u: [S, P, D]) in one call: compiled, they unroll into one graph,
        so the per-call overhead is paid once per S steps. Returns the state and rewards [S, P]."""
        rewards = []
        for i in range(u.shape[0]):
            state, reward = self.train_step(state, u[i])
            rewards.append(reward)
        return state, torch.stack(rewards)

    def train_step_at(self, state: TrainState, counter: torch.Tensor) -> tuple[TrainState, torch.Tensor]:
        """:meth:`train_step` of the step whose stream counter is ``counter`` (a 0-d int64 tensor), its
        uniforms generated inside: compiled on a GPU, the generator fuses into the step's kernels, so a
        large population's uniforms never pass through device memory (the same numbers as drawn blocks)."""
        return self.train_step(state, streams.uniforms(self.train_keys, counter, self._draws_per_step(), self.dtype))

    def train_steps_at(self, state: TrainState, counters: torch.Tensor) -> tuple[TrainState, torch.Tensor]:
        """:meth:`train_steps` of the steps ``counters`` ([S] int64), each generating its own uniforms."""
        rewards = []
        for i in range(counters.shape[0]):
            state, reward = self.train_step_at(state, counters[i])
            rewards.append(reward)
        return state, torch.stack(rewards)

    def _draws_per_step(self) -> int:
        return self.cfg.batch_size * sum(self._draws_per_episode(self.rule.needs_uniforms))

    def draw_block_steps(self) -> int:
        """Steps whose uniforms are drawn at once: as many as fit DRAW_BUDGET_BYTES, 1 to DRAW_BLOCK (compiled:
        a multiple of STEPS_PER_CALL where more than one fits)."""
        per_step = self.P * self._draws_per_step() * DRAW_BYTES_PER_UNIFORM
        steps = max(1, min(DRAW_BLOCK, DRAW_BUDGET_BYTES // per_step))
        return steps - steps % STEPS_PER_CALL if self.compiled and steps >= STEPS_PER_CALL else steps

    def draw_steps(self, counters: torch.Tensor) -> torch.Tensor:
        """The training uniforms [T, P, D] of the steps ``counters`` ([T]), generated for as many members
        at a time as fit DRAW_BUDGET_BYTES (all of them unless one step alone exceeds it)."""
        draws = self._draws_per_step()
        members = max(1, DRAW_BUDGET_BYTES // (len(counters) * draws * DRAW_BYTES_PER_UNIFORM))
        generate = self._uniform_parts or streams.uniform_parts
        return torch.cat([streams.join(generate(self.train_keys[i: i + members], counters, draws, self.dtype), draws)
                          for i in range(0, self.P, members)], 1) if members < self.P else \
            streams.join(generate(self.train_keys, counters, draws, self.dtype), draws)

    def _window_blocks(self) -> set[int]:
        """Every block length training will draw: full blocks and the remainders of each window length."""
        window, steps, block = self.cfg.report_every // self.cfg.batch_size, self.cfg.episodes // self.cfg.batch_size, \
            self.draw_block_steps()
        lengths = {window} | ({steps % window} if steps % window else set())
        return {b for n in lengths for b in (min(block, n), n % block) if b}

    def compiles(self) -> bool:
        """Whether this trainer's steps are compiled: ``compile`` on, or auto and the run is long enough for
        compiling to pay off (the estimate grows with the population, so a point may compile in a large pack
        and run eagerly alone; in float32 the two paths round differently)."""
        steps = self.cfg.episodes // self.cfg.batch_size
        entries = self.P * self.cfg.batch_size * self.theta.shape[1]
        eager_step = EAGER_STEP_FIXED_SECONDS + EAGER_STEP_PER_ENTRY_SECONDS * entries
        return self.cfg.compile == "on" or (self.cfg.compile == "auto" and
                                            steps * eager_step * COMPILE_SAVING > COMPILE_SECONDS)

    def _prepare(self) -> None:
        """Choose eager or compiled execution once: compiling pays off only for long runs on the CPU.
        (Threads and denormal handling are the caller's: :func:`uwm_model.settings.torch_settings`.)"""
        if self.compiled is not None:
            return
        self.compiled = self.compiles()
        if self.draws_in_step is None:
            # on a GPU the compiled step generates its own uniforms (no block through memory; the integer
            # work is cheap there); on the CPU drawn blocks are faster (see DRAW_BLOCK)
            self.draws_in_step = self.compiled and self.device.type == "cuda"
        if not self.compiled:
            return
        compile_cache()   # this process's trainers each compile their own steps
        compile = lambda fn: torch.compile(fn, fullgraph=True, dynamic=False)  # noqa: E731
        # compile now, on the real state (the step functions are pure), so training time excludes it: one
        # graph of STEPS_PER_CALL steps and, when a window's length is not a multiple, one of a single step
        # (with drawn blocks also the generator for every block length); torch's compile cache makes later
        # trials start in seconds
        tic = time.perf_counter()
        state = self.train_state
        window = self.cfg.report_every // self.cfg.batch_size
        if self.draws_in_step:
            self._step_at, self._steps_at = compile(self.train_step_at), compile(self.train_steps_at)
            lengths = {min(window, steps), steps % window} - {0}           # the windows' lengths in steps
            if max(lengths) >= STEPS_PER_CALL:
                self._steps_at(state, torch.arange(STEPS_PER_CALL, device=self.device))
            if any(length % STEPS_PER_CALL for length in lengths):
                self._step_at(state, torch.zeros((), dtype=torch.int64, device=self.device))
        else:
            self._step, self._steps, self._uniform_parts = compile(self.train_step), compile(self.train_steps), \
                compile(streams.uniform_parts)
            blocks = self._window_blocks()
            for length in blocks:
                u = self.draw_steps(torch.arange(length, device=self.device))
            if max(blocks) >= STEPS_PER_CALL:
                self._steps(state, u[:STEPS_PER_CALL] if len(u) >= STEPS_PER_CALL else
                            self.draw_steps(torch.arange(STEPS_PER_CALL, device=self.device)))
            if any(length % STEPS_PER_CALL for length in blocks):
                self._step(state, u[0])
        self.compile_seconds = time.perf_counter() - tic

    # ------------------------------------------------------------------ training loop

    def stop_points(self, indices: Sequence[int]) -> None:
        """Early stopping: the members of these points stop updating and report status "stopped"."""
        chosen = set(indices)
        mask = torch.tensor([point in chosen for point in self.member_point], device=self.device)
        self.stopped |= mask & (self.diverged_at < 0)
        self.active &= ~mask

    def run(self) -> Iterator[Report]:
        """Train to ``episodes``, yielding a Report every ``report_every`` episodes (resumable)."""
        cfg = self.cfg
        self._prepare()
        steps_per_report = cfg.report_every // cfg.batch_size
        total_steps = cfg.episodes // cfg.batch_size
        if cfg.probe.enabled and self.init_probe is None and self.step_count == 0:
            # counter 0 is the initial state's: report probes count from 1, so no draw is shared
            self.init_probe = {f"init_{k}": v for k, v in self.probe(0, samples=cfg.probe.init_samples).items()}
            self.init_probe.update(self._taylor_radius(0))
            if cfg.probe.reference_samples and "init_probe_nsr_exact_l1" not in self.init_probe:
                variances = [self.init_probe[f"init_probe_var_l{l + 1}"] for l in range(len(self.sizes) - 2)]
                self.init_probe.update(self._reference_noise(variances))
        while self.step_count < total_steps:
            n = min(steps_per_report - self.step_count % steps_per_report, total_steps - self.step_count)
            started = time.perf_counter()
            rewards = self._train(n)
            self.reward_sum += rewards.double().sum(0)
            self._track_threshold(rewards)
            self.step_count += n
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.wall_seconds += time.perf_counter() - started
            if self.step_count % steps_per_report == 0 or self.step_count == total_steps:
                yield self._report(rewards)

    def _train(self, n: int) -> torch.Tensor:
        """n steps from the current state; returns the batch-mean rewards [n, P]."""
        at_start = state = self.train_state
        first, rewards = self.step_count, []
        if self.draws_in_step:
            # the steps generate their own uniforms from their counters: nothing is drawn ahead
            state = self._unrolled(state, torch.arange(first, first + n, device=self.device),
                                   self._step_at or self.train_step_at, self._steps_at, rewards)
        else:
            block = self.draw_block_steps()
            for start in range(0, n, block):
                # bounded blocks of the window's own steps (see DRAW_BUDGET_BYTES): nothing is drawn ahead
                u = self.draw_steps(torch.arange(first + start, first + min(start + block, n), device=self.device))
                state = self._unrolled(state, u, self._step or self.train_step, self._steps, rewards)
        self.train_state = self._reset_diverged(at_start, state)
        return torch.cat(rewards)

    def _reset_diverged(self, start: TrainState, end: TrainState) -> TrainState:
        """``end``, with the members that diverged since ``start`` (active there, not here: early stopping
        acts between windows) set back to their state at ``start``: the last values they reported, all finite."""
        diverged = start.active & ~end.active
        if not bool(diverged.any()):
            return end
        reset = {name: torch.where(diverged.view(-1, *[1] * (old.dim() - 1)), old, getattr(end, name))
                 for name, old in start._asdict().items() if name not in ("active", "updates")}
        return end._replace(**reset)

    def _unrolled(self, state: TrainState, inputs: torch.Tensor, one, many, rewards: list) -> TrainState:
        """Steps over ``inputs`` (one per step: uniforms [P, D] or counters), STEPS_PER_CALL at a time through
        ``many`` when compiled, the rest through ``one``; appends each call's rewards to ``rewards``."""
        unroll, i = STEPS_PER_CALL if self.compiled else 1, 0
        while i < len(inputs):
            if len(inputs) - i >= unroll > 1:
                state, reward = many(state, inputs[i: i + unroll])
                i += unroll
            else:
                state, reward = one(state, inputs[i])
                reward, i = reward.unsqueeze(0), i + 1
            rewards.append(reward)
        return state

    def _track_threshold(self, rewards: torch.Tensor) -> None:
        """Running mean over the last threshold_window episodes; first episode it reaches the threshold."""
        window = self.cfg.threshold_window // self.cfg.batch_size
        history = torch.cat([self.reward_tail, rewards])
        first_step = self.step_count - self.reward_tail.shape[0]             # global step of history[0]
        csum = torch.cat([torch.zeros(1, self.P, dtype=history.dtype, device=self.device), history.cumsum(0)])
        if history.shape[0] >= window:
            running = (csum[window:] - csum[:-window]) / window               # ends at steps first_step + window - 1 ...
            hit = running >= self.threshold
            any_hit = hit.any(0)
            first = hit.to(torch.int64).argmax(0)
            episode = (first_step + window + first) * self.cfg.batch_size
            self.reached_at = torch.where((self.reached_at < 0) & any_hit, episode, self.reached_at)
            self.running_reward = running[-1]
        else:
            self.running_reward = history.mean(0)
        self.reward_tail = history[-(window - 1):] if window > 1 else history[:0]

    # ------------------------------------------------------------------ reports

    def _member_slices(self, draws_per_member: int, count: int | None = None) -> list[slice]:
        """Consecutive slices of the members (of ``count`` members, default all) whose draws
        (draws_per_member each) fit DRAW_BUDGET_BYTES together: evaluation and probes of large
        populations go slice by slice (each member's numbers depend only on its own stream, so slicing
        changes none of them)."""
        count = self.P if count is None else count
        per = max(1, DRAW_BUDGET_BYTES // (draws_per_member * DRAW_BYTES_PER_UNIFORM))
        return [slice(i, min(i + per, count)) for i in range(0, count, per)]

    @torch.no_grad()
    def evaluate(self, counter: int, test: bool = False) -> torch.Tensor:
        """[P] mean reward of each member's stochastic network on eval_episodes fresh inputs, or, for a task
        with a fixed evaluation set (a dataset's validation split), on every input of that set once (its units
        sampled from the member's eval stream: the same numbers at every run). ``test``: on the task's held-out
        test set instead, from the member's own test stream."""
        fixed, keys = (self.test_inputs, self.test_keys) if test else (self.eval_inputs, self.eval_keys)
        E = self.cfg.eval_episodes if fixed is None else len(fixed[1])
        return torch.cat([self._draw_episode(self.theta[m], keys[m], counter, E, False, fixed)[2].mean(1)
                          for m in self._member_slices(E * sum(self._draws_per_episode(False)))])

    @torch.no_grad()
    def probe(self, counter: int, members: torch.Tensor | None = None,
              samples: int | None = None) -> dict[str, torch.Tensor]:
        """Spec section 5: per layer, the total per-sample variance V and the squared norm of the mean
        of the weight and bias estimates over K fresh episodes, for the trained rule and (cross-rule)
        for every probe rule on the same episodes and state. Values [P] in float64, or one per entry of
        ``members`` (member indices) when given; ``samples`` K (default probe.samples)."""
        index = torch.arange(self.P, device=self.device) if members is None else members
        K = samples or self.cfg.probe.samples
        parts = [self._probe(index[part], counter, K)
                 for part in self._member_slices(K * sum(self._draws_per_episode(True)), len(index))]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _probe(self, members: torch.Tensor, counter: int, K: int) -> dict[str, torch.Tensor]:
        """:meth:`probe` of the members with these indices, on K episodes each."""
        theta = self.theta[members].double()
        weights, ep, reward, U = self._draw_episode(theta, self.probe_keys[members], counter, K, True)
        options = {name: value[members] if isinstance(value, torch.Tensor) and value.dim() else value
                   for name, value in self._rule_options(self.baseline.double()).items()}
        rules = [("", self.rule, options)]
        if self.cfg.probe.cross_rule:
            for c in self.cfg.probe.rules:
                cross = resolve_rule(c.rule, c.options)[1]
                if c.baseline == "ema":
                    # the EMA of the rewards this member trained on: what an EMA-baseline learner at this state
                    # would subtract (zero on the initial state, as for a learner that has not started)
                    cross[REWARD_BASELINE] = self.baseline[members].double()
                rules.append((f"{c.name}_", RULES[c.rule], cross))
        exact = self._exact_gradient(theta, weights, members)
        masks = [None if m is None else m.double() for m in self._member_masks(members) or [None] * len(weights)]
        out = {}
        for prefix, rule, options in rules:
            logit_grads = self._chunked_rule(rule, options, weights, ep, reward, U)
            mean = batch_mean_parameters(logit_grads, ep)
            mean_weights = Network(mean.weights, mean.biases, masks).masked(mean.weights)
            for l, (g, h) in enumerate(zip(logit_grads, ep.h[:-1])):
                stats = _layer_statistics(g, h, mean_weights[l], mean.biases[l], self.cfg.batch_size,
                                          None if exact is None else (exact.weights[l], exact.biases[l]), masks[l])
                out.update({f"probe_{prefix}{kind}_l{l + 1}": value for kind, value in stats.items()})
            if prefix == "" and self.masks is not None:
                out.update(self._fan_out_probe(members, theta, weights, ep, reward, U, logit_grads, exact, masks))
        return out

    def _fan_out_probe(self, members, theta, weights, ep, reward, U, logit_grads, exact, masks) -> dict:
        """With connectivity masks: per hidden layer l whose units fan out through a mask, Spearman's rho over its
        units between the fan-out and each per-unit statistic of the trained rule
        (:func:`uwm_model.fanout.unit_statistics`; ``fanout_rho_{bias,var,speed}_l{l}``, NaN where every
        fan-out is equal). The bias is against the exact gradient where the oracle fits, else against uwm's
        estimates on the same episodes (unbiased; no bias row when uwm is the trained rule)."""
        K = self.cfg.categories or 1
        reference, paired = None, False
        if exact is None and self.cfg.rule != "uwm":
            reference, paired = self._chunked_rule(RULES["uwm"], RULES["uwm"].defaults, weights, ep, reward, U), True
        w0, b0 = self.unflatten(self.init_theta[members].double())
        _, biases = self.unflatten(theta)
        out = {}
        for l, mask in enumerate(masks):
            if mask is None:
                continue
            fan = fan_outs(mask, K)                                                 # hidden layer l's units
            change = (weights[l - 1] - w0[l - 1]).pow(2).sum(-1) + (biases[l - 1] - b0[l - 1]).pow(2)
            ref = None if reference is None and exact is None else \
                (reference[l - 1] if paired else exact.biases[l - 1])
            for kind, value in unit_statistics(logit_grads[l - 1], ref, paired, change, K).items():
                out[f"fanout_rho_{kind}_l{l}"] = rank_correlation(fan, value)
        return out

    @torch.no_grad()
    def _probe_reward_levels(self) -> None:
        """Probes at matched reward levels (``at_reward_{r}_*`` metrics). The trigger is per member and
        checked at report boundaries: a member is probed at level r once, on its parameters at the first
        report at which its running_reward (mean of its last threshold_window training rewards) is >= r,
        so the state is the one that first reached r, up to one report interval. Only the members due
        are probed, together in one population call; the values then repeat in every later report."""
        for i, level in enumerate(self.cfg.probe.reward_levels):
            due = self.active & (self.running_reward >= level) & (self.level_probe_episode[i] < 0)
            if not bool(due.any()):
                continue
            members = due.nonzero().squeeze(1)
            prefix = level_prefix(level)
            values = {prefix + name: value for name, value in self.probe(LEVEL_PROBE_COUNTER + i, members).items()}
            values[f"{prefix}episode"] = torch.full((len(members),), float(self.episode), dtype=torch.float64,
                                                    device=self.device)
            for name, value in values.items():
                store = self.level_probe.setdefault(
                    name, torch.full((self.P,), math.nan, dtype=torch.float64, device=self.device))
                store[members] = value
            self.level_probe_episode[i, members] = self.episode

    @torch.no_grad()
    def _reference_noise(self, variances: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``init_probe_nsr_ref_l{l}`` = V / (B S) per layer from the initial probe's variances V and a reference
        S of ||∇J||² (:func:`uwm_model.signal.reference_signal`: groups of plain REINFORCE estimates, unbiased
        on any state, on fresh episodes of probe counters REFERENCE_COUNTER + round, grown until resolved or
        ``probe.reference_samples``); NaN where refused. Also ``init_probe_ref_samples_l{l}``."""
        from .signal import GROUPS, reference_signal

        theta_all = self.theta.double()
        rule = RULES["reinforce"]
        options = {REWARD_BASELINE: 0.0}

        def draw(index, rnd, per_group):
            n = per_group * GROUPS
            parts = []
            for part in self._member_slices(n * sum(self._draws_per_episode(True)), len(index)):
                members = index[part].to(self.device)
                theta = theta_all[members]
                weights, ep, reward, U = self._draw_episode(theta, self.probe_keys[members], REFERENCE_COUNTER + rnd,
                                                            n, True)
                grads = self._chunked_rule(rule, options, weights, ep, reward, U)
                sums = []
                for g, h in zip(grads, ep.h[:-1]):
                    g = g.view(g.shape[0], GROUPS, per_group, -1)
                    h = h.view(h.shape[0], GROUPS, per_group, -1)
                    w = torch.einsum("pgko,pgki->pgoi", g, h).flatten(2)
                    sums.append(torch.cat([w, g.sum(2)], 2))
                parts.append(sums)
            return [torch.cat(layer) for layer in zip(*parts)]

        start = min(REFERENCE_START, self.cfg.probe.reference_samples)
        ref = reference_signal(draw, self.P, start, self.cfg.probe.reference_samples)
        out = {}
        for l, (v, s) in enumerate(zip(variances, ref.signal), start=1):
            out[f"init_probe_nsr_ref_l{l}"] = v / (self.cfg.batch_size * s.to(v.device))
            out[f"init_probe_ref_samples_l{l}"] = ref.samples.to(v.device, torch.float64)
        return out

    @torch.no_grad()
    def _taylor_radius(self, counter: int) -> dict[str, torch.Tensor]:
        """Where the initial outgoing weights sit against hwm's Taylor radius (the ``init_unit_max_outgoing``,
        ``init_beyond_radius`` and ``init_radius_ratio`` metrics), on the probe's episodes of ``counter``, over
        chunks of samples."""
        weights, _ = self.unflatten(self.theta.double())
        out = {f"init_unit_max_outgoing_l{l}": w.abs().amax(1).mean(1) for l, w in enumerate(weights[1:], start=1)}
        K = self.cfg.probe.samples
        beyond = [torch.zeros(self.P, dtype=torch.float64, device=self.device) for _ in weights[1:]]
        ratio = [torch.zeros(self.P, dtype=torch.float64, device=self.device) for _ in weights[1:]]
        for members in self._member_slices(K * sum(self._draws_per_episode(True))):
            theta = self.theta[members].double()
            w_all, ep, _, _ = self._draw_episode(theta, self.probe_keys[members], counter, K, True)
            for l, w in enumerate(w_all[1:]):
                n_out, n_in = w.shape[1:]
                chunk = max(1, PROBE_CHUNK_BYTES // (w.shape[0] * n_out * n_in * 8 * 2))
                for start in range(0, K, chunk):
                    z = ep.z[l + 1][:, start: start + chunk]                       # [m, c, n_out]
                    radius = (z.pow(2) + math.pi ** 2).sqrt().unsqueeze(-1)          # [m, c, n_out, 1]
                    beyond[l][members] += (w.abs().unsqueeze(1) > radius).double().sum((1, 2, 3))
                    ratio[l][members] += (w.abs().unsqueeze(1) / radius).amax((2, 3)).sum(1)
        for l, (w, count, largest) in enumerate(zip(weights[1:], beyond, ratio), start=1):
            out[f"init_beyond_radius_l{l}"] = count / (K * w.shape[1] * w.shape[2])
            out[f"init_radius_ratio_l{l}"] = largest / K
        return out

    def _chunked_rule(self, rule, options, weights, ep, reward, U) -> list[torch.Tensor]:
        """The rule's per-sample logit gradients on the probe's episodes, computed over chunks of
        samples (every rule is per sample, so chunking changes no number; see PROBE_CHUNK_BYTES)."""
        members, K = reward.shape
        pair = max(a * b for a, b in zip(self.sizes[1:-1], self.sizes[2:])) if len(self.sizes) > 2 else 1
        chunk = max(1, PROBE_CHUNK_BYTES // (members * pair * 8 * PROBE_TEMPORARIES))
        if chunk >= K:
            return rule.fn(weights, ep, reward, U, **options)
        parts = []
        for start in range(0, K, chunk):
            s = slice(start, start + chunk)
            part = ep.samples(s)
            parts.append(rule.fn(weights, part, reward[:, s], [u[:, s] for u in U], **options))
        return [torch.cat(layer, 1) for layer in zip(*parts)]

    def _exact_gradient(self, theta, weights, members) -> Gradient | None:
        hidden = self.cfg.hidden_unit_type
        if self.task.num_inputs > 2**12 or not oracle_fits(self.sizes, self.task, self.P, hidden):
            return None
        _, biases = self.unflatten(theta)
        return exact_gradient(Network(list(weights), list(biases), self._member_masks(members)), self.task, hidden)[1]

    def _member_masks(self, members) -> list[torch.Tensor | None] | None:
        return None if self.masks is None else [None if m is None else m[members] for m in self.masks]

    @torch.no_grad()
    def _report(self, window_rewards: torch.Tensor) -> Report:
        cfg = self.cfg
        index = self.step_count // (cfg.report_every // cfg.batch_size)
        per_member: dict[str, torch.Tensor] = {
            "train_reward": window_rewards.double().mean(0),
            "eval_reward": self.evaluate(index).double(),
            "running_reward": self.running_reward.double(),
            "train_reward_all": self.reward_sum / self.step_count,
        }
        if self.test_inputs is not None:       # a held-out test split, read only to report
            per_member["test_reward"] = self.evaluate(index, test=True).double()
        if self.eval_inputs is not None:       # labelled splits: the accuracy on each
            low = -1.0 if self.cfg.task.rewards == "pm1" else 0.0
            for split in ("eval", "test")[: 1 + (self.test_inputs is not None)]:
                per_member[f"{split}_accuracy"] = (per_member[f"{split}_reward"] - low) / (1.0 - low)
        weights, _ = self.unflatten(self.theta.double())
        for l, w in enumerate(weights[1:], start=1):
            per_member[f"max_abs_outgoing_l{l}"] = w.abs().amax((1, 2))
            per_member[f"outgoing_norm_l{l}"] = w.norm(dim=1).mean(1)
        if cfg.probe.enabled:
            per_member.update(self.probe(index))
            per_member.update(self.init_probe or {})
            self._probe_reward_levels()
            per_member.update(self.level_probe)
        values = {k: v.cpu().tolist() for k, v in per_member.items()}
        reached, diverged_at = self.reached_at.cpu().tolist(), self.diverged_at.cpu().tolist()
        stopped = self.stopped.cpu().tolist()
        members = self.P * self.episode
        seconds_per_episode = self.wall_seconds / members if members else float("nan")
        points = []
        for i, c in enumerate(self.points):
            ids = [m for m in range(self.P) if self.member_point[m] == i]
            per_seed = []
            for m in ids:
                # a noise-to-signal ratio without a positive signal estimate is undefined, and a reward level
                # not reached yet has no probe: absent, not NaN
                row = {k: v[m] for k, v in values.items()
                       if not (math.isnan(v[m]) and ("_nsr_l" in k or "_nsr_ref_l" in k or "fanout_rho_" in k
                                                     or k.startswith(LEVEL_PREFIX)))}
                row["diverged"] = float(diverged_at[m] >= 0)
                if diverged_at[m] >= 0:
                    row["diverged_at"] = float(diverged_at[m])
                if reached[m] >= 0:
                    row["episodes_to_threshold"] = float(reached[m])
                per_seed.append(row)
            points.append(point_report(per_seed, any(stopped[m] for m in ids), self.episode >= c.episodes,
                                       self.episode, seconds_per_episode, reward_levels(cfg)))
        eps = members / self.wall_seconds if self.wall_seconds > 0 else float("nan")
        return Report(self.episode, points, self.wall_seconds, self.compile_seconds, eps)

    # ------------------------------------------------------------------ checkpoints

    _STATE = ("theta", "adam_m", "adam_v", "beta1_power", "beta2_power", "baseline", "active", "updates", "reached_at",
              "stopped", "reward_tail", "running_reward", "reward_sum", "level_probe_episode")
    _FLOAT64_STATE = ("reward_sum",)   # accumulated in float64 whatever the training dtype

    def state_dict(self) -> dict:
        """The complete trainer state: parameters, optimiser, counters and the threshold window.
        Random streams are counter-based, so the step count is their whole state."""
        state = {name: getattr(self, name).cpu().clone() for name in self._STATE if hasattr(self, name)}
        state.update(step_count=self.step_count, wall_seconds=self.wall_seconds, compile_seconds=self.compile_seconds,
                     resumed_from=list(self.resumed_from), configs=[c.model_dump(mode="json") for c in self.points])
        if self.init_probe is not None:
            state["init_probe"] = {k: v.cpu().clone() for k, v in self.init_probe.items()}
        state["level_probe"] = {k: v.cpu().clone() for k, v in self.level_probe.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        if [c.model_dump(mode="json") for c in self.points] != state["configs"]:
            raise ValueError("checkpoint was written for other configurations")
        for name in self._STATE:
            if name in state:
                value = state[name].to(self.device)
                keep = not value.is_floating_point() or name in self._FLOAT64_STATE
                setattr(self, name, value if keep else value.to(self.dtype))
        if "init_probe" in state:
            self.init_probe = {k: v.to(self.device) for k, v in state["init_probe"].items()}
        self.level_probe = {k: v.to(self.device) for k, v in state.get("level_probe", {}).items()}
        self.step_count, self.wall_seconds = state["step_count"], state["wall_seconds"]
        self.compile_seconds = state["compile_seconds"]
        self.resumed_from = [*state.get("resumed_from", []), self.episode]

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path, configs: TrialConfig | Sequence[TrialConfig] | None = None) -> "Trainer":
        """A trainer restored from ``save``; the configurations are read from the checkpoint unless given."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        trainer = cls(configs if configs is not None else [TrialConfig.model_validate(c) for c in state["configs"]])
        trainer.load_state_dict(state)
        return trainer


def _layer_statistics(g, h, mean_w, mean_b, batch: int, exact, mask=None) -> dict[str, torch.Tensor]:
    """A layer's probe statistics ([P] each) from its per-sample logit gradients g [P, K, n_out], inputs
    h [P, K, n_in] and mean estimate (mean_w, mean_b); with ``exact`` = (weights, biases) of the exact
    gradient also the bias measures. The per-sample estimate x_k = (g_k h_k^T, g_k) is never formed:
    its inner products with any (M, c) are sum_o g_ko ((M h_k)_o + c_o). With a connectivity ``mask``
    ([P, n_out, n_in]) x_k's masked entries are 0 (mean_w and the exact weights are masked by the caller).

    The debiased squared bias is the U-statistic sum_{j != k} d_j.d_k / (K (K - 1)) of d_k = x_k - exact,
    which equals ||mean - exact||^2 - V/K and is unbiased for ||E x - exact||^2; its standard error is the
    jackknife's (leave-one-out U_(-i) = (T - 2 r_i) / ((K-1)(K-2)), r_i = sum_{j != i} d_i.d_j), computed
    from O(K) inner products. Written here because it needs the per-sample inner products that only the
    probe has; no library computes it from them."""
    K = g.shape[1]

    def dot(w, b):   # x_k . (w, b) for every sample: [P, K]
        return (g * (torch.einsum("pki,poi->pko", h, w) + b.unsqueeze(1))).sum(-1)

    def sq(w, b):
        return w.pow(2).sum((1, 2)) + b.pow(2).sum(1)

    if mask is None:
        x_sq = g.pow(2).sum(-1) * (h.pow(2).sum(-1) + 1)             # ||x_k||^2
    else:
        x_sq = (g.pow(2) * (torch.einsum("pki,poi->pko", h.pow(2), mask) + 1)).sum(-1)
    mean_sq = sq(mean_w, mean_b)
    var = (x_sq.sum(1) - K * mean_sq) / (K - 1)                       # V, ddof 1
    signal_sq = mean_sq - var / K                                     # unbiased for ||E x||^2
    out = {"var": var.clamp_min(0), "mean_sq": mean_sq,
           "nsr": torch.where(signal_sq > 0, var.clamp_min(0) / (batch * signal_sq), torch.nan)}
    if exact is None:
        return out
    e_w, e_b = exact
    x_e, x_mean = dot(e_w, e_b), dot(mean_w, mean_b)                  # x_k . e, x_k . mean
    e_sq, mean_e = sq(e_w, e_b), (mean_w * e_w).sum((1, 2)) + (mean_b * e_b).sum(1)
    # d_k . d_mean = x_k.mean - x_k.e - e.mean + ||e||^2 ;  ||d_k||^2 = ||x_k||^2 - 2 x_k.e + ||e||^2
    d_mean = x_mean - x_e - mean_e.unsqueeze(1) + e_sq.unsqueeze(1)
    d_sq = x_sq - 2 * x_e + e_sq.unsqueeze(1)
    r = K * d_mean - d_sq                                              # r_k = sum_{j != k} d_k . d_j
    bias_sq = r.sum(1) / (K * (K - 1))
    diff_sq = (mean_sq - 2 * mean_e + e_sq).clamp_min(0)
    if K > 2:
        se = (4 * (K - 1) / K * (r - r.mean(1, keepdim=True)).pow(2).sum(1)).sqrt() / ((K - 1) * (K - 2))
    else:
        se = torch.full_like(bias_sq, torch.nan)
    cos = mean_e / (mean_sq * e_sq).sqrt()
    # split halves A (first K//2 samples) and B (the rest), independent given the state: (mean_A - e).(mean_B - e)
    # has mean ||E x - e||^2 and, unbiased, a distribution symmetric about 0 (exactly for Gaussian estimates),
    # so its sign over seeds is a calibrated test; bias_sq / bias_sq_se is not (U and its jackknife error are
    # positively dependent: under H0 the ratio leans negative)
    half = K // 2
    a_w = torch.einsum("pko,pki->poi", g[:, :half], h[:, :half]) / half - e_w
    if mask is not None:
        a_w = a_w * mask
    a_b = g[:, :half].mean(1) - e_b
    b_w = (K * mean_w - half * (a_w + e_w)) / (K - half) - e_w
    b_b = (K * mean_b - half * (a_b + e_b)) / (K - half) - e_b
    split = (a_w * b_w).sum((1, 2)) + (a_b * b_b).sum(1)
    # the scale-free noise against the exact gradient: defined at any K (nsr's debiased ||mean||^2 - V/K is <= 0 in
    # most draws at the probe's K on wide nets, and where it is defined, selection biases the ratio low)
    nsr_exact = var.clamp_min(0) / (batch * e_sq)
    out.update(bias=diff_sq.sqrt(), bias_sq=bias_sq, bias_sq_se=se, bias_split=split, cos=cos, exact_sq=e_sq,
               nsr_exact=nsr_exact)
    return out


def reward_levels(cfg) -> list[float]:
    """The reward levels a trainer of ``cfg`` probes at (none without the probe)."""
    return list(cfg.probe.reward_levels) if cfg.probe.enabled else []


def point_report(per_seed: list[dict[str, float]], stopped: bool, done: bool, episode: int,
                 seconds_per_episode: float, levels=()) -> PointReport:
    """A point's report from its seeds' rows: aggregates, fractions, each reward level's censored summary
    (:func:`~uwm_model.metrics.level_summary`) and status."""
    metrics = _aggregate(per_seed)
    metrics["diverged_fraction"] = sum(r["diverged"] for r in per_seed) / len(per_seed)
    metrics["threshold_reached_fraction"] = sum("episodes_to_threshold" in r for r in per_seed) / len(per_seed)
    median = threshold_median([r["episodes_to_threshold"] for r in per_seed if "episodes_to_threshold" in r], len(per_seed))
    if median is not None:
        metrics["episodes_to_threshold_median"] = median
    metrics.update(level_summary(per_seed, levels))
    metrics["episodes"] = float(episode)
    metrics["seconds_per_episode"] = seconds_per_episode
    if metrics["diverged_fraction"] > 0:
        status = DIVERGED
    elif stopped:
        status = STOPPED
    else:
        status = FINISHED if done else RUNNING
    return PointReport(status, metrics, per_seed)


def _aggregate(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """mean, std and standard error over seeds of every metric, over the seeds where it is finite."""
    out = {}
    for key in sorted({k for row in per_seed for k in row}):
        values = np.array([row[key] for row in per_seed if key in row and math.isfinite(row[key])], dtype=np.float64)
        if not len(values):
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[f"{key}_mean"], out[f"{key}_std"], out[f"{key}_sem"] = float(values.mean()), std, std / math.sqrt(len(values))
    return out
