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
# # 01 · EXIF analysis: the labels the pretext task learns from
#
# > **Learning objectives.** After this notebook you can name the 14 pretext targets and how each is
# > turned into a label; judge from coverage, class balance and tie share whether a tag can teach the
# > network anything; and explain why detection at test time never reads EXIF.
# >
# > **Prerequisites.** Notebook 00 (the data). What EXIF is: the metadata block a camera writes into
# > a JPEG (make, model, exposure settings).
# >
# > **Run time.** About 15 s on two CPU cores for the demo profile, about 15 s for `extended`.
# >
# > **Exercises.** 1.1 (coding) the authors' pair labels; 1.2 (predict) what rounding does to the
# > informative pairs; 1.3 (concept) why the Orientation tag is not applied.
#
# SDAIE's extractor never sees an AI-generated image while it learns. Its only supervision is the
# EXIF metadata of camera photos: it **classifies** 7 categorical tags (Make, Model, Flash, ...) and
# **ranks pairs** of photos on 7 ordered tags (focal length, aperture, ...). A tag can only teach
# the network something if
#
# * many photos carry it (*coverage*),
# * its classes are not all one value (*class balance*), and
# * for ranked tags, two random photos usually differ (*informative pairs*): a tied pair carries no
#   ordering signal, and the authors' code labels ties as "first >= second", i.e. 1.
#
# This notebook measures all three on the profile's camera photos and writes the **EXIF card**.

# %% tags=["parameters"]
profile = "demo"
results_dir = "results/demo"
seed = 0
mirrors = []
top_makes = 12

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from exifkit.config import data_store, load_profile
from exifkit.exif.read import read_many
from exifkit.exif.schema import TAGS, LabelConfig, build_labels, card_markdown, exif_card, write_card
from exifkit.report import (categorical_distributions, coverage_frame, coverage_heatmap,
                            pair_balance_frame, pair_balance_plot, ranked_distributions,
                            save_figure, save_table, top_counts)

out = Path(results_dir)
prof = load_profile(profile)
store = data_store(prof, mirrors=mirrors)
cameras = [e for e in store.manifest if e.kind == "camera"]
records = read_many(store.path(e) for e in cameras)
print(f"{len(records)} camera photos; readers used:", pd.Series([r.reader for r in records]).value_counts().to_dict())

# %% [markdown]
# ## The 14 targets
# Seven categorical and seven ranked, in the authors' label order. The authors' code does not name
# its ranked tags; the last column says where each of ours comes from.

# %%
display(pd.DataFrame([{"position": i, "tag": t.name, "kind": t.kind, "unit": t.unit, "why": t.why}
                      for i, t in enumerate(TAGS)]))

# %% [markdown]
# ## Labels and the EXIF card
# Categorical vocabularies are built from the data: the most frequent values up to the authors'
# class budget, the rest merged into `other`. Missing values become -1 (categorical) or NaN (ranked)
# so the losses can mask them.

# %%
config = LabelConfig()
config.max_classes.update(prof.exif_max_classes)
labels = build_labels(records, config)
card = exif_card(labels, prof.name, records)
for path in write_card(card, out):
    print("wrote", path)
display(Markdown(card_markdown(card)))

# %% [markdown]
# ## Which makes carry which tags
# Look for rows that are dark for whole makes: a tag that only some makers write teaches the
# network to recognise the maker, not the setting.

# %%
makes = labels.makes()
keep = list(pd.Series(makes).value_counts().head(top_makes).index)
frequent = labels.subset([m in keep for m in makes])
cov = coverage_frame(frequent, frequent.makes())[keep]
save_figure(coverage_heatmap(cov, f"Tag coverage for the {len(keep)} most frequent makes"), out / "figures", "tag_coverage")

# %% [markdown]
# ## Categorical tags
# Look for one dominant class (Flash "did not fire", ExposureMode "auto"): a head can reach high
# accuracy by always answering it, so accuracy alone says little about what the extractor learnt.
#
# Model is the extreme case on the demo profile: the demo was built to cover as many camera models as
# possible, so most models appear once and the Model head's vocabulary is a few repeated models plus a
# large `other`. With the authors' budget of 6 classes this is true of any diverse photo collection.

# %%
save_figure(categorical_distributions(labels), out / "figures", "categorical_tags")

# %% [markdown]
# ## Ranked tags
# Log axes: exposure time and ISO span several decades. Look for clusters at round values (ISO 100,
# f/2.8): they are where ties come from.

# %%
save_figure(ranked_distributions(labels), out / "figures", "ranked_tags")

# %% [markdown]
# ### Exercise 1.1 (coding): the authors' pair labels
# For a ranked tag, a training pair (a, b) gets the target 1 when value(a) >= value(b) and 0 otherwise;
# a pair where either value is missing (NaN) is masked out of the loss. Complete `pair_targets` for
# arrays of values: 1.0 or 0.0 per pair, NaN where either value is missing. Note what the rule does
# to ties.

# %% tags=["solution"]
import numpy as np


def pair_targets(first, second):
    """Per pair: 1.0 if first >= second, 0.0 if first < second, NaN if either is missing."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    # BEGIN SOLUTION
    targets = (first >= second).astype(float)
    targets[np.isnan(first) | np.isnan(second)] = np.nan
    return targets
    # END SOLUTION


# %% tags=["check"]
import numpy as np
import torch

from exifkit.pretext import ranking_loss

got = pair_targets([1.0, 2.0, 2.0, np.nan, 5.0], [2.0, 1.0, 2.0, 3.0, np.nan])
np.testing.assert_array_equal(got, [0.0, 1.0, 1.0, np.nan, np.nan])
# the kit's ranking loss with scores that say "first is larger" with certainty is near zero exactly
# where your target is 1, and large where it is 0
rng = np.random.default_rng(0)
a, b = rng.integers(0, 4, 200).astype(float), rng.integers(0, 4, 200).astype(float)
a[rng.random(200) < 0.1] = np.nan
targets = pair_targets(a, b)
for i in range(200):
    loss = float(ranking_loss(torch.tensor([8.0]), torch.tensor([0.0]), torch.tensor([a[i]]), torch.tensor([b[i]])))
    assert (loss == 0.0) if np.isnan(targets[i]) else ((loss < 1e-6) == (targets[i] == 1.0)), (a[i], b[i])
print("pair_targets follows the authors' tie rule")

# %% [markdown]
# ### Exercise 1.2 (predict): how much does rounding cost?
# Many cameras write FocalLength with one decimal, and zoom lenses sit at round values. Before you run
# the cell below, write down what you expect: if every focal length is rounded to the nearest 10 mm,
# does the share of informative pairs (both known, different) fall a little, fall by half, or not at
# all? And what happens to the share of pairs labelled 1?

# %%
from exifkit.exif.schema import informative_pair_share, pair_label_balance

focal = [v["FocalLength"] for v in labels.values]
for step_mm in (None, 1, 10, 50):
    values = focal if step_mm is None else [None if f is None else round(f / step_mm) * step_mm for f in focal]
    balance = pair_label_balance(values)
    print(f"rounded to {step_mm or 'as stored':>9} mm: informative pairs {informative_pair_share(values):.3f}, "
          f"labelled 1 {balance['label1_share']:.3f}, ties {balance['tie_share']:.3f}")

# %% [markdown] tags=["solution"]
# *What happens.* Coarser values mean more ties, and every tie is a pair that teaches no order. The
# informative share falls and the share labelled 1 rises above 0.5, because the authors' rule labels a
# tie 1. On the demo photos rounding to 1 mm costs a few points of informative pairs, rounding to 10 mm
# about a third of them, and at 50 mm most pairs are ties and the labels are mostly 1. The lesson for
# the pretext task: a ranked tag is only as informative as its
# values are diverse, and a tie-heavy tag mainly teaches the network to answer "first >= second".

# %% [markdown]
# ## Makes and models
# The camera population is skewed; the pretext task will be better at the makers it sees most. Look for
# how many makes and models have only one or two photos: for the Make and Model heads they are `other`.

# %%
save_figure(top_counts(makes, 20, "Photos per make"), out / "figures", "makes")
save_figure(top_counts([f"{v['Make']} {v['Model']}" for v in labels.values if v["Model"]], 20,
                       "Photos per make/model (top 20)"), out / "figures", "models")

# %% [markdown]
# ## Pair-label balance of the ranked tags
# For random pairs of photos: the share that is informative (both present, different), and, among
# pairs with both values, the share labelled 1 under the authors' tie rule. Without ties it would be
# 0.5; every tie pushes it up, so a tag with many ties teaches "first >= second" rather than an order.
# Look for tags whose informative share is low and whose label-1 share is far above 0.5.

# %%
balance = pair_balance_frame(card)
save_table(balance.round(4), out / "tables", "pair_balance")
display(balance.round(3))
save_figure(pair_balance_plot(balance), out / "figures", "pair_balance")

# %% [markdown]
# ## Do AI-generated files carry EXIF?
# Rarely, and when they do it is not a camera's. This is why SDAIE does not read metadata at test
# time: metadata is trivial to strip or forge, so the detector must recognise camera traces in pixels.

# %%
everything = [e for e in store.manifest if e.is_image]
all_records = read_many(store.path(e) for e in everything)
has_exif = pd.DataFrame({"label": [e.label for e in everything], "kind": [e.kind for e in everything],
                         "has EXIF": [bool(r.values) for r in all_records],
                         "has Make": [r.get("Make") is not None for r in all_records]})
exif_share = has_exif.groupby(["label", "kind"]).mean().round(3).reset_index()
save_table(exif_share, out / "tables", "exif_presence")
display(exif_share)

# %% [markdown]
# ### Exercise 1.3 (concept): why is the Orientation tag not applied?
# Most image viewers rotate a photo according to its EXIF Orientation tag. The kit's loader does not:
# it returns the pixels in the layout the camera stored them. Why is that the right choice for this
# method, and what would go wrong if half of the training photos were rotated by 90 degrees on loading?

# %% [markdown] tags=["solution"]
# *Model answer.* The traces the extractor learns are tied to the sensor's pixel grid: the colour filter
# array and demosaicing pattern, row and column noise, and the 8x8 JPEG block grid, all aligned with
# the stored layout. Rotating a photo moves those patterns to other axes (the Bayer pattern's phase, the
# direction of row noise), so two photos from the same camera would look like two different cameras
# depending on how it was held. Rotating half of them would make the labels noisier and hide the very
# regularities the pretext task should find. Orientation is also a property of how the photo was held,
# not of the camera, so it carries no camera trace at all.
