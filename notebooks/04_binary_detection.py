# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Binary detection, regularised by the camera-trace extractor
#
# The binary detector is a classifier with the extractor's architecture, trained on real and
# generated images of a few generators. A frozen copy of the pretext extractor rides along: the loss
# adds alpha = 0.05 times the mean squared difference between the two networks at five stages (four
# feature maps and the per-patch covariance vectors). The trainable extractor starts from random
# weights, as the authors' does; the regulariser pulls its intermediate features towards the
# camera-trace ones, so it cannot rely only on what separates the training generators.
#
# The test that matters is on **unseen** generators. The authors train on ProGAN alone; here the
# profile names the seen generators (`seen_generators`) and tests on everything, marking which were seen.
# The **ablation** trains the same network with alpha = 0 (no regulariser) on the same budget.
#
# Training augmentation follows the authors: random square resize (p 0.3), Gaussian blur (p 0.1),
# JPEG at quality 90-99 with Pillow or OpenCV (p 0.25); 16 random patches per image. The extended
# profile trains **format-aligned**: every image of both classes is randomly cropped to at most 256 px
# and always re-encoded as JPEG at a random quality (60-100), so neither file format, size nor
# compression history separates the classes. Part of the training images (per class and source) is kept
# for **validation**: the shipped threshold on P(fake) is the balanced-accuracy optimum there, never
# on the test suite. Evaluation uses every patch of the image (capped per profile), raw and
# format-aligned, with bootstrap 95 % intervals.
#
# **Which detectors.** On the demo profile the notebook evaluates, by default, the *reference*
# detectors shipped in `results/extended/bundle` (and the alpha = 0 ablation shipped beside them): the
# paper's network, started from the reference pretext weights and trained for an hour on the extended
# collection. They are scored only on demo test images they never trained on (by sha256). Set
# `extractor = "pretext"` to train both detectors here instead, against notebook 02's network.

# %% tags=["parameters"]
profile = "demo"
results_dir = "results/demo"
seed = 0
mirrors = []
steps = None  # None: the profile's budget
resume = False
official_checkpoint = None  # path to the authors' bc/pretrained.pth to evaluate it with the same code
extractor = None  # None: the profile's choice; "pretext" (notebook 02's network), "reference", or a bundle folder

# %%
import json
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from exifkit.binary import (aligned_validation, fake_probabilities, from_official, load_binary, train_binary,
                            training_data, validation_threshold)
from exifkit.config import data_store, load_profile
from exifkit.detect import evaluation_inputs
from exifkit.metrics import seen_unseen_means, suite_table
from exifkit.model import load_official
from exifkit.perturb import load_protocols
from exifkit.report import binary_training_figure, roc_figure, save_figure, save_table, side_by_side

out = Path(results_dir)
prof = load_profile(profile)
store = data_store(prof, mirrors=mirrors)
choice, splits = evaluation_inputs(prof, store, out, extractor)  # "seen": seen by the detectors evaluated
train_here = choice.trains_binary(prof.name)
config = prof.binary_config(seed=seed, **({"steps": steps} if steps else {}))
if train_here and choice.extractor.config != config.extractor:
    config = type(config)(**{**config.__dict__, "extractor": choice.extractor.config})
frozen = choice.extractor
print(f"extractor: {choice.source}; binary detectors: {'trained here' if train_here else 'as shipped in the bundle'}")
aligned = load_protocols()["aligned_jpeg95"]
protocols = {"raw": None, "aligned_jpeg95": aligned}
print("seen in training:", ", ".join(splits.seen_generators))
print("unseen:", ", ".join(p.generator for p in splits.suite.pairs if not p.seen_in_training))
display(splits.composition().query("set != 'one-class training'"))

# %% [markdown]
# ## Train: alpha = 0.05 (the authors') and alpha = 0 (ablation)
# A finished run in `results_dir` is reused when `resume` is set (that is how the committed extended
# reference run was made: `exifkit binary train --profile extended`, then this notebook). Each run
# scores its validation images at every checkpoint and keeps the best step (`best.pt`, chosen on
# training-side images only). With a bundle from another profile nothing trains: the shipped detectors
# and their validation thresholds are read from the bundle.

# %%
bootstrap = prof.evaluation.get("bootstrap", 0)
runs, tables, thresholds, scores, models = {}, {}, {}, {}, {}
if train_here:
    images, labels, failures, validation = training_data(config, splits, store)
    held, held_failures = aligned_validation(config, validation, store)
    for report in (failures, held_failures):
        if report:
            print(report.to_markdown())
    print(f"{len(images)} training images ({int(labels.sum())} fake), {len(validation)} kept for validation")
    for alpha in (config.alpha, 0.0):
        name = f"alpha={alpha:g}"
        run_dir = out / "binary" / name
        cfg = type(config)(**{**config.__dict__, "alpha": alpha})
        result = train_binary(cfg, frozen, images, labels, run_dir, resume=resume, validation=held)
        print(f"{name}: {result.seconds:.0f} s, {result.images_per_second:.1f} images/s, kept {result.checkpoint.name}")
        models[name] = load_binary(result.checkpoint, cfg.extractor, frozen)
        if validation:
            thresholds[name] = validation_threshold(models[name], validation, store, out / "feature_cache",
                                                    cfg.eval_max_patches, aligned)
        else:
            thresholds[name] = {"threshold": 0.5, "validation_images": 0}
        (run_dir / "threshold.json").write_text(json.dumps(thresholds[name], indent=2) + "\n")
        runs[name] = pd.read_csv(result.metrics)
else:
    for name, (models[name], thresholds[name]) in choice.detector.shipped_binaries().items():
        log = Path(choice.source).parent / "binary" / name / "metrics.csv"  # the reference run's layout
        if log.exists():
            runs[name] = pd.read_csv(log)
for name, model in models.items():
    for pname, protocol in protocols.items():
        probs, test_failures = fake_probabilities(model, splits.suite.samples(), store, out / "feature_cache",
                                                  config.eval_max_patches, protocol=protocol)
        if test_failures:
            print(test_failures.to_markdown())
        scores[name, pname] = probs
        tables[name, pname] = suite_table(splits.suite, probs, thresholds[name]["threshold"], bootstrap, seed)
        save_table(tables[name, pname].round(4), out / "tables", f"binary_{name.replace('=', '')}_{pname}")
display(pd.DataFrame(thresholds).T.round(3))

# %% [markdown]
# ## Training curves and what the regulariser does
# The right panel is the distance between the trainable and the frozen extractor. With alpha = 0 the
# trainable network (which starts from random weights) has no reason to come near the frozen one;
# with alpha = 0.05 the distance is pushed down, most visibly for the covariance vectors.

# %%
if runs:
    save_figure(binary_training_figure(runs), out / "figures", "binary_training")
else:
    print("no training logs next to the bundle: nothing trained here, so no curves to show")

# %% [markdown]
# ## Per-generator results, seen and unseen
# Read the `seen` column first: high accuracy on seen generators only shows the detector fits its
# training distribution. Generalisation is the unseen rows. The format-aligned tables are the ones to
# trust; the raw ones show what reading the file container would add. The ablation columns say whether
# the regulariser helped on this data.

# %%
main_name = next(iter(models))  # the regularised detector; "alpha=0" is the ablation
for pname in protocols:
    display(Markdown(f"**{main_name}, {pname}** (threshold {thresholds[main_name]['threshold']:.3f}, set on validation)"))
    display(tables[main_name, pname].round(3))
comparison = side_by_side({main_name: tables[main_name, "aligned_jpeg95"], "alpha=0": tables["alpha=0", "aligned_jpeg95"]},
                          ("acc", "ap", "auc"))
save_table(comparison.round(4), out / "tables", "binary_ablation")
display(comparison.round(3))
summary = pd.concat([seen_unseen_means(splits.suite, probs, thresholds[name]["threshold"], bootstrap, seed)
                     .assign(run=name, protocol=pname) for (name, pname), probs in scores.items()], ignore_index=True)
summary = summary[["run", "protocol"] + [c for c in summary.columns if c not in ("run", "protocol")]]
save_table(summary.round(4), out / "tables", "binary_seen_unseen")
display(summary.round(3))
save_figure(roc_figure(splits.suite, scores[main_name, "aligned_jpeg95"],
                       f"Binary detector, {main_name}, format-aligned (dashed: unseen)"), out / "figures", "binary_roc")

# %% [markdown]
# ## The authors' released detector
# With the `paper` profile and `official_checkpoint` set, the authors' binary checkpoint is loaded
# through `exifkit.model.load_official` and scored by exactly the code above.

# %%
if official_checkpoint:
    official = from_official(load_official(official_checkpoint))
    probs, _ = fake_probabilities(official, splits.suite.samples(), store, out / "feature_cache",
                                  config.eval_max_patches)
    official_table = suite_table(splits.suite, probs, 0.5, prof.evaluation.get("bootstrap", 0), seed)
    save_table(official_table.round(4), out / "tables", "binary_official_checkpoint")
    display(official_table.round(3))
else:
    print("no official checkpoint given; set official_checkpoint to evaluate the authors' weights")
