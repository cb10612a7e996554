"""A metric against log2(training photos): the fitted line, its slope interval and where it would cross a
target. Stated assumptions: the metric is linear in log2(photos) (each doubling adds the same), the line
holds beyond the largest size measured (an extrapolation, the further the less reliable), and the points
scatter independently around it (runs of one seed share test images, so the interval is if anything too
narrow). It says nothing once the metric saturates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def fit_loglinear(photos, values, targets=(0.8, 0.9), level: float = 0.95, draws: int = 20000,
                  seed: int = 0) -> dict:
    """Ordinary least squares of ``values`` on log2(``photos``) (every run a point: seeds give the
    scatter). The slope's interval is Student's t; the photo count at which the line reaches each target
    is given where that interval lies above 0, its interval taken from draws of (intercept, slope) from
    their joint t distribution (a draw whose slope is not positive never reaches the target: the upper
    end is then unbounded)."""
    x = np.log2(np.asarray(photos, dtype=float))
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {"points": int(len(x)), "sizes": int(len(np.unique(x)))}
    if len(x) < 3 or len(np.unique(x)) < 2:
        return {**out, "slope": math.nan, "note": "cannot be fitted: fewer than 3 points or a single size"}
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    df = len(x) - 2
    s2 = float(resid @ resid) / df if df > 0 else math.nan
    cov = s2 * np.linalg.inv(design.T @ design)
    t = stats.t.ppf(0.5 + level / 2, df)
    se = math.sqrt(cov[1, 1])
    lo, hi = coef[1] - t * se, coef[1] + t * se
    out.update({"intercept": float(coef[0]), "slope": float(coef[1]), "slope_low": float(lo), "slope_high": float(hi),
                "gain per doubling": float(coef[1]), "residual sd": math.sqrt(s2),
                "largest photos": float(2 ** x.max()), "fitted at largest": float(coef[0] + coef[1] * x.max())})
    if not s2 > (1e-12 * (1 + np.abs(y).max())) ** 2:
        out["note"] = "cannot be extrapolated: the points lie exactly on a line (no scatter to set an interval)"
        return out
    if lo <= 0 <= hi:
        out["note"] = "cannot be extrapolated: the slope's 95 % interval includes 0"
        return out
    if hi < 0:
        out["note"] = "cannot be extrapolated: the metric falls with more photos (slope interval below 0)"
        return out
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(cov)
    scale = np.sqrt(df / rng.chisquare(df, size=draws))
    sample = coef + (rng.standard_normal((draws, 2)) @ chol.T) * scale[:, None]
    notes = []
    for target in targets:
        key = f"photos for {target:g}"
        x_star = (target - coef[0]) / coef[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = np.where(sample[:, 1] > 0, (target - sample[:, 0]) / sample[:, 1], np.inf)
        low, high = np.percentile(xs, [50 - level * 50, 50 + level * 50])
        out[key] = float(2 ** x_star)
        out[f"{key} low"] = float(2 ** low)
        out[f"{key} high"] = float(2 ** high) if np.isfinite(high) else math.inf
        if x_star <= x.max():
            notes.append(f"{target:g} is within the measured range")
    out["note"] = "; ".join(notes) or ("extrapolated beyond the largest size measured" if targets
                                       else "slope interval excludes 0 (no target asked)")
    return out


def fit_table(runs: pd.DataFrame, targets=(0.8, 0.9), extrapolate=lambda metric: "auc" in metric) -> pd.DataFrame:
    """One fit per metric over the trained runs (``photos`` > 0) of a study's long table; photo counts for
    the ``targets`` only where ``extrapolate(metric)`` (ROC-AUCs: a target of 0.8 means nothing for a
    tag's accuracy, whose majority baseline may already exceed it)."""
    trained = runs[runs["photos"] > 0]
    rows = []
    for metric in dict.fromkeys(trained["metric"]):
        part = trained[trained["metric"] == metric]
        rows.append({"metric": metric, **fit_loglinear(part["photos"], part["value"],
                                                       targets if extrapolate(metric) else ())})
    return pd.DataFrame(rows)


__all__ = ["fit_loglinear", "fit_table"]
