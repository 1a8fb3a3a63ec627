"""Training one pack on several CPU cores: its members split across worker processes.

Members are independent (own parameters, optimiser state and counter-based random streams), so
a pack cut into sub-packs trained in separate processes gives exactly the numbers of the whole
pack trained in one; the reports are merged back per point. For the single-trial CLI and the
benchmarks; a study gets its parallelism from Ray (one pack per trial, one trial per CPU).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import traceback
from collections.abc import Iterator, Sequence

from .config import TrialConfig
from .settings import torch_settings
from .trainer import Report, Trainer, point_report, reward_levels


def split_members(points: Sequence[TrialConfig], workers: int) -> list[list[tuple[int, TrialConfig]]]:
    """Cut a pack into at most ``workers`` sub-packs of about equal size; a point's seeds may be cut
    into consecutive ranges. Each entry is (index of the point, configuration of its part)."""
    total = sum(c.seeds for c in points)
    per = math.ceil(total / max(1, min(workers, total)))
    parts: list[list[tuple[int, TrialConfig]]] = [[]]
    room = per
    for i, cfg in enumerate(points):
        seed, left = cfg.seed, cfg.seeds
        while left:
            if room == 0:
                parts.append([])
                room = per
            take = min(left, room)
            parts[-1].append((i, cfg.model_copy(update={"seed": seed, "seeds": take})))
            seed, left, room = seed + take, left - take, room - take
    return parts


def _worker(configs: list[dict], queue) -> None:
    try:
        points = [TrialConfig.model_validate(c) for c in configs]
        torch_settings(points[0].threads, points[0].device)   # this process is the worker's own
        trainer = Trainer(points)
        for report in trainer.run():
            queue.put(("report", report))
        queue.put(("done", None))
    except BaseException:  # reported to the parent (with its traceback), which raises it
        queue.put(("error", traceback.format_exc()))


def run_parallel(points: TrialConfig | Sequence[TrialConfig], workers: int = 2) -> Iterator[Report]:
    """Like ``Trainer(points).run()``, with the members spread over ``workers`` processes (each sets
    :func:`~uwm_model.settings.torch_settings` for itself; one part trains in the caller's process, as set)."""
    points = [points] if isinstance(points, TrialConfig) else list(points)
    parts = split_members(points, workers)
    if len(parts) == 1:
        yield from Trainer(points).run()
        return
    ctx = mp.get_context("spawn")
    queues = [ctx.Queue() for _ in parts]
    procs = [ctx.Process(target=_worker, args=([c.model_dump(mode="json") for _, c in part], q), daemon=True)
             for part, q in zip(parts, queues)]
    for proc in procs:
        proc.start()
    try:
        while True:
            replies = [q.get() for q in queues]
            for kind, payload in replies:
                if kind == "error":
                    raise RuntimeError(f"a training worker failed:\n{payload}")
            if all(kind == "done" for kind, _ in replies):
                return
            yield _merge(points, parts, [payload for _, payload in replies])
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


def _merge(points, parts, reports: list[Report]) -> Report:
    """One report for the whole pack from the workers' reports of the same episode."""
    per_point = [[] for _ in points]
    stopped = [False] * len(points)
    members = sum(c.seeds for c in points)
    for part, report in zip(parts, reports):
        for (i, _), pr in zip(part, report.points):
            per_point[i].extend(pr.per_seed)
            stopped[i] |= pr.status == "stopped"
    episode = reports[0].episode
    wall = max(r.wall_seconds for r in reports)
    seconds = wall / (members * episode) if episode else float("nan")
    merged = [point_report(rows, stopped[i], episode >= points[i].episodes, episode, seconds, reward_levels(points[i]))
              for i, rows in enumerate(per_point)]
    return Report(episode, merged, wall, max(r.compile_seconds for r in reports),
                  sum(r.episodes_per_second for r in reports))
