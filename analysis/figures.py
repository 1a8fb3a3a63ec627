"""Seaborn figures for the analyses. Every function returns a matplotlib Figure with labelled axes
and units; one colour per rule variant, the same in every figure (:func:`rule_palette`)."""

from __future__ import annotations

import base64
import io
import math

import sys

import matplotlib

if "ipykernel" not in sys.modules:  # headless outside notebooks: figures go to files and reports
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .scaling import QUANTITIES  # noqa: E402
from .stats import bootstrap_ci  # noqa: E402

SPEED_LABELS = {
    "auc_reward": "area under eval-reward curve / episodes (reward)",
    "episodes_to_threshold": "episodes to threshold (episodes)",
    "final_reward": "final eval reward (reward)",
}
MAX_PANELS = 12


def rule_palette(rules) -> dict[str, tuple]:
    """A fixed colour per rule variant (sorted names, tab10)."""
    names = sorted({str(r) for r in rules if r is not None and not (isinstance(r, float) and math.isnan(r))})
    colours = sns.color_palette("tab10", max(10, len(names)))
    return {n: colours[i % len(colours)] for i, n in enumerate(names)}


def to_png_bytes(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def to_base64(fig, dpi: int = 110) -> str:
    """The figure as a base64 PNG string (for ``<img src="data:image/png;base64,...">``)."""
    return base64.b64encode(to_png_bytes(fig, dpi)).decode("ascii")


def _facets(df: pd.DataFrame, candidates) -> tuple[str | None, str | None]:
    varying = [c for c in candidates if c in df and df[c].nunique(dropna=False) > 1]
    col = varying[0] if varying else None
    row = varying[1] if len(varying) > 1 else None
    return col, row


def learning_curves(study, run_ids=None, metric: str = "eval_reward", n_boot: int = 1000):
    """Reward against episodes, one line per rule variant (mean over seeds with a 95 % bootstrap band),
    faceted by width (columns) and outgoing norm (rows) when they vary. ``run_ids``: which trials
    (default: all finished); use the tuned trials for a per-cell view."""
    sc = study.seed_curve(metric) if len(study.seed_curves) else None
    per_seed = sc is not None and len(sc)
    df = sc if per_seed else study.curve(f"{metric}_mean")
    if run_ids is not None:
        df = df[df["run_id"].isin(list(run_ids))]
    df = df.dropna(subset=["value"])[["episode", "value", "rule_variant", "width", "outgoing_norm"]]
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
    keys = [c for c in (col, row) if c] + ["rule_variant", "episode"]
    stats = []
    for key, g in df.groupby(keys, sort=False):
        iv = bootstrap_ci(g["value"].to_numpy(float), n_boot=n_boot, seed=0) if per_seed else None
        stats.append((*key, g["value"].mean(), iv.lo if iv else np.nan, iv.hi if iv else np.nan))
    stats = pd.DataFrame(stats, columns=keys + ["mean", "lo", "hi"]).sort_values("episode")
    order = lambda c: sorted(stats[c].unique(), key=_natural) if c else None  # noqa: E731
    g = sns.FacetGrid(stats, col=col, row=row, hue="rule_variant", palette=pal, col_order=order(col),
                      row_order=order(row), hue_order=sorted(pal), height=2.8, aspect=1.25, sharey=True,
                      margin_titles=True, col_wrap=None if row else (min(4, stats[col].nunique()) if col else None))

    def band(data, color, label, **_):
        ax = plt.gca()
        ax.plot(data["episode"], data["mean"], color=color, label=label, lw=1.5)
        if data["lo"].notna().any():
            ax.fill_between(data["episode"], data["lo"], data["hi"], color=color, alpha=0.2, lw=0)

    g.map_dataframe(band)
    g.add_legend(title="rule")
    label = {"eval_reward": "eval reward", "train_reward": "training reward"}.get(metric, metric)
    g.set_axis_labels("episodes", f"{label} (reward)")
    g.set_titles(col_template="width {col_name}", row_template="norm {row_name}")
    how = "mean over seeds with 95% bootstrap band" if per_seed else "mean over seeds"
    g.figure.suptitle(f"Learning curves: {label} against episodes ({how})", y=1.02)
    return g.figure


def _natural(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def variance_speed_figure(table: pd.DataFrame, correlations: pd.DataFrame | None = None,
                          speed: str = "auc_reward"):
    """Scatter of learning speed against probe variance (log scale), one panel per layer, one colour
    per rule variant; panel titles give Spearman's rho over all rules with its interval."""
    df = table.dropna(subset=["variance", speed])
    df = df[df["variance"] > 0]
    if not len(df):
        raise ValueError("no (variance, speed) pairs to plot")
    layers = sorted(df["layer"].unique(), key=lambda s: (s == "total", _natural(s)))
    pal = rule_palette(df["rule_variant"])
    n = len(layers)
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 1.5, 3.2 * nrow), squeeze=False)
    df = df.assign(width=df["width"].map(lambda w: f"{int(w)}" if pd.notna(w) else "?"))
    for ax, layer in zip(axes.ravel(), layers):
        d = df[df["layer"] == layer]
        sns.scatterplot(data=d, x="variance", y=speed, hue="rule_variant", style="width", palette=pal, ax=ax,
                        s=45, legend=ax is axes.ravel()[0])
        ax.set_xscale("log")
        if speed == "episodes_to_threshold":
            ax.set_yscale("log")
        title = f"layer {layer}" if layer != "total" else "all layers"
        if correlations is not None and len(correlations):
            c = correlations[(correlations["layer"] == layer) & (correlations["scope"] == "all rules")]
            if len(c) and np.isfinite(c["rho"].iloc[0]):
                r = c.iloc[0]
                title += f"\nρ = {r['rho']:.2f} [{r['rho_lo']:.2f}, {r['rho_hi']:.2f}], n = {int(r['n'])}"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("probe variance (grad² units, log)")
        ax.set_ylabel(SPEED_LABELS.get(speed, speed))
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    first = axes.ravel()[0]
    handles, labels = first.get_legend_handles_labels()
    if first.get_legend() is not None:
        first.get_legend().remove()
    labels = [{"rule_variant": "rule", "width": "width"}.get(lab, lab) for lab in labels]
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle("Variance versus speed", y=1.0)
    fig.tight_layout()
    return fig


def scaling_figure(data: pd.DataFrame, fits_table: pd.DataFrame):
    """Log-log panels of each quantity against width (points: mean at a width, bars: min to max over
    seeds or trials), with the fitted power laws and their exponents in the legend. One row per
    setting (context) when several."""
    quantities = [q for q in QUANTITIES if q in set(data["quantity"])]
    contexts = sorted(data["context"].unique(), key=str)[:4]
    if not quantities:
        raise ValueError("no scaling data to plot")
    pal = rule_palette(data["rule_variant"])
    fig, axes = plt.subplots(len(contexts), len(quantities), figsize=(4.4 * len(quantities), 3.4 * len(contexts)),
                             squeeze=False)
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
                f = fits_table[(fits_table["quantity"] == q) & (fits_table["rule_variant"] == rule)
                               & (fits_table["context"] == ctx)]
                label = rule
                if len(f):
                    r = f.iloc[0]
                    xs = np.geomspace(stats["width"].min(), stats["width"].max(), 50)
                    ax.plot(xs, r["prefactor"] * xs ** r["exponent"], color=colour, lw=1.3)
                    label = f"{rule}: b = {r['exponent']:.2f} [{r['exponent_lo']:.2f}, {r['exponent_hi']:.2f}]"
                ax.plot([], [], color=colour, marker="o", ms=4, label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("width (units per hidden layer, log)")
            ax.set_ylabel(QUANTITIES[q])
            ax.set_title(q.replace("_", " ") + (f"\n{ctx}" if ctx else ""), fontsize=10)
            ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Scaling with width: power laws y = A·width^b (95% intervals on b)", y=1.0)
    fig.tight_layout()
    return fig


def norm_stress_figure(table: pd.DataFrame):
    """Divergence rate, probe variance, probe bias (when the exact oracle applied) and final reward
    against the initial outgoing norm, one line per rule variant, π marked. One row per setting
    (context) when several (at most 4)."""
    if not len(table):
        raise ValueError("no norm-stress data to plot")
    contexts = list(dict.fromkeys(table["context"]))[:4]
    pal = rule_palette(table["rule_variant"])
    panels = [("diverged_rate", "diverged seeds (fraction)", False),
              ("variance", "probe variance, all layers (grad², log)", True),
              ("final_reward", "final eval reward (reward)", False)]
    if "bias" in table and np.isfinite(table["bias"].to_numpy(float)).any():
        panels.insert(2, ("bias", "probe bias vs exact gradient (grad units, log)", True))
    fig, axes = plt.subplots(len(contexts), len(panels), figsize=(4.4 * len(panels), 3.3 * len(contexts)),
                             squeeze=False)
    for i, ctx in enumerate(contexts):
        d = table[table["context"] == ctx]
        for j, (col, ylabel, logy) in enumerate(panels):
            ax = axes[i, j]
            for rule, h in d.groupby("rule_variant"):
                h = h.sort_values("outgoing_norm")
                y = h[col].to_numpy(float)
                lo = np.clip(y - h[f"{col}_lo"].to_numpy(float), 0, None)
                hi = np.clip(h[f"{col}_hi"].to_numpy(float) - y, 0, None)
                yerr = None if np.all(np.isnan(lo)) else [np.nan_to_num(lo), np.nan_to_num(hi)]
                ax.errorbar(h["outgoing_norm"], y, yerr=yerr, marker="o", ms=4, capsize=2, lw=1.2,
                            color=pal[rule], label=rule)
            ax.axvline(math.pi, color="0.3", ls="--", lw=1)
            ax.text(math.pi, 0.98, " π", transform=ax.get_xaxis_transform(), va="top", fontsize=11)
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel("initial outgoing norm c (weight units)")
            ax.set_ylabel(ylabel)
            if ctx:
                ax.set_title(ctx, fontsize=9)
        axes[i, 0].legend(fontsize=8, frameon=False)
    fig.suptitle("Outgoing-norm stress: where do the rules break down? (π dashed)", y=1.0)
    fig.tight_layout()
    return fig
