"""The numbers the published READMEs quote, recomputed from the studies' own report tables (results/*/md):
a README that drifts from its report (lr-sensitivity's rho read [-0.64, -0.09] in the READMEs and
[-0.63, -0.082] in the report), or a verdict stated without the power its table gives, fails here.

Each claim: the README(s), and the text it must contain, built from the CSVs (or from report.md, for the
pooled correlations, which only the report states)."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parent.parent / "results"
TOP = "README.md"
REPO = "../README.md"        # the repository's own README quotes the headline numbers too
NORM = "outgoing-norm-stress/README.md"
WIDTH = "width-scaling/README.md"
REPL = "replicate-chung2022/README.md"
LR = "lr-sensitivity/README.md"


def _csv(study, name):
    return pd.read_csv(RESULTS / study / "md" / name)


def _num(v, digits=2):
    """As the READMEs write numbers: fixed decimals, a typographic minus."""
    return f"{v:.{digits}f}".replace("-", "−")


def _list(values, digits=2, sep=", "):
    return sep.join(_num(v, digits) for v in values)


def _init(norm, layer, column):
    t = _csv("outgoing-norm-stress", "norm_stress_init_bias.csv")
    rows = t[(t["outgoing_norm"] == norm) & (t["layer"] == layer)].set_index("label")
    return [rows.loc[f"hwm_order-{k}", column] for k in (3, 5, 7)]


def _interaction():
    from analysis.norm_stress import order_norm_interaction

    # this study's beyond_radius column is not a fraction (the fixed bug): the fit on the column-norm axis
    return order_norm_interaction(_csv("outgoing-norm-stress", "norm_stress_init_bias.csv").drop(columns="beyond_radius"))


def _report_rho(study):
    text = (RESULTS / study / "md" / "report.md").read_text()
    m = re.search(r"within settings, pooled over \d+ settings \(\d+ cells\) \| ρ\(variance, AUC reward\) = "
                  r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", text)
    def sig(v):   # two decimals, or two significant digits below 0.1 (as the report rounds: -0.082)
        v = float(v)
        return _num(v, 2) if abs(v) >= 0.1 or v == 0 else _num(v, 1 - int(math.floor(math.log10(abs(v)))))

    return f"{sig(m.group(1))} [{sig(m.group(2))}, {sig(m.group(3))}]"


def _timing(rule, width):
    d = _csv("width-scaling", "scaling_data.csv")
    d = d[(d["quantity"] == "seconds_per_episode") & (d["rule_variant"] == rule) & (d["width"] == width)]
    return d["value"].mean()


def _ratios():
    from analysis.scaling import compute_ratio

    d = _csv("width-scaling", "scaling_data.csv").astype({"context": object}).fillna({"context": ""})
    return compute_ratio(d)[0].set_index("width")["ratio"]


def _replication():
    r = _csv("replicate-chung2022", "replication.csv").set_index("rule_variant").loc["wm(p=2)"]
    n, std0 = int(r["n_seeds"]), r["std_ddof0"]
    ours = std0 * math.sqrt(n / (n - 1)) / math.sqrt(n)
    theirs = r["published_std"] / math.sqrt(10)
    se = math.hypot(ours, theirs)
    lo, hi = r["published"] - 0.005 - r["train_reward_all"], r["published"] + 0.005 - r["train_reward_all"]
    return r, ours, theirs, se, lo, hi


CLAIMS = [
    # the π boundary: relative bias and power at norm 3, relative bias at 3.5 and 8 (layer 2)
    ([TOP], lambda: "(relative bias " + _list(_init(3.0, 2, "relative_bias")) + " in layer 2)"),
    ([NORM], lambda: "layer 2 is {}, {} and {}".format(*(_num(v) for v in _init(3.0, 2, "relative_bias")))),
    ([TOP, NORM], lambda: "{}%, {}% and {}% power".format(*(f"{100 * p:.1f}" for p in _init(3.0, 2, "power")))),
    ([TOP], lambda: "Relative bias at 3.5: " + _list(_init(3.5, 2, "relative_bias"))),
    ([TOP], lambda: "at 8: " + ", ".join(f"{v:.0f}" for v in _init(8.0, 2, "relative_bias"))),
    # the order x norm interaction, with and without order 1
    ([TOP, NORM], lambda: f"p = {_interaction()['order_x_above_p']:.3f}"),
    ([NORM], lambda: f"−{abs(_interaction()['order_below']):.3f} per order, p = {_interaction()['order_below_p']:.3f}"),
    ([NORM], lambda: f"+{_interaction()['order_x_above_wo1']:.3f} per order, p = {_interaction()['order_x_above_p_wo1']:.2f} "
                     f"({_interaction()['n_wo1']} rows)"),
    ([TOP], lambda: f"without it p = {_interaction()['order_x_above_p_wo1']:.2f}"),
    # REINFORCE's z's all negative (the leaning test)
    ([NORM], lambda: "all 24\n  of REINFORCE's z's are negative" if (
        lambda t: int((t[t["label"] == "reinforce"]["z"] < 0).sum()) == 24)(
        _csv("outgoing-norm-stress", "norm_stress_init_bias.csv")) else "?"),
    # pooled correlations, as the reports state them
    ([TOP, LR], lambda: "ρ = " + _report_rho("lr-sensitivity")),
    ([TOP], lambda: "width-scaling ρ = " + _report_rho("width-scaling")),
    ([TOP], lambda: "outgoing-norm-stress ρ = " + _report_rho("outgoing-norm-stress")),
    # width scaling: the variance exponents, the compute ratio, the warm-up
    ([TOP], lambda: (lambda f: f"width^{f.loc['reinforce(baseline=ema)', 'exponent']:.2f} "
                               f"[{f.loc['reinforce(baseline=ema)', 'exponent_lo']:.2f}, "
                               f"{f.loc['reinforce(baseline=ema)', 'exponent_hi']:.2f}]")(
        _csv("width-scaling", "scaling_fits.csv").query("quantity == 'probe_variance'").set_index("rule_variant"))),
    ([TOP, WIDTH, REPO], lambda: (lambda r: f"{r.loc[16:].min():.2f}–{r.loc[16:].max():.2f} from width 16 to 256")(_ratios())),
    ([WIDTH], lambda: f"{_ratios().loc[8]:.2f} at width 8"),
    ([WIDTH], lambda: f"{_timing('reinforce(baseline=ema)', 8) * 1e6:.1f} µs against "
                      f"{_timing('reinforce(baseline=ema)', 16) * 1e6:.1f} µs at width 16"),
    # replication: the gap in standard errors of the difference
    ([TOP, REPL], lambda: (lambda r: f"{r[4]:.3f}–{r[5]:.3f} given")(_replication())),
    ([TOP, REPL, REPO], lambda: (lambda r: f"is {r[4] / r[3]:.1f}–{r[5] / r[3]:.1f} standard errors")(_replication())),
    ([REPL], lambda: (lambda r: f"(ours {r[1]:.3f},\n  theirs {r[2]:.3f})")(_replication())),
]


@pytest.mark.parametrize("readmes, claim", CLAIMS, ids=[f"claim{i}" for i in range(len(CLAIMS))])
def test_every_quoted_number_matches_its_report(readmes, claim):
    text = claim()
    for readme in readmes:
        body = (RESULTS / readme).read_text()
        assert text in body, f"{readme} does not say {text!r} (computed from the study's report tables)"


def test_reinforce_variance_is_a_parameter_count_not_a_power_law():
    """width-scaling README: REINFORCE's summed variance equals 0.925 (n²/8 + 3n) within 2 % at every width."""
    d = _csv("width-scaling", "scaling_data.csv")
    v = d[(d["quantity"] == "probe_variance") & (d["rule_variant"] == "reinforce(baseline=ema)")]
    means = v.groupby("width")["value"].mean()
    count = means.index.to_numpy(float) ** 2 / 8 + 3 * means.index.to_numpy(float)
    assert np.allclose(means.to_numpy() / count, 0.925, rtol=0.02)
    assert "0.925 × (n²/8 + 3n) within 2%" in (RESULTS / WIDTH).read_text()


def test_no_readme_claims_the_null_from_a_non_rejection():
    """Verdict words (issue 23): no "unbiased by", "no bias detected", "no breakdown" or "not at norm 3"."""
    for readme in [TOP, NORM, WIDTH, REPL, LR, REPO]:
        body = (RESULTS / readme).read_text()
        for phrase in ("unbiased by the", "no bias detected", "no breakdown", "and not at norm 3",
                       "agree within one published"):
            assert phrase not in body, f"{readme}: {phrase!r}"


@pytest.mark.parametrize("study", ["mnist-binary", "mnist-10class"])
def test_the_mnist_accuracies_are_their_reports(study):
    """Each rule's test accuracy and interval in the study's README (and the repository README's summary line)
    is a row of its report's accuracy.csv, as the README's table writes it."""
    t = _csv(study, "accuracy.csv")
    t["width"] = t["hidden"].str.strip("[]").astype(int)
    body = (RESULTS / study / "README.md").read_text()
    assert len(t) == 10
    for _, r in t.iterrows():
        row = f"| {r['rule']} | {r['width']} | {r['accuracy']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] |"
        assert row in body, f"{study}/README.md lacks {row!r}"
    # the summaries (repository README, results/README.md) quote every rule at width 128, UWM with its interval
    wide = t[t["width"] == 128].set_index("rule")
    uwm = wide.loc["uwm"]
    labels = {"ste": "STE", "hwm(order=3)": "HWM (3)", "wm": "WM", "reinforce(baseline=ema)": "REINFORCE"}
    repo = " ".join((RESULTS / REPO).read_text().split())
    line = repo[repo.index(f"{study}: UWM "):][:200]
    assert line.startswith(f"{study}: UWM {uwm['accuracy']:.3f} [{uwm['lo']:.3f}, {uwm['hi']:.3f}]"), line
    top = " ".join((RESULTS / TOP).read_text().split())
    for rule, label in labels.items():
        assert f"{label} {wide.loc[rule, 'accuracy']:.3f}" in line, (study, rule)
    name = {"mnist-binary": "Binary (0–4 against 5–9), width 128", "mnist-10class": "Ten classes, width 128"}[study]
    summary = top[top.index(name):][:250]
    assert f"UWM {uwm['accuracy']:.3f} [{uwm['lo']:.3f}, {uwm['hi']:.3f}]" in summary, summary
    for rule, label in labels.items():
        assert f"{label} {wide.loc[rule, 'accuracy']:.3f}" in summary, (study, rule, summary)
    # the reference points the READMEs quote are the report's (reference_points.csv)
    refs = _csv(study, "reference_points.csv")
    logistic = refs[refs["reference"].str.startswith("logistic")]["accuracy"].unique()
    assert len(logistic) == 1 and f"logistic regression {logistic[0]:.3f}" in summary
    assert f"logistic regression {logistic[0]:.3f}" in " ".join(body.split())
    ceiling = refs[refs["reference"].str.contains("ceiling")].set_index("hidden")["accuracy"]
    assert f"ceiling {ceiling['[128]']:.3f}" in summary, summary
    for hidden, value in ceiling.items():
        assert f"{value:.3f} at width {hidden.strip('[]')}" in " ".join(body.split()), hidden


@pytest.mark.parametrize("task", ["cartpole", "acrobot"])
def test_the_control_replication_figures_are_their_runs(task):
    """The control replication's mean, SD and SE over seeds, as the READMEs quote them, are the run's JSON;
    the run is complete (every seed finished the anchor's 1 000 episodes) and inside the anchor's band."""
    import json

    run = json.loads((RESULTS / "chung2022-control" / f"{task}.json").read_text())
    assert run["complete"] and run["episodes_completed_by_all"] == 1000 and len(run["average_return_first_E"]) == 10
    per_seed = np.array(run["average_return_first_E"])
    assert run["mean"] == pytest.approx(per_seed.mean()) and run["sd"] == pytest.approx(per_seed.std(ddof=1))
    published, published_sd = run["published_mean_sd"]
    assert abs(run["mean"] - published) <= published_sd
    quoted = f"{_num(run['mean'])} (SD {_num(run['sd'])}, SE {_num(run['se'])})"
    assert quoted in (RESULTS / "chung2022-control" / "README.md").read_text().replace("**", "")
    assert f"{_num(run['mean'])} (SE {_num(run['se'])}" in (RESULTS / TOP).read_text()
    assert f"{_num(run['mean'])}, SE {_num(run['se'])}" in (RESULTS / REPO).read_text()


# ------------------------------------------------------------------ issue 26: categorical units and uneven fan-out

CAT, FAN = "categorical-units", "fan-out"


def _units(cell):
    return "Bernoulli" if "categories=" not in cell else "K = " + cell.split("categories=")[1].split("|")[0]


def _categorical_rows():
    """The README's table rows: every confirm-stage cell of cells.csv, with tuning.csv's edge flag."""
    c, t = _csv(CAT, "cells.csv"), _csv(CAT, "tuning.csv").set_index("cell")
    rows = []
    for _, r in c.iterrows():
        edge = {"upper": " (upper edge)", "lower": " (lower edge)"}.get(t.loc[r["cell"], "lr edge"], "")
        reached = round(r["reached_fraction"] * r["n_seeds"])
        rows.append(f"| {_units(r['cell'])} {r['hidden']} | {r['rule_variant']} | {r['lr']:.2g}{edge} | "
                    f"{reached}/{r['n_seeds']} | {r['episodes_to_threshold']:.0f} [{r['episodes_to_threshold_lo']:.0f}, "
                    f"{r['episodes_to_threshold_hi']:.0f}] | {r['final_reward']:.3f} [{r['final_reward_lo']:.3f}, "
                    f"{r['final_reward_hi']:.3f}] |")
    return rows


def _uwm_difference(hidden):
    """RMST(uwm at ``hidden``) - RMST(Bernoulli uwm), paired over the confirm seeds, as the ranking computes it."""
    from analysis.fastest import _difference
    from analysis.stats import DEFAULT_BOOT, DEFAULT_LEVEL

    c, s = _csv(CAT, "cells.csv"), _csv(CAT, "seed_speed.csv")
    uwm = c[c["rule"] == "uwm"].set_index("hidden")
    seeds = {h: s[s["run_id"] == uwm.loc[h, "run_ids"]].set_index("seed") for h in (hidden, "[32, 32]")}
    return _difference(seeds[hidden], seeds["[32, 32]"], float(uwm.loc[hidden, "episodes_budget"]), DEFAULT_BOOT,
                       DEFAULT_LEVEL, 0)


def _fan_out_rows():
    t = _csv(FAN, "fan_out_tests.csv")
    t = t[t["when"] == "trained"]

    def word(r):
        if r is None:
            return "—"
        verdict = "shown" if r["shown"] else f"not shown, power {r['power']:.0%}"
        return f"{r['mean_rho']:.2f} (p {r['p']:.2g}; {verdict})"

    rows = []
    for (rule, cv), g in t.groupby(["rule_variant", "cv"]):
        g = g.set_index("statistic")
        cells = [word(g.loc[s] if s in g.index else None) for s in ("speed", "var", "bias")]
        rows.append(f"| {rule} | {cv:g} | " + " | ".join(cells) + " |")
    return rows


def test_the_categorical_and_fan_out_readmes_are_their_reports():
    """Every table row of results/categorical-units and results/fan-out is a row of the report's CSVs; the paired
    K = 4 minus Bernoulli UWM difference and the headline rhos the text quotes are recomputed from them."""
    cat = (RESULTS / CAT / "README.md").read_text()
    rows = _categorical_rows()
    assert len(rows) == 15
    for row in rows:
        assert row in cat, f"{CAT}/README.md lacks {row!r}"
    d = _uwm_difference("[8, 8]")
    assert d["paired"] and d["difference_lo"] < 0 < d["difference_hi"]     # "neither is shown faster"
    assert f"{d['difference']:.0f} episodes [{d['difference_lo']:.0f}, {d['difference_hi']:.0f}]".replace("-", "−") \
        in cat and f"at most {d['difference_hi']:.0f} episodes" in cat
    fan = (RESULTS / FAN / "README.md").read_text()
    rows = _fan_out_rows()
    assert len(rows) == 10
    for row in rows:
        assert row in fan, f"{FAN}/README.md lacks {row!r}"
    t = _csv(FAN, "fan_out_tests.csv").query("when == 'trained' and statistic == 'speed'").set_index(
        ["rule_variant", "cv"])
    wm, uwm = t.loc["wm(p=2)"], t.loc["uwm"]
    assert wm["shown"].all() and not uwm["shown"].any()
    assert (f"mean ρ(speed, fan-out) {wm.loc[1.0, 'mean_rho']:.2f} at CV 1 and {wm.loc[2.0, 'mean_rho']:.2f} at CV 2"
            in fan)
    assert (f"{uwm.loc[1.0, 'mean_rho']:.2f} at CV 1 (power {uwm.loc[1.0, 'power']:.0%} against |ρ| = 0.3) and "
            f"{uwm.loc[2.0, 'mean_rho']:.2f} at CV 2\n(power {uwm.loc[2.0, 'power']:.0%})") in fan
    top = (RESULTS / TOP).read_text()
    assert f"at most {d['difference_hi']:.0f} episodes at 95%" in top
    assert f"ρ(speed, fan-out) {wm.loc[1.0, 'mean_rho']:.2f} and {wm.loc[2.0, 'mean_rho']:.2f}" in top
    assert f"(power {uwm.loc[1.0, 'power']:.0%} and {uwm.loc[2.0, 'power']:.0%} against ρ = 0.3)" in top
