"""Every detection metric of the kit, in one place.

Convention: label 1 = fake, 0 = real; a *score* is larger for "more fake". The authors' one-class table
uses AP with **real** as the positive class (``ap_real_positive``); it is offered under that name only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_curve


def _check(labels, scores):
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal 1-d arrays")
    if not set(np.unique(labels)) <= {0, 1}:
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return labels, scores


def accuracy(labels, scores, threshold: float) -> float:
    """Share classified correctly when score > threshold means fake."""
    labels, scores = _check(labels, scores)
    return float(((scores > threshold).astype(int) == labels).mean())


def class_accuracy(labels, scores, threshold: float, cls: int) -> float:
    labels, scores = _check(labels, scores)
    mask = labels == cls
    return float(((scores[mask] > threshold).astype(int) == cls).mean()) if mask.any() else float("nan")


def _curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct score, highest first (scikit-learn's binary curve,
    without its input validation, which dominated bootstrap intervals: thousands of curves per table)."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last]
    return tps, last + 1 - tps


def _average_precision(labels, scores) -> float:
    if not labels.any():
        return float(average_precision_score(labels, scores))  # scikit-learn's warning and value
    tps, fps = _curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0, tps]) / tps[-1] * tps / (tps + fps)))


def ap_fake_positive(labels, scores) -> float:
    labels, scores = _check(labels, scores)
    return _average_precision(labels, scores)


def ap_real_positive(labels, scores) -> float:
    """AP with real as the positive class, ranking by *realness* (the authors' one-class "mAP")."""
    labels, scores = _check(labels, scores)
    return _average_precision(1 - labels, -scores)


def roc_auc(labels, scores) -> float:
    """Mann-Whitney form (ties count half): equal to scikit-learn's, without its input validation, which
    dominated bootstrap intervals (thousands of AUCs per table)."""
    labels, scores = _check(labels, scores)
    fakes = int(labels.sum())
    reals = len(labels) - fakes
    if not fakes or not reals:
        raise ValueError("a ROC-AUC needs both real and fake images")
    return float((rankdata(scores)[labels == 1].sum() - fakes * (fakes + 1) / 2) / (fakes * reals))


def macro_auc(labels, scores, groups, pairing: dict | None = None) -> float:
    """Mean over fake groups of the ROC-AUC of that group's fakes against reals. It has the shape of a
    test suite's per-generator mean, so one large fake source cannot carry the figure alone. With
    ``pairing`` (fake group -> real groups) each fake group meets only the reals the test suite would
    pair it with; without, every real."""
    labels, scores = _check(labels, scores)
    groups = np.asarray(groups)
    aucs = []
    for g in sorted(set(groups[labels == 1])):
        reals = (labels == 0) & (np.isin(groups, list(pairing[g])) if pairing is not None else True)
        if reals.any():
            aucs.append(roc_auc(np.r_[labels[reals], labels[groups == g]], np.r_[scores[reals], scores[groups == g]]))
    if not aucs:
        raise ValueError("a macro AUC needs real and fake images")
    return float(np.mean(aucs))


def tpr_at_fpr(labels, scores, fpr: float = 0.05) -> float:
    """Largest share of fakes caught while at most ``fpr`` of reals are flagged."""
    labels, scores = _check(labels, scores)
    if labels.all() or not labels.any():
        f, t, _ = roc_curve(labels, scores)  # scikit-learn's warning and value
        return float(t[f <= fpr].max())
    return _tpr_at_fpr(labels, scores, fpr)


def _tpr_at_fpr(labels, scores, fpr: float) -> float:
    tps, fps = _curve(labels, scores)
    if len(tps) > 2:  # the corners scikit-learn's ROC keeps (drop_intermediate), so the value is its value
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[keep], fps[keep]
    t, f = np.r_[0, tps] / tps[-1], np.r_[0, fps] / fps[-1]
    return float(t[f <= fpr].max())


def balanced_threshold(labels, scores) -> float:
    """The threshold (score > threshold = fake) that maximises the mean of real and fake accuracy, set
    on *validation* data; midway between neighbouring scores, so it does not sit on a sample."""
    labels, scores = _check(labels, scores)
    if len(np.unique(labels)) < 2:
        raise ValueError("a threshold needs both real and fake validation images")
    cut = np.unique(scores)
    candidates = np.r_[cut[0] - 1e-6, (cut[:-1] + cut[1:]) / 2, cut[-1] + 1e-6]
    balanced = [(class_accuracy(labels, scores, t, 0) + class_accuracy(labels, scores, t, 1)) / 2 for t in candidates]
    return float(candidates[int(np.argmax(balanced))])


@dataclass
class Summary:
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    draws: dict[str, np.ndarray] | None = None  # the bootstrap replicates, for intervals of means


def _interval(draws: np.ndarray) -> tuple[float, float]:
    return float(np.nanpercentile(draws, 2.5)), float(np.nanpercentile(draws, 97.5))


METRICS = {"acc": lambda lab, sc, t: accuracy(lab, sc, t),
           "real_acc": lambda lab, sc, t: class_accuracy(lab, sc, t, 0),
           "fake_acc": lambda lab, sc, t: class_accuracy(lab, sc, t, 1),
           "ap": lambda lab, sc, t: ap_fake_positive(lab, sc),
           "ap_real_positive": lambda lab, sc, t: ap_real_positive(lab, sc),
           "auc": lambda lab, sc, t: roc_auc(lab, sc),
           "tpr@5%fpr": lambda lab, sc, t: tpr_at_fpr(lab, sc)}


def _bootstrap_draws(labels, threshold: float, resampled: np.ndarray, columns) -> dict[str, np.ndarray]:
    """Every column over the rows of ``resampled`` (draws x images, reals first, then fakes): the
    accuracies and the rank-sum AUC for all draws at once, the two curves draw by draw without input
    checks (equal to the metrics above on each draw, tested)."""
    n_real = int((labels == 0).sum())
    fake = resampled > threshold
    out = {}
    for c in columns:
        if c == "acc":
            out[c] = np.r_[~fake[:, :n_real].T, fake[:, n_real:].T].mean(axis=0)
        elif c == "real_acc":
            out[c] = (~fake[:, :n_real]).mean(axis=1) if n_real else np.full(len(resampled), np.nan)
        elif c == "fake_acc":
            out[c] = fake[:, n_real:].mean(axis=1) if n_real < labels.size else np.full(len(resampled), np.nan)
        elif c == "auc":
            n_fake = labels.size - n_real
            ranks = rankdata(resampled, axis=1)[:, n_real:].sum(axis=1)
            out[c] = (ranks - n_fake * (n_fake + 1) / 2) / (n_fake * n_real)
        else:
            ordered = np.r_[np.zeros(n_real, int), np.ones(labels.size - n_real, int)]
            one = {"ap": lambda row: _average_precision(ordered, row),
                   "ap_real_positive": lambda row: _average_precision(1 - ordered, -row),
                   "tpr@5%fpr": lambda row: _tpr_at_fpr(ordered, row, 0.05)}[c]
            out[c] = np.array([one(row) for row in resampled])
    return out


def summarize(labels, scores, threshold: float, bootstrap: int = 0, seed: int = 0, columns=tuple(METRICS)) -> Summary:
    """The named metrics, with percentile bootstrap 95 % intervals (resampling reals and fakes separately)."""
    labels, scores = _check(labels, scores)
    values = {c: METRICS[c](labels, scores, threshold) for c in columns}
    if not bootstrap:
        return Summary(values, {})
    rng = np.random.default_rng(seed)
    real_idx, fake_idx = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    resampled = np.stack([scores[np.concatenate([rng.choice(real_idx, len(real_idx)),
                                                  rng.choice(fake_idx, len(fake_idx))])] for _ in range(bootstrap)])
    arrays = _bootstrap_draws(labels, threshold, resampled, columns)
    return Summary(values, {k: _interval(a) for k, a in arrays.items()}, arrays)


def _pair_summaries(suite, fake_scores: dict[str, float], threshold: float, bootstrap: int, seed: int, columns):
    out = []
    for pair in suite.pairs:
        reals = [fake_scores[s.key] for s in pair.reals if s.key in fake_scores]
        fakes = [fake_scores[s.key] for s in pair.fakes if s.key in fake_scores]
        labels = np.r_[np.zeros(len(reals), int), np.ones(len(fakes), int)]
        out.append((pair, len(reals), len(fakes), summarize(labels, np.r_[reals, fakes], threshold, bootstrap, seed,
                                                                columns)))
    return out


def _mean_row(summaries, columns, name: str) -> dict:
    """Mean over pairs; its interval is the percentile interval of the mean of the pairs' bootstrap
    replicates (each pair resampled within itself)."""
    row = {"generator": name, "reals": sum(s[1] for s in summaries), "fakes": sum(s[2] for s in summaries)}
    for c in columns:
        row[c] = float(np.mean([s[3].values[c] for s in summaries]))
        if summaries and summaries[0][3].draws is not None:
            lo, hi = _interval(np.nanmean([s[3].draws[c] for s in summaries], axis=0))
            row[f"{c} 95% CI"] = f"[{lo:.3f}, {hi:.3f}]"
    return row


def suite_table(suite, fake_scores: dict[str, float], threshold: float, bootstrap: int = 0, seed: int = 0,
                columns=("acc", "real_acc", "fake_acc", "ap", "auc", "tpr@5%fpr")):
    """One row per (real, fake, generator) pair of a suite, then their mean (the authors average
    over subsets), with bootstrap intervals when asked. Samples without a score (failed to load) are
    left out and counted."""
    summaries = _pair_summaries(suite, fake_scores, threshold, bootstrap, seed, columns)
    rows = []
    for pair, n_real, n_fake, summary in summaries:
        row = {"generator": pair.generator, "seen": pair.seen_in_training, "reals": n_real, "fakes": n_fake}
        for c in columns:
            row[c] = summary.values[c]
            if c in summary.intervals:
                lo, hi = summary.intervals[c]
                row[f"{c} 95% CI"] = f"[{lo:.3f}, {hi:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows + [{**_mean_row(summaries, columns, "mean"), "seen": ""}])


def seen_unseen_means(suite, fake_scores: dict[str, float], threshold: float, bootstrap: int = 0, seed: int = 0,
                      columns=("acc", "real_acc", "fake_acc", "ap", "auc")):
    """Means over the seen and over the unseen generators of a suite, with bootstrap intervals."""
    summaries = _pair_summaries(suite, fake_scores, threshold, bootstrap, seed, columns)
    rows = []
    for group, flag in (("seen", True), ("unseen", False)):
        part = [s for s in summaries if s[0].seen_in_training == flag]
        if part:
            row = _mean_row(part, columns, group)
            rows.append({"generators": group, "n": len(part),
                         **{f"mean {k}": v for k, v in row.items() if k not in ("generator", "reals", "fakes")}})
    return pd.DataFrame(rows)


def _rank_auc(reals: np.ndarray, fakes: np.ndarray) -> np.ndarray:
    """ROC-AUC of fakes against reals along the last axis (ties count half), for many draws at once."""
    greater = (fakes[..., :, None] > reals[..., None, :]).mean(axis=(-1, -2))
    ties = (fakes[..., :, None] == reals[..., None, :]).mean(axis=(-1, -2))
    return greater + 0.5 * ties


def paired_difference(suite, a: dict[str, float], b: dict[str, float], bootstrap: int = 1000, seed: int = 0):
    """Mean ROC-AUC of detector ``a`` minus detector ``b`` over a suite's generators (seen, unseen, all),
    with a *paired* bootstrap 95 % interval: each draw resamples a pair's reals and fakes once and scores
    both detectors on those same images. Two separate intervals overlap far more than the difference is
    uncertain; this one says whether ``a`` beats ``b`` on these test images. Only images both scored count."""
    rng = np.random.default_rng(seed)
    per_pair = []
    for pair in suite.pairs:
        reals = [s.key for s in pair.reals if s.key in a and s.key in b]
        fakes = [s.key for s in pair.fakes if s.key in a and s.key in b]
        if not reals or not fakes:
            continue
        ri = rng.integers(len(reals), size=(bootstrap, len(reals)))
        fi = rng.integers(len(fakes), size=(bootstrap, len(fakes)))
        point, draws = [], []
        for scores in (a, b):
            r, f = np.array([scores[k] for k in reals]), np.array([scores[k] for k in fakes])
            point.append(_rank_auc(r, f))
            draws.append(_rank_auc(r[ri], f[fi]))  # (bootstrap,), empty without draws
        per_pair.append((pair.seen_in_training, point[0] - point[1], draws[0] - draws[1]))
    rows = []
    for name, keep in (("seen", lambda s: s), ("unseen", lambda s: not s), ("all", lambda s: True)):
        part = [p for p in per_pair if keep(p[0])]
        if not part:
            continue
        row = {"generators": name, "n": len(part), "auc difference": float(np.mean([p[1] for p in part]))}
        if bootstrap:
            mean_draws = np.mean([p[2] for p in part], axis=0)
            lo, hi = _interval(mean_draws)
            row["95% CI"] = f"[{lo:.3f}, {hi:.3f}]"
            row["share of draws a ahead"] = float(np.mean(mean_draws > 0))
        rows.append(row)
    return pd.DataFrame(rows)
