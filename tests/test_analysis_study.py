"""The analysis package against a real MLflow store (SQLite file) holding studies with planted answers.

The store is filled by ``analysis.synthetic.write_synthetic_study``, which lays runs out exactly as
the study runner does (parent run, child run per point, uwm.* tags, TrialConfig.flat() params,
aggregate metrics per report, final_* summaries, curves_per_seed.csv), with numbers drawn from a
known model: compute per episode ~ width², probe variance ~ width^a_r, episodes to threshold
~ sqrt(variance), hwm diverging above π. Every analysis must recover those answers.
"""

import re
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis import StudyNotFound, load_study
from analysis.figures import layout_problems
from analysis.norm_stress import breakdown_norms, norm_stress_table
from analysis.report import analyse, write_report
from analysis.scaling import compare_exponents, scaling_data, scaling_fits
from analysis.speed import cell_summary, trial_speed
from analysis.synthetic import BEST_LR, RULE_MODEL, write_synthetic_study
from analysis.variance_speed import variance_speed_correlations, variance_speed_table

RULES = ("reinforce", "hwm", "uwm")
WIDTHS = (8, 32, 128)
SEEDS = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    planted = write_synthetic_study(uri, name="planted", rules=RULES, widths=WIDTHS, norms=(1.0, 4.0),
                                    lrs=(0.01, BEST_LR), confirm=False, seeds=SEEDS, episodes=12000,
                                    report_every=2000, extras=True, seed=0)
    write_synthetic_study(uri, name="narrow", rules=("uwm",), widths=(16,), norms=(None,), lrs=(BEST_LR,),
                          confirm=False, cross_rule=False, seeds=3, episodes=2000, report_every=1000, seed=1)
    return uri, planted


@pytest.fixture(scope="module")
def study(store):
    uri, _ = store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_study("planted", uri)


# ----------------------------------------------------------------------------- loading


def test_load_trials_one_row_per_point_with_parsed_params(study, store):
    _, planted = store
    t = study.trials
    # 36 points + a failed trial; the stale duplicate of a point is dropped
    assert len(t) == planted.planted["n_points"] + 1 == 37
    assert t["run_id"].is_unique
    assert any("duplicate" in n for n in study.notes) and any("failed" in n for n in study.notes)
    ok = t[t["status"] != "failed"]
    assert set(ok["status"]) == {"finished", "diverged"}
    assert set(ok["stage"]) == {"search"}
    assert set(ok["rule"]) == set(RULES) and set(ok["width"]) == set(WIDTHS)
    assert set(ok["outgoing_norm"]) == {1.0, 4.0} and set(ok["lr"]) == {0.01, BEST_LR}
    assert all(h == [w, w] for h, w in zip(ok["hidden"], ok["width"]))        # lists parsed back
    assert (ok["depth"] == 2).all() and ok["equal_widths"].all()
    assert isinstance(ok["probe.rules"].iloc[0], list)
    finished = ok[ok["status"] == "finished"]         # a point whose seeds all diverged has no final reward
    for col in ("auc_reward_mean", "final_eval_reward_mean", "final_seconds_per_episode", "last_eval_reward_mean",
                "last_probe_var_l1_mean"):
        assert finished[col].notna().all(), col
    assert ok["final_seconds_per_episode"].notna().all()
    assert (study.spec["metric"], study.spec["mode"]) == ("episodes_to_threshold_mean", "min")
    assert study.tags["uwm.role"] == "study"


def test_load_curves_are_long_and_complete(study):
    c = study.curves
    assert list(c.columns) == ["run_id", "episode", "metric", "value"]
    ev = c[c["metric"] == "eval_reward_mean"]
    ok_runs = study.trials.loc[study.trials["status"] != "failed", "run_id"]
    assert set(ev["run_id"]) <= set(ok_runs)
    assert not c.duplicated(["run_id", "metric", "episode"]).any()
    finished = study.trials.loc[study.trials["status"] == "finished", "run_id"]
    steps = ev[ev["run_id"].isin(finished)].groupby("run_id")["episode"].apply(sorted)
    assert all(s == [2000, 4000, 6000, 8000, 10000, 12000] for s in steps)
    assert not c["metric"].str.endswith("_std").any()            # derivable from _sem: not loaded
    assert not c["metric"].str.startswith("final_").any()
    sc = study.seed_curves
    assert list(sc.columns) == ["run_id", "episode", "seed", "metric", "value"]
    per_run = sc.groupby("run_id")["seed"].nunique()
    assert (per_run == SEEDS).all()


def test_select_narrows_every_table_and_the_analyses_follow(study):
    """The notebooks' table filter: the planted scaling exponent of uwm is recovered from its trials alone."""
    uwm = study.select("rule == 'uwm' and outgoing_norm < 2")
    assert set(uwm.trials["rule"]) == {"uwm"} and set(uwm.trials["outgoing_norm"]) == {1.0}
    assert len(uwm.trials) == len(WIDTHS) * 2   # 2 learning rates per width
    keep = set(uwm.trials["run_id"])
    assert set(uwm.curves["run_id"]) == keep and set(uwm.seed_curves["run_id"]) == keep
    assert uwm.notes[-1].startswith(f"selected {len(keep)} of {len(study.trials)} trials")
    assert study.select("") is study and len(study.trials) == 37   # the whole study is left as it was
    fits, _ = scaling_fits(scaling_data(uwm), n_boot=200)
    row = fits[(fits["quantity"] == "probe_variance")].iloc[0]
    assert set(fits["rule_variant"]) == {"uwm"} and row["exponent"] == pytest.approx(RULE_MODEL["uwm"][1], abs=0.1)


def test_load_by_parent_run_id_and_unknown_study(study, store):
    uri, planted = store
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_study(planted.parent_run_id, uri, seed_curves=False)
    assert set(again.trials["run_id"]) == set(study.trials["run_id"])
    assert len(again.seed_curves) == 0
    with pytest.raises(StudyNotFound, match="no study named 'nope'"):
        load_study("nope", uri)


def test_per_seed_auc_matches_the_logged_summary(study):
    """The per-seed AUC (analysis.speed) averages to the runner's auc_reward_mean for undiverged points."""
    speed = trial_speed(study, n_boot=200).set_index("run_id")
    t = study.trials.set_index("run_id")
    fin = t.index[t["status"] == "finished"]
    np.testing.assert_allclose(speed.loc[fin, "auc_reward"], t.loc[fin, "auc_reward_mean"], rtol=1e-9)


# ----------------------------------------------------------------------------- planted answers


def test_cell_summary_finds_the_planted_learning_rate(study):
    cells = cell_summary(study, n_boot=500)
    assert len(cells) == len(RULES) * len(WIDTHS) * 2
    assert (cells["lr"] == BEST_LR).all()          # the planted optimum, by the spec's metric (episodes to threshold)
    assert cells["tuned_by"].str.contains("last_episodes_to_threshold_mean min").all()
    assert (cells["n_seeds"] == SEEDS).all()
    assert (cells["auc_reward_lo"] <= cells["auc_reward"]).all() and (cells["auc_reward"] <= cells["auc_reward_hi"]).all()
    assert cells[[f"var_l{l}" for l in (1, 2, 3)] + ["var_total", "seconds_per_episode"]].notna().all().all()
    # reinforce's variance grows ~ width: its cells are ordered that way
    r = cells[(cells["rule"] == "reinforce") & (cells["outgoing_norm"] == 1.0)].sort_values("width")
    assert r["var_total"].is_monotonic_increasing


def test_variance_versus_speed_recovers_the_planted_sign(study):
    table = variance_speed_table(study, n_boot=300)
    assert set(table["variance_source"]) == {"cross-rule probe, matched states"}
    assert set(table["layer"]) == {"1", "2", "3", "total"}
    corr = variance_speed_correlations(table, n_boot=1000)
    overall = corr[(corr["scope"] == "all rules") & (corr["layer"] == "total")].iloc[0]
    assert overall["n"] == 18
    assert overall["rho"] < -0.5 and overall["rho_hi"] < 0      # planted: higher variance, slower learning
    # with episodes to threshold (lower is faster) the same relation has the other sign
    ett = variance_speed_correlations(table, speed="episodes_to_threshold", n_boot=1000)
    o = ett[(ett["scope"] == "all rules") & (ett["layer"] == "total")].iloc[0]
    assert o["rho"] > 0.5 and o["rho_lo"] > 0


def test_scaling_recovers_planted_exponents(study):
    """15 planted exponents (compute ~ width², variance ~ width^a_r, speed ~ width^(a_r/2)).

    Each estimate must be close to its planted value (0.12: about 5 standard errors of these fits),
    and the 95 % intervals must contain it in at least 13 of 15 cases (if they are calibrated, all
    but 1 in expectation; 12 or fewer happens with probability 0.04)."""
    data = scaling_data(study)
    fits, objs = scaling_fits(data, n_boot=2000)
    f = fits.set_index(["quantity", "rule_variant", "context"])
    checks = []
    for rule in RULES:
        for ctx in ("outgoing_norm=1", "outgoing_norm=4"):
            checks.append((("seconds_per_episode", rule, ctx), 2.0))
            checks.append((("probe_variance", rule, ctx), RULE_MODEL[rule][1]))
            comp = f.loc[("seconds_per_episode", rule, ctx)]
            assert comp["method"] == "t"          # 2 timings per width: t-interval over the 3 widths
            assert "consistent with O(mn)" in comp["verdict"], comp["verdict"]
        checks.append((("episodes_to_threshold", rule, "outgoing_norm=1"), RULE_MODEL[rule][1] / 2))
    inside = 0
    for key, planted in checks:
        r = f.loc[key]
        assert abs(r["exponent"] - planted) < 0.12, (key, r["exponent"], planted)
        inside += r["exponent_lo"] <= planted <= r["exponent_hi"]
    assert inside >= 13, f"only {inside} of 15 intervals contain the planted exponent"
    comps = compare_exponents(objs)
    v = comps[(comps["quantity"] == "probe_variance") & (comps["context"] == "outgoing_norm=1")].set_index("rule_variant")
    assert (v["reference"] == "reinforce").all()
    assert v.loc["uwm", "differs"] and v.loc["uwm", "difference_hi"] < 0      # planted 0.3 - 1.0
    c = comps[comps["quantity"] == "seconds_per_episode"]
    assert not c["differs"].any()                                             # all planted at 2


def test_norm_stress_finds_the_pi_boundary_for_hwm_only(study):
    table = norm_stress_table(study, n_boot=500)
    assert len(table) == len(RULES) * len(WIDTHS) * 2
    assert (table["above_pi"] == (table["outgoing_norm"] > np.pi)).all()
    hwm_high = table[(table["rule_variant"] == "hwm") & (table["outgoing_norm"] == 4.0)]
    assert (hwm_high["diverged_rate"] >= 0.5).all() and (hwm_high["diverged_rate_lo"] > 0).all()
    calm = table[table["rule_variant"] != "hwm"]
    assert (calm["diverged_rate"] == 0).all() and (calm["diverged_rate_lo"] == 0).all()
    # hwm's variance jumps with the norm (planted (c/π)^4 above π): the intervals separate
    # and so does its bias against the exact gradient (planted (c/π)^6); uwm's stays put
    for _, g in table[table["rule_variant"] == "hwm"].groupby("context"):
        low, high = g.sort_values("outgoing_norm").iloc[0], g.sort_values("outgoing_norm").iloc[1]
        assert high["variance_lo"] > low["variance_hi"]
        assert high["bias_lo"] > low["bias_hi"]
    assert (table.loc[table["rule_variant"] == "uwm", "bias"] < 0.003).all()
    bd = breakdown_norms(table).set_index(["rule_variant", "context"])
    for (rule, _), row in bd.iterrows():
        if rule == "hwm":
            assert row["breakdown_norm"] == 4.0 and row["last_ok_norm"] == 1.0
            assert row["reading"] == "after training, worse between norms 1 and 4"
        else:   # every planted cell chose the top rate of its grid: the reward cannot say where the norm hurts
            assert np.isnan(row["breakdown_norm"]) and row["unreadable_norms"] == "1, 4"
            assert "a lower reward: not answerable" in row["reading"], row["reading"]
        assert "π" not in row["reading"]          # tuning and budget, never a verdict on the Taylor radius
    assert (table["lr_edge"] == "upper").all()
    assert np.allclose(table.loc[table["rule_variant"] != "hwm", "reached_rate"], 1.0)


def test_breakdown_reads_a_lower_reward_only_where_tuning_and_budget_allow():
    """A reward that falls with the norm is a breakdown only between cells whose learning rate was tuned inside
    its grid and whose seeds all reached the threshold; at an edge or short of the threshold it says where the
    search or the budget stopped (the old reading called both cases a breakdown)."""
    def cells(edge_at_4="", reached_at_4=1.0):
        return pd.DataFrame({"rule_variant": "wm", "context": "", "outgoing_norm": [1.0, 2.0, 4.0],
                             "diverged_rate": 0.0, "final_reward": [0.9, 0.88, 0.6],
                             "final_reward_lo": [0.85, 0.83, 0.5], "final_reward_hi": [0.95, 0.93, 0.7],
                             "lr_edge": ["", "", edge_at_4], "reached_rate": [1.0, 1.0, reached_at_4]})
    fine = breakdown_norms(cells()).iloc[0]
    assert fine["breakdown_norm"] == 4.0 and fine["last_ok_norm"] == 2.0 and fine["unreadable_norms"] == ""
    for edge, reached in (("upper", 1.0), ("lower", 1.0), ("", 0.75)):
        row = breakdown_norms(cells(edge, reached)).iloc[0]
        assert np.isnan(row["breakdown_norm"]) and row["unreadable_norms"] == "4", (edge, reached, row.to_dict())
        assert row["reading"].endswith("not shown")
    base_at_edge = cells().assign(lr_edge=["lower", "", ""])
    row = breakdown_norms(base_at_edge).iloc[0]
    assert np.isnan(row["breakdown_norm"]) and "a lower reward: not answerable" in row["reading"]


# ----------------------------------------------------------------------------- reports


def chromium_screenshot(html_path, png_path, height=9000):
    """Render a file in headless Chromium (Debian's package); the CI installs it, so it must be there."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is missing: apt-get install -y --no-install-recommends chromium")
    profile = png_path.parent / f"{png_path.stem}-profile"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--window-size=1200,{height}", f"--screenshot={png_path}",
           html_path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png_path.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    from PIL import Image

    return np.asarray(Image.open(png_path).convert("RGB")).astype(int)


def assert_shows_figures(pixels, min_colour_pixels=20_000):
    """A page with rendered figures: not blank, and many saturated (plot-coloured) pixels; text and
    tables alone are grey."""
    assert pixels.shape[1] == 1200 and pixels.shape[0] >= 900
    non_white = (pixels < 245).any(axis=2).mean()
    assert non_white > 0.02, f"page looks blank ({non_white:.3%} non-white pixels)"
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    coloured = int((saturation > 80).sum())
    assert coloured >= min_colour_pixels, f"only {coloured} coloured pixels: the figures did not render"


@pytest.fixture(scope="module")
def analysed(study):
    """The report's sections and tables, computed once for the tests of both formats."""
    return analyse(study, n_boot=300, progress=lambda _: None)


def _figures(sections):
    for s in sections:
        for stem, fig in s.figures:
            yield from ((f"{stem}[{i}]", f) for i, f in enumerate(fig if isinstance(fig, tuple) else (fig,)))


@pytest.mark.slow
def test_every_report_figure_is_legible_at_page_width(analysed):
    """Sized to the page (so the browser does not shrink it), no text on text, no legend over data, no
    bare legend entries: the checks the old figures failed (see test_report_layout.py)."""
    figures = dict(_figures(analysed[0]))
    assert {"learning_curves[0]", "variance_vs_speed[0]", "scaling[0]", "norm_stress[0]",
            "time_to_threshold[0]"} <= set(figures)
    assert sum(k.startswith("tuning_") for k in figures) == 8     # 4 cells: slice and history each
    for name, fig in figures.items():
        assert layout_problems(fig) == [], name
    curves = figures["learning_curves[0]"]
    assert any(ln.get_linestyle() == "--" and np.allclose(ln.get_ydata(), 0.9) for ax in curves.axes
               for ln in ax.get_lines())                           # the reward threshold
    vs = figures["variance_vs_speed[0]"]
    assert all(len(ax.containers) for ax in vs.axes)               # error bars on every panel's points


@pytest.mark.slow
def test_answers_at_a_glance_is_a_table_with_one_row_per_question_and_setting(analysed):
    sections = {s.key: s for s in analysed[0]}
    answers = sections["answers"]
    assert not answers.bullets and len(answers.tables) == 1
    table = answers.tables[0][1]
    assert list(table.columns) == ["question", "setting", "answer"]
    assert not table.duplicated(["question", "setting"]).any()
    assert (table["answer"].str.len() > 0).all()
    # 3 rules x 2 settings of exponents: one row per setting, not 45 exponents in a sentence
    exps = table[table["setting"].str.startswith("variance exponent")]
    assert len(exps) == 2 and exps["answer"].str.count(r"\[").eq(3).all()
    tuning = table[table["question"] == "Tuning"]
    assert tuning["answer"].iloc[0].startswith("18 of 18 cells")   # planted: the best lr is the largest tried
    rho = [t for c, t in sections["variance_speed"].tables if c.startswith("Spearman's ρ between")][0]
    assert (rho["n"] >= 3).all()                                     # no empty n = 1 rows


def chromium_layout(html_path, tmp_path):
    """Measure the page in headless Chromium: the body's content width, the document's scroll width and
    every image's rendered and natural width (a copy of the page with a measuring script)."""
    import html as html_lib
    import json
    import re

    probe = ("<script>window.addEventListener('load',()=>{document.body.setAttribute('data-layout',JSON.stringify("
             "{content:parseFloat(getComputedStyle(document.body).width),scroll:document.documentElement.scrollWidth,"
             "inner:window.innerWidth,imgs:[...document.images].map(i=>({alt:i.alt,w:i.getBoundingClientRect().width,"
             "natural:i.naturalWidth})),svgs:[...document.querySelectorAll('.svg-figure svg')].map(s=>s.getBoundingClientRect()"
             ".width),tables:[...document.querySelectorAll('table')].filter(t=>t.offsetParent!==null)"
             ".map(t=>t.getBoundingClientRect().width),firstRow:Object.fromEntries([...document.querySelectorAll("
             "'#answers tbody tr')].reverse().map(r=>[r.cells[0].textContent,r.getBoundingClientRect().top])),"
             "cells:[...document.querySelectorAll('#answers td')].map(c=>c.textContent)}));});"
             "</script></body>")
    page = tmp_path / "measure.html"
    page.write_text(html_path.read_text().replace("</body>", probe))
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'measure-profile'}",
           "--window-size=1200,900", "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'data-layout="([^"]*)"', proc.stdout)
    assert found, f"chromium did not measure the page (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html_lib.unescape(found.group(1)))


@pytest.mark.slow
def test_html_report_is_self_contained_attached_and_renders(study, store, analysed, tmp_path):
    uri, planted = store
    out = tmp_path / "report"
    path = write_report("planted", out, tracking_uri=uri, study=study, analysis=analysed)
    assert path == out / "report.html"
    text = path.read_text()
    # time to threshold, variance, scaling, π, 4 tuning pairs; the learning curves as SVG (a seed's line tells
    # its seed on hover and links its run)
    assert text.count("data:image/png;base64,") == 4 + 8 and text.count("<div class='svg-figure'") == 1
    # nothing is fetched: no script, and the only addresses are the SVG namespaces and links a click opens
    # (each seed's run in the study's MLflow UI)
    import re

    from uwm_model import layout

    assert "<script" not in text
    addresses = set(re.findall(r"https?://[^\s\"'<>)]*", text))
    runs = {a for a in addresses if a.startswith(layout.UI_LOCAL + "/#/experiments/")}
    namespaces = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert runs and addresses - runs <= namespaces, addresses - runs
    assert {re.search(r"/runs/([0-9a-f]+)", a).group(1) for a in runs} <= set(study.trials["run_id"])
    assert not re.search(r"""src=['"]https?:""", text)
    for title in ("Answers at a glance", "Summary per cell", "Variance versus speed", "Scaling with width",
                  "The π boundary"):
        assert title in text
    # every question but the learning-rate sensitivity (the planted study searches lr within cells: no grid),
    # replication (no published figure for its variants) and the dataset reference points: one line at the end
    closed = text[text.index("<section id='inapplicable'>"):text.index("<section id='methods'>")]
    assert "Learning-rate sensitivity: not answerable (it needs a learning-rate grid" in closed
    assert closed.count("not answerable (") == 4       # and the fan-out question (no masks in this study)
    assert "<section id='lr_sensitivity'>" not in text and "Not answerable" not in text
    assert text.index("<section id='answers'>") < text.index("<section id='overview'>")     # the answers lead
    for name in ("cells", "trials", "fastest", "variance_speed", "scaling_fits", "norm_stress_init_bias", "tuning"):
        assert f"<a href='{name}.csv'>{name}.csv</a>" in text, name                          # every CSV linked
    assert "consistent with O(mn)" in text and "relative bias above 10%: shown at norm 4" in text
    for name in ("trials", "cells", "seed_speed", "variance_speed", "variance_speed_correlations", "scaling_fits",
                 "scaling_comparisons", "norm_stress", "norm_stress_breakdown", "norm_stress_init_bias", "tuning"):
        assert len(pd.read_csv(out / f"{name}.csv")) > 0, name
    assert len(pd.read_csv(out / "cells.csv")) == 18
    # every number the glance quotes for the fastest rule is its CSV's, at three significant figures
    from analysis.questions._text import num

    glance = dict(analysed[0][0].tables[0][1].query("question == 'Which rule learns fastest'")[["setting", "answer"]]
                  .itertuples(index=False))
    fastest = pd.read_csv(out / "fastest.csv")
    for _, r in fastest[fastest["rank"].notna()].iterrows():
        assert f"{int(r['rank'])}. {r['rule_variant']} {num(float(r['rmst']))}" in glance[r["setting"]], r
        if np.isfinite(r["difference"]):
            assert f"Δ {num(float(r['difference']))} [{num(float(r['difference_lo']))}, " in glance[r["setting"]]
    from mlflow.tracking import MlflowClient

    attached = {a.path for a in MlflowClient(uri).list_artifacts(planted.parent_run_id, "report")}
    assert {"report/report.html", "report/cells.csv"} <= attached
    # the parent run carries the answers at a glance, one tag per question, word for word
    tags = MlflowClient(uri).get_run(planted.parent_run_id).data.tags
    glance = analysed[0][0].summary
    assert len(glance) >= 4 and sum(k.startswith(layout.ANSWER_PREFIX) for k in tags) == len(glance)
    for question, answer in zip(glance["question"], glance["answer"]):
        assert tags[layout.answer_tag(question)] == answer, question
    assert layout.answer_tag("Which rule learns fastest") == "uwm.answer.which_rule_learns_fastest"
    assert_shows_figures(chromium_screenshot(path, tmp_path / "report.png"))
    page = chromium_layout(path, tmp_path)
    assert page["scroll"] <= page["inner"], "the page scrolls sideways"
    assert len(page["imgs"]) == 12 and len(page["svgs"]) == 1
    assert all(0.4 * page["content"] <= w <= page["content"] + 1 for w in page["svgs"]), page["svgs"]
    assert max(page["tables"]) <= page["content"] + 1, "a table is wider than the text column"
    # each question's first glance row (its verdict) is on the first screen (1200 × 900)
    assert page["firstRow"] and max(page["firstRow"].values()) < 900, page["firstRow"]
    # the page shows the glance rows as the answers hold them (whose numbers test_every_number_in_the_glance_...
    # reads back from the CSVs): every answer text is a cell of the rendered glance, word for word
    rendered = set(page["cells"])
    glance_rows = analysed[0][0].tables[0][1]
    assert set(glance_rows["answer"]) <= rendered and set(analysed[0][0].summary["answer"]) <= rendered
    for img in page["imgs"]:
        # shown at 100 % (not shrunk to fit), within the text column, and not a thumbnail
        assert img["w"] == img["natural"] <= page["content"], img
        assert img["w"] >= 0.4 * page["content"], img


@pytest.mark.slow
def test_markdown_report_has_png_files_beside_it(study, analysed, tmp_path):
    out = tmp_path / "md"
    path = write_report("planted", out, fmt="md", study=study, attach=False, analysis=analysed)
    text = path.read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["learning_curves.png", "norm_stress.png", "scaling.png", "time_to_threshold.png"] + [
        f"tuning_{i}_{ab}.png" for i in range(1, 5) for ab in "ab"] + ["variance_vs_speed.png"]
    for name in pngs:
        assert f"]({name})" in text
        assert (out / name).stat().st_size > 10_000
    assert "| rule | width | norm |" in text
    # the planted study tunes every cell to one learning rate: that column reads once, in the caption
    assert "per cell at its tuned learning rate (intervals: 95%); same in every row: tuned lr" in text
    with pytest.raises(ValueError, match="unknown report format"):
        write_report("planted", out, fmt="pdf", study=study, attach=False)


def test_report_says_which_questions_a_study_cannot_answer(store, tmp_path):
    uri, _ = store
    path = write_report("narrow", tmp_path / "narrow", tracking_uri=uri, n_boot=200, attach=False)
    text = path.read_text()
    closed = text[text.index("<section id='inapplicable'>"):text.index("<section id='methods'>")]
    # replication, lr sensitivity, variance versus speed, scaling, π, reference points, fan-out: one line each
    assert "Not answerable" not in text and closed.count("not answerable (") == 7
    assert "Uneven fan-out" in closed or "fan-out" in closed
    assert "it needs a learning-rate grid" in closed and "at most 1 per rule and setting" in closed
    assert "Variance versus speed: not answerable (too few cells (" in closed
    # the narrow study has one width and sets no outgoing norm (so 0 distinct values)
    assert "1 hidden width" in text
    assert "0 distinct initial outgoing norm" in text
    # time to threshold as a PNG, the learning curves as SVG (hover texts and run links)
    assert text.count("data:image/png;base64,") == 1 and text.count("<div class='svg-figure'") == 1


def test_timing_command_attaches_a_dedicated_timing_run_the_analysis_reads(store, capsys):
    """`uwm-study timing` times every rule variant and width of a study alone and attaches the windows to
    its parent run; load_study reads them (study.timing). An unknown study is one line, exit 2."""
    from study.cli import main

    uri, _ = store
    assert main(["timing", "narrow", "--tracking-uri", uri, "--repeats", "2", "--seconds", "0.01"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timing = load_study("narrow", uri).timing
    assert len(timing) == 2 and set(timing["rule_variant"]) == {"uwm"} and (timing["width"] == 16).all()
    assert (timing["seconds_per_episode"] > 0).all() and (timing["steps"] >= 8).all()
    capsys.readouterr()
    assert main(["timing", "no-such-study", "--tracking-uri", uri]) == 2
    assert "no study named 'no-such-study'" in capsys.readouterr().err


_NUMBER = re.compile(r"(?<![\w.=])-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?(?![\w])")


def _shown_as(token: str, values: np.ndarray) -> bool:
    """Whether some CSV value reads as ``token`` at the precision the token shows (3 significant figures,
    thousands separated, or a percentage)."""
    text = token.rstrip("%").replace(",", "")
    mantissa, _, exp = text.partition("e")
    shown = float(text)
    if "." in mantissa:
        half = 0.5 * 10.0 ** (-len(mantissa.split(".")[1]) + (int(exp) if exp else 0))
    else:
        digits = len(mantissa.lstrip("-"))
        half = 0.5 * 10.0 ** max(0, digits - 3) if not exp else 0.5 * 10.0 ** int(exp)
    scale = 100.0 if token.endswith("%") else 1.0
    return bool(np.any(np.abs(values * scale - shown) <= half * (1 + 1e-9)))


def test_every_number_in_the_glance_is_its_questions_csv(analysed):
    """Each number a glance row quotes (its verdict's estimate, interval, difference) reads as a value of the CSV
    files its question writes: the page says what the tables hold, nothing computed on the side. Counts below 100
    (settings, cells, ranks, widths) and the questions' own thresholds ("above 10%") are not looked up."""
    sections, _ = analysed
    by_title = {s.title: s for s in sections}
    from analysis.report import _short

    table = sections[0].tables[0][1]
    checked = 0
    for _, row in table.iterrows():
        sec = next(s for t, s in by_title.items() if _short(t) == row["question"])
        values = np.concatenate([pd.to_numeric(df[c], errors="coerce").to_numpy(float)
                                 for df in sec.csv.values() for c in df.columns] or [np.array([])])
        values = values[np.isfinite(values)]
        criteria = re.sub(r"(above|against an?) \d+%", "", row["answer"])   # the question's thresholds, not data
        for token in _NUMBER.findall(criteria):
            plain = token.rstrip("%").replace(",", "")
            if "." not in plain and "e" not in plain and not token.endswith("%") and abs(float(plain)) < 100:
                continue
            assert _shown_as(token, values), (row["question"], row.get("setting"), token, row["answer"])
            checked += 1
    assert checked >= 20, checked
