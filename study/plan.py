"""``uwm-study check SPEC``: what a study would do, read from its spec alone; nothing is started.

The plan: the cells (grid product), the points (Optuna's per cell, plus the confirm stage), the packs (Ray
trials), the resources a trial holds and how many this machine runs at once, the work estimate as a range
(:class:`study.runner.WorkEstimate`), and whether each cell's episode budget can reach its threshold at all
(the running reward is a mean over ``threshold_window`` episodes: a budget shorter than the window never
reaches it, and the threshold metrics of such a cell stay absent).
"""

from __future__ import annotations

import os

from .control_trial import trial_config
from .errors import UserError
from .spec import StudySpec

MAX_CELLS_LISTED = 12


def threshold_line(spec: StudySpec) -> str:
    """Whether the episode budget of every cell can reach its threshold, and from which episode on."""
    cannot, can = [], set()
    for cell in spec.cells():
        cfg = trial_config(cell.config)
        if cfg.episodes < cfg.threshold_window:
            cannot.append(f"{cell.key} ({cfg.episodes} episodes < threshold_window {cfg.threshold_window})")
        else:
            can.add((cfg.threshold, cfg.threshold_window, cfg.episodes))
    if cannot:
        return (f"threshold: NOT reachable in {len(cannot)} of {len(spec.cells())} cells: {'; '.join(cannot[:3])}"
                + (" ..." if len(cannot) > 3 else "") + ": their threshold metrics stay absent (raise episodes or "
                "lower threshold_window)")
    if len(can) == 1:
        threshold, window, episodes = can.pop()
        return (f"threshold: running reward over {window} episodes >= {threshold:g}: reachable within the budget of "
                f"{episodes} episodes, from episode {window} on")
    return "threshold: reachable within the budget in every cell (from episode threshold_window on)"


def plan_text(spec: StudySpec, path: str) -> str:
    """The plan of ``spec`` (see the module doc); raises a UserError where `uwm-study run` would refuse it."""
    from . import runner

    work = runner.check_work(spec)
    cells = spec.cells()
    axes = " x ".join(f"{name} ({len(values)})" for name, values in spec.grid.items()) or "no grid axes"
    lines = [f"{path}: a valid spec of study {spec.name}",
             f"cells: {len(cells)} ({axes})"]
    lines += [f"  {cell.key}" for cell in cells[:MAX_CELLS_LISTED]]
    if len(cells) > MAX_CELLS_LISTED:
        lines.append(f"  ... and {len(cells) - MAX_CELLS_LISTED} more")
    search = ", ".join(spec.search) or "nothing searched"
    confirm = (f" + confirm (top {spec.confirm.top_k} per cell, {spec.confirm.seeds} fresh seeds)" if spec.confirm else "")
    lines.append(f"points: {len(cells)} cells x {spec.samples_per_cell} ({search}){confirm} = "
                 f"{'<= ' if spec.confirm else ''}{spec.total_points} points")
    per = spec.points_per_pack
    lines.append(f"packs: at most {work.trials} Ray trial{'s' * (work.trials != 1)} of <= {per} "
                 f"point{'s' * (per != 1)} (points that share every shape-fixing field train together)")
    r = spec.resources
    concurrent = max(1, int((os.cpu_count() or 1) / r.cpus))
    try:
        runner.check_local_machine(spec)
        fits = f"this machine (local Ray) runs {concurrent} at once"
    except UserError as err:
        concurrent = 1
        fits = f"this machine cannot hold one ({err.problem}); a cluster joined with --address may"
    if spec.max_concurrent:
        concurrent = min(concurrent, spec.max_concurrent)
    lines.append(f"resources: {runner.count(r.cpus, 'CPU')}" + (f" and {runner.count(r.gpus, 'GPU')}" if r.gpus else "")
                 + f" per trial; {fits}")
    lines.append(work.line(concurrent))
    lines.append(threshold_line(spec))
    lines.append(f"metric: {spec.metric} ({spec.mode}), at each point's last report")
    lines.append(f"nothing was started: `uwm-study run {path}` runs it")
    return "\n".join(lines)
