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
# # 02 · Pretext training: learning camera traces from EXIF alone
#
# The extractor is trained on camera photographs only. For each pair of photos it must
#
# * **classify** the first photo's categorical tags (Make, Model, Flash, ...) with cross-entropy, and
# * **rank** the pair on each ordered tag: it outputs a score per photo and
#   P(first >= second) = Phi(score1 - score2), trained with binary cross-entropy.
#
# It never sees the photo's content in a useful form: it reads high-pass residuals of small patches
# cut at random places. Whatever lets it predict focal length or ISO from such residuals must be a
# trace of the camera: sensor noise, demosaicing, in-camera processing, JPEG settings. That is the
# feature the detectors in notebooks 03 and 04 build on.
#
# **On the demo profile** the extractor is a reduced one (see the profile file) so the run takes a
# few minutes on a laptop CPU; the paper trains the full network on up to 900,000 photos on 8 GPUs.
# Read the numbers below as a check that the pipeline learns, not as the paper's.

# %% tags=["parameters"]
profile = "demo"
results_dir = "results/demo"
seed = 0
mirrors = []
steps = None  # None: the profile's budget
resume = False

# %%
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import display

from exifkit.config import data_store, load_profile
from exifkit.data.images import load_rgb
from exifkit.exif.read import read_many
from exifkit.exif.schema import LabelConfig
from exifkit.model import count_trainable, save_official
from exifkit.model.extractor import Extractor
from exifkit.patches import random_patches, random_positions
from exifkit.pretext import load_pretext, run_pretext, trained_checkpoint
from exifkit.report import (save_figure, save_table, scrambled_patches_figure, srm_residual_figure,
                            training_curve)

out = Path(results_dir)
prof = load_profile(profile)
config = prof.pretext_config(seed=seed, **({"steps": steps} if steps else {}))
store = data_store(prof, mirrors=mirrors)
cameras = [e for e in store.manifest if e.kind == "camera"]
paths = [store.path(e) for e in cameras]
records = read_many(paths)
print(f"{len(paths)} camera photos; extractor {config.extractor}")
print(f"trainable parameters: {count_trainable(Extractor(config.extractor)):,} "
      f"(the paper's network: {count_trainable(Extractor()):,})")

# %% [markdown]
# ## What the network sees: SRM residuals
# Thirty fixed high-pass kernels, each summing to zero, turn every colour channel into 30 residual
# maps. Below, one kernel of each family on the green channel. Look for how little of the scene
# survives: flat areas go to zero, and what remains is edges, texture and noise.

# %%
photo = load_rgb(paths[0])
save_figure(srm_residual_figure(photo), out / "figures", "srm_residuals")

# %% [markdown]
# ## Scrambled patches
# Each training photo contributes a set of small crops at random positions. The Transformer that
# combines them has no positional embedding, so the set's order and the crops' places carry no
# information: the network has to look at the residuals, not the composition.

# %%
rng = np.random.default_rng(seed)
size = config.extractor.patch_size
corners = random_positions(photo.shape[0], photo.shape[1], config.n_patches, size, np.random.default_rng(seed))
patches = random_patches(photo, config.n_patches, size, np.random.default_rng(seed))
save_figure(scrambled_patches_figure(photo, corners, patches), out / "figures", "scrambled_patches")

# %% [markdown]
# ## Train
# Photos are split by file into training and held-out sets (seeded). Vocabularies are built on the
# training photos only. Checkpoints go to `results/<profile>/pretext/last.pt`; rerun with
# `resume = True` to continue an interrupted run exactly where it stopped (or to reuse a finished one:
# the extended reference run was trained by `exifkit pretext train --profile extended`, then this
# notebook ran with `resume = True`). Where the profile sets `validation_fraction`, that share of the
# *training* photos is held back and scored every `validate_every` steps; the best step is kept as
# `best.pt` and is what later notebooks use. The held-out photos below are never looked at in training.

# %%
label_config = LabelConfig()
label_config.max_classes.update(prof.exif_max_classes)
result, table, train_set, heldout_set = run_pretext(paths, records, config, out / "pretext", label_config,
                                                    resume=resume)
print(f"{len(train_set)} training photos, {len(heldout_set)} held out")
metrics = pd.read_csv(result.metrics)
print(f"{result.steps} steps; {metrics['seconds'].iloc[-1]:.0f} s of training in the last (re)start, "
      f"{metrics['pairs_per_s'].median():.1f} pairs/s (median over the log); precision {config.precision}")
if train_set.failures or heldout_set.failures:
    print(train_set.failures.to_markdown(), heldout_set.failures.to_markdown())

# %% [markdown]
# ## Training curve
# The total loss is a sum of 14 terms; a ranking term starts at log 2 = 0.69 (chance) and a
# categorical one at the log of its class count. Look for the ranking terms of well-covered tags
# (FocalLength, FNumber, ExposureTime) moving below 0.69.

# %%
save_figure(training_curve(metrics, ["FocalLength", "FNumber", "ExposureTime", "ISOSpeedRatings", "Make"]),
            out / "figures", "pretext_training_curve")

# %% [markdown]
# ## Did it learn anything? The held-out table
# For each tag, on photos the network never trained on: accuracy for categorical tags next to always
# answering the training set's most frequent class, and for ranked tags the share of informative
# pairs (both values known and different) put in the right order, next to chance (0.5). A gain near
# zero means the tag taught nothing at this scale; this table is reported whatever it shows.

# %%
validation_log = out / "pretext" / "validation.csv"
if validation_log.exists():
    validation = pd.read_csv(validation_log)
    best = validation.loc[validation["score"].idxmax()]
    print(f"training-side validation: mean gain over the baselines per step; kept step {int(best['step'])} "
          f"(gain {best['score']:.3f})")
    display(validation.round(3))
save_table(table.round(4), out / "tables", "pretext_heldout")
display(table.round(3))

# %% [markdown]
# ## Export in the authors' format
# The trained extractor and heads are also written in the layout of the authors' released
# checkpoint, so their code can load ours and `exifkit.model.load_official` can load theirs.

# %%
model, _, _ = load_pretext(trained_checkpoint(out / "pretext"))
print(save_official(out / "pretext" / "pretext_official_format.pth", model.extractor, model.heads))
