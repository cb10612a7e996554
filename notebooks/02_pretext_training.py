# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Pretext training: learning camera traces from EXIF alone
#
# > **Learning objectives.** After this notebook you can describe what the extractor sees (SRM residuals
# > of scrambled patches) and why; write the ranking loss for ordered EXIF tags; read a training curve
# > term by term; and judge a held-out table against the right baselines.
# >
# > **Prerequisites.** Notebook 01 (the 14 targets). Convolutions, cross-entropy and what a training
# > loop does.
# >
# > **Run time.** About 45 s on two CPU cores for the demo profile (the reduced network, 400
# > steps). The extended reference run trained the paper's network for 54 minutes; with `resume = True`
# > this notebook reuses it.
# >
# > **Exercises.** 2.1 (predict) what JPEG compression does to the residuals; 2.2 (coding) the pairwise
# > ranking loss; 2.3 (concept) why the held-out table needs baselines.
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

import pandas as pd
from IPython.display import display
from numpy.random import default_rng

from exifkit.config import data_store, load_profile
from exifkit.data.images import load_rgb
from exifkit.exif.read import read_many
from exifkit.exif.schema import LabelConfig
from exifkit.augment import jpeg
from exifkit.model import count_trainable, save_official
from exifkit.model.extractor import Extractor
from exifkit.model.srm import residual_energy
from exifkit.patches import random_patches, random_positions
from exifkit.pretext import load_pretext, run_pretext, trained_checkpoint
from exifkit.report import (as_jpeg, save_figure, save_table, scrambled_patches_figure, srm_residual_figure,
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
fig = srm_residual_figure(photo)
save_figure(fig, out / "figures", "srm_residuals")
display(as_jpeg(fig))  # shown as JPEG, like notebook 00's contact sheet: as PNG it weighed 1.5 MB

# %% [markdown]
# ### Exercise 2.1 (predict): does compression add or remove residual?
# Social networks recompress every upload. Before running the cell, predict: when the photo above is
# re-encoded as JPEG at quality 95, 80, 50 and 20, does the mean absolute SRM residual go up or down,
# and do all kernel families move the same way?

# %%
crop = photo[:256, :256]
energy = {"as stored" if q is None else f"JPEG {q}": residual_energy(crop if q is None else jpeg(crop, q))
          for q in (None, 95, 80, 50, 20)}
display(pd.DataFrame(energy).T.round(2))

# %% [markdown] tags=["solution"]
# *What happens.* Re-encoding at quality 95 slightly *raises* the residual: the photo was already a
# JPEG, and a second quantisation adds its own rounding noise. From 80 down it falls steadily, because
# JPEG quantises the high-frequency DCT coefficients first, and those are what high-pass kernels
# measure: the sensor noise the extractor reads is smoothed away. The families do not move in lockstep.
# The SQUARE and EDGE kernels lose most (on the demo photo, over 80 % of their residual at quality 20),
# first-order differences least (about 40 %), since they also respond to the 8x8 block edges that
# strong compression adds. This is why robustness to recompression (notebook 05) is a
# real test for a camera-trace detector, and why binary training re-encodes both classes at random
# qualities.

# %% [markdown]
# ## Scrambled patches
# Each training photo contributes a set of small crops at random positions. The Transformer that
# combines them has no positional embedding, so the set's order and the crops' places carry no
# information: the network has to look at the residuals, not the composition.

# %%
size = config.extractor.patch_size
corners = random_positions(photo.shape[0], photo.shape[1], config.n_patches, size, default_rng(seed))
patches = random_patches(photo, config.n_patches, size, default_rng(seed))
fig = scrambled_patches_figure(photo, corners, patches)
save_figure(fig, out / "figures", "scrambled_patches")
display(as_jpeg(fig))

# %% [markdown]
# ### Exercise 2.2 (coding): the ranking loss
# For a ranked tag the network gives each photo a score s. The probability that the first photo's value
# is at least the second's is Phi(s1 - s2), with Phi the standard normal CDF, and the loss is the binary
# cross-entropy of that probability against the target of exercise 1.1. Complete `ranking_bce` for
# tensors of scores and 0/1 targets (no missing values here), averaged over pairs. Compute log Phi
# stably: `torch.special.log_ndtr` does it.

# %% tags=["solution"]
import torch


def ranking_bce(s1, s2, target):
    """Mean BCE between P(first >= second) = Phi(s1 - s2) and 0/1 targets."""
    # BEGIN SOLUTION
    d = s1 - s2
    return -(target * torch.special.log_ndtr(d) + (1 - target) * torch.special.log_ndtr(-d)).mean()
    # END SOLUTION


# %% tags=["check"]
import torch

from exifkit.pretext import ranking_loss

g = torch.Generator().manual_seed(0)
s1, s2 = torch.randn(64, generator=g) * 3, torch.randn(64, generator=g) * 3
v1, v2 = torch.rand(64, generator=g), torch.rand(64, generator=g)  # distinct values: no ties
target = (v1 >= v2).float()
assert torch.allclose(ranking_bce(s1, s2, target), ranking_loss(s1, s2, v1, v2), atol=1e-5)
assert torch.isfinite(ranking_bce(torch.tensor([40.0]), torch.tensor([0.0]), torch.tensor([0.0])))
print("ranking_bce matches the kit's ranking loss")

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
# ### Exercise 2.3 (concept): why baselines?
# The table reports, for Flash, an accuracy near 0.9 on held-out photos. A classmate concludes that the
# extractor has learnt to see from pixels whether the flash fired. What else must you look at before
# agreeing, and what number would convince you?

# %% [markdown] tags=["solution"]
# *Model answer.* The majority baseline: most photos share one Flash value ("did not fire"), so always
# answering it already scores near 0.9. Only the *gain* over that baseline says the network read
# something from the pixels, and with a few dozen held-out photos a gain of a few points is within
# noise (one photo is several per cent). A convincing result is a gain clearly above zero on many
# held-out photos, ideally repeated over seeds, or a balanced measure (per-class accuracy) above the
# baseline's. The same reasoning applies to ranked tags, whose baseline is 0.5 on informative pairs.

# %% [markdown]
# ## Export in the authors' format
# The trained extractor and heads are also written in the layout of the authors' released
# checkpoint, so their code can load ours and `exifkit.model.load_official` can load theirs.

# %%
model, _, _ = load_pretext(trained_checkpoint(out / "pretext"))
print(save_official(out / "pretext" / "pretext_official_format.pth", model.extractor, model.heads))
