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
# # 00 · The data: what we have, where it came from, and whether it is intact
#
# SDAIE learns from **camera photographs and their EXIF metadata only**; AI-generated images appear
# only when the detectors are evaluated. This notebook makes the data of one *profile* available and
# checks it before anything is trained on it:
#
# 1. every file listed in the profile's manifest is found and its **sha256** checked
#    (embedded demo data, a local mirror, or a download);
# 2. a table of what the profile holds, by source, label, generator and licence;
# 3. every image is decoded once with the kit's single loader, and anything that fails is listed;
# 4. a contact sheet, so you see what "real" and "fake" look like here.
#
# Profiles: `demo` (embedded in the repository, offline), `extended` (the full shared collection,
# from a mirror or the original URLs), `paper` (the authors' data; manual download).

# %% tags=["parameters"]
profile = "demo"
results_dir = "results/demo"
seed = 0
mirrors = []  # extra local folders laid out like the manifest, tried before any download
thumbnails_per_group = 3

# %%
from pathlib import Path

from IPython.display import Markdown, display

from exifkit.config import data_store, load_profile
from exifkit.data.images import load_many
from exifkit.report import contact_sheet, counts_table, sample_per_group, save_figure, save_table

out = Path(results_dir)
prof = load_profile(profile)
store = data_store(prof, mirrors=mirrors)
print(prof.description)
print("looking in:", *store.roots(), sep="\n  ")

# %% [markdown]
# ## 1. Fetch and verify
# `fetch` looks for each file under the embedded root, then the mirrors, then the download cache, and
# downloads only what is missing. Every file is hashed; a mismatch is reported, never used.
# The `paper` profile lists archives whose hashes nobody publishes: they show up as *unverified*.

# %%
report = store.fetch(progress=False)
print(report.summary())
if not report.ok:
    raise RuntimeError(f"{profile}: some files are missing or corrupt; see the list above")

# %% [markdown]
# ## 2. What the profile holds
# Look for: the balance of real and fake files, the number of generators, and the licences: the
# CC BY-NC-SA CNNDetection pairs restrict commercial use of anything built on them.

# %%
frame = store.manifest.to_frame()
counts = counts_table(frame)
save_table(counts, out / "tables", "data_counts")
display(counts)
print(f"{len(frame)} files, {frame['bytes'].sum() / 2**20:.1f} MiB")

# %% [markdown]
# ## 3. Decode every image once
# The loader returns RGB pixels in the orientation the camera stored them (EXIF rotation is not
# applied: the sensor and JPEG-grid traces live in that layout). Files that cannot be decoded are
# collected with their cause instead of being skipped silently.

# %%
image_entries = [e for e in store.manifest if e.is_image]
paths = [store.path(e) for e in image_entries]
images, failures = load_many(paths)
display(Markdown(failures.to_markdown()))
frame = frame[frame["path"].isin({e.path for e in image_entries})].copy()
frame["height"] = [images[p].shape[0] if p in images else None for p in paths]
frame["width"] = [images[p].shape[1] if p in images else None for p in paths]
sizes = frame.groupby(["label", "kind"])[["width", "height"]].describe().round(0)
display(sizes)

# %% [markdown]
# ## 4. Contact sheet
# Three files per generator (or per real source). The CNNDetection files still carry the coloured
# border that gives their label away (yellow = fake, grey = real); later stages crop it off. Only
# files whose licence allows redistribution are drawn (no ImageNet, nothing without a stated licence),
# so the executed notebook can be published.

# %%
frame["group"] = frame["generator"].where(frame["generator"] != "", frame["kind"])
frame["group"] = frame["label"] + ": " + frame["group"]
shareable = {e.path for e in image_entries if e.redistributable}
print(f"{len(shareable)} of {len(image_entries)} images may be shown; the others are left out of the sheet")
sample = sample_per_group(frame[frame["path"].isin(shareable)], "group", thumbnails_per_group, seed)
root_of = {p: s for p, s in zip(frame["path"], paths)}
fig = contact_sheet([root_of[p] for p in sample["path"]], list(sample["group"]), ncols=8)
save_figure(fig, out / "figures", "contact_sheet")
