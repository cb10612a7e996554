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
# # 06 · Data scaling: how many photos does the method need?
#
# > **Learning objectives.** After this notebook you can design a scaling study that can fail (nested
# > subsets, fixed budget, a random-init control, intervals); read a metric against log2(data); fit a
# > line with an interval on its slope and say when an extrapolation is, and is not, allowed.
# >
# > **Prerequisites.** Notebooks 02-04 (pretext training, the one-class detector, linear probes).
# > Least squares; what a confidence interval is.
# >
# > **Run time.** About 55 s on two CPU cores for the demo profile (a miniature study: the demo's
# > small network, 3 sizes, 1 seed). The extended study it then shows took about 90 minutes of
# > training and 40 of scoring (`exifkit study scaling --profile extended`); its results are
# > committed and only read here.
# >
# > **Exercises.** 6.1 (predict) the largest subset from the smaller ones; 6.2 (coding) the slope's
# > interval; 6.3 (concept) what the interval leaves out.
#
# At the scale this kit can reach, the detectors of notebooks 03-05 score only a little better than the
# same network with random weights. That alone does not say whether the method fails, or works and
# needs more photos. This notebook measures the answer instead of guessing it:
#
# * **Nested subsets.** The camera photos are split once: a *pool* whose first n photos are the subset
#   of size n (so each subset holds the smaller ones), 40 *validation* photos, the profile's *held-out*
#   photos (the camera reals of the test suite) and the photos of some *camera models* that no subset
#   contains. Every split is checked disjoint by sha256.
# * **A fixed budget.** Every subset trains the same number of steps under each seed. Small subsets
#   see each photo many times; the loss of fixed held-out pairs, logged along the way, shows where they
#   start to memorise.
# * **A control.** Every metric is shown next to the same metric for a randomly initialised network,
#   with a paired bootstrap interval of the difference (the same resampled test images for both).
# * **A fit that may refuse.** Each metric is fitted against log2(photos). Only where the slope's 95 %
#   interval excludes 0 does the notebook extrapolate to the photo count at which the AUC would reach
#   0.80 or 0.90.
#
# A second axis holds the extractor fixed and grows the *generated* training images instead.

# %% tags=["parameters"]
profile = "demo"
results_dir = "results/demo"
seed = 0
mirrors = []
steps = None  # None: the study's fixed budget from the profile
run = True  # run (or resume) this profile's study; False: only show the committed extended study
reference = "results/extended/scaling"  # the committed extended study, shown in full below

# %%
import dataclasses
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from exifkit.config import data_store, load_profile
from exifkit.loglinear import fit_table
from exifkit.report import fake_axis_figure, loss_curves_figure, save_figure, save_table, scaling_figure
from exifkit.scaling import HEADLINE_METRICS, ScalingConfig, headline, run_study, save_study, study_photos

out = Path(results_dir)
prof = load_profile(profile)
if steps is not None:
    study = dict(prof.study["scaling"])
    study["pretext"] = {**study.get("pretext", {}), "steps": int(steps)}
    prof = dataclasses.replace(prof, study={**prof.study, "scaling": study})
config = ScalingConfig.from_profile(prof)
store = data_store(prof, mirrors=mirrors)
design = study_photos(store.manifest, prof.pretext_config().holdout_fraction, prof.seed, config)
display(design.describe())
budget = prof.pretext_config(**config.pretext)
print(f"nested subsets of {list(config.sizes)} photos, seeds {list(config.seeds)}, "
      f"{budget.steps} steps of {budget.batch_pairs} pairs each")

# %% [markdown]
# ## The study on this profile
# `run_study` trains what is missing and scores every run, skipping whatever an earlier call finished;
# the same happens from the command line with `exifkit study scaling --profile PROFILE`. On the demo
# profile this is a miniature: the demo's small network, a few dozen steps. It shows the machinery and
# the shape of the tables, not an answer; the answer is the extended study further down. Look at the
# layout of the table and figure (the same as below) rather than at their numbers.

# %%
if run:
    result = run_study(prof, store, out / "scaling", progress=False)
    paths = save_study(result, config, out / "scaling")
    own = {"runs": result.runs, "fit": pd.read_csv(paths["fit"]), "losses": result.losses,
           "variants": result.variants, "fakes": result.fake_axis}
    print(f"recipe: {result.recipe}")
    display(headline(own["runs"], own["fit"]).round(3))
    fig = scaling_figure(own["runs"], own["fit"], HEADLINE_METRICS[:3])
    save_figure(fig, out / "figures", "scaling_own")
    display(fig)

# %% [markdown]
# ## The extended study
# The committed run of `exifkit study scaling --profile extended`: the paper's network, five nested
# subsets from 19 to 310 camera photos, two seeds each, every run 120 steps of 16 pairs. First the
# variants tried at 310 photos (only the validation photos choose), then every metric.

# %%
ref = Path(reference)
have_reference = (ref / "runs.csv").is_file()
if have_reference:
    study = {"runs": pd.read_csv(ref / "runs.csv"), "fit": pd.read_csv(ref / "fit.csv"),
             "losses": pd.read_csv(ref / "heldout_loss.csv"), "variants": pd.read_csv(ref / "variants.csv"),
             "fakes": pd.read_csv(ref / "fake_axis.csv") if (ref / "fake_axis.csv").is_file() else None}
    display(study["variants"].round(4))
else:
    print(f"{ref}/runs.csv is missing: run `exifkit study scaling --profile extended` to make it")
    study = own if run else None

# %% [markdown]
# ### Every metric against photos
# Look at each panel from left to right. Points are single runs (one colour per seed) with their bootstrap
# 95 % interval over test images; the black line is the mean over seeds; the grey band is random init.
# The red line is the fit: dashed and drawn on to the targets where its slope interval excludes 0,
# dotted where it does not (and then nothing is extrapolated). A curve inside the grey band has learnt
# nothing the detectors can use; a flat curve above it has learnt something that more photos, at this
# budget, do not improve.

# %%
if study is not None:
    fig = scaling_figure(study["runs"], study["fit"], HEADLINE_METRICS)
    save_figure(fig, out / "figures", "scaling")
    display(fig)

# %% [markdown]
# ### The fit, stated plainly
# One row per headline metric: the mean over seeds at the smallest and largest subset, random init,
# the gain per doubling with its 95 % interval and, for the AUCs, the extrapolated photo count for 0.80
# and 0.90 (with an interval) or "cannot be extrapolated". The full table, every tag included, is
# `fit.csv` beside `runs.csv`.
#
# **Assumptions.** The metric is linear in log2(photos) over the measured range *and beyond it*; the
# budget (steps) stays fixed as photos grow; each run is an independent point (they are not quite: every
# run of a seed is scored on the same test images). Each is false somewhere: AUCs saturate below 1, and
# with more photos one would also train longer.

# %%
if study is not None:
    table = headline(study["runs"], study["fit"])
    save_table(table.round(4), out / "tables", "scaling_headline")
    display(table.round(3))

# %% [markdown]
# ### Paired differences from random init
# For the largest subset, the difference of each metric from the random network of the same seed, on the
# same bootstrap draws of the test images. An interval that excludes 0 says the pretext training bought
# something on these images.

# %%
if study is not None:
    runs = study["runs"]
    largest = runs[(runs["photos"] == runs["photos"].max()) & runs["metric"].isin(HEADLINE_METRICS)]
    display(largest[["metric", "seed", "value", "ci_low", "ci_high", "vs_random", "vs_random_low",
                     "vs_random_high"]].round(3))

# %% [markdown]
# ### Per tag
# What each EXIF head learnt at the largest subset (mean over seeds), against its baseline (the majority
# class of the training photos for a categorical tag, 0.5 for a ranked one) and random init. Tags whose
# baseline is near 1 (a single class in almost every photo) cannot show a gain at all.

# %%
if study is not None:
    tags = runs[runs["metric"].str.startswith("pretext ") & ~runs["metric"].str.endswith("baselines")]
    at_largest = tags[tags["photos"] == tags["photos"].max()].groupby("metric")[["value", "baseline"]].mean()
    at_random = tags[tags["photos"] == 0].groupby("metric")["value"].mean().rename("random init")
    per_tag = at_largest.join(at_random).assign(gain=lambda t: t["value"] - t["baseline"])
    display(per_tag.round(3))

# %% [markdown]
# ### Where small subsets start to memorise
# The pretext loss of fixed pairs of validation, held-out and unseen-model photos, logged every few
# steps. Look for a line that falls and then rises: it has begun to fit its own photos rather than cameras; compare
# when that happens for 19 and for 310 photos.

# %%
if study is not None:
    fig = loss_curves_figure(study["losses"])
    save_figure(fig, out / "figures", "scaling_heldout_loss")
    display(fig)

# %% [markdown]
# ### The other axis: generated training images
# The extractor held fixed (on the extended study, the shipped reference network, trained for 1,800
# steps on the pretext photos), the probe and a short binary run are trained on nested shares of the
# generated training images, every real kept. Look at the slope: a line still rising at the right says more fakes would
# help; a flat one says the features are the limit.

# %%
if study is not None and study["fakes"] is not None:
    fig = fake_axis_figure(study["fakes"])
    save_figure(fig, out / "figures", "scaling_fake_axis")
    display(fig)
    display(study["fakes"].drop(columns=["binary seconds"], errors="ignore").round(3))

# %% [markdown]
# ### Exercise 6.1 (predict): the largest subset from the smaller ones
# Cover the largest subset's points. Fit the line on the four smaller sizes only and, before running the
# cell, write down what you expect it to predict for the probe's unseen-generator AUC at the largest size,
# and whether the measured value will fall inside the prediction's spread. Then run it.

# %%
if study is not None:
    trained = study["runs"][study["runs"]["photos"] > 0]
    largest_size = trained["photos"].max()
    smaller = fit_table(trained[trained["photos"] < largest_size]).set_index("metric")
    metric = "probe auc, unseen generators"
    if metric in smaller.index and smaller.loc[metric, "points"] >= 3:
        f = smaller.loc[metric]
        import numpy as np

        predicted = f["intercept"] + f["slope"] * np.log2(largest_size)
        measured = trained[(trained["photos"] == largest_size) & (trained["metric"] == metric)]["value"]
        print(f"fitted on smaller sizes: {f['slope']:+.3f} per doubling [{f['slope_low']:+.3f}, {f['slope_high']:+.3f}]")
        print(f"predicted at {largest_size} photos: {predicted:.3f} (residual sd {f['residual sd']:.3f}); "
              f"measured: {', '.join(f'{v:.3f}' for v in measured)}")

# %% [markdown] tags=["solution"]
# *What happens.* On the extended study (measured 2026-12-06) the four smaller sizes give a slope of
# -0.004 per doubling [-0.027, +0.019] and predict 0.507 at 310 photos, with a residual standard
# deviation of 0.030; the two seeds measured 0.569 and 0.477, one on each side, each about two residual
# deviations away. The seeds scatter more than a doubling moves the line. The lesson is about
# extrapolation in general. A line that fits the range it was fitted on says little about the next
# doubling, and nothing about ten more; a fit is only worth extrapolating when its slope is known well
# enough that the far end of its interval still points the same way.

# %% [markdown]
# ### Exercise 6.2 (coding): the slope's interval
# Complete `slope_interval`: the least-squares slope of `y` on `x` and its two-sided 95 % interval from
# Student's t with n - 2 degrees of freedom. The standard error of the slope is
# sqrt(sum(residual²) / (n - 2) / sum((x - mean x)²)).

# %% tags=["solution"]
import numpy as np
from scipy import stats


def slope_interval(x, y, level=0.95):
    """(slope, low, high) of the least-squares line of y on x."""
    # BEGIN SOLUTION
    x, y = np.asarray(x, float), np.asarray(y, float)
    xc = x - x.mean()
    slope = (xc * (y - y.mean())).sum() / (xc ** 2).sum()
    resid = y - (y.mean() + slope * xc)
    se = np.sqrt((resid ** 2).sum() / (len(x) - 2) / (xc ** 2).sum())
    t = stats.t.ppf(0.5 + level / 2, len(x) - 2)
    return slope, slope - t * se, slope + t * se
    # END SOLUTION


# %% tags=["check"]
import numpy as np

from exifkit.loglinear import fit_loglinear

rng = np.random.default_rng(0)
photos = np.repeat([19, 39, 78, 155, 310], 2)
y = 0.55 + 0.02 * np.log2(photos) + rng.normal(0, 0.01, len(photos))
fit = fit_loglinear(photos, y)
assert np.allclose(slope_interval(np.log2(photos), y), (fit["slope"], fit["slope_low"], fit["slope_high"]))
print("slope_interval matches exifkit.loglinear.fit_loglinear")

# %% [markdown]
# ### Exercise 6.3 (concept): what the interval leaves out
# The slope's interval treats every run as an independent point. Name two sources of uncertainty it
# leaves out, say for each whether it would widen or narrow the interval, and describe how you would
# measure one of them with the kit (hint: `split_indices` takes a seed).

# %% [markdown] tags=["solution"]
# *Model answer.* (1) **The test images.** Every run is scored on the same held-out photos and test
# suite, so their sampling error is shared: it moves all points together and is invisible in the
# scatter around the line. It widens the uncertainty of the level, and of the slope to the degree that
# small and large runs use the test images differently. A bootstrap of the whole fit over test images
# (resample once, refit every metric) measures it. (2) **The split.** One pool, one order, one held-out
# set: another draw of which photos are held out, or which enter the small subsets first, could move
# the small sizes a lot (19 photos from 143 camera models). Rerun the study with another profile seed
# (another `split_indices` draw) and refit; the spread of the slopes across splits is the missing term.
# (3) **The budget.** The fit holds for 120 steps; with more photos one would train longer, so the
# slope at a budget that grows with the data is likely larger. None of these narrows the interval.

# %% [markdown]
# ## What this shows, and what it does not
# The headline table gives the measured answer at this kit's scale. The paper trains on up to 900,000
# photos; the line above is fitted between 19 and 310 and at a fixed, small budget, so even where it
# extrapolates, the count is an order of magnitude, a reason to collect photos or not, never a promise.
