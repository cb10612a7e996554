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
# > **Learning objectives.** After this notebook you can say where every image of a profile came from
# > and under which licence; explain why a file is checked by its hash before it is used; and point at
# > the differences between real and generated files (format, size, borders) that a detector could
# > exploit without learning anything about cameras.
# >
# > **Prerequisites.** Python and pandas at the level of reading a data frame. No machine learning yet.
# >
# > **Run time.** About 15 s on two CPU cores for the demo profile; about 20 s for `extended` once
# > the files are in a local mirror.
# >
# > **Exercises.** 0.1 (coding) a streaming file hash; 0.2 and 0.3 (concept) why hashes, and what a
# > coloured border teaches a detector. Model answers are in cells marked *Solution*; `make student`
# > writes copies without them.
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
from exifkit.report import as_jpeg, contact_sheet, counts_table, sample_per_group, save_figure, save_table

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
# ### Exercise 0.1 (coding): hash a file without reading it whole
# `fetch` compares each file's sha256 with the manifest. Photographs are small, but the paper's
# archives are tens of gigabytes, so the hash is computed chunk by chunk. Complete `sha256_of` so that
# it reads at most `chunk` bytes at a time and returns the hex digest. The check below compares it with
# `hashlib` on a 3 MB file and with the kit's own `sha256_file`.

# %% tags=["solution"]
import hashlib


def sha256_of(path, chunk=1 << 20):
    """The sha256 hex digest of the file at ``path``, read ``chunk`` bytes at a time."""
    # BEGIN SOLUTION
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
    # END SOLUTION


# %% tags=["check"]
import hashlib
import os
import tempfile

from exifkit.data.manifest import sha256_file

payload = os.urandom(3_000_000)
with tempfile.NamedTemporaryFile(delete=False) as fh:
    fh.write(payload)
try:
    assert sha256_of(fh.name, chunk=4096) == hashlib.sha256(payload).hexdigest() == sha256_file(fh.name)
    assert sha256_of(fh.name) == sha256_of(fh.name, chunk=7)
finally:
    os.unlink(fh.name)
print("sha256_of agrees with hashlib and with exifkit")

# %% [markdown]
# ### Exercise 0.2 (concept): why a hash, and why refuse a mismatch?
# The manifest stores a sha256 for every file, and `fetch` refuses a file whose hash differs instead of
# using it with a warning. Name two ways a file can differ from the one the manifest lists while keeping
# its name and roughly its size, and say what each would do to the tables in notebooks 03 to 05.

# %% [markdown] tags=["solution"]
# *Model answer.* (1) A server re-encodes or resizes images on the fly (many image hosts recompress
# JPEGs, or serve WebP to some clients); (2) a download is truncated or corrupted, or the upstream file
# was replaced by a newer version. In the first case the pixels change in exactly the way forensic
# traces are sensitive to: a recompressed real photo carries the host's JPEG tables and loses sensor
# noise, so the detectors would be tested on different images than the ones reported, and a result
# could not be reproduced. In the second case the file may fail to decode or decode to other content.
# A size check catches neither reliably; a cryptographic hash catches both. Refusing is the only safe
# choice: a table computed on silently different data is worse than no table.

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
# so the executed notebook can be published. Look for what differs between the rows besides the
# content: image size, aspect ratio, borders, and how clean or noisy flat areas look.

# %%
frame["group"] = frame["generator"].where(frame["generator"] != "", frame["kind"])
frame["group"] = frame["label"] + ": " + frame["group"]
shareable = {e.path for e in image_entries if e.redistributable}
print(f"{len(shareable)} of {len(image_entries)} images may be shown; the others are left out of the sheet")
sample = sample_per_group(frame[frame["path"].isin(shareable)], "group", thumbnails_per_group, seed)
root_of = {p: s for p, s in zip(frame["path"], paths)}
fig = contact_sheet([root_of[p] for p in sample["path"]], list(sample["group"]), ncols=8)
save_figure(fig, out / "figures", "contact_sheet")
display(as_jpeg(fig))  # shown as JPEG: photographs as PNG would weigh megabytes in the executed notebook

# %% [markdown]
# ### Exercise 0.3 (concept): what does a border teach?
# Suppose the CNNDetection images were used as they come, border included, to train the binary detector
# of notebook 04. What would it learn, how high would its accuracy on the CNNDetection test pairs be,
# and what would that number tell you about AI-generated images elsewhere? Which other differences in
# the table of section 3 could play the same role?

# %% [markdown] tags=["solution"]
# *Model answer.* It would learn the border colour: a handful of pixels at the edge decide the label
# perfectly, so accuracy on CNNDetection test pairs would be close to 1 while the detector knows
# nothing about generated content. On any other image (no border) its output would be arbitrary. The
# same kind of shortcut hides in the sizes and formats above: most fakes are PNG or WebP at one fixed
# size, most reals JPEG at camera sizes. A detector can separate those classes by container, size or
# compression history alone. That is why the kit crops the borders, trains on a format-aligned
# pipeline, and reports every table twice (raw and format-aligned).
