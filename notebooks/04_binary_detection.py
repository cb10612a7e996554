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
# The test that matters is on **unseen** generators. The authors train on ProGAN alone; the demo
# trains on five CNNDetection GANs and tests on everything, marking which generators were seen.
# The **ablation** trains the same network with alpha = 0 (no regulariser) on the same budget.
#
# Training augmentation follows the authors: random square resize (p 0.3), Gaussian blur (p 0.1),
# JPEG at quality 90-99 with Pillow or OpenCV (p 0.25); 16 random patches per image. Evaluation uses
# every patch of the image (capped on the demo), P(fake) from the softmax, accuracy at 0.5 and AP with
# fake as positive.

# %% tags=["parameters"]
profile = "demo"
results_dir = "results/demo"
seed = 0
mirrors = []
steps = None  # None: the profile's budget
resume = False
official_checkpoint = None  # path to the authors' bc/pretrained.pth to evaluate it with the same code

# %%
from pathlib import Path

import pandas as pd
from IPython.display import display

from exifkit.binary import fake_probabilities, from_official, load_binary, load_training_images, train_binary
from exifkit.config import data_store, load_profile
from exifkit.metrics import suite_table
from exifkit.model import load_official
from exifkit.pretext import load_pretext
from exifkit.report import binary_training_figure, roc_figure, save_figure, save_table, side_by_side

out = Path(results_dir)
prof = load_profile(profile)
store = data_store(prof, mirrors=mirrors)
splits = prof.splits(store.manifest)
config = prof.binary_config(seed=seed, **({"steps": steps} if steps else {}))
checkpoint = out / "pretext" / "last.pt"
if not checkpoint.exists():
    raise FileNotFoundError(f"{checkpoint}: run notebook 02 (or `exifkit pretext train --profile {profile}`) first")
frozen = load_pretext(checkpoint)[0].extractor
print("seen in training:", ", ".join(splits.seen_generators))
print("unseen:", ", ".join(p.generator for p in splits.suite.pairs if not p.seen_in_training))
display(splits.composition().query("set != 'one-class training'"))

# %% [markdown]
# ## Train: alpha = 0.05 (the authors') and alpha = 0 (ablation)

# %%
images, labels, failures = load_training_images(splits.binary_train, store)
if failures:
    print(failures.to_markdown())
runs, tables = {}, {}
for alpha in (config.alpha, 0.0):
    name = f"alpha={alpha:g}"
    run_dir = out / "binary" / name
    cfg = type(config)(**{**config.__dict__, "alpha": alpha})
    result = train_binary(cfg, frozen, images, labels, run_dir, resume=resume)
    print(f"{name}: {result.seconds:.0f} s, {result.images_per_second:.1f} images/s")
    model = load_binary(result.checkpoint, cfg.extractor, frozen)
    probs, test_failures = fake_probabilities(model, splits.suite.samples(), store, out / "feature_cache",
                                              cfg.eval_max_patches)
    if test_failures:
        print(test_failures.to_markdown())
    runs[name] = pd.read_csv(result.metrics)
    tables[name] = suite_table(splits.suite, probs, 0.5, prof.evaluation.get("bootstrap", 0), seed)
    save_table(tables[name].round(4), out / "tables", f"binary_{name.replace('=', '')}")
    if alpha:
        main_probs = probs

# %% [markdown]
# ## Training curves and what the regulariser does
# The right panel is the distance between the trainable and the frozen extractor. With alpha = 0 the
# trainable network (which starts from random weights) has no reason to come near the frozen one;
# with alpha = 0.05 the distance is pushed down, most visibly for the covariance vectors.

# %%
save_figure(binary_training_figure(runs), out / "figures", "binary_training")

# %% [markdown]
# ## Per-generator results, seen and unseen
# Read the `seen` column first: high accuracy on seen generators only shows the detector fits its
# training distribution. Generalisation is the unseen rows. The ablation columns say whether the
# regulariser helped on this data.

# %%
main, ablation = tables[f"alpha={config.alpha:g}"], tables["alpha=0"]
display(main.round(3))
comparison = side_by_side({f"alpha={config.alpha:g}": main, "alpha=0": ablation}, ("acc", "ap", "auc"))
save_table(comparison.round(4), out / "tables", "binary_ablation")
display(comparison.round(3))
summary = pd.DataFrame([{"run": name, "generators": group,
                         "mean acc": t[t["generator"] != "mean"].query(f"seen == {flag}")["acc"].mean(),
                         "mean ap": t[t["generator"] != "mean"].query(f"seen == {flag}")["ap"].mean()}
                        for name, t in tables.items() for group, flag in (("seen", True), ("unseen", False))])
save_table(summary.round(4), out / "tables", "binary_seen_unseen")
display(summary.round(3))
save_figure(roc_figure(splits.suite, main_probs, f"Binary detector, alpha={config.alpha:g} (dashed: unseen)"),
            out / "figures", "binary_roc")

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
