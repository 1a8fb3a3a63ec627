"""Seaborn figures for the analyses. Every function returns a matplotlib Figure with labelled axes
and units; one colour per rule variant, the same in every figure and report (:mod:`analysis.palette`)."""

from __future__ import annotations

import base64
import io
import math

import sys

import matplotlib

if "ipykernel" not in sys.modules:  # headless outside notebooks: figures go to files and reports
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .interactive import tip  # noqa: E402
from .palette import rule_palette  # noqa: E402,F401  (re-exported: one palette for every figure)
from .scaling import QUANTITIES  # noqa: E402
from .stats import bootstrap_ci  # noqa: E402

SPEED_LABELS = {
    "auc_reward": "area under eval-reward curve / episodes (reward)",
    "episodes_to_threshold": "episodes to threshold (episodes)",
    "final_reward": "final eval reward (reward)",
}
MAX_PANELS = 12
MAX_SEED_LINES = 40      # per rule and panel: more thin lines are a grey smear
DPI = 110
PAGE_WIDTH_IN = 10.0     # the report's text column (1118 px) at DPI: a figure this wide shows at 100 %
PANEL_HEIGHT_IN = 2.5


def to_png_bytes(fig, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes. A constrained layout already keeps every label inside the figure: saved as
    it is (exactly its size, one draw); other figures are cropped to what they draw."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    buf = io.BytesIO()
    if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        fig.savefig(buf, format="png", dpi=dpi)
    else:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return buf.getvalue()


def to_base64(fig, dpi: int = DPI) -> str:
    """The figure as a base64 PNG string (for ``<img src="data:image/png;base64,...">``)."""
    return base64.b64encode(to_png_bytes(fig, dpi)).decode("ascii")


# ----------------------------------------------------------------------------- layout conventions


def _page_grid(nrows: int, ncols: int, height: float = PANEL_HEIGHT_IN, **kw):
    """Panels filling the report's width (constrained layout keeps labels and outside legends in the figure)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH_IN, height * nrows + 0.9), squeeze=False,
                             layout="constrained", **kw)
    return fig, axes


def _tick_text(v: float, _pos=None, plain: bool = True) -> str:
    if v == 0:
        return "0"
    if plain:
        return f"{v:g}"
    exp = int(math.floor(math.log10(abs(v)) + 1e-9))
    mant = v / 10 ** exp
    return f"$10^{{{exp}}}$" if abs(mant - 1) < 1e-6 else f"${mant:g}{{\\times}}10^{{{exp}}}$"


def label_log_axis(axis, max_labels: int = 6) -> None:
    """Readable labels on a log axis: 1-2-3-5 ticks on about a decade, 1-3 ticks on up to 2.5 decades, decades
    beyond (at most ``max_labels``); never labels on minor ticks (they overlap on short spans)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = axis.axes.get_xlim() if axis.axis_name == "x" else axis.axes.get_ylim()
    lo, hi = min(lo, hi), max(lo, hi)
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 3.0
    subs = (1.0, 2.0, 3.0, 5.0) if decades < 1.2 else (1.0, 3.0) if decades < 2.6 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=max_labels + 1))
    plain = lo >= 1e-3 and hi < 1e4          # one style per axis: 0.001 … 1000 as numbers, else powers of ten
    axis.set_major_formatter(FuncFormatter(lambda v, pos: _tick_text(v, pos, plain)))
    axis.set_minor_formatter(NullFormatter())


def _hide_unused(axes, n_used: int) -> None:
    """Hide the panels after the first ``n_used``; the panel above a hidden one shows its x tick labels
    (with shared x axes only the bottom row has them)."""
    nrow, ncol = axes.shape
    for k in range(n_used, nrow * ncol):
        i, j = divmod(k, ncol)
        axes[i, j].set_visible(False)
        if i > 0:
            axes[i - 1, j].xaxis.set_tick_params(labelbottom=True)


def _legend_below(fig, handles, labels, ncol: int | None = None, **kw):
    """One legend for the whole figure, above the panels (it never covers data)."""
    if not handles:
        return None
    ncol = ncol or min(len(handles), 6)
    return fig.legend(handles, labels, loc="outside upper center", ncol=ncol, fontsize=8, frameon=False, **kw)


def _text_boxes(fig) -> list[tuple[str, object]]:
    """(description, window extent) of every visible piece of text outside legends, and of each legend."""
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    boxes = []
    legends = [a for a in fig.findobj(Legend) if a.get_visible()]
    in_legend = {id(t) for leg in legends for t in leg.findobj(Text)}
    ticklabels = set()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lo, hi), max(lo, hi)
            for tick in list(axis.majorTicks) + list(axis.minorTicks):
                ticklabels.update((id(tick.label1), id(tick.label2)))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for lab in (tick.label1, tick.label2):
                    loc = tick.get_loc()
                    span = (hi - lo) * 1e-6
                    if lab.get_visible() and lab.get_text() and loc is not None and lo - span <= loc <= hi + span:
                        boxes.append((f"tick label '{lab.get_text()}' ({axis.axis_name} of '{ax.get_title()}')",
                                      lab.get_window_extent(renderer)))
    for t in fig.findobj(Text):
        if id(t) in in_legend or id(t) in ticklabels or not t.get_visible() or not t.get_text().strip():
            continue
        boxes.append((f"text '{t.get_text()[:40]}'", t.get_window_extent(renderer)))
    for leg in legends:
        boxes.append(("legend", leg.get_window_extent(renderer)))
    return boxes


def layout_problems(fig, page_px: float = PAGE_WIDTH_IN * DPI + 20, dpi: int = DPI) -> list[str]:
    """What makes a figure hard to read at 100 % zoom, as sentences (empty when none): wider than the page,
    text that overlaps other text (tick labels, titles, axis labels, legends), legends over an axes'
    data region, bare legend entries (a value without a name, such as '16')."""
    problems = []
    fig.canvas.draw()
    width = fig.get_size_inches()[0] * dpi
    if width > page_px:
        problems.append(f"{width:.0f} px wide: wider than the page ({page_px:.0f} px)")
    boxes = _text_boxes(fig)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            (a, ba), (b, bb) = boxes[i], boxes[j]
            if _overlap(ba, bb) > 1.0:
                problems.append(f"{a} overlaps {b}")
    from matplotlib.legend import Legend

    renderer = fig.canvas.get_renderer()
    data_axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    for leg in fig.findobj(Legend):
        if not leg.get_visible():
            continue
        lb = leg.get_window_extent(renderer)
        for ax in data_axes:
            if _overlap(lb, ax.get_window_extent(renderer)) > 1.0:
                problems.append(f"a legend covers the data region of '{ax.get_title() or ax.get_ylabel()}'")
        for t in leg.get_texts():
            if _bare_value(t.get_text()):
                problems.append(f"legend entry '{t.get_text()}' is a bare value (name what it is)")
    return problems


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _bare_value(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _facets(df: pd.DataFrame, candidates) -> tuple[str | None, str | None]:
    varying = [c for c in candidates if c in df and df[c].nunique(dropna=False) > 1]
    col = varying[0] if varying else None
    row = varying[1] if len(varying) > 1 else None
    return col, row


def learning_curves(study, run_ids=None, metric: str = "eval_reward", n_boot: int = 1000):
    """Reward against episodes, one line per rule variant (mean over seeds with a 95 % bootstrap band, every
    seed a thin line behind it),
    one panel per width and outgoing norm when they vary, the reward threshold dashed. ``run_ids``: which
    trials (default: all finished); use the tuned trials for a per-cell view."""
    from matplotlib.lines import Line2D

    sc = study.seed_curve(metric) if len(study.seed_curves) else None
    per_seed = sc is not None and len(sc)
    df = sc if per_seed else study.curve(f"{metric}_mean")
    if run_ids is not None:
        df = df[df["run_id"].isin(list(run_ids))]
    df = df.dropna(subset=["value"])[["run_id", *(["seed"] if per_seed else []), "episode", "value", "rule_variant",
                                      "width", "outgoing_norm"]]
    if not len(df):
        raise ValueError(f"no values of {metric} to plot")
    df = df.assign(width=df["width"].map(lambda w: f"{int(w)}" if pd.notna(w) else "?"))
    df["outgoing_norm"] = df["outgoing_norm"].map(lambda c: f"{c:g}" if pd.notna(c) else "default")
    col, row = _facets(df, ["width", "outgoing_norm"])
    if col and row and df[col].nunique() * df[row].nunique() > MAX_PANELS:
        row = None
    if col and df[col].nunique() > MAX_PANELS:
        keep = sorted(df[col].unique(), key=_natural)[:MAX_PANELS]
        df = df[df[col].isin(keep)]
    pal = rule_palette(df["rule_variant"])
    lrs = dict(zip(study.trials["run_id"], study.trials["lr"])) if "lr" in study.trials else {}
    keys = [c for c in (col, row) if c] + ["rule_variant", "episode"]
    stats = []
    for key, g in df.groupby(keys, sort=False):
        iv = bootstrap_ci(g["value"].to_numpy(float), n_boot=n_boot, seed=0) if per_seed else None
        stats.append((*key, g["value"].mean(), iv.lo if iv else np.nan, iv.hi if iv else np.nan))
    stats = pd.DataFrame(stats, columns=keys + ["mean", "lo", "hi"]).sort_values("episode")
    order = lambda c: sorted(stats[c].unique(), key=_natural) if c else [None]  # noqa: E731
    panels = [(r, c) for r in order(row) for c in order(col)]
    ncol = len(order(col)) if row else min(4, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = _page_grid(nrow, ncol, height=min(PANEL_HEIGHT_IN, 0.75 * PAGE_WIDTH_IN / ncol + 0.4),
                           sharex=True, sharey=True)
    names = {"width": "width {}", "outgoing_norm": "norm {}"}
    threshold = threshold_of(study, df["run_id"].unique()) if metric in ("eval_reward", "train_reward") else None
    for ax, (r, c) in zip(axes.ravel(), panels):
        d = stats
        if col:
            d = d[d[col] == c]
        if row:
            d = d[d[row] == r]
        raw = df
        if col:
            raw = raw[raw[col] == c]
        if row:
            raw = raw[raw[row] == r]
        for rule, h in d.groupby("rule_variant"):
            if per_seed:   # every seed thin behind its mean: the spread and any seed that breaks away
                seeds = raw[raw["rule_variant"] == rule].groupby(["run_id", "seed"], sort=True)
                for (run_id, seed), one in list(seeds)[:MAX_SEED_LINES]:
                    one = one.sort_values("episode")
                    [line] = ax.plot(one["episode"], one["value"], color=pal[rule], lw=0.5, alpha=0.3, zorder=1)
                    # hover: which seed of which point; a click opens its run (analysis.interactive)
                    tip(line, f"{rule}, lr {_lr_text(lrs.get(run_id))}, seed {int(seed)}: {label_of(metric)} "
                              f"{one['value'].iloc[-1]:.3g} at episode {int(one['episode'].iloc[-1])}", run_id)
            ax.plot(h["episode"], h["mean"], color=pal[rule], lw=1.8, zorder=3)
            if h["lo"].notna().any():
                ax.fill_between(h["episode"], h["lo"], h["hi"], color=pal[rule], alpha=0.2, lw=0)
        if threshold is not None:
            ax.axhline(threshold, color="0.3", ls="--", lw=1)
        ax.set_title(", ".join(names[k].format(v) for k, v in ((col, c), (row, r)) if k), fontsize=9)
        ax.tick_params(labelsize=8)
    _hide_unused(axes, len(panels))
    label = label_of(metric)
    fig.supxlabel("episodes", fontsize=9)
    fig.supylabel(f"{label} (reward)", fontsize=9)
    handles = [Line2D([], [], color=pal[r], lw=2) for r in sorted(pal)]
    labels = list(sorted(pal))
    if threshold is not None:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1))
        labels.append(f"threshold {threshold:g}")
    _legend_below(fig, handles, labels)
    how = (f"mean over seeds with a 95% bootstrap band, each seed a thin line (at most {MAX_SEED_LINES} per rule and "
           "panel)" if per_seed else "mean over seeds")
    fig.set_label(f"Learning curves: {label} against episodes ({how})")  # the caption, printed under the figure
    return fig


def label_of(metric: str) -> str:
    return {"eval_reward": "eval reward", "train_reward": "training reward"}.get(metric, metric)


def _lr_text(lr) -> str:
    return f"{float(lr):.3g}" if lr is not None and pd.notna(lr) and not isinstance(lr, (list, str)) else str(lr)


def threshold_of(study, run_ids) -> float | None:
    """The reward threshold of these trials when they share one (``threshold`` of their configs)."""
    t = study.trials
    if "threshold" not in t:
        return None
    vals = pd.to_numeric(t.loc[t["run_id"].isin(list(run_ids)), "threshold"], errors="coerce").dropna().unique()
    return float(vals[0]) if len(vals) == 1 else None


def _natural(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def variance_speed_figure(table: pd.DataFrame, correlations: pd.DataFrame | None = None,
                          speed: str = "auc_reward", cells: pd.DataFrame | None = None):
    """Learning speed against probe variance (log scale), one panel per layer, one colour per rule variant
    (one marker per width when several); panel titles give Spearman's rho over all rules with its interval.
    Vertical bars: the speed's interval per cell from ``cells`` (:func:`analysis.speed.cell_summary`,
    columns ``<speed>_lo`` / ``<speed>_hi``) when given."""
    from matplotlib.lines import Line2D

    x_label = ("noise-to-signal ratio V / (B·‖∇J‖²) (dimensionless, log scale)" if str(table.attrs.get("kind")).startswith("nsr")
               else "probe variance summed over weights (grad² units, log scale)")   # the quantity in 'variance'
    df = table.dropna(subset=["variance", speed])
    df = df[df["variance"] > 0]
    if not len(df):
        raise ValueError("no (variance, speed) pairs to plot")
    if cells is not None and f"{speed}_lo" in cells:
        iv = cells[["cell", f"{speed}_lo", f"{speed}_hi"]].drop_duplicates("cell")
        df = df.merge(iv.rename(columns={f"{speed}_lo": "_lo", f"{speed}_hi": "_hi"}), on="cell", how="left")
    else:
        df = df.assign(_lo=np.nan, _hi=np.nan)
    layers = sorted(df["layer"].unique(), key=lambda s: (s != "total", _natural(s)))
    pal = rule_palette(df["rule_variant"])
    widths = sorted(df["width"].dropna().unique())
    markers = dict(zip(widths, "osD^vP*X")) if len(widths) > 1 else {w: "o" for w in widths}
    n = len(layers)
    ncol = min(2, n)
    nrow = math.ceil(n / ncol)
    fig, axes = _page_grid(nrow, ncol, height=2.6, sharey=True)
    for ax, layer in zip(axes.ravel(), layers):
        d = df[df["layer"] == layer]
        for (rule, w), h in d.groupby(["rule_variant", "width"], dropna=False):
            y = h[speed].to_numpy(float)
            yerr = np.vstack([np.clip(y - h["_lo"].to_numpy(float), 0, None),
                              np.clip(h["_hi"].to_numpy(float) - y, 0, None)])
            ax.errorbar(h["variance"], y, yerr=None if np.isnan(yerr).all() else np.nan_to_num(yerr),
                        fmt=markers.get(w, "o"), color=pal[rule], ms=5, capsize=2, lw=1, alpha=0.9)
        ax.set_xscale("log")
        label_log_axis(ax.xaxis)
        if speed == "episodes_to_threshold":
            ax.set_yscale("log")
            label_log_axis(ax.yaxis)
        title = f"layer {layer}" if layer != "total" else "all layers (sum)"
        if correlations is not None and len(correlations):
            c = correlations[(correlations["layer"] == layer) & (correlations["scope"] == "all rules")]
            if len(c) and np.isfinite(c["rho"].iloc[0]):
                r = c.iloc[0]
                title += f": ρ = {r['rho']:.2f} [{r['rho_lo']:.2f}, {r['rho_hi']:.2f}], n = {int(r['n'])}"
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    _hide_unused(axes, n)
    fig.supxlabel(x_label, fontsize=9)
    fig.supylabel(SPEED_LABELS.get(speed, speed), fontsize=9)
    handles = [Line2D([], [], ls="", marker="o", color=pal[r]) for r in sorted(pal)]
    labels = list(sorted(pal))
    if len(widths) > 1:
        handles += [Line2D([], [], ls="", marker=markers[w], color="0.4") for w in widths]
        labels += [f"width {int(w)}" for w in widths]
    _legend_below(fig, handles, labels, ncol=min(len(handles), 8))
    bars = ", bars: 95% interval over seeds" if df["_lo"].notna().any() else ""
    fig.set_label(f"Variance versus speed (one point per cell{bars})")  # the caption, printed under the figure
    return fig


def scaling_figure(data: pd.DataFrame, fits_table: pd.DataFrame, compute: pd.DataFrame | None = None):
    """Log-log panels of each quantity against width (points: mean at a width, bars: min to max over
    seeds or trials), with the fits the answers read: power laws, and for compute the t = a + b·width^k
    fit of ``compute`` (:func:`analysis.scaling.compute_fits`) where it exists. One row per setting
    (context) when several, at most 4."""
    from matplotlib.lines import Line2D

    quantities = [q for q in QUANTITIES if q in set(data["quantity"])]
    contexts = sorted(data["context"].unique(), key=str)[:4]
    if not quantities:
        raise ValueError("no scaling data to plot")
    pal = rule_palette(data["rule_variant"])
    fig, axes = _page_grid(len(contexts), len(quantities), height=2.4, sharex=True)
    for i, ctx in enumerate(contexts):
        for j, q in enumerate(quantities):
            ax = axes[i, j]
            d = data[(data["quantity"] == q) & (data["context"] == ctx) & (data["value"] > 0)]
            for rule, h in d.groupby("rule_variant"):
                stats = h.groupby("width")["value"].agg(["mean", "min", "max"]).reset_index()
                colour = pal[rule]
                ax.errorbar(stats["width"], stats["mean"], yerr=[stats["mean"] - stats["min"],
                                                                 stats["max"] - stats["mean"]],
                            fmt="o", color=colour, ms=4, capsize=2, lw=1)
                xs = np.geomspace(stats["width"].min(), stats["width"].max(), 50)
                c = (compute[(compute["rule_variant"] == rule) & (compute["context"] == ctx)]
                     if compute is not None and len(compute) and q == "seconds_per_episode" else ())
                f = fits_table[(fits_table["quantity"] == q) & (fits_table["rule_variant"] == rule)
                               & (fits_table["context"] == ctx)]
                if len(c):     # the fit behind the compute answer, not a bare power law
                    r = c.iloc[0]
                    ax.plot(xs, r["a"] + r["b"] * xs ** r["k"], color=colour, lw=1.3, ls="-.")
                elif len(f):
                    r = f.iloc[0]
                    ax.plot(xs, r["prefactor"] * xs ** r["exponent"], color=colour, lw=1.3)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            label_log_axis(ax.yaxis)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            title = QUANTITIES[q] if i == 0 else ""
            ax.set_title(title + (f"\n{ctx}" if ctx and len(contexts) > 1 else ""), fontsize=8)
            ax.tick_params(labelsize=8)
    fig.supxlabel("width (units per hidden layer, log scale)", fontsize=9)
    handles = [Line2D([], [], color=pal[r], marker="o", ms=4) for r in sorted(pal)]
    fit_handles, fit_names = [Line2D([], [], color="0.3", lw=1.3)], ["fitted power law A·width^b"]
    if compute is not None and len(compute) and "seconds_per_episode" in quantities:
        fit_handles.append(Line2D([], [], color="0.3", lw=1.3, ls="-."))
        fit_names.append("compute fit a + b·width^k")
    _legend_below(fig, handles + fit_handles, list(sorted(pal)) + fit_names)
    only = f" ({contexts[0]})" if len(contexts) == 1 and contexts[0] else ""
    fig.set_label(f"Scaling with width{only}: y = A·width^b on log-log axes, bars min to max over seeds")
    return fig


def norm_stress_figure(table: pd.DataFrame, init: pd.DataFrame | None = None):
    """Divergence rate (left out when no seed diverged), probe variance, the bias at initialisation and final
    reward against the initial outgoing norm, one line per rule variant, π dashed; bars: the intervals of
    the table. The bias is the quantity the π verdict reads: the relative bias at initialisation
    (``init``, :func:`analysis.norm_stress.init_bias_table`; largest over layers) with the 10% line; the
    absolute probe bias only when there is no ``init``. One row per setting (context), at most 4."""
    from matplotlib.lines import Line2D

    from .norm_stress import BREAKDOWN_RELATIVE_BIAS

    if not len(table):
        raise ValueError("no norm-stress data to plot")
    contexts = list(dict.fromkeys(table["context"]))[:4]
    relative = init is not None and len(init) and np.isfinite(init["relative_bias"].to_numpy(float)).any()
    pal = rule_palette(list(table["rule_variant"]) + (list(init["label"]) if relative else []))
    panels = [("variance", "probe variance, all layers (grad²)", True),
              ("final_reward", "final eval reward (reward)", False)]
    if np.nan_to_num(table["diverged_rate"].to_numpy(float)).any():
        panels.insert(0, ("diverged_rate", "diverged seeds (fraction)", False))
    if relative:
        panels.insert(-1, ("relative_bias", "relative bias at initialisation, largest layer (|bias| / |∇J|)", False))
    elif "bias" in table and np.isfinite(table["bias"].to_numpy(float)).any():
        panels.insert(-1, ("bias", "probe bias vs exact gradient (grad)", True))
    fig, axes = _page_grid(len(contexts), len(panels), height=2.2, sharex=True)
    for i, ctx in enumerate(contexts):
        d = table[table["context"] == ctx]
        for j, (col, name, logy) in enumerate(panels):
            ax = axes[i, j]
            if col == "relative_bias":
                own = init[init["context"] == ctx] if (init["context"] == ctx).any() else init
                worst = own.groupby(["label", "outgoing_norm"])["relative_bias"].max().reset_index()
                for rule, h in worst.groupby("label"):
                    ax.plot(h["outgoing_norm"], h["relative_bias"], marker="o", ms=4, lw=1.2, color=pal[rule])
                ax.axhline(BREAKDOWN_RELATIVE_BIAS, color="0.5", ls=":", lw=1)
                ax.axvline(math.pi, color="0.3", ls="--", lw=1)
                ax.set_title((name if i == 0 else "") + (f"\n{ctx}" if ctx and len(contexts) > 1 else ""), fontsize=8)
                ax.tick_params(labelsize=8)
                continue
            for rule, h in d.groupby("rule_variant"):
                h = h.sort_values("outgoing_norm")
                y = h[col].to_numpy(float)
                lo = np.clip(y - h[f"{col}_lo"].to_numpy(float), 0, None)
                hi = np.clip(h[f"{col}_hi"].to_numpy(float) - y, 0, None)
                yerr = None if np.all(np.isnan(lo)) else [np.nan_to_num(lo), np.nan_to_num(hi)]
                ax.errorbar(h["outgoing_norm"], y, yerr=yerr, marker="o", ms=4, capsize=2, lw=1.2,
                            color=pal[rule])
            ax.axvline(math.pi, color="0.3", ls="--", lw=1)
            if logy:
                ax.set_yscale("log")
                label_log_axis(ax.yaxis)
            title = name if i == 0 else ""
            ax.set_title(title + (f"\n{ctx}" if ctx and len(contexts) > 1 else ""), fontsize=8)
            ax.tick_params(labelsize=8)
    fig.supxlabel("initial outgoing norm c (weight units)", fontsize=9)
    handles = [Line2D([], [], color=pal[r], marker="o", ms=4) for r in sorted(pal)]
    extra, names = [Line2D([], [], color="0.3", ls="--", lw=1)], ["column norm c = π (the Taylor radius is per weight)"]
    if relative:
        extra.append(Line2D([], [], color="0.5", ls=":", lw=1))
        names.append(f"relative bias {BREAKDOWN_RELATIVE_BIAS:.0%}")
    _legend_below(fig, handles + extra, list(sorted(pal)) + names)
    only = f" ({contexts[0]})" if len(contexts) == 1 and contexts[0] else ""
    fig.set_label(f"Outgoing-norm stress{only}: where do the rules break down?")  # the caption, printed under the figure
    return fig


def pi_boundary_figure(init: pd.DataFrame):
    """The π boundary on its own axis, per weight: the relative bias at initialisation (|bias| / |∇J|, with
    the interval from the bias's random-effects interval) of every rule variant, norm and hidden layer against
    that layer's largest |W_ji| / sqrt(z'_j² + π²) (``radius_ratio``, mean over the probe's episodes), with
    the 10% breakdown line and the radius (ratio 1) dashed; lines join a variant's norms within a layer.
    One panel per setting, at most 4. Raises ValueError without the per-weight metric (studies run before
    ``init_radius_ratio`` existed: their figure is the column-norm one)."""
    from matplotlib.lines import Line2D

    from .norm_stress import BREAKDOWN_RELATIVE_BIAS

    d = init[np.isfinite(init["radius_ratio"].to_numpy(float)) & np.isfinite(init["relative_bias"].to_numpy(float))] \
        if len(init) and "radius_ratio" in init else init.iloc[:0]
    if not len(d):
        raise ValueError("no relative bias against the per-weight radius (init_radius_ratio was not logged)")
    contexts = list(dict.fromkeys(d["context"]))[:4]
    pal = rule_palette(list(d["label"]))
    markers = dict(zip(sorted(d["layer"].unique()), "osD^v<>p"))
    fig, axes = _page_grid(1, len(contexts), height=3.0, sharey=True)
    for ax, ctx in zip(axes[0], contexts):
        for (label, layer), h in d[d["context"] == ctx].groupby(["label", "layer"]):
            h = h.sort_values("radius_ratio")
            y = h["relative_bias"].to_numpy(float)
            exact = h["exact_sq"].to_numpy(float)
            lo = np.sqrt(np.clip(h["bias_sq_lo"].to_numpy(float), 0, None) / exact)
            hi = np.sqrt(np.clip(h["bias_sq_hi"].to_numpy(float), 0, None) / exact)
            yerr = [np.nan_to_num(np.clip(y - lo, 0, None)), np.nan_to_num(np.clip(hi - y, 0, None))]
            ax.errorbar(h["radius_ratio"], y, yerr=yerr, marker=markers[layer], ms=4, capsize=2, lw=1.0,
                        color=pal[label])
        ax.axhline(BREAKDOWN_RELATIVE_BIAS, color="0.5", ls=":", lw=1)
        ax.axvline(1.0, color="0.3", ls="--", lw=1)
        ax.set_xscale("log")
        label_log_axis(ax.xaxis)
        ax.set_title(ctx if ctx and len(contexts) > 1 else "", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel("relative bias at initialisation (|bias| / |∇J|)", fontsize=8)
    fig.supxlabel("largest |W_ji| / sqrt(z'_j² + π²) of the layer's outgoing weights (mean over episodes)", fontsize=9)
    handles = [Line2D([], [], color=pal[r], marker="o", ms=4) for r in sorted(pal)]
    handles += [Line2D([], [], color="0.3", marker=m, ls="", ms=4) for m in markers.values()]
    names = list(sorted(pal)) + [f"hidden layer {layer}" for layer in markers]
    handles += [Line2D([], [], color="0.3", ls="--", lw=1), Line2D([], [], color="0.5", ls=":", lw=1)]
    names += ["a weight at its Taylor radius (ratio 1)", f"relative bias {BREAKDOWN_RELATIVE_BIAS:.0%}"]
    _legend_below(fig, handles, names)
    only = f" ({contexts[0]})" if len(contexts) == 1 and contexts[0] else ""
    fig.set_label(f"The π boundary per weight{only}: relative bias at initialisation against the largest weight "
                  "over its Taylor radius")
    return fig


def lr_sensitivity_figure(table: pd.DataFrame, cells: pd.DataFrame, measure: str = "auc_reward",
                          level: float = 0.95):
    """The measure against the learning rate (log axis), one line per rule variant with its interval band
    (filled markers: the usable range, open: resolved worse than the rule's best), and below it one bar per
    rule: the usable range (thick) and the FWHM (thin; an arrow where it runs past the grid). ``table``:
    :func:`analysis.lr_sensitivity.lr_sensitivity`; ``cells``: the cells it was read from. One column per
    setting, at most 4."""
    from matplotlib.lines import Line2D

    from .lr_sensitivity import setting_labels

    if not len(table):
        raise ValueError("no learning-rate grid to plot")
    settings = list(dict.fromkeys(table["setting"]))[:4]
    scalar = ~cells["lr_per_layer"].fillna(False).astype(bool) if "lr_per_layer" in cells else True
    c = cells[scalar & (cells["lr"] > 0)]
    c = c.assign(setting=setting_labels(c))
    rules = sorted(table["rule_variant"].unique())
    pal = rule_palette(rules)
    fig, axes = plt.subplots(2, len(settings), figsize=(PAGE_WIDTH_IN, 3.6 + 0.28 * len(rules)), squeeze=False,
                             sharex="col", sharey="row", layout="constrained",
                             gridspec_kw={"height_ratios": [2.8, 0.4 + 0.28 * len(rules)]})
    for j, setting in enumerate(settings):
        top, strip = axes[0, j], axes[1, j]
        rows = table[table["setting"] == setting].set_index("rule_variant")
        for rule, r in rows.iterrows():
            h = c[(c["rule_variant"] == rule) & (c["setting"] == setting)].sort_values("lr")
            lr, y = h["lr"].to_numpy(float), h[measure].to_numpy(float)
            colour = pal[rule]
            top.fill_between(lr, h[f"{measure}_lo"], h[f"{measure}_hi"], color=colour, alpha=0.15, lw=0)
            top.plot(lr, y, color=colour, lw=1.4)
            usable = np.isclose(lr[:, None], [float(v) for v in r["usable_lrs"].split(", ")], rtol=1e-4).any(axis=1)
            top.plot(lr[usable], y[usable], "o", color=colour, ms=5)
            top.plot(lr[~usable], y[~usable], "o", color=colour, mfc="white", ms=5)
            k = rules.index(rule)
            strip.plot([r["fwhm_lr_lo"], r["fwhm_lr_hi"]], [k, k], color=colour, lw=1.2)
            strip.plot([r["usable_lr_min"], r["usable_lr_max"]], [k, k], color=colour, lw=6, alpha=0.6,
                       solid_capstyle="butt")
            strip.plot([r["best_lr"]], [k], "o", color=colour, ms=5)
            if r["width_censored"]:
                for end, edge, mark in ((r["fwhm_lr_lo"], r["lr_min"], "<"), (r["fwhm_lr_hi"], r["lr_max"], ">")):
                    if np.isclose(end, edge):
                        strip.plot([end], [k], mark, color=colour, ms=5)
        top.set_xscale("log")
        if len(settings) > 1 or setting:
            top.set_title(setting or "all", fontsize=9)
        top.tick_params(labelsize=8)
        strip.tick_params(labelsize=8)
        label_log_axis(strip.xaxis)
    axes[1, 0].set_yticks(range(len(rules)), rules, fontsize=8)      # shared along the row: one call labels all
    axes[1, 0].set_ylim(len(rules) - 0.5, -0.5)
    axes[0, 0].set_ylabel({"auc_reward": "AUC reward (reward)"}.get(measure, SPEED_LABELS.get(measure, measure)),
                          fontsize=9)
    fig.supxlabel("learning rate (log scale)", fontsize=9)
    handles = [Line2D([], [], color=pal[r], lw=2) for r in rules] + [
        Line2D([], [], ls="", marker="o", color="0.4"), Line2D([], [], ls="", marker="o", color="0.4", mfc="white"),
        Line2D([], [], color="0.4", lw=6, alpha=0.6), Line2D([], [], color="0.4", lw=1.2)]
    labels = rules + ["usable (not resolved worse than the best)", "resolved worse than the best",
                      "usable range", "FWHM (arrow: beyond the grid)"]
    _legend_below(fig, handles, labels, ncol=3)      # long labels: 3 columns stay within the page
    fig.set_label(f"Learning-rate sensitivity: mean over seeds with its {level:.0%} interval band against the "
                  "learning rate; below, per rule, the usable range (thick), the FWHM (thin) and the best rate (dot)")
    return fig


def time_to_threshold_figure(seeds: pd.DataFrame, threshold: float | None = None):
    """Kaplan-Meier curves of time to threshold: the fraction of seeds that have reached the reward threshold
    against episodes, one step curve per rule variant, one panel per setting (at most :data:`MAX_PANELS`).
    ``seeds``: one row per seed with setting, rule_variant, episodes_to_threshold (the censoring time where not
    reached), reached. A seed that never reached (censored at its budget or its divergence) is drawn as a ``+``
    on its rule's curve at the episode it was last seen, so the reader sees how much of the curve is data."""
    from matplotlib.lines import Line2D
    from statsmodels.duration.survfunc import SurvfuncRight

    d = seeds.dropna(subset=["episodes_to_threshold"])
    if not len(d):
        raise ValueError("no seeds with an episode to threshold or a censoring time")
    settings = sorted(d["setting"].unique(), key=_natural)[:MAX_PANELS]
    ncol = min(4, len(settings))
    fig, axes = _page_grid(math.ceil(len(settings) / ncol), ncol, sharex=True, sharey=True)
    pal = rule_palette(d["rule_variant"])
    for ax, setting in zip(axes.ravel(), settings):
        for rule, h in d[d["setting"] == setting].groupby("rule_variant", sort=True):
            t, e = h["episodes_to_threshold"].to_numpy(float), h["reached"].to_numpy(bool)
            if e.any():
                sf = SurvfuncRight(t, e.astype(int))
                xs, ys = np.r_[0.0, sf.surv_times], np.r_[0.0, 1 - sf.surv_prob]
            else:
                xs, ys = np.array([0.0]), np.array([0.0])
            xs, ys = np.r_[xs, t.max()], np.r_[ys, ys[-1]]          # the curve runs on to the last seed seen
            ax.step(xs, ys, where="post", color=pal[rule], lw=1.6)
            cens = t[~e]
            if len(cens):
                at = ys[np.searchsorted(xs, cens, side="right") - 1]
                ax.plot(cens, at, "+", color=pal[rule], ms=8, mew=1.4)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title("" if setting == "all" else str(setting), fontsize=9)
        ax.tick_params(labelsize=8)
    _hide_unused(axes, len(settings))
    fig.supxlabel("episodes", fontsize=9)
    what = f"reward threshold {threshold:g}" if threshold is not None else "the threshold"
    fig.supylabel(f"fraction of seeds that reached {what}", fontsize=9)
    handles = [Line2D([], [], color=pal[r], lw=2) for r in sorted(pal)]
    handles.append(Line2D([], [], ls="", marker="+", color="0.3", ms=8, mew=1.4))
    _legend_below(fig, handles, [*sorted(pal), "seed censored (not reached when last seen)"])
    fig.set_label("Time to threshold (Kaplan-Meier): the fraction of seeds that have reached the threshold against "
                  "episodes, per rule; + marks a censored seed: one that had not reached it when its training ended or it "
                  "diverged")
    return fig
