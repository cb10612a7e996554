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
makes = [v["Make"] or "(none)" for v in labels.values]
keep = pd.Series(makes).value_counts().head(top_makes).index
mask = [m in set(keep) for m in makes]
sub = type(labels)([p for p, k in zip(labels.paths, mask) if k], labels.vocabularies,
                   labels.categorical[mask], labels.ranked[mask], [v for v, k in zip(labels.values, mask) if k])
cov = coverage_frame(sub, [m for m, k in zip(makes, mask) if k])[list(keep)]
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
# Log axes: exposure time and ISO span several decades. Clusters at round values (ISO 100, f/2.8)
# are where ties come from.

# %%
save_figure(ranked_distributions(labels), out / "figures", "ranked_tags")

# %% [markdown]
# ## Makes and models
# The camera population is skewed; the pretext task will be better at the makers it sees most.

# %%
save_figure(top_counts(makes, 20, "Photos per make"), out / "figures", "makes")
save_figure(top_counts([f"{v['Make']} {v['Model']}" for v in labels.values if v["Model"]], 20,
                       "Photos per make/model (top 20)"), out / "figures", "models")

# %% [markdown]
# ## Pair-label balance of the ranked tags
# For random pairs of photos: the share that is informative (both present, different), and, among
# pairs with both values, the share labelled 1 under the authors' tie rule. Without ties it would be
# 0.5; every tie pushes it up, so a tag with many ties teaches "first >= second" rather than an order.

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
