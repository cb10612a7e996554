from __future__ import annotations

import math

import numpy as np
import pandas as pd

from exifkit.loglinear import fit_loglinear, fit_table

SIZES = np.repeat([20, 40, 80, 160, 320], 2)


def test_a_known_slope_is_recovered_with_an_interval_that_holds_it_and_extrapolates():
    rng = np.random.default_rng(0)
    y = 0.5 + 0.05 * np.log2(SIZES / 20) + rng.normal(0, 0.005, len(SIZES))
    fit = fit_loglinear(SIZES, y, targets=(0.8, 0.9))
    assert fit["slope_low"] < 0.05 < fit["slope_high"] and fit["slope_high"] - fit["slope_low"] < 0.02
    # 0.8 is 6 doublings above 0.5 at 20 photos: 20 * 2**6 = 1280
    assert fit["photos for 0.8 low"] < 1280 < fit["photos for 0.8 high"]
    assert 1000 < fit["photos for 0.8"] < 1600 and fit["photos for 0.9"] > fit["photos for 0.8"]
    assert fit["note"] == "extrapolated beyond the largest size measured"


def test_a_flat_or_falling_metric_is_not_extrapolated():
    rng = np.random.default_rng(1)
    flat = fit_loglinear(SIZES, 0.6 + rng.normal(0, 0.02, len(SIZES)))
    assert flat["slope_low"] < 0 < flat["slope_high"] and "photos for 0.8" not in flat
    assert flat["note"].startswith("cannot be extrapolated: the slope's 95 % interval includes 0")
    falling = fit_loglinear(SIZES, 0.7 - 0.03 * np.log2(SIZES) + rng.normal(0, 0.002, len(SIZES)))
    assert falling["slope_high"] < 0 and "falls with more photos" in falling["note"]
    exact = fit_loglinear(SIZES, np.full(len(SIZES), 0.5))
    assert "exactly on a line" in exact["note"] and "photos for 0.8" not in exact


def test_an_uncertain_positive_slope_leaves_the_upper_end_open():
    rng = np.random.default_rng(2)
    y = 0.5 + 0.01 * np.log2(SIZES) + rng.normal(0, 0.01, len(SIZES))
    fit = fit_loglinear(SIZES, y, targets=(0.9,))
    assert fit["slope_low"] > 0 and fit["photos for 0.9 high"] > 1e6 * fit["photos for 0.9 low"]


def test_fit_table_extrapolates_aucs_only_and_ignores_random_init_rows():
    rows = [{"metric": m, "photos": n, "value": 0.5 + 0.04 * math.log2(n) + 0.001 * (i % 3)}
            for m in ("probe auc, unseen generators", "pretext held-out: Make") for i, n in enumerate(SIZES)]
    rows += [{"metric": "probe auc, unseen generators", "photos": 0, "value": 0.99}]
    table = fit_table(pd.DataFrame(rows)).set_index("metric")
    assert table.loc["probe auc, unseen generators", "points"] == len(SIZES)
    assert np.isfinite(table.loc["probe auc, unseen generators", "photos for 0.8"])
    assert math.isnan(table.loc["pretext held-out: Make", "photos for 0.8"])
