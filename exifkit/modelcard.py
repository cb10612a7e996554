"""The model card of a bundle: what it was trained on, with what budget, how well it measured, and what it
must not be used for. Every number comes from the tables and logs of the run that made the bundle."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from .train import load_checkpoint, trained_checkpoint

NOT_FOR = [
    "deciding on its own whether a specific image is authentic in journalism, law enforcement, courts, "
    "moderation or any decision about a person: its error rates below are from a few hundred test images "
    "and do not transfer to other sources",
    "images from generators, cameras or processing pipelines unlike its training data (see the unseen rows: "
    "accuracy there is lower, and newer generators were not tested at all)",
    "proving that an image is real: a 'real' verdict only means the image resembles the real training photos",
    "reading EXIF: the detector never looks at metadata, and EXIF says nothing about authenticity",
]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ci(table: pd.DataFrame, row: pd.Series, metric: str) -> str:
    col = f"{metric} 95% CI"
    interval = row.get(col) if col in table.columns else None
    value = f"{row[metric]:.3f}"
    return f"{value} {interval}" if isinstance(interval, str) and interval else value


def _generator_table(table: pd.DataFrame) -> str:
    cols = ["generator", "seen", "reals", "fakes"]
    out = table[cols].copy()
    for m in ("auc", "acc", "real_acc", "fake_acc"):
        out[m] = [_ci(table, r, m) if r["generator"] != "mean" else f"{r[m]:.3f}" for _, r in table.iterrows()]
    return out.to_markdown(index=False)


def _run_record(run_dir: Path):
    """(log, last checkpoint, kept checkpoint) of a training run, or None when they are not here."""
    run_dir = Path(run_dir)
    if not ((run_dir / "metrics.csv").exists() and (run_dir / "last.pt").exists()):
        return None
    return (pd.read_csv(run_dir / "metrics.csv"), load_checkpoint(run_dir / "last.pt"),
            load_checkpoint(trained_checkpoint(run_dir)))


def _time_spent(log: pd.DataFrame, rate: str, unit: str, per_step: int) -> str:
    """Wall time of a run, and the time its steps take at the run's median throughput. A resumed run
    restarts its clock, so the log's ``seconds`` are summed over segments; wall time also counts any
    time the process stood paused or shared the machine, which the median rate does not."""
    seconds = log["seconds"].to_numpy()
    segment_ends = np.append(np.diff(seconds) < 0, True)
    total, count = float(seconds[segment_ends].sum()), int(segment_ends.sum())
    segments = f" in {count} segments" if count > 1 else ""
    median = float(log[rate].median())
    steady = int(log["step"].iloc[-1]) * per_step / median
    return (f"{total / 60:.0f} min of wall time{segments}, {steady / 60:.0f} min at its median "
            f"{median:.1f} {unit}")


def pretext_budget(run_dir: Path) -> str | None:
    """One line on a pretext run, from its log and checkpoints (None when they are not here)."""
    record = _run_record(run_dir)
    if record is None:
        return None
    log, state, kept = record
    cfg = state["config"]
    spent = _time_spent(log, "pairs_per_s", "pairs/s", cfg["batch_pairs"])
    return (f"{int(log['step'].iloc[-1])} steps x {cfg['batch_pairs']} pairs ({cfg['n_patches']} patches of "
            f"{cfg['extractor']['patch_size']} px), {spent}, precision "
            f"{state.get('precision_used', 'fp32')}; weights kept: step {kept['step']}")


def binary_budget(run_dir: Path) -> str | None:
    """One line on a binary run, from its log and checkpoints (None when they are not here)."""
    record = _run_record(run_dir)
    if record is None:
        return None
    log, state, kept = record
    cfg = state["config"]
    chosen = (f" (validation {kept.get('validation_metric', 'macro AUC')} {kept['validation_score']:.3f})"
              if "validation_score" in kept else "")
    spent = _time_spent(log, "images_per_s", "images/s", cfg["batch_images"])
    return (f"{int(log['step'].iloc[-1])} steps x {cfg['batch_images']} images, alpha {cfg['alpha']:g}, "
            f"start {cfg['init']}, lr {cfg['lr']:g}, {spent}, precision "
            f"{state.get('precision_used', 'fp32')}; weights kept: step {kept['step']}{chosen}")


def training_budget(results_dir: Path, *, own_pretext: bool, trains_binary: bool, binary_run: str,
                    inherited: dict, trainable: int) -> dict:
    """The budget lines of a bundle. A stage that ran elsewhere (an extractor or detectors taken from
    another bundle) keeps the line that bundle recorded."""
    results_dir = Path(results_dir)
    pretext = pretext_budget(results_dir / "pretext") if own_pretext else None
    binary = binary_budget(results_dir / "binary" / binary_run) if trains_binary else None
    return {"pretext": pretext or inherited.get("pretext", "not recorded"),
            "binary": binary or inherited.get("binary", "not recorded"),
            "extractor parameters": f"{trainable:,} trainable"}


def model_card(*, profile: str, bundle_meta: dict, composition: pd.DataFrame, budget: dict,
               binary_aligned: pd.DataFrame, binary_raw: pd.DataFrame, seen_unseen: pd.DataFrame,
               oneclass_summary: pd.DataFrame, oneclass_aligned: pd.DataFrame, notes: list[str] = ()) -> str:
    """Markdown. ``budget`` holds the training facts (steps, images, seconds, precision per stage)."""
    lines = [f"# Model card: exifkit SDAIE detector (`{profile}` profile)", ""]
    lines += ["Two detectors on one feature extractor of the SDAIE architecture (Zhong et al., TPAMI 2026), "
              "trained by exifkit. **Pixels only**: EXIF is used to train the extractor, never to score an image.",
              ""]
    lines += ["## Training data", "",
              f"- Training-data manifest sha256: `{bundle_meta.get('training_manifest_sha256', '')}`",
              f"- Kit version {bundle_meta.get('exifkit_version', '?')}, bundle created {bundle_meta.get('created', '?')}", ""]
    lines += [composition.to_markdown(index=False), ""]
    lines += ["## Budget and hardware", ""]
    lines += [f"- {k}: {v}" for k, v in budget.items()]
    lines += [f"- hardware: {_cpu()}", ""]
    bv = bundle_meta.get("binary_validation") or {}
    ov = bundle_meta.get("oneclass_validation") or {}
    lines += ["## Thresholds (set on training-side data, never on the test split)", "",
              f"- binary: P(fake) > {bundle_meta.get('binary_threshold', 0.5):.4f}, the balanced-accuracy optimum on "
              f"{bv.get('validation_images', 0)} validation images (format-aligned); there real accuracy "
              f"{bv.get('real_acc', float('nan')):.3f}, fake accuracy {bv.get('fake_acc', float('nan')):.3f}",
              f"- one-class ({bundle_meta.get('oneclass_method', '?')}, density `{bundle_meta.get('oneclass_density', '?')}`): "
              f"log-likelihood <= {bundle_meta.get('oneclass_threshold', float('nan')):.2f} is AI-generated; on "
              f"training-side data real accuracy {ov.get('real_acc') if ov.get('real_acc') is None else round(ov['real_acc'], 3)}, "
              f"fake accuracy {ov.get('fake_acc') if ov.get('fake_acc') is None else round(ov['fake_acc'], 3)}", ""]
    lines += ["## Measured on the test split", "",
              "Files never used in training (checked disjoint by sha256); *unseen* generators never used in "
              "training at all. **Format-aligned** (every image centre-cropped to 224 px and re-encoded as JPEG 95) "
              "is the view to trust; raw files are shown too. Intervals: bootstrap 95 %, reals and fakes resampled "
              "separately. False-positive rate = 1 - real accuracy.", ""]
    lines += ["### Binary detector, seen against unseen generators (means over generators)", "",
              seen_unseen.round(3).to_markdown(index=False), ""]
    lines += ["### Binary detector per generator, format-aligned", "", _generator_table(binary_aligned), ""]
    lines += ["### Binary detector per generator, raw files", "", _generator_table(binary_raw), ""]
    lines += ["### One-class detector (means over generators; the authors' GMM is the 'paper' setting)", "",
              oneclass_summary.round(3).to_markdown(index=False), ""]
    lines += ["### One-class detector per generator, shipped setting, format-aligned", "",
              _generator_table(oneclass_aligned), ""]
    if notes:
        lines += ["## Caveats", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Must not be used for", ""] + [f"- {n}" for n in NOT_FOR] + [""]
    return "\n".join(lines)


def write_model_card(bundle: Path, profile, det, tables_dir: Path) -> str:
    """The model card of a bundle :func:`exifkit.pipeline.ship_bundle` wrote, from the evaluation tables
    saved in ``tables_dir``; written to ``bundle/MODEL_CARD.md`` and returned."""
    def table(name):
        return pd.read_csv(Path(tables_dir) / f"{name}.csv")

    main = det.runs.main
    run = main.replace("=", "")
    seen_unseen = table("binary_seen_unseen")
    notes = [f"Scale: {profile.description} The paper pretrains on up to 900,000 photos on 8 GPUs; "
             "these numbers follow its protocol at a few-hundred-photo scale and are not the paper's."]
    choice = det.choice
    if choice.from_bundle and not choice.trains_binary(profile.name):
        notes.append(f"The extractor and the binary detector come from {choice.source} (trained on its own "
                     "profile; see that bundle's model card); the training table above is this profile's, where "
                     "only the one-class detector was fitted. Test images exclude every file those models trained on.")
    meta = json.loads((Path(bundle) / "bundle.json").read_text())
    card = model_card(profile=profile.name, bundle_meta=meta, composition=det.splits.composition(),
                      budget=meta.get("budget") or {},
                      binary_aligned=table(f"binary_{run}_aligned_jpeg95"), binary_raw=table(f"binary_{run}_raw"),
                      seen_unseen=seen_unseen[seen_unseen["run"] == main],
                      oneclass_summary=table("oneclass_summary"),
                      oneclass_aligned=table(f"oneclass_pretext_{profile.shipped_oneclass}_aligned_jpeg95"),
                      notes=notes)
    (Path(bundle) / "MODEL_CARD.md").write_text(card)
    return card
