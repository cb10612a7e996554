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
# # 03 · One-class detection: model the real photos, flag what does not fit
#
# > **Learning objectives.** After this notebook you can fit a density to real-photo features and turn it
# > into a detector with a threshold set on reals only; recognise a mixture that memorised its training
# > points; tell threshold-free metrics (AUC, AP) from accuracy at a threshold; and read an ablation.
# >
# > **Prerequisites.** Notebook 02 (what the features are). Gaussian densities and log-likelihoods;
# > ROC curves.
# >
# > **Run time.** About 45 s on two CPU cores for the demo profile (features of the paper-size
# > reference network and of a random one for about 500 images, raw and aligned; cached after the first
# > run). About 7 minutes for `extended`, most of it choosing the small-sample density.
# >
# > **Exercises.** 3.1 (coding) a Gaussian log-density; 3.2 (predict) more mixture components;
# > 3.3 and 3.4 (concept) AP with real as positive, and what the random-extractor ablation controls for.
#
# The one-class detector never sees an AI-generated image. It takes the pretext extractor's features
# of real photos, fits a density to them, and sets a threshold low in the reals' log-likelihoods. A
# test image whose log-likelihood falls below it is called AI-generated.
#
# Two settings run side by side, on the same features:
#
# * **paper**: the authors' protocol exactly. A Gaussian mixture with 5 full-covariance components,
#   threshold at the 2nd percentile of the *training* reals' log-likelihoods. The authors fit it on
#   about 10,000 reals; with a few hundred reals in hundreds of dimensions each covariance is singular,
#   the mixture memorises its training points and held-out reals fall below the threshold. The
#   notebook detects that regime and says so.
# * **small_sample**: the features are standardised and a density is *chosen by the log-likelihood
#   of held-out reals* (5-fold cross-validation) among shrinkage (Ledoit-Wolf), probabilistic PCA and
#   regularised mixtures; the threshold is set on reals kept out of fitting. Fakes choose nothing.
#
# If the EXIF pretext taught the extractor camera traces, generated images (which have none) should
# land in the low-likelihood tail. The **ablation** runs the same pipeline with a randomly initialised
# extractor: the difference between the two is what the pretext training bought on this data.
#
# Every table comes twice: on the **raw** files, and **format-aligned** (every image, real or fake,
# training reals included, centre-cropped to 224 px and re-encoded as JPEG 95), so a score cannot come
# from spotting PNG against JPEG.
#
# Metrics: accuracy at the threshold, real and fake accuracy, AP with *fake* as positive (the
# kit's convention everywhere), ROC-AUC, TPR at 5 % FPR, with bootstrap 95 % intervals. The authors'
# one-class table reports AP with *real* as positive; it is shown separately under that name.
#
# **Which extractor.** On the demo profile this notebook reads, by default, the *reference* extractor:
# the paper's network, pretrained for an hour on the extended collection's camera photos and shipped in
# `results/extended/bundle`. The demo's own network from notebook 02 trains for under a minute and is too
# small to show the effect; set `extractor = "pretext"` to use it instead. With the reference
# extractor the test suite leaves out every file the reference models trained on (by sha256), so
# nothing is tested on an image it has seen.

# %% tags=["parameters"]
profile = "demo"
results_dir = "results/demo"
seed = 0
mirrors = []
extractor = None  # None: the profile's choice; "pretext" (notebook 02's network), "reference", or a bundle folder

# %%
from pathlib import Path

from IPython.display import Markdown, display

from exifkit.config import data_store, load_profile
from exifkit.pipeline import evaluation_inputs
from exifkit.metrics import paired_difference
from exifkit.model.extractor import random_extractor
from exifkit.oneclass import component_sweep, describe_runs, evaluate_and_save, mean_summary
from exifkit.perturb import load_protocols
from exifkit.report import roc_figure, save_figure, save_table, score_histograms, side_by_side
from exifkit.runtime import keep_freed_memory

keep_freed_memory()  # freed blocks kept for reuse, not returned to the system: features 1.5x faster
out = Path(results_dir)
prof = load_profile(profile)
store = data_store(prof, mirrors=mirrors)
evaluation = prof.evaluation
choice, splits = evaluation_inputs(prof, store, out, extractor, mark_seen=False)
all_splits = prof.splits(store.manifest)
settings, shipped = prof.oneclass_settings(), prof.shipped_oneclass
protocols = {"raw": None, "aligned_jpeg95": load_protocols()["aligned_jpeg95"]}
options = dict(protocols=protocols, max_patches=evaluation.get("eval_max_patches"),
               bootstrap=evaluation.get("bootstrap", 0), seed=seed)
print(f"extractor: {choice.source}; shipped one-class setting: {shipped}")
print(f"test images: {len(splits.suite.samples())} of {len(all_splits.suite.samples())} "
      f"({len(all_splits.suite.samples()) - len(splits.suite.samples())} left out: the extractor's models trained on them)")
print(splits.suite.real_source)
display(splits.composition())

# %% [markdown]
# ## The test suite
# One row per (real set, fake set, generator). Note the file formats: where reals are JPEG and fakes
# PNG or WebP, a detector can score by spotting the format; the aligned view below removes that.

# %%
display(splits.suite.describe())

# %% [markdown]
# ## Fit and score
# Features use every non-overlapping patch of each image (capped per profile), read as one set.
# They are cached on disk by weights and protocol, so rerunning this notebook is fast.

# %%
runs = evaluate_and_save(choice.extractor, splits, store, out, settings, "pretext", **options)
print("\n".join(describe_runs(runs)))

# %% [markdown]
# ## How the small-sample density was chosen
# Mean log-likelihood of held-out reals for every candidate (higher is better), raw features. This is
# the only thing that picks the density: fakes are not involved.

# %%
display(runs["raw", "small_sample"].detector.selection_.round(1))

# %% [markdown]
# ### Exercise 3.1 (coding): the log-density a mixture component computes
# Each component of the mixture is a multivariate Gaussian. Complete `gaussian_logpdf`, the log-density
# of the rows of `x` under mean `mean` and covariance `cov`: minus half of (d log 2 pi + log det cov +
# the squared Mahalanobis distance). Use a Cholesky factor rather than an explicit inverse: it is
# faster, and it fails loudly when `cov` is not positive definite, which is exactly the regime the
# paper setting runs into here.

# %% tags=["solution"]
import numpy as np


def gaussian_logpdf(x, mean, cov):
    """Log-density of each row of ``x`` (n, d) under N(mean, cov)."""
    x, mean, cov = np.atleast_2d(x), np.asarray(mean), np.asarray(cov)
    # BEGIN SOLUTION
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)  # L z = x - mean, so |z|^2 is the Mahalanobis distance
    log_det = 2 * np.log(np.diag(chol)).sum()
    return -0.5 * (x.shape[1] * np.log(2 * np.pi) + log_det + (z ** 2).sum(axis=0))
    # END SOLUTION


# %% tags=["check"]
import numpy as np
from scipy.stats import multivariate_normal

rng = np.random.default_rng(0)
a = rng.normal(size=(6, 6))
cov, mean = a @ a.T + 0.5 * np.eye(6), rng.normal(size=6)
x = rng.normal(size=(20, 6))
np.testing.assert_allclose(gaussian_logpdf(x, mean, cov), multivariate_normal(mean, cov).logpdf(x), rtol=1e-9)
print("gaussian_logpdf matches scipy")

# %% [markdown]
# ## Per-generator tables: paper setting and small-sample setting, raw and aligned

# %%
for (pname, sname), r in runs.items():
    display(Markdown(f"**{sname}, {pname}**"))
    display(r.table.round(3))

# %% [markdown]
# ### Exercise 3.2 (predict): would more components help?
# The paper setting uses 5 full-covariance components. Before running the cell, predict for 1, 5 and 10
# components: the share of *test* reals above the threshold, and the AUC. The threshold is always the
# 2nd percentile of the training reals, so about 98 % of those are above it by construction.

# %%
display(component_sweep(choice.extractor, splits, store, out / "feature_cache", (1, 5, 10),
                         max_patches=evaluation.get("eval_max_patches"), config=settings["paper"]).round(3))

# %% [markdown] tags=["solution"]
# *What happens.* Held-out reals stay far below the threshold whatever the number of components: each
# full covariance is estimated from fewer reals than feature dimensions, so it is singular up to
# `reg_covar`, and the density is sharply peaked on the training points. A test real, even from the
# same camera, lands in the tail, next to the fakes, so accuracy at the threshold collapses. More
# components make it worse, not better: fewer points per component. The AUC, which ignores the
# threshold, says whether the ordering of test images still separates the classes; it stays near 0.5
# whatever the count, so no number of components rescues a mixture
# that memorised its training reals. What helps is less
# capacity, not more: shrinkage, a low-rank model or a large `reg_covar`, which is what the
# small-sample setting chooses on held-out reals.

# %% [markdown]
# Compare real accuracy between the two settings. The paper setting's threshold comes from the very
# reals the mixture memorised, so held-out reals (and everything else) fall below it. AUC and AP do
# not depend on the threshold and say whether the features separate reals from fakes at all.
#
# ## Log-likelihoods of reals and fakes
# Plotted as "fake score" = minus the log-likelihood, so fakes should sit to the right of the dashed
# threshold. Look for generators whose histogram overlaps the reals': those are the misses.

# %%
main = runs["aligned_jpeg95", shipped]
save_figure(score_histograms(splits.suite, main.fake_scores, -main.detector.threshold_, "- log-likelihood"),
            out / "figures", "oneclass_histograms")
save_figure(roc_figure(splits.suite, main.fake_scores, f"One-class ({shipped}) on pretext features, format-aligned"),
            out / "figures", "oneclass_roc")

# %% [markdown]
# ### Exercise 3.3 (concept): which class is "positive"?
# The kit reports AP with *fake* as the positive class; the authors' one-class table reports AP with
# *real* as positive (column `ap_real_positive`). On a suite with 250 reals and 25 fakes, a detector at
# chance gives about 0.09 in one convention and about 0.91 in the other. Explain why, and say which
# convention answers the question a user of a detector asks.

# %% [markdown] tags=["solution"]
# *Model answer.* AP is the area under the precision-recall curve of the positive class, and a random
# ranking has precision equal to the positive class's share at every recall: 25/275 = 0.09 with fakes
# positive, 250/275 = 0.91 with reals positive. So AP is only comparable to its class-share baseline,
# and the same detector can look poor or excellent depending on the convention. A user asks "of the
# images flagged as generated, how many are?", which is precision with *fake* as positive; with rare
# fakes, that is where a detector's false positives hurt. ROC-AUC does not depend on the class shares
# (0.5 at chance either way), which is why the tables show it beside AP.

# %% [markdown]
# ## Ablation: a randomly initialised extractor
# Same architecture, same data, same densities; only the extractor's weights differ.

# %%
random_runs = evaluate_and_save(random_extractor(choice.extractor.config, seed), splits, store, out, settings,
                                "random", **options)
summary = mean_summary({"pretext": runs, "random init": random_runs})
save_table(summary.round(4), out / "tables", "oneclass_summary")
display(summary.round(3))
comparison = side_by_side({"pretext": runs["aligned_jpeg95", shipped].table,
                           "random init": random_runs["aligned_jpeg95", shipped].table}, ("acc", "ap", "auc"))
save_table(comparison.round(4), out / "tables", "oneclass_ablation")
display(comparison.round(3))
pretext_gain = paired_difference(splits.suite, runs["aligned_jpeg95", shipped].fake_scores,
                                 random_runs["aligned_jpeg95", shipped].fake_scores,
                                 evaluation.get("bootstrap", 0), seed)
save_table(pretext_gain.round(4), out / "tables", "oneclass_pretext_gain")
display(Markdown(f"**Pretext minus random extractor**, mean ROC-AUC, format-aligned, {shipped} setting, paired bootstrap:"))
display(pretext_gain.round(3))

# %% [markdown]
# Read the last table: it scores both extractors on the same resampled test images, so its interval is
# that of the difference itself (two separate intervals overlap even when one detector is reliably
# ahead). If it spans zero, the EXIF pretext did not measurably help the one-class detector at this
# scale. The paper's claim rests on hundreds of thousands of photos; a few hundred show the method, not
# its full effect.

# %% [markdown]
# ### Exercise 3.4 (concept): what does the random-extractor ablation control for?
# The random extractor has the same architecture, the same SRM filters, the same covariance pooling and
# the same densities; only the learnt weights are missing. What could make the random extractor's
# one-class AUC well above 0.5, and what exactly does the *difference* between the two rows measure?

# %% [markdown] tags=["solution"]
# *Model answer.* A random network is not a blank: the fixed SRM high-pass filters and second-order
# (covariance) pooling already summarise the residual noise of an image, and random projections of
# those statistics keep much of their information. Generated images often have different residual
# statistics (smoother noise, upsampling traces), so even random features can separate them. The
# ablation controls for everything except training: architecture, preprocessing, patch sampling, data,
# density and threshold rule. The difference between the rows is what the EXIF pretext training
# added. If it is within the intervals, this run gives no evidence that the pretext helped, whatever
# the absolute AUC is.
