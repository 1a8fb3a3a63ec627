"""The actor-critic (:mod:`uwm_model.control`) as a study's trainable drives a trainer: the points of one pack
trained as one population, a :class:`~uwm_model.trainer.Report` every ``report_every`` episodes with the
multiplexer trainer's metric names where they mean the same (:mod:`uwm_model.metrics`), checkpoints.

Episodes of a control task have different lengths, so members do not end episodes in step: a report comes
once every member that has not diverged has ended ``report_every`` more episodes, and reads each member's
returns by episode number (episodes 1..e of every member, whatever it ran beyond), so a report does not
depend on how fast the other members of the pack were. Per member at report episode e (window w of
``report_every`` episodes before it):

- ``train_reward``: the mean return of the window's episodes; ``eval_reward`` the same (a control task has
  no separate evaluation: Chung 2022 measures the return of the episodes it trains on), so the study's
  ``auc_reward_mean`` is the anchor's average return over all episodes;
- ``running_reward``: the mean of the last 100 returns; ``train_reward_all``: of all returns so far;
- ``episodes_to_threshold``: the first episode whose running mean of 100 returns (a full window) reached the
  threshold, absent until then (the unreached are censored by the analysis, never averaged);
- ``diverged`` and ``diverged_at`` (the episodes the member had ended when its parameters turned
  non-finite; its returns stop there and the rest of the pack trains on).

With ``probe_samples`` K > 0, the estimator probe (docs/learning-rules.md §9): per member and actor layer l, over
K copies of each of its current environment states stepped once (:meth:`ActorCritic.probe_estimates`),
``probe_var_l{l}``, ``probe_mean_sq_l{l}`` and ``probe_nsr_l{l}`` under the multiplexer probe's names (each the
mean over the member's B states), so the analysis reads them unchanged; once before training (``init_probe_*``)
and, for report episode e, on the member's state right after the step call in which it ended its e-th episode
(a compiled run's call holds STEPS_PER_CALL steps), so the probe, like the returns, does not depend on how fast
the other members of the pack were. The probe's draws are counter t (the step count then) of the member's PROBE
stream. A diverged member has no probe after its divergence. Early stopping is not offered (the study spec refuses it for control tasks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

import torch

from .control import THRESHOLD_WINDOW as WINDOW
from .control import ActorCritic, ControlConfig
from .trainer import Report, _layer_statistics, point_report


def member_metrics(returns: list[float], episode: int, window: int, threshold: float, diverged: bool) -> dict:
    """One member's per-seed metrics at report episode ``episode`` from its returns (see the module doc)."""
    seen = torch.tensor(returns[:episode], dtype=torch.float64)
    row = {"diverged": float(diverged)}
    if diverged:
        row["diverged_at"] = float(len(returns))
    if len(seen):
        last = seen[max(0, episode - window):]
        row.update(running_reward=float(seen[-WINDOW:].mean()), train_reward_all=float(seen.mean()))
        if len(last):
            row["train_reward"] = row["eval_reward"] = float(last.mean())
    if len(seen) >= WINDOW:
        running = seen.unfold(0, WINDOW, 1).mean(1)           # running[i]: the mean of returns i+1 .. i+WINDOW
        hit = (running >= threshold).nonzero()
        if len(hit):
            row["episodes_to_threshold"] = float(hit[0, 0] + WINDOW)
    return row


class ControlTrainer:
    """Trains the members of one or more ControlConfigs that share ``pack_key()``; the study's trainable drives it
    like :class:`uwm_model.trainer.Trainer` (``run``, ``save``, ``load``, ``device``)."""

    def __init__(self, configs: ControlConfig | Sequence[ControlConfig]):
        self.points = [configs] if isinstance(configs, ControlConfig) else list(configs)
        self.cfg = self.points[0]
        self.ac = ActorCritic(self.points)
        self.device = self.ac.device
        self.member_point = [i for i, c in enumerate(self.points) for _ in range(c.seeds)]
        self.episode, self.wall_seconds = 0, 0.0
        self.init_probe: dict[str, torch.Tensor] = {}     # the probe of the initial parameters (init_probe_*)
        # report episode -> probe values [P] (NaN until the member ended that many episodes) and which are taken
        self.report_probes: dict[int, tuple[dict[str, torch.Tensor], torch.Tensor]] = {}

    @property
    def compile_seconds(self) -> float:
        return self.ac.compile_seconds

    def stop_points(self, indices: Sequence[int]) -> None:
        raise NotImplementedError("a control study has no early stopping (the spec refuses it)")

    def run(self) -> Iterator[Report]:
        """Train to ``episodes``, yielding a Report every ``report_every`` episodes (resumable)."""
        cfg = self.cfg
        self.ac.run(max_steps=0)          # compiles here when the configuration does: not training time
        if cfg.probe_samples and self.episode == 0 and not self.init_probe:
            self.init_probe = {f"init_{k}": v for k, v in self.probe(0).items()}      # counter 0: before training
        while self.episode < cfg.episodes:
            target = min(self.episode + cfg.report_every, cfg.episodes)
            tic = time.perf_counter()
            self.ac.run(episodes=target, progress=self._probe_due if cfg.probe_samples else None)
            self.wall_seconds += time.perf_counter() - tic
            window, self.episode = target - self.episode, target
            yield self._report(window)

    def report_episodes(self) -> list[int]:
        cfg = self.cfg
        return [min(e, cfg.episodes) for e in range(cfg.report_every, cfg.episodes + cfg.report_every, cfg.report_every)]

    def _probe_due(self, t: int, returns: list[list[float]]) -> None:
        """After a step call that ended episodes: probe the members that have now ended a report's episode count
        for the first time (one probe call for all of them, counter t)."""
        ended = torch.tensor([len(r) for r in returns])
        dues = {}
        for e in self.report_episodes():
            if e <= self.episode:        # reported already
                continue
            taken = self.report_probes.get(e, (None, torch.zeros(self.ac.P, dtype=torch.bool)))[1]
            due = (ended >= e) & ~taken
            if due.any():
                dues[e] = due
        if not dues:
            return
        members = torch.stack(list(dues.values())).any(0).nonzero().squeeze(1)
        values = {k: torch.full((self.ac.P,), torch.nan, dtype=torch.float64).index_put((members,), v.cpu())
                  for k, v in self.probe(t, members.to(self.device)).items()}
        for e, due in dues.items():
            old, taken = self.report_probes.get(e, ({k: torch.full_like(v, torch.nan) for k, v in values.items()},
                                                    torch.zeros(self.ac.P, dtype=torch.bool)))
            self.report_probes[e] = ({k: torch.where(due, values[k], old[k]) for k in values}, taken | due)

    def probe(self, counter: int, members: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per actor layer l, [P] float64: the total per-sample variance V of the weight and bias estimates over the
        probe's K copies of a state (ddof 1), the squared norm of their mean, and V / (B (||mean||^2 - V/K)) (NaN
        where that is <= 0), each averaged over the member's B states; counter ``counter`` of the PROBE streams;
        with ``members`` (indices) those members' only."""
        K, B = self.cfg.probe_samples, self.cfg.envs
        grads, inputs = self.ac.probe_estimates(counter, K, members)
        out = {}
        for l, (g, h) in enumerate(zip(grads, inputs), start=1):
            P = len(g)
            g, h = g.flatten(0, 1), h.flatten(0, 1)                # [P * B, K, ...]: one row per state
            stats = _layer_statistics(g, h, torch.einsum("sko,ski->soi", g, h) / K, g.mean(1), B, None)
            var, mean_sq = (stats[k].reshape(P, B).mean(1) for k in ("var", "mean_sq"))
            signal = mean_sq - var / K
            out.update({f"probe_var_l{l}": var, f"probe_mean_sq_l{l}": mean_sq,
                        f"probe_nsr_l{l}": torch.where(signal > 0, var / (B * signal), torch.nan)})
        return out

    def _report(self, window: int) -> Report:
        diverged = (self.ac.diverged_at >= 0).cpu().tolist()
        members = sum(len(r[:self.episode]) for r in self.ac.returns)
        per_episode = self.wall_seconds / members if members else math.nan
        probes = {}
        if self.cfg.probe_samples:
            probes = {**self.report_probes.pop(self.episode, ({}, None))[0], **self.init_probe}
        probes = {k: v.cpu().tolist() for k, v in probes.items()}
        points = []
        for i, c in enumerate(self.points):
            ids = [m for m, p in enumerate(self.member_point) if p == i]
            per_seed = [member_metrics(self.ac.returns[m], self.episode, window, c.threshold, diverged[m]) for m in ids]
            for row, m in zip(per_seed, ids):        # an undefined noise-to-signal ratio is absent, not NaN
                row.update({k: v[m] for k, v in probes.items() if not math.isnan(v[m])})
            points.append(point_report(per_seed, False, self.episode >= c.episodes, self.episode, per_episode))
        eps = members / self.wall_seconds if self.wall_seconds > 0 else math.nan
        return Report(self.episode, points, self.wall_seconds, self.compile_seconds, eps)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path) -> None:
        torch.save({"actor_critic": self.ac.state_dict(), "episode": self.episode,
                    "wall_seconds": self.wall_seconds, "init_probe": self.init_probe,
                    "report_probes": self.report_probes}, path)

    @classmethod
    def load(cls, path, configs: ControlConfig | Sequence[ControlConfig]) -> "ControlTrainer":
        """A trainer restored from ``save`` (a checkpoint of other configurations is refused)."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        trainer = cls(configs)
        trainer.ac.load_state_dict(state["actor_critic"])
        trainer.episode, trainer.wall_seconds = state["episode"], state["wall_seconds"]
        trainer.init_probe = state.get("init_probe", {})
        trainer.report_probes = state.get("report_probes", {})
        return trainer

