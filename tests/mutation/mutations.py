"""Realistic one-line bugs and the fast tests that must catch each (see run.py).

Each entry: name, file, the exact original snippet (must occur once), its mutant, and the tests to run.
"""

MATH = "tests/test_trainer_math.py"
PACK = "tests/test_packing.py"
PROBE = "tests/test_probe_metrics.py"
RESUME = ["tests/test_trainer.py::test_resume_equals_uninterrupted",
          "tests/test_trainer.py::test_resume_of_reinforce_with_ema_baseline_after_the_threshold_was_reached"]
STEPS = f"{MATH}::test_the_ema_baseline_and_adam_follow_their_equations_over_steps"
THRESHOLD = f"{MATH}::test_episodes_to_threshold_and_running_reward_match_a_plain_running_mean"
STOP = f"{PACK}::test_stop_points_freezes_the_chosen_points_and_leaves_the_others_as_if_alone"


def m(name, file, original, mutant, tests):
    return {"name": name, "file": file, "original": original, "mutant": mutant,
            "tests": [tests] if isinstance(tests, str) else list(tests)}


MUTATIONS = [
    # ---- rules
    m("rules.uwm_drops_importance_weight", "uwm_model/rules.py",
      "return torch.exp(log_rho) * slope", "return slope", [MATH]),
    m("rules.signal_drops_h", "uwm_model/rules.py",
      "signal = h * delta", "signal = delta", [MATH]),
    m("rules.wm_p2_fast_path_halved", "uwm_model/rules.py",
      "dnorm = 2 * w", "dnorm = w", f"{MATH}::test_wm_p2_fast_path_equals_the_general_power"),
    m("rules.reinforce_output_sign", "uwm_model/rules.py",
      "return R.unsqueeze(-1) * (ep.h[-1] - ep.pi[-1])", "return R.unsqueeze(-1) * (ep.pi[-1] - ep.h[-1])", [MATH]),
    m("rules.uwm_shift_sign", "uwm_model/rules.py",
      "z_shift = z_next.unsqueeze(2) + w_t * (u - h).unsqueeze(-1)",
      "z_shift = z_next.unsqueeze(2) + w_t * (h - u).unsqueeze(-1)", [MATH]),
    # ---- network
    m("network.batch1_matmul_mean", "uwm_model/network.py",
      "return (a.transpose(1, 2) * b).sum(1, keepdim=True)", "return (a.transpose(1, 2) * b).mean(1, keepdim=True)",
      [MATH]),
    m("network.eager_sigmoid_tail", "uwm_model/network.py",
      "    return 1 / (1 + torch.exp(-z))", "    return torch.sigmoid(z)",
      f"{PACK}::test_packing_changes_no_float32_number_in_eager_steps"),
    m("rules.uwm_torch_sigmoid", "uwm_model/rules.py",
      "(h_next.unsqueeze(2) - sigmoid(z_shift))", "(h_next.unsqueeze(2) - torch.sigmoid(z_shift))",
      f"{PACK}::test_packing_changes_no_float32_number_in_eager_steps"),
    m("network.sample_flipped", "uwm_model/network.py",
      "h.append((u < pi).to(z.dtype))", "h.append((u > pi).to(z.dtype))", [MATH]),
    # ---- trainer step
    m("trainer.u_from_unit_uniforms", "uwm_model/trainer.py",
      "return weights, ep, self.task.reward(x, ep.action), parts[1 + len(widths):]",
      "return weights, ep, self.task.reward(x, ep.action), parts[1: len(widths)]", [MATH]),
    m("trainer.ema_decay_swapped", "uwm_model/trainer.py",
      "baseline=torch.where(update, self.baseline_decay * baseline + (1 - self.baseline_decay) * reward.mean(1), baseline)",
      "baseline=torch.where(update, (1 - self.baseline_decay) * baseline + self.baseline_decay * reward.mean(1), baseline)",
      STEPS),
    m("trainer.adam_power_not_advanced", "uwm_model/trainer.py",
      "beta1_power=torch.where(update.unsqueeze(1), beta1_power * self.beta1, beta1_power)",
      "beta1_power=beta1_power", STEPS),
    m("trainer.threshold_off_by_one_step", "uwm_model/trainer.py",
      "episode = (first_step + window + first) * self.cfg.batch_size",
      "episode = (first_step + window + first - 1) * self.cfg.batch_size", THRESHOLD),
    m("trainer.stopped_members_keep_training", "uwm_model/trainer.py",
      "update = active & torch.isfinite(new_theta.sum(1))", "update = torch.isfinite(new_theta.sum(1))", STOP),
    m("trainer.diverged_members_keep_non_finite_values", "uwm_model/trainer.py",
      "if not bool(diverged.any()):", "if True:", ["tests/test_trainer.py"]),
    m("trainer.stop_points_marks_finished_as_stopped", "uwm_model/trainer.py",
      "self.stopped |= mask & (self.diverged_at < 0)", "self.stopped |= mask", PACK),
    m("trainer.eval_on_train_stream", "uwm_model/trainer.py",
      "self._draw_episode(self.theta[m], self.eval_keys[m], counter, E, False)",
      "self._draw_episode(self.theta[m], self.train_keys[m], counter, E, False)", [PROBE]),
    m("trainer.probe_bias_is_mean_norm", "uwm_model/trainer.py",
      "out.update(bias=diff_sq.sqrt(),", "out.update(bias=mean_sq.sqrt(),",
      [PROBE]),
    m("trainer.probe_variance_over_K", "uwm_model/trainer.py",
      "var = (x_sq.sum(1) - K * mean_sq) / (K - 1)", "var = (x_sq.sum(1) - K * mean_sq) / K", [PROBE]),
    m("trainer.sem_over_n", "uwm_model/trainer.py",
      "std / math.sqrt(len(values))", "std / len(values)", [PROBE]),
    # ---- packing
    m("packing.threshold_of_point_0", "uwm_model/trainer.py",
      "self.threshold = per_member([c.threshold for c, _ in members])",
      "self.threshold = per_member([self.points[0].threshold for c, _ in members])", [PACK]),
    m("packing.baseline_decay_of_point_0", "uwm_model/trainer.py",
      "self.baseline_decay = per_member([c.baseline_decay for c, _ in members])",
      "self.baseline_decay = per_member([self.points[0].baseline_decay for c, _ in members])", [PACK]),
    m("packing.rule_option_of_member_0", "uwm_model/trainer.py",
      "values = per_member([float(o[name]) for o in member_options])",
      "values = per_member([float(member_options[0][name]) for o in member_options])", [PACK]),
    m("packing.adam_eps_of_point_0", "uwm_model/trainer.py",
      "self.eps = per_member([c.adam_eps for c, _ in members]).unsqueeze(1)",
      "self.eps = per_member([self.points[0].adam_eps for c, _ in members]).unsqueeze(1)", [PACK]),
    # ---- checkpoints
    m("checkpoint.drops_baseline", "uwm_model/trainer.py",
      '"beta2_power", "baseline", "active"', '"beta2_power", "active"', RESUME),
    m("checkpoint.drops_reached_at", "uwm_model/trainer.py",
      '"updates", "reached_at",', '"updates",', RESUME),
    m("checkpoint.drops_reward_tail", "uwm_model/trainer.py",
      '"stopped", "reward_tail", "running_reward",', '"stopped", "running_reward",', RESUME),
    # ---- the study's trainable (an end-to-end test: about 3 minutes)
    m("study.retry_ignores_checkpoint", "study/trainable.py",
      "checkpoint = tune.get_checkpoint()", "checkpoint = None",
      "tests/test_study_run.py::test_a_killed_trial_worker_is_retried_and_recorded_once"),
    # ---- tracking
    m("tracking.relogs_logged_steps", "study/tracking.py",
      "if self.closed or episode <= self.last_step:", "if self.closed or episode < self.last_step:",
      "tests/test_tracking.py"),
    m("tracking.auc_ignores_widths", "uwm_model/layout.py",
      "area += value * (episode - previous)", "area += value", "tests/test_tracking.py"),
    m("metrics.charts_the_spread", "uwm_model/metrics.py",
      "return kind == SERIES_AGGREGATE and", 'return kind in ("mean", "sem") and', "tests/test_metric_registry.py"),
    m("metrics.threshold_median_waits_for_a_majority", "uwm_model/metrics.py",
      "half = math.ceil(seeds / 2)", "half = seeds // 2 + 1", "tests/test_metric_registry.py"),
    m("tracking.resume_forgets_last_step", "study/tracking.py",
      'self.last_step = max((m.step for m in history), default=-1)', "self.last_step = -1",
      "tests/test_tracking.py"),
    # ---- analysis
    m("analysis.wilson_half_width", "analysis/stats.py",
      'method="wilson")', 'method="normal")', "tests/test_analysis_stats.py"),
    m("analysis.spearman_without_ranks", "analysis/stats.py",
      "return float(_row_pearson(_ranks(x), _ranks(y)))", "return float(_row_pearson(x, y))",
      "tests/test_analysis_stats.py"),
    m("analysis.seed_auc_without_widths", "analysis/speed.py",
      'g = ev.assign(_area=ev["value"] * ev["_w"])', 'g = ev.assign(_area=ev["value"])',
      ["tests/test_analysis_stats.py", "tests/test_analysis_planted.py"]),
    m("analysis.censoring_at_zero", "analysis/speed.py",
      'out["episodes_to_threshold"] = np.where(out["reached"], out["ett"], seen)',
      'out["episodes_to_threshold"] = np.where(out["reached"], out["ett"], 0)',
      ["tests/test_analysis_stats.py", "tests/test_analysis_planted.py"]),
    # ---- added after the first full run (written without looking at which tests would catch them)
    m("optim.adam_bias_correction_unsquared", "uwm_model/optim.py",
      "correction2 = (1 - beta2_power) ** 0.5", "correction2 = (1 - beta2_power)", STEPS),
    m("trainer.eval_same_inputs_every_report", "uwm_model/trainer.py",
      "index = self.step_count // (cfg.report_every // cfg.batch_size)", "index = 0", PROBE),
    m("packing.outgoing_norm_of_point_0", "uwm_model/trainer.py",
      "outgoing_norm=[c.outgoing_norm for c, _ in members]", "outgoing_norm=[self.points[0].outgoing_norm for c, _ in members]",
      PACK),
    m("trainer.threshold_strict", "uwm_model/trainer.py",
      "hit = running >= self.threshold", "hit = running > self.threshold", THRESHOLD),
    m("trainer.diverged_at_one_step_early", "uwm_model/trainer.py",
      "return torch.where(diverged, (self.updates + 1) * self.cfg.batch_size, -1)",
      "return torch.where(diverged, self.updates * self.cfg.batch_size, -1)", [PACK, "tests/test_trainer.py"]),
    m("config.member_seeds_repeat_first", "uwm_model/config.py",
      "return list(range(self.seed, self.seed + self.seeds))", "return [self.seed] * self.seeds", PROBE),
    m("analysis.probe_total_is_a_mean", "analysis/probe.py",
      'wide["total"] = wide.sum(axis=1, min_count=len(layers))', 'wide["total"] = wide.mean(axis=1)',
      "tests/test_analysis_stats.py"),
]
