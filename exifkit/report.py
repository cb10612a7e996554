"""Tables and figures of every stage, saved where a results folder keeps them. Each figure function returns a Figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .data.images import ImageLoadError, load_rgb
from .exif.schema import ExifLabels, RANKED, TAGS, Vocabulary
from .model.srm import FAMILY_START, srm_kernels


def save_figure(fig, out_dir: str | Path, name: str, dpi: int = 120) -> Path:
    out = Path(out_dir) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    return out


def as_jpeg(fig, quality: int = 85, dpi: int = 100):
    """A figure of photographs for inline display as JPEG, the figure closed: as PNG, the extended
    contact sheet alone weighed 5.7 MB as PNG."""
    import io

    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=dpi, bbox_inches="tight", pil_kwargs={"quality": quality})
    plt.close(fig)
    return Image(data=buffer.getvalue(), format="jpeg")


def save_table(frame: pd.DataFrame, out_dir: str | Path, name: str) -> list[Path]:
    """CSV for machines, Markdown for people, LaTeX for papers."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    frame.to_csv(csv_path, index=False)
    md_path.write_text(frame.to_markdown(index=False) + "\n")
    return [csv_path, md_path, save_latex(frame, out_dir, name)]


def counts_table(frame: pd.DataFrame, by=("source", "label", "generator", "license")) -> pd.DataFrame:
    """Number of files and MiB per group of a manifest frame."""
    cols = list(by)
    grouped = frame.fillna({c: "" for c in cols}).groupby(cols, dropna=False)
    table = grouped.agg(files=("path", "size"), mib=("bytes", "sum")).reset_index()
    table["mib"] = (table["mib"] / 2**20).round(2)
    return table.sort_values(["label", "files"], ascending=[False, False]).reset_index(drop=True)


def sample_per_group(frame: pd.DataFrame, by: str, k: int, seed: int) -> pd.DataFrame:
    """Up to ``k`` random rows per group, groups in sorted order."""
    shuffled = frame.sample(frac=1.0, random_state=seed)
    return shuffled.groupby(by, sort=True).head(k).sort_values(by, kind="stable").reset_index(drop=True)


def contact_sheet(paths, titles, ncols: int = 8, thumb: int = 128):
    """Thumbnails in a grid; a file that fails to load shows its error instead of vanishing."""
    n = len(paths)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.8, nrows * 2.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, path, title in zip(axes.flat, paths, titles):
        try:
            img = load_rgb(path)
            h, w = img.shape[:2]
            step = max(1, max(h, w) // thumb)
            ax.imshow(img[::step, ::step])
            ax.set_title(f"{title}\n{w}x{h}", fontsize=7)
        except ImageLoadError as exc:
            ax.text(0.5, 0.5, f"{title}\n{exc.cause}", ha="center", va="center", fontsize=6, wrap=True)
    fig.tight_layout()
    return fig


def coverage_frame(labels: ExifLabels, groups) -> pd.DataFrame:
    """Share of images with each tag present, per group (for example per make)."""
    present = pd.DataFrame({t.name: [v[t.name] is not None for v in labels.values] for t in TAGS})
    present["group"] = list(groups)
    return present.groupby("group").mean().T


def coverage_heatmap(coverage: pd.DataFrame, title: str = "Share of photos carrying each tag"):
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * coverage.shape[1] + 3), 5.5))
    sns.heatmap(coverage, vmin=0, vmax=1, cmap="viridis", annot=coverage.shape[1] <= 16, fmt=".2f",
                cbar_kws={"label": "coverage"}, ax=ax)
    ax.set_title(title)
    ax.set_xlabel("")
    fig.tight_layout()
    return fig


def categorical_distributions(labels: ExifLabels):
    """One bar chart per categorical tag, in the vocabulary's classes plus a 'missing' bar."""
    names = labels.categorical_names
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, (j, name) in zip(axes.flat, enumerate(names)):
        vocab: Vocabulary = labels.vocabularies[name]
        idx = labels.categorical[:, j]
        counts = [int((idx == i).sum()) for i in range(len(vocab.classes))] + [int((idx < 0).sum())]
        cls = [c if len(c) < 24 else c[:22] + "..." for c in vocab.classes] + ["(missing)"]
        sns.barplot(x=counts, y=cls, ax=ax, color="C0", orient="h")
        ax.set_title(name)
        ax.set_xlabel("photos")
    axes.flat[-1].axis("off")
    fig.tight_layout()
    return fig


def ranked_distributions(labels: ExifLabels):
    """Histogram of each ranked tag on a log axis (exposure times and ISO span decades)."""
    names = labels.ranked_names
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, (j, name) in zip(axes.flat, enumerate(names)):
        vals = labels.ranked[:, j]
        vals = vals[np.isfinite(vals)]
        if len(vals):
            sns.histplot(vals, bins=30, log_scale=True, ax=ax)
        ax.set_title(f"{name} (n={len(vals)})")
    axes.flat[-1].axis("off")
    fig.tight_layout()
    return fig


def top_counts(values, top: int, title: str, xlabel: str = "photos"):
    counts = pd.Series([v for v in values if v]).value_counts().head(top)
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(counts) + 1.5))
    sns.barplot(x=counts.values, y=counts.index, ax=ax, color="C2", orient="h")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def pair_balance_frame(card: dict) -> pd.DataFrame:
    rows = [{"tag": t["name"], "coverage": t["coverage"],
             "informative pairs": t["informative_pair_share"],
             "tie share (both present)": t["pair_labels"]["tie_share"],
             "label 1 share (ties = 1)": t["pair_labels"]["label1_share"]}
            for t in card["tags"] if t["kind"] == RANKED]
    return pd.DataFrame(rows)


def pair_balance_plot(balance: pd.DataFrame):
    melted = balance.melt(id_vars="tag", value_vars=["informative pairs", "label 1 share (ties = 1)"])
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(data=melted, x="tag", y="value", hue="variable", ax=ax)
    ax.axhline(0.5, ls="--", c="grey", lw=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of pairs")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig




def srm_residual_figure(image: np.ndarray, size: int = 128):
    """A crop of a photo and one residual per SRM kernel family (green channel), to show what the
    extractor sees: the scene is gone, edges and noise remain."""
    import torch

    h, w = image.shape[:2]
    crop = image[(h - min(h, size)) // 2:, (w - min(w, size)) // 2:][:size, :size]
    kernels = srm_kernels()
    families = FAMILY_START
    green = torch.tensor(crop[..., 1], dtype=torch.float32)[None, None] / 255.0
    weight = torch.tensor(kernels[list(families.values())], dtype=torch.float32)[:, None]
    residuals = torch.nn.functional.conv2d(green, weight, padding=2)[0].numpy()
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.5))
    axes.flat[0].imshow(crop)
    axes.flat[0].set_title("photo (centre crop)")
    for ax, (name, _), res in zip(axes.flat[1:], families.items(), residuals):
        lim = np.percentile(np.abs(res), 99) or 1.0
        ax.imshow(res, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(name)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def scrambled_patches_figure(image: np.ndarray, corners: np.ndarray, patches: np.ndarray):
    """Where the random training crops were cut, and the set the network receives."""
    from matplotlib.patches import Rectangle

    size = patches.shape[1]
    fig = plt.figure(figsize=(13, 5.5))
    left = fig.add_subplot(1, 2, 1)
    left.imshow(image)
    for (y, x) in corners:
        left.add_patch(Rectangle((x, y), size, size, fill=False, lw=1.2, ec="yellow"))
    left.set_title(f"{len(corners)} random {size}x{size} crops")
    left.axis("off")
    cols = int(np.ceil(np.sqrt(len(patches))))
    grid = np.ones((cols * (size + 2), cols * (size + 2), 3), dtype=np.uint8) * 255
    for k, p in enumerate(patches):
        r, c = divmod(k, cols)
        grid[r * (size + 2):r * (size + 2) + size, c * (size + 2):c * (size + 2) + size] = p
    right = fig.add_subplot(1, 2, 2)
    right.imshow(grid)
    right.set_title("the patch set, in sampling order")
    right.axis("off")
    fig.tight_layout()
    return fig


def training_curve(metrics: pd.DataFrame, tags=()):
    """Total loss and selected per-tag losses against the step."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    axes[0].plot(metrics["step"], metrics["loss"])
    axes[0].set_title("total pretext loss (sum over 14 tags)")
    axes[0].set_xlabel("step")
    for t in tags:
        axes[1].plot(metrics["step"], metrics[f"loss_{t}"], label=t)
    axes[1].set_title("per-tag loss")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def side_by_side(tables: dict, columns=("acc", "ap")) -> pd.DataFrame:
    """Per-generator tables of several runs next to each other (e.g. pretext vs random extractor), each
    value with its bootstrap interval where the table has one."""
    first = next(iter(tables.values()))
    out = first[["generator", "seen", "reals", "fakes"]].copy()
    for name, table in tables.items():
        for c in columns:
            out[f"{c} ({name})"] = table[c].values
            if f"{c} 95% CI" in table.columns:
                out[f"{c} ({name}) 95% CI"] = table[f"{c} 95% CI"].values
    return out


def score_histograms(suite, fake_scores: dict, threshold: float | None = None, xlabel: str = "score"):
    """Distribution of the scores of each generator's fakes against the reals they are tested with."""
    n = len(suite.pairs)
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, pair in zip(axes.flat, suite.pairs):
        reals = [fake_scores[s.key] for s in pair.reals if s.key in fake_scores]
        fakes = [fake_scores[s.key] for s in pair.fakes if s.key in fake_scores]
        bins = np.histogram_bin_edges(np.r_[reals, fakes], bins=25)
        ax.hist(reals, bins=bins, alpha=0.6, label="real", density=True)
        ax.hist(fakes, bins=bins, alpha=0.6, label="fake", density=True)
        if threshold is not None:
            ax.axvline(threshold, c="k", ls="--", lw=1)
        ax.set_title(pair.generator, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def roc_figure(suite, fake_scores: dict, title: str = ""):
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(6, 5.5))
    for pair in suite.pairs:
        reals = [fake_scores[s.key] for s in pair.reals if s.key in fake_scores]
        fakes = [fake_scores[s.key] for s in pair.fakes if s.key in fake_scores]
        fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(reals)), np.ones(len(fakes))], np.r_[reals, fakes])
        ax.plot(fpr, tpr, lw=1.2, label=pair.generator, ls="-" if pair.seen_in_training else "--")
    ax.plot([0, 1], [0, 1], c="grey", lw=0.8)
    ax.set_xlabel("false positive rate (reals flagged)")
    ax.set_ylabel("true positive rate (fakes caught)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def binary_training_figure(runs: dict):
    """Loss and distance to the frozen extractor over training, for several runs (e.g. alpha values)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for name, m in runs.items():
        axes[0].plot(m["step"], m["ce"], label=name)
        axes[1].plot(m["step"], m["acc"], label=name)
        axes[2].plot(m["step"], m["dist_patch_vectors"], label=f"{name}: patch vectors")
        axes[2].plot(m["step"], m["dist_stage1"], ls=":", label=f"{name}: stage 1")
    axes[0].set_title("cross-entropy (training batches)")
    axes[1].set_title("batch accuracy")
    axes[2].set_title("mean squared distance to the frozen pretext extractor")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_latex(frame: pd.DataFrame, out_dir: str | Path, name: str) -> Path:
    path = Path(out_dir) / f"{name}.tex"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(frame.to_latex(index=False, float_format="%.3f", na_rep=""))
    return path


def reference_numbers(root: str | Path) -> pd.DataFrame:
    """Numbers reported elsewhere, with their sources (``data_manifests/reference_numbers.csv``)."""
    return pd.read_csv(Path(root) / "data_manifests" / "reference_numbers.csv", comment="#")


def with_reported(table: pd.DataFrame, reported: pd.DataFrame, benchmark: str, detector: str, metric: str,
                  column: str) -> pd.DataFrame:
    """Add a ``reported`` column next to ``column``: the published value for the same benchmark, generator,
    detector and metric, or empty. Reported percentages are converted to the kit's 0-1 scale."""
    ref = reported[(reported["benchmark"] == benchmark) & (reported["detector"] == detector)
                   & (reported["metric"] == metric)].set_index("generator")["value"] / 100.0
    out = table.copy()
    out.insert(out.columns.get_loc(column) + 1, f"{column} reported", out["generator"].map(ref))
    return out


def robustness_curves(long: pd.DataFrame, families: dict, metric: str = "ap"):
    """Mean ``metric`` over generators against perturbation strength, one panel per perturbation."""
    means = long[long["generator"] == "mean"]
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.8), squeeze=False)
    for ax, (title, points) in zip(axes.flat, families.items()):
        for detector, sub in means.groupby("detector"):
            vals = [sub.loc[sub["protocol"] == pid, metric].mean() for pid, _ in points]
            ax.plot([x for _, x in points], vals, marker="o", label=detector)
        ax.set_title(title)
        ax.set_xlabel("strength")
        ax.set_ylabel(f"mean {metric}")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def generator_bars(table: pd.DataFrame, columns, title: str):
    """Per-generator bars of several columns (e.g. raw vs aligned AP)."""
    rows = table[table["generator"] != "mean"]
    melted = rows.melt(id_vars="generator", value_vars=list(columns))
    fig, ax = plt.subplots(figsize=(11, 4))
    sns.barplot(data=melted, x="generator", y="value", hue="variable", ax=ax)
    ax.axhline(0.5, c="grey", ls="--", lw=1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=35)
    fig.tight_layout()
    return fig


def _log2_counts(ax, counts, label: str):
    """A log2 x axis ticked at exactly the counts measured, so doublings read as equal steps."""
    ticks = sorted(pd.unique(counts))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(c) for c in ticks])
    ax.minorticks_off()
    ax.set_xlabel(label)


def probe_curve_figure(curve: pd.DataFrame):
    """Mean test AUC of the linear probes against the number of training fakes (log scale), seen and
    unseen generators, one line per extractor; bars span the random subsets of each share."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, group in zip(axes, ("seen", "unseen")):
        column = f"{group} auc"
        if column not in curve:
            ax.set_visible(False)
            continue
        for name, sub in curve.groupby("extractor", sort=False):
            stats = sub.groupby("training fakes")[column].agg(["mean", "min", "max"])
            ax.errorbar(stats.index, stats["mean"], yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                        marker="o", capsize=3, label=name)
        ax.axhline(0.5, c="grey", ls="--", lw=1)
        _log2_counts(ax, curve["training fakes"], "training fakes")
        ax.set_title(f"{group} generators")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("mean test ROC-AUC")
    fig.tight_layout()
    return fig


def scaling_figure(runs: pd.DataFrame, fit: pd.DataFrame, metrics, targets=(0.8, 0.9), extrapolate_to: float | None = None):
    """Each metric against camera photos (log axis): every seed's run with its bootstrap interval, the
    mean over seeds, the random-init band (mean of its seeds' intervals), and the fitted line, drawn on
    to ``extrapolate_to`` photos (or where the fit reaches a target) where its slope interval excludes 0."""
    metrics = [m for m in metrics if m in set(runs["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.4), squeeze=False)
    trained, random = runs[runs["photos"] > 0], runs[runs["photos"] == 0]
    fits = fit.set_index("metric")
    for ax, metric in zip(axes[0], metrics):
        part = trained[trained["metric"] == metric]
        for k, (seed, sub) in enumerate(part.groupby("seed")):
            x = sub["photos"] * 2 ** (0.04 * (k - 0.5))  # seeds side by side
            ax.errorbar(x, sub["value"], yerr=[sub["value"] - sub["ci_low"], sub["ci_high"] - sub["value"]],
                        fmt="o", ms=4, capsize=2, alpha=0.8, label=f"seed {seed}")
        mean = part.groupby("photos")["value"].mean()
        ax.plot(mean.index, mean.values, c="k", lw=1, label="mean over seeds")
        rand = random[random["metric"] == metric]
        if len(rand):
            ax.axhspan(rand["ci_low"].mean(), rand["ci_high"].mean(), color="grey", alpha=0.2, label="random init (95 %)")
            ax.axhline(rand["value"].mean(), c="grey", lw=1)
        if metric in fits.index and np.isfinite(fits.loc[metric, "slope"]):
            f = fits.loc[metric]
            right = part["photos"].max()
            excludes_zero = f["slope_low"] > 0 or f["slope_high"] < 0
            if excludes_zero:
                reach = [f.get(f"photos for {t:g}", np.nan) for t in targets]
                right = max([right, extrapolate_to or 0] + [r for r in reach if np.isfinite(r) and r < 1e7])
            xs = np.geomspace(part["photos"].min(), right, 50)
            ax.plot(xs, f["intercept"] + f["slope"] * np.log2(xs), c="C3", ls="--" if excludes_zero else ":",
                    label=f"fit: {f['slope']:+.3f} [{f['slope_low']:+.3f}, {f['slope_high']:+.3f}] per doubling")
            if excludes_zero:
                for t in targets:
                    if np.isfinite(f.get(f"photos for {t:g}", np.nan)) and f[f"photos for {t:g}"] <= right:
                        ax.axhline(t, c="C3", lw=0.5)
                        ax.annotate(f"{t:g} at ~{f[f'photos for {t:g}']:,.0f} photos", (f[f"photos for {t:g}"], t),
                                    fontsize=7, ha="right", va="bottom")
        _log2_counts(ax, part["photos"], "camera photos (pretext training)")
        ax.set_title(metric, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def loss_curves_figure(losses: pd.DataFrame, sets=("validation", "held-out", "unseen models")):
    """Pretext loss of the fixed monitored pairs against training step, one line per subset size (mean over
    seeds): where a small subset's curve turns up, it has started to memorise its photos."""
    sets = [s for s in sets if s in losses]
    fig, axes = plt.subplots(1, len(sets), figsize=(3.6 * len(sets), 3.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], sets):
        for size, sub in losses.groupby("photos"):
            curve = sub.groupby("step")[name].agg(["mean", "min", "max"])
            line, = ax.plot(curve.index, curve["mean"], label=f"{size} photos")
            ax.fill_between(curve.index, curve["min"], curve["max"], color=line.get_color(), alpha=0.15)
        ax.set_title(f"{name} photos", fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("pretext loss (all 14 tags)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def fake_axis_figure(fakes: pd.DataFrame):
    """Probe and binary detector against the number of generated training images (log axis), extractor
    fixed, with bootstrap intervals; one panel per generator group."""
    groups = [g for g in ("seen", "unseen") if fakes["metric"].str.contains(g).any()]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups):
        for detector, sub in fakes[fakes["metric"].str.contains(f"{group} generators")].groupby("detector"):
            ax.errorbar(sub["training fakes"], sub["value"], yerr=[sub["value"] - sub["ci_low"], sub["ci_high"] - sub["value"]],
                        marker="o", capsize=3, label=detector)
        ax.axhline(0.5, c="grey", ls="--", lw=1)
        _log2_counts(ax, fakes["training fakes"], "generated training images")
        ax.set_title(f"{group} generators", fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("mean test ROC-AUC (format-aligned)")
    fig.tight_layout()
    return fig
