"""Linear probes on frozen features: how much of real against generated an extractor's image features
carry by themselves, and how that grows with the number of training fakes.

A probe is the simplest detector an extractor allows: standardised features and an L2-regularised
logistic regression. Comparing the probes of two extractors (pretext against random weights) measures
what the features hold, apart from what fine-tuning a binary detector adds. Refitting it on a share of
the training fakes says whether more generated images would help at this scale. The regularisation
strength is chosen on the training-side validation images, as everything else is; the test suite only
scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .binary import suite_pairing
from .data.suites import Sample
from .features import cached_outputs
from .metrics import macro_auc, seen_unseen_means


@dataclass(frozen=True)
class ProbeConfig:
    strengths: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)  # inverse L2 strength C tried, chosen on validation
    fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)  # of each training fake group, for the learning curve
    repeats: int = 5  # random subsets per fraction below 1
    seed: int = 0


@dataclass
class FeatureSet:
    """Image features of some samples (in order), with their labels and test-suite groups."""
    samples: list[Sample]
    features: np.ndarray  # (n, D)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def groups(self) -> np.ndarray:
        return np.array([s.group for s in self.samples])

    def by_key(self, probs: np.ndarray) -> dict[str, float]:
        return {s.key: float(p) for s, p in zip(self.samples, probs)}


def feature_set(extractor, samples: list[Sample], store, cache_root: Path, max_patches: int | None,
                protocol=None, memo=None):
    """(FeatureSet, FailureReport): features of the ``samples`` that load, under ``protocol``, from the cache
    the one-class evaluation fills; those that do not load are left out and reported, as the tables do."""
    feats, failures = cached_outputs(extractor, samples, store, cache_root, max_patches=max_patches,
                                     protocol=protocol, progress=False, memo=memo)
    kept = [s for s in samples if s.key in feats]
    return FeatureSet(kept, np.stack([feats[s.key] for s in kept])), failures


def fit_probe(features: np.ndarray, labels: np.ndarray, strength: float):
    """Standardise, then logistic regression with classes weighted to balance (fakes are the minority)."""
    if len(set(labels.tolist())) < 2:
        raise ValueError("a probe needs real and generated training images")
    return make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=5000, class_weight="balanced")
                         ).fit(features, labels)


def choose_strength(train: FeatureSet, validation: FeatureSet, config: ProbeConfig = ProbeConfig()):
    """(C, {C: paired validation AUC}): the strength whose probe ranks the validation fakes of each group
    highest against the reals that group is scored against (as :func:`exifkit.binary.validation_auc`)."""
    pairing = suite_pairing(validation.samples)
    by_strength = {}
    for c in config.strengths:
        probs = fit_probe(train.features, train.labels, c).predict_proba(validation.features)[:, 1]
        by_strength[c] = macro_auc(validation.labels, probs, list(validation.groups), pairing)
    return max(by_strength, key=by_strength.get), by_strength


def fake_subset(train: FeatureSet, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Mask keeping every real and ``fraction`` of each fake group's images (at least one of each)."""
    labels, groups = train.labels, train.groups
    keep = np.ones(len(labels), dtype=bool)
    for group in sorted(set(groups[labels == 1])):
        idx = np.flatnonzero((groups == group) & (labels == 1))
        keep[rng.permutation(idx)[max(1, int(round(len(idx) * fraction))):]] = False
    return keep


def learning_curve(train: FeatureSet, test: FeatureSet, suite, strength: float, config: ProbeConfig = ProbeConfig()):
    """Seen and unseen mean test AUC of the probe refitted on a share of the training fakes, one row per
    (fraction, repeat): does the probe still gain from more generated images?"""
    rows = []
    for fraction in config.fractions:
        for repeat in range(config.repeats if fraction < 1 else 1):
            keep = fake_subset(train, fraction, np.random.default_rng([config.seed, repeat, int(fraction * 1000)]))
            probe = fit_probe(train.features[keep], train.labels[keep], strength)
            means = seen_unseen_means(suite, test.by_key(probe.predict_proba(test.features)[:, 1]), 0.5)
            row = {"fraction": fraction, "repeat": repeat, "training fakes": int(train.labels[keep].sum())}
            row.update({f"{g} auc": a for g, a in zip(means["generators"], means["mean auc"])})
            rows.append(row)
    return pd.DataFrame(rows)


def probe_table(extractors: dict, train_samples, validation_samples, suite, store, cache_root: Path,
                max_patches: int | None, protocol, config: ProbeConfig = ProbeConfig(), bootstrap: int = 0):
    """Per extractor (name -> Extractor): the strength chosen on validation, its validation AUC, and the seen
    and unseen mean test AUC of the probe fitted on every training image, with bootstrap intervals; and the
    learning curves, stacked with an ``extractor`` column."""
    rows, curves = [], []
    test_samples = suite.samples()
    for name, extractor in extractors.items():
        (train, validation, test), reports = zip(*(feature_set(extractor, s, store, cache_root, max_patches, protocol)
                                                   for s in (train_samples, validation_samples, test_samples)))
        for report in reports:
            if report:
                print(report.to_markdown())
        strength, by_strength = choose_strength(train, validation, config)
        probe = fit_probe(train.features, train.labels, strength)
        means = seen_unseen_means(suite, test.by_key(probe.predict_proba(test.features)[:, 1]), 0.5,
                                  bootstrap, config.seed)  # only the threshold-free AUC is reported
        row = {"extractor": name, "C": strength, "validation auc": by_strength[strength]}
        for _, m in means.iterrows():
            row[f"{m['generators']} auc"] = m["mean auc"]
            if "mean auc 95% CI" in m:
                row[f"{m['generators']} auc 95% CI"] = m["mean auc 95% CI"]
        rows.append(row)
        curves.append(learning_curve(train, test, suite, strength, config).assign(extractor=name))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
